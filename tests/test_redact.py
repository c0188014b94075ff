"""scripts/lib/redact.py: every credential kind replaced by its marker; what is not a credential kept as it came."""

from __future__ import annotations

import json

import pytest

from harness.fake_credentials import credentials, in_context, look_alikes
from lib import redact

REDACTOR = redact.Redactor()


@pytest.mark.parametrize("kind", sorted(credentials(1)))
def test_each_kind_is_replaced_by_its_marker_and_the_text_around_it_kept(kind):
    secret, line = credentials(1)[kind], in_context(credentials(1))[kind]
    redacted, found = REDACTOR.redact(line)
    assert found == [kind]
    assert redacted == line.replace(secret, f"[REDACTED:{kind}]")


@pytest.mark.parametrize("kind", sorted(credentials(2)))
def test_a_credential_in_captured_json_is_replaced_too(kind):
    # goose captures a tool's result as JSON: line breaks become the two characters \n.
    line = in_context(credentials(2))[kind]
    captured = json.dumps({"output": f"$ env\nHOME=/root\n{line}\nDONE"})
    redacted, found = REDACTOR.redact(captured)
    assert found == [kind]
    assert json.loads(redacted)["output"] == f"$ env\nHOME=/root\n{line}\nDONE".replace(
        credentials(2)[kind], f"[REDACTED:{kind}]")


def test_nothing_of_a_private_key_remains():
    secret = credentials(3)["private-key"]
    redacted, _ = REDACTOR.redact(in_context(credentials(3))["private-key"])
    assert not any(line in redacted for line in secret.splitlines())


@pytest.mark.parametrize("name", sorted(look_alikes(4)))
def test_what_only_looks_random_is_kept(name):
    value = look_alikes(4)[name]
    assert REDACTOR.redact(f"commit {value} in {value}") == (f"commit {value} in {value}", [])


def test_a_line_with_several_credentials_loses_each():
    found = credentials(5)
    text = f"{found['github-token']} and {found['aws-access-key']}"
    assert REDACTOR.redact(text) == ("[REDACTED:github-token] and [REDACTED:aws-access-key]",
                                     ["aws-access-key", "github-token"])


def test_a_key_that_names_no_secret_is_kept():
    assert REDACTOR.redact("PATH=/usr/bin\nHOME=/root\nLANG=C.UTF-8") == ("PATH=/usr/bin\nHOME=/root\nLANG=C.UTF-8", [])


def test_an_env_key_that_says_token_secret_password_or_key_loses_its_value():
    text = "GH_TOKEN=abc123def\nexport APP_SECRET='s3cr3t-value'\nDB_PASSWORD=hunter22\nSTRIPE_KEY=zzzz9999"
    redacted, found = REDACTOR.redact(text)
    assert redacted == ("GH_TOKEN=[REDACTED:env-secret]\nexport APP_SECRET='[REDACTED:env-secret]'\n"
                        "DB_PASSWORD=[REDACTED:env-secret]\nSTRIPE_KEY=[REDACTED:env-secret]")
    assert found == ["env-secret"] * 4


def test_a_teams_own_pattern_is_redacted_under_its_kind():
    team = redact.Redactor(redact.BUILT_IN + redact.parse_patterns("acme-token=acme_[0-9a-f]{32}"))
    assert team.redact("key acme_" + "0f" * 16 + " here") == ("key [REDACTED:acme-token] here", ["acme-token"])


def test_a_teams_pattern_with_a_group_redacts_only_the_group():
    [pattern] = redact.parse_patterns(r"ticket-secret=ticket:(\w{12})")
    assert redact.Redactor([pattern]).redact("ticket:abcdefghijkl") == ("ticket:[REDACTED:ticket-secret]",
                                                                        ["ticket-secret"])


@pytest.mark.parametrize("setting, problem", [
    ("acme", "is not kind=regex"), ("Acme=x", "is not kind=regex"), ("acme=(", "is not a regular expression"),
    ("acme=x*", "matches empty text")])
def test_a_bad_team_pattern_is_refused_naming_the_entry(setting, problem):
    with pytest.raises(ValueError, match=problem):
        redact.parse_patterns(setting)


def test_redaction_is_on_unless_the_setting_says_off():
    assert isinstance(redact.from_settings({}), redact.Redactor)
    assert isinstance(redact.from_settings({"REDACTION": "on"}), redact.Redactor)
    assert redact.from_settings({"REDACTION": "off"}) is None
    assert redact.from_settings({"REDACTION": "OFF "}) is None


def test_a_redaction_setting_other_than_on_or_off_is_refused():
    with pytest.raises(ValueError, match="REDACTION=maybe is neither on nor off"):
        redact.from_settings({"REDACTION": "maybe"})
