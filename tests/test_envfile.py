"""The env file: rendered for bash and Compose, merged without touching user lines, written atomically."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from lib import envfile
from lib.errors import StackError
from harness.project import require_compose_cli
from lib import stack_config as cfg

VALUES = cfg.goose_env("http://localhost:5000", "7")


def test_fresh_file_has_export_lines_for_every_goose_setting():
    text = envfile.merge("", VALUES)
    assert text.splitlines() == [
        envfile.HEADER,
        "export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:5000",
        "export OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://localhost:5000/v1/traces",
        "export OTEL_EXPORTER_OTLP_HEADERS=x-mlflow-experiment-id=7",
        "export OTEL_EXPORTER_OTLP_TRACES_HEADERS=x-mlflow-experiment-id=7",
        "export OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        "export OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/protobuf",
        "export OTEL_SDK_DISABLED=false",
        "export OTEL_TRACES_EXPORTER=otlp",
        "export OTEL_METRICS_EXPORTER=none",
        "export OTEL_LOGS_EXPORTER=none",
        "export OTEL_SERVICE_NAME=goose",
        "export MLFLOW_TRACKING_URI=http://localhost:5000",
        "export MLFLOW_EXPERIMENT_ID=7",
    ]


def test_goose_env_never_sets_compression():
    assert not any("COMPRESSION" in key for key in VALUES)


def test_user_lines_are_kept_byte_for_byte():
    user = "# my settings\r\nMLFLOW_PORT=5001\n\nexport  GOOSE_PROVIDER='openai'  # trailing\n"
    text = envfile.merge(user, VALUES)
    assert text.startswith(user)


def test_owned_key_is_replaced_in_place_and_duplicates_dropped():
    existing = "A=1\nexport OTEL_SERVICE_NAME=old\nB=2\nOTEL_SERVICE_NAME=dup\n"
    text = envfile.merge(existing, {"OTEL_SERVICE_NAME": "goose"})
    assert text == "A=1\nexport OTEL_SERVICE_NAME=goose\nB=2\n"


def test_removed_keys_are_dropped():
    existing = "export OTEL_EXPORTER_OTLP_COMPRESSION=gzip\nKEEP=1\n"
    text = envfile.merge(existing, {}, remove=cfg.OWNED_REMOVED_KEYS)
    assert text == "KEEP=1\n"


def test_merge_is_idempotent():
    once = envfile.merge("X=1\n", VALUES)
    assert envfile.merge(once, VALUES) == once


def test_file_without_final_newline_gets_one_before_appended_lines():
    text = envfile.merge("X=1", {"OTEL_SERVICE_NAME": "goose"})
    assert text.splitlines()[0] == "X=1"
    assert text.endswith("export OTEL_SERVICE_NAME=goose\n")


def test_value_with_spaces_is_single_quoted_and_bash_reads_it_back(tmp_path):
    path = tmp_path / ".env"
    path.write_text(envfile.merge("", {"V": "Basic a b&c"}))
    out = subprocess.run(["bash", "-c", f'source "{path}" && printf %s "$V"'], capture_output=True, text=True)
    assert out.stdout == "Basic a b&c"


@pytest.mark.parametrize("bad", ["it's", "two\nlines"])
def test_value_with_quote_or_newline_is_refused(bad):
    with pytest.raises(StackError):
        envfile.render_line("V", bad)


def test_invalid_key_is_refused():
    with pytest.raises(StackError):
        envfile.render_line("1BAD", "x")


def test_write_atomic_reports_no_change_and_keeps_mtime(tmp_path):
    path = tmp_path / ".env"
    assert envfile.write_atomic(path, "A=1\n") is True
    os.utime(path, (1_000_000, 1_000_000))
    assert envfile.write_atomic(path, "A=1\n") is False
    assert path.stat().st_mtime == 1_000_000


def test_write_atomic_keeps_existing_mode(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o600)
    envfile.write_atomic(path, "A=2\n")
    assert (path.stat().st_mode & 0o777, path.read_text()) == (0o600, "A=2\n")


def test_write_atomic_leaves_no_temp_file(tmp_path):
    envfile.write_atomic(tmp_path / ".env", "A=1\n")
    assert [p.name for p in tmp_path.iterdir()] == [".env"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to the directory owner happens only as root")
def test_new_file_written_by_root_belongs_to_the_directory_owner(tmp_path):
    os.chown(tmp_path, 4321, 4321)
    envfile.write_atomic(tmp_path / ".env", "A=1\n")
    assert (tmp_path / ".env").stat().st_uid == 4321


# render_line: one line that bash and Compose both read back literally.

@pytest.mark.parametrize("value", ["", "goose", "http://localhost:5000", "x-mlflow-experiment-id=7,a=b",
                                   "Basic%20dXNlcjpwdw%3D%3D", "user@host", "a+b-c_d.e/f", "A1z9"])
def test_plain_value_is_written_unquoted(value):
    assert envfile.render_line("V", value) == f"export V={value}"


@pytest.mark.parametrize("value", ["a b", "$HOME", "`id`", "a;b", "a&b", "a|b", "*", "a\\b", '"x"', "a#b", "~", "é",
                                   "!x", "(x)", "{x}", "a\tb"])
def test_value_with_shell_characters_is_single_quoted(value):
    assert envfile.render_line("V", value) == f"export V='{value}'"


@pytest.mark.parametrize("key", ["_", "_x1", "OTEL_SERVICE_NAME", "a"])
def test_variable_names_of_letters_digits_and_underscores_are_accepted(key):
    assert envfile.render_line(key, "1") == f"export {key}=1"


@pytest.mark.parametrize("key", ["", "A-B", "A B", "A=B", "1BAD", "A.B", "ÄB", "\nA"])
def test_other_variable_names_are_refused_naming_the_key(key):
    with pytest.raises(StackError) as raised:
        envfile.render_line(key, "x")
    assert str(raised.value) == f"invalid variable name {key!r}: use letters, digits and _"


@pytest.mark.parametrize("bad", ["it's", "two\nlines", "carriage\rreturn", "'"])
def test_value_with_quote_newline_or_carriage_return_is_refused_naming_the_key(bad):
    with pytest.raises(StackError) as raised:
        envfile.render_line("SECRET_V", bad)
    assert str(raised.value) == "value of SECRET_V holds a quote or newline, which env files cannot carry"


LITERALS = ["$HOME", "`id`", "${HOME}", "$(id)", "a b $USER `whoami` \\n *"]


@pytest.mark.parametrize("value", LITERALS)
def test_value_with_dollar_or_backticks_round_trips_through_bash_literally(tmp_path, value):
    path = tmp_path / ".env"
    path.write_text(envfile.merge("", {"V": value}))
    out = subprocess.run(["bash", "-c", 'source "$1" && printf %s "$V"', "bash", str(path)],
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": "/home/x"})
    assert (out.returncode, out.stdout) == (0, value)


@pytest.mark.parametrize("value", LITERALS)
def test_value_with_dollar_or_backticks_round_trips_through_compose_literally(tmp_path, value):
    # Compose's dotenv rules: a single-quoted value is literal (`docker compose config` needs no engine).
    require_compose_cli()
    (tmp_path / ".env").write_text(envfile.merge("", {"V": value}))
    (tmp_path / "compose.yaml").write_text("services:\n  s:\n    image: x\n    environment:\n      V: ${V}\n")
    out = subprocess.run(["docker", "compose", "--project-directory", str(tmp_path), "config", "--format", "json"],
                         capture_output=True, text=True, env={"PATH": os.environ["PATH"], "HOME": "/home/x",
                                                              "USER": "x"})
    assert out.returncode == 0, out.stderr
    # `config` prints a literal $ escaped as $$, ready to be read back.
    assert json.loads(out.stdout)["services"]["s"]["environment"]["V"] == value.replace("$", "$$")


def test_plain_value_round_trips_through_bash(tmp_path):
    path = tmp_path / ".env"
    value = "x-mlflow-experiment-id=3,Authorization=Basic%20YT8%2BOnA%2FPg%3D%3D"
    path.write_text(envfile.merge("", {"V": value}))
    out = subprocess.run(["bash", "-c", 'source "$1" && printf %s "$V"', "bash", str(path)], capture_output=True,
                         text=True)
    assert out.stdout == value


def test_variable_name_with_a_trailing_newline_is_refused():
    with pytest.raises(StackError):
        envfile.render_line("A\n", "x")


# assigned_key and parse: reading lines back.

@pytest.mark.parametrize("line, key", [("A=1", "A"), ("export A=1", "A"), ("  export\tA_1=", "A_1"),
                                       ("  B='x y'", "B"), ("exportA=1", "exportA"), ("_=1\n", "_")])
def test_assigned_key_is_the_variable_a_line_sets(line, key):
    assert envfile.assigned_key(line) == key


@pytest.mark.parametrize("line", ["# A=1", "", "A =1", "1A=1", "export A", "echo A=1", "A-B=1"])
def test_assigned_key_is_none_for_lines_that_set_nothing(line):
    assert envfile.assigned_key(line) is None


def test_parse_reads_plain_and_single_quoted_values():
    text = "# comment\nexport A=1\nB='x y'\n\n  export C=  \nD=a=b\n"
    assert envfile.parse(text) == {"A": "1", "B": "x y", "C": "", "D": "a=b"}


def test_parse_reads_back_what_merge_wrote():
    values = {"A": "plain", "B": "Basic a b&c", "C": "$HOME", "D": ""}
    assert envfile.parse(envfile.merge("USER_LINE=1\n", values)) == {"USER_LINE": "1", **values}


@pytest.mark.parametrize("raw, value", [("'", "'"), ("''", ""), ("'a", "'a"), ("a'", "a'"), ('"x"', '"x"'),
                                        ("'a'b'", "a'b")])
def test_parse_strips_only_a_matching_pair_of_single_quotes(raw, value):
    assert envfile.parse(f"V={raw}\n") == {"V": value}


def test_parse_keeps_the_last_of_duplicate_assignments():
    assert envfile.parse("A=1\nA=2\n") == {"A": "2"}


# merge: where the header and new lines go.

def test_new_keys_go_below_a_blank_line_and_the_header_after_user_lines():
    assert envfile.merge("X=1\n", {"A": "1"}) == f"X=1\n\n{envfile.HEADER}\nexport A=1\n"


def test_no_second_blank_line_when_the_file_ends_with_one():
    assert envfile.merge("X=1\n\n", {"A": "1"}) == f"X=1\n\n{envfile.HEADER}\nexport A=1\n"


def test_new_file_starts_with_the_header():
    assert envfile.merge("", {"A": "1"}) == f"{envfile.HEADER}\nexport A=1\n"


def test_header_is_not_repeated_when_a_key_is_added_later():
    once = envfile.merge("X=1\n", {"A": "1"})
    assert envfile.merge(once, {"A": "1", "B": "2"}) == once + "export B=2\n"


def test_nothing_is_appended_when_every_key_is_already_there():
    existing = "export A=old\nX=1"
    assert envfile.merge(existing, {"A": "new"}) == "export A=new\nX=1"


def test_replaced_last_line_keeps_having_no_final_newline():
    assert envfile.merge("X=1\nexport A=old", {"A": "new"}) == "X=1\nexport A=new"


def test_removed_key_that_is_also_set_keeps_its_new_value():
    text = envfile.merge("export A=1\n", {"A": "2"}, remove=["A"])
    assert text == "export A=2\n"


def test_removing_keys_never_adds_the_header():
    assert envfile.merge("X=1\nexport GONE=1\n", {}, remove=["GONE"]) == "X=1\n"


def test_new_keys_keep_the_order_they_were_given_in():
    text = envfile.merge("", {"Z": "1", "A": "2", "M": "3"})
    assert [envfile.assigned_key(line) for line in text.splitlines()[1:]] == ["Z", "A", "M"]


# read_text: a missing file is empty; a binary one is an error.

def test_read_text_of_a_missing_file_is_empty(tmp_path):
    assert envfile.read_text(tmp_path / "absent") == ""


def test_read_text_returns_the_files_utf8_text(tmp_path):
    (tmp_path / ".env").write_bytes("A='é ✓'\n".encode())
    assert envfile.read_text(tmp_path / ".env") == "A='é ✓'\n"


def test_read_text_of_a_non_utf8_file_names_it(tmp_path):
    (tmp_path / ".env").write_bytes(b"A=\xff\n")
    with pytest.raises(StackError) as raised:
        envfile.read_text(tmp_path / ".env")
    assert str(raised.value) == f"{tmp_path / '.env'} is not UTF-8 text; fix or move it, then rerun"


# write_atomic: all or nothing, mode and owner kept.

def test_new_file_gets_mode_0644_by_default(tmp_path):
    envfile.write_atomic(tmp_path / ".env", "A=1\n")
    assert (tmp_path / ".env").stat().st_mode & 0o7777 == 0o644


def test_new_file_gets_the_mode_asked_for(tmp_path):
    envfile.write_atomic(tmp_path / "secret", "x", mode=0o400)
    assert ((tmp_path / "secret").stat().st_mode & 0o7777, (tmp_path / "secret").read_text()) == (0o400, "x")


def test_rewrite_keeps_the_existing_mode_over_the_one_asked_for(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    path.chmod(0o640)
    assert envfile.write_atomic(path, "A=2\n", mode=0o444) is True
    assert path.stat().st_mode & 0o7777 == 0o640


def test_write_atomic_writes_utf8(tmp_path):
    envfile.write_atomic(tmp_path / ".env", "A='é ✓'\n")
    assert (tmp_path / ".env").read_bytes() == "A='é ✓'\n".encode()


def test_relative_path_in_the_current_directory_is_written_there(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert envfile.write_atomic(Path(".env"), "A=1\n") is True
    assert (tmp_path / ".env").read_text() == "A=1\n"


def test_missing_directory_is_a_clear_error_and_nothing_is_created(tmp_path):
    with pytest.raises(StackError) as raised:
        envfile.write_atomic(tmp_path / "absent" / ".env", "A=1\n")
    assert str(raised.value) == (f"directory {tmp_path / 'absent'} does not exist; "
                                 "create it or pass another path")
    assert not (tmp_path / "absent").exists()


def test_unreadable_existing_path_is_a_clear_error(tmp_path):
    (tmp_path / ".env").mkdir()
    with pytest.raises(StackError, match=f"^cannot read {tmp_path / '.env'}: "):
        envfile.write_atomic(tmp_path / ".env", "A=1\n")


def test_existing_non_utf8_file_is_refused_and_left_as_it_is(tmp_path):
    (tmp_path / ".env").write_bytes(b"A=\xff\n")
    with pytest.raises(StackError, match=f"^cannot read {tmp_path / '.env'}: "):
        envfile.write_atomic(tmp_path / ".env", "A=1\n")
    assert (tmp_path / ".env").read_bytes() == b"A=\xff\n"


def test_temp_file_that_cannot_be_created_names_the_file_and_the_fix(tmp_path, monkeypatch):
    def refuse(**_kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(StackError) as raised:
        envfile.write_atomic(tmp_path / ".env", "A=1\n")
    assert str(raised.value) == (f"cannot write {tmp_path / '.env'}: Permission denied; "
                                 "fix the directory's permissions or pass another path")


def test_temp_file_is_a_hidden_sibling_renamed_over_the_file(tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((Path(src), Path(dst))), real_replace(src, dst)))
    envfile.write_atomic(tmp_path / "goose.env", "A=1\n")
    [(source, target)] = renames
    assert (source.parent, target) == (tmp_path, tmp_path / "goose.env")
    assert source.name.startswith(".goose.env.") and source.name.endswith(".tmp")


def test_content_is_on_disk_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.fstat(fd).st_size)), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda src, dst: (events.append(("replace", src)), real_replace(src, dst))[1])
    envfile.write_atomic(tmp_path / ".env", "A=12\n")
    assert [event[0] for event in events] == ["fsync", "replace"] and events[0][1] == 5


@pytest.mark.parametrize("failing", ["fsync", "chmod", "replace"])
def test_failed_write_removes_the_temp_file_and_leaves_the_original(tmp_path, monkeypatch, failing):
    path = tmp_path / ".env"
    path.write_text("A=original\n")

    def fail(*_args, **_kwargs):
        raise OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="Input/output error"):
        envfile.write_atomic(path, "A=new\n")
    assert [p.name for p in tmp_path.iterdir()] == [".env"] and path.read_text() == "A=original\n"


def test_interrupted_write_removes_the_temp_file(tmp_path, monkeypatch):
    def interrupt(*_args):
        raise KeyboardInterrupt
    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        envfile.write_atomic(tmp_path / ".env", "A=1\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user happens only as root")
def test_root_rewriting_a_file_keeps_its_owner_and_mode(tmp_path):
    os.chown(tmp_path, 1111, 1112)
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    os.chown(path, 4321, 4322)
    path.chmod(0o600)
    envfile.write_atomic(path, "A=2\n")
    info = path.stat()
    assert (info.st_uid, info.st_gid, info.st_mode & 0o7777, path.read_text()) == (4321, 4322, 0o600, "A=2\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to the directory owner happens only as root")
def test_new_file_written_by_root_gets_the_directory_owners_group_too(tmp_path):
    os.chown(tmp_path, 4321, 4322)
    envfile.write_atomic(tmp_path / ".env", "A=1\n")
    assert ((tmp_path / ".env").stat().st_uid, (tmp_path / ".env").stat().st_gid) == (4321, 4322)


def test_file_written_by_a_non_root_user_is_not_chowned(tmp_path, monkeypatch):
    chowned = []
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "chown", lambda *args: chowned.append(args))
    envfile.write_atomic(tmp_path / ".env", "A=1\n")
    envfile.give_to_directory_owner(tmp_path / ".env")
    assert chowned == [] and (tmp_path / ".env").read_text() == "A=1\n"


# give_to_directory_owner: files a root process makes stay the developer's.

@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user happens only as root")
def test_root_gives_a_file_to_its_directorys_owner(tmp_path):
    os.chown(tmp_path, 4321, 4322)
    (tmp_path / "f").write_text("x")
    envfile.give_to_directory_owner(tmp_path / "f")
    assert ((tmp_path / "f").stat().st_uid, (tmp_path / "f").stat().st_gid) == (4321, 4322)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user happens only as root")
def test_root_gives_a_relative_path_to_the_current_directorys_owner(tmp_path, monkeypatch):
    os.chown(tmp_path, 4321, 4322)
    monkeypatch.chdir(tmp_path)
    Path("f").write_text("x")
    envfile.give_to_directory_owner(Path("f"))
    assert (tmp_path / "f").stat().st_uid == 4321
