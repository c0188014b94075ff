"""envfile.source_otel: what a shell holds after `source` of an env file, bare or on top of the user's (make verify, make doctor)."""

from __future__ import annotations

from lib import envfile


def test_a_bare_shell_sees_only_the_files_settings(tmp_path, monkeypatch):
    env_file = tmp_path / "goose.env"
    env_file.write_text("export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:5000\n")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert envfile.source_otel(env_file) == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:5000"}


def test_on_top_of_the_users_shell_its_settings_are_kept_where_the_file_is_silent(tmp_path):
    env_file = tmp_path / "goose.env"
    env_file.write_text("export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:5000\nexport OTEL_SDK_DISABLED=false\n")
    seen = envfile.source_otel(env_file, {"PATH": "/usr/bin:/bin", "OTEL_SDK_DISABLED": "true",
                                             "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"})
    assert seen == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:5000", "OTEL_SDK_DISABLED": "false",
                    "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip"}


def test_a_missing_env_file_is_named_with_the_command_that_writes_it(tmp_path):
    import pytest

    from lib.errors import StackError

    with pytest.raises(StackError, match=r"^.*/absent\.env does not exist; run make up \(or scripts/bootstrap\.py\) first$"):
        envfile.source_otel(tmp_path / "absent.env")
