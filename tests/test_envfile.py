"""The env file: rendered for bash and Compose, merged without touching user lines, written atomically."""

from __future__ import annotations

import os
import subprocess

import pytest

import envfile
from errors import StackError
import stack_config as cfg

VALUES = cfg.goose_env("http://localhost:5000", "7")


def test_fresh_file_has_export_lines_for_every_goose_setting():
    text = envfile.merge("", VALUES)
    assert text.splitlines() == [
        envfile.HEADER,
        "export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:5000",
        "export OTEL_EXPORTER_OTLP_HEADERS=x-mlflow-experiment-id=7",
        "export OTEL_TRACES_EXPORTER=otlp",
        "export OTEL_METRICS_EXPORTER=none",
        "export OTEL_LOGS_EXPORTER=none",
        "export OTEL_SERVICE_NAME=goose",
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
