"""scripts/lib/redact.py: every credential kind replaced by its marker; what is not a credential kept as it came."""

from __future__ import annotations

import json
import random
import string

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


def _token(length: int) -> str:
    """Random letters and digits, the same for the same length (so a case's text and secret agree)."""
    rng = random.Random(length)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length - 2)) + "7q"


# Formats a review found slipping through, in part or whole: each must lose every character of its credential.
@pytest.mark.parametrize("text, secret, kind", [
    ("STRIPE_SECRET_KEY=sk_live_51" + _token(99), "sk_live_51" + _token(99), "stripe-key"),
    ("key sk_test_" + _token(30), "sk_test_" + _token(30), "stripe-key"),
    ("token ghs_" + _token(40), "ghs_" + _token(40), "github-token"),
    ("token github_pat_" + _token(60), "github_pat_" + _token(60), "github-token"),
    ("glpat-" + _token(55), "glpat-" + _token(55), "gitlab-token"),
    ("legacy sk-" + _token(48), "sk-" + _token(48), "openai-key"),
    ("JWT eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0." + _token(43), "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0." + _token(43), "jwt"),
    ("export OTEL_EXPORTER_OTLP_HEADERS=x-mlflow-experiment-id=1,Authorization=Basic%20YWxpY2U6" + _token(40),
     "YWxpY2U6" + _token(40), "basic-auth"),
    ("curl -H 'Authorization: Basic ZGVwbG95Om" + _token(20) + "=='", "ZGVwbG95Om" + _token(20) + "==", "basic-auth"),
    ("curl -u deploy:" + _token(14) + " https://x.example", _token(14), "basic-auth"),
    ("redis://:" + _token(16) + "@cache:6379/0", _token(16), "password-in-url"),
    ("postgresql://app:" + _token(10) + "!x$@db/app", _token(10) + "!x$", "password-in-url"),
    ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + _token(64) + "\n-----END ENCRYPTED PRIVATE KEY-----", _token(64),
     "private-key"),
    ("Authorization: Bearer " + _token(32) + "==", _token(32) + "==", "bearer-token"),
    ("//registry.npmjs.org/:_authToken=npm_" + _token(36), "npm_" + _token(36), "npm-token"),
    ('DB_PASSWORD="correct horse battery staple"', "correct horse battery staple", "env-secret"),
    ('  "password": "' + _token(12) + '",', _token(12), "env-secret"),
    ("DB_PASS=" + _token(12), _token(12), "env-secret"),
    ("DB_PASSWD=" + _token(12), _token(12), "env-secret"),
    ("api_token: " + _token(12), _token(12), "env-secret"),
])
def test_a_credential_in_each_format_is_replaced_whole(text, secret, kind):
    redacted, found = REDACTOR.redact(text)
    assert found == [kind] and secret not in redacted and f"[REDACTED:{kind}]" in redacted


def test_a_credential_in_captured_json_leaves_the_json_around_it_whole():
    npm = json.dumps({"o": "//registry.npmjs.org/:_authToken=npm_" + _token(36) + "\nnext line", "exit": 0})
    cut = json.dumps({"out": "-----BEGIN RSA PRIVATE KEY-----\n" + _token(64) + "\n(truncated)", "exit": 0})
    assert json.loads(REDACTOR.redact(npm)[0]) == {"o": "//registry.npmjs.org/:_authToken=[REDACTED:npm-token]\nnext line",
                                                   "exit": 0}
    assert json.loads(REDACTOR.redact(cut)[0]) == {"out": "[REDACTED:private-key](truncated)", "exit": 0}


@pytest.mark.parametrize("text", [
    "max_tokens: 4096", "GOOSE_MAX_TOKENS=8192", "TOKENIZERS_PARALLELISM=false", "keys = []",
    "token = get_token(session)", '    api_key = os.environ["OPENAI_API_KEY"]', "SSH_KEY_PATH=/root/.ssh/id_ed25519",
    "sort_keys: true", "Password: (none set)", "Use bearer authentication for the API.",
    "at io.OpenTelemetrySpanExporter.export.processBatchOfSpansInBackground(Unknown Source)",
    "0123456789abcdef0123456789abcdef-us1", "DEBUG=true", "API_KEY=none"])
def test_config_and_code_that_only_name_a_secret_are_kept(text):
    assert REDACTOR.redact(text) == (text, [])
