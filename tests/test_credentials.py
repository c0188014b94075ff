"""mlflow/credentials.py: random credentials made once, kept, never printed."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

import pytest
import credentials
from harness.commands import run_script
from credentials import SECRETS


def test_every_secret_is_generated_readable_and_long_enough(tmp_path):
    result = run_script("mlflow/credentials.py", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in SECRETS:
        value = (tmp_path / name).read_text()
        assert len(value) >= 12 and value.strip() == value
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o444


def test_secrets_differ_from_each_other_and_between_installs(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    run_script("mlflow/credentials.py", str(first)), run_script("mlflow/credentials.py", str(second))
    values = [(d / name).read_text() for d in (first, second) for name in SECRETS]
    assert len(set(values)) == len(values)


def test_rerun_keeps_existing_secrets(tmp_path):
    run_script("mlflow/credentials.py", str(tmp_path))
    before = {name: (tmp_path / name).read_text() for name in SECRETS}
    result = run_script("mlflow/credentials.py", str(tmp_path))
    assert result.returncode == 0 and "kept" in result.stderr
    assert {name: (tmp_path / name).read_text() for name in SECRETS} == before


def test_values_never_reach_the_output(tmp_path):
    result = run_script("mlflow/credentials.py", str(tmp_path))
    for name in SECRETS:
        assert (tmp_path / name).read_text() not in result.stdout + result.stderr


def test_missing_directory_is_a_clear_error(tmp_path):
    result = run_script("mlflow/credentials.py", str(tmp_path / "absent"))
    assert result.returncode == 1 and "is not a directory" in result.stderr


# The same command in-process (main), for each rule.

def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = credentials.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_each_secret_has_the_length_of_its_random_bytes_in_url_safe_base64(tmp_path, capsys):
    assert run(capsys, str(tmp_path))[0] == 0
    lengths = {name: len((tmp_path / name).read_text()) for name in SECRETS}
    assert lengths == {name: len(secrets.token_urlsafe(nbytes)) for name, nbytes in SECRETS.items()}


def test_secrets_are_url_safe_text_without_newline(tmp_path, capsys):
    run(capsys, str(tmp_path))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", (tmp_path / name).read_text()) for name in SECRETS)


def test_new_secret_files_are_read_only_for_everyone(tmp_path, capsys):
    run(capsys, str(tmp_path))
    assert {(tmp_path / name).stat().st_mode & 0o7777 for name in SECRETS} == {0o444}


def test_first_run_reports_every_name_as_generated_on_stderr_only(tmp_path, capsys):
    code, out, err = run(capsys, str(tmp_path))
    assert (code, out) == (0, "")
    assert err.splitlines() == [f"credentials: {name}: generated" for name in SECRETS]


def test_second_run_reports_every_name_as_kept(tmp_path, capsys):
    run(capsys, str(tmp_path))
    code, out, err = run(capsys, str(tmp_path))
    assert (code, out) == (0, "")
    assert err.splitlines() == [f"credentials: {name}: kept" for name in SECRETS]


def test_no_value_is_printed_on_the_first_or_the_second_run(tmp_path, capsys):
    first = run(capsys, str(tmp_path))
    second = run(capsys, str(tmp_path))
    values = [(tmp_path / name).read_text() for name in SECRETS]
    assert not [value for value in values for output in (*first[1:], *second[1:]) if value in output]


def test_second_run_leaves_files_and_their_times_untouched(tmp_path, capsys):
    run(capsys, str(tmp_path))
    for name in SECRETS:
        os.utime(tmp_path / name, (1_000_000, 1_000_000))
    run(capsys, str(tmp_path))
    assert {(tmp_path / name).stat().st_mtime for name in SECRETS} == {1_000_000}


def test_missing_secret_is_generated_next_to_kept_ones(tmp_path, capsys):
    run(capsys, str(tmp_path))
    kept = (tmp_path / "postgres-password").read_text()
    (tmp_path / "mlflow-secret-key").unlink()
    code, _, err = run(capsys, str(tmp_path))
    assert code == 0 and (tmp_path / "postgres-password").read_text() == kept
    assert "credentials: mlflow-secret-key: generated" in err.splitlines()
    assert "credentials: postgres-password: kept" in err.splitlines()


@pytest.mark.parametrize("content", ["", "\n", "  \n"])
def test_empty_existing_secret_file_is_refused_and_left(tmp_path, capsys, content):
    (tmp_path / "minio-root-user").write_text(content)
    code, out, err = run(capsys, str(tmp_path))
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (f"credentials: error: {tmp_path / 'minio-root-user'} is empty; "
                                    "delete it only if the stack's volumes are new")
    assert (tmp_path / "minio-root-user").read_text() == content


def test_empty_existing_secret_file_is_refused_as_a_command_too(tmp_path):
    (tmp_path / "postgres-password").write_text("")
    result = run_script("mlflow/credentials.py", str(tmp_path))
    assert result.returncode == 1 and f"{tmp_path / 'postgres-password'} is empty" in result.stderr
    assert (tmp_path / "postgres-password").read_text() == ""


@pytest.mark.parametrize("make", ["absent", "file"])
def test_secrets_path_that_is_not_a_directory_is_refused(tmp_path, capsys, make):
    target = tmp_path / "secrets"
    if make == "file":
        target.write_text("x")
    code, _, err = run(capsys, str(target))
    assert code == 1
    assert err == f"credentials: error: {target} is not a directory; mount the secrets volume there\n"


# --import-from: credentials of external services.

def external(tmp_path: Path, **values: str) -> Path:
    source = tmp_path / "external"
    source.mkdir(exist_ok=True)
    for name, value in values.items():
        (source / name.replace("_", "-")).write_text(value)
    return source


def test_import_copies_each_present_credential_without_surrounding_whitespace(tmp_path, capsys):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    source = external(tmp_path, external_db_password=" db-pw\n", external_s3_access_key_id="AKIA\n",
                      external_s3_secret_access_key="s3-secret")
    code, _, err = run(capsys, str(secrets_dir), "--import-from", str(source))
    assert code == 0
    assert {name: (secrets_dir / name).read_text() for name in credentials.IMPORTED} == {
        "external-db-password": "db-pw", "external-s3-access-key-id": "AKIA",
        "external-s3-secret-access-key": "s3-secret"}
    assert [line for line in err.splitlines() if "external" in line] == [
        f"credentials: {name}: imported" for name in credentials.IMPORTED]


def test_imported_credentials_are_read_only_for_everyone(tmp_path, capsys):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    run(capsys, str(secrets_dir), "--import-from", str(external(tmp_path, external_db_password="pw")))
    assert (secrets_dir / "external-db-password").stat().st_mode & 0o7777 == 0o444


def test_credentials_absent_from_the_import_folder_are_skipped(tmp_path, capsys):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    code, _, err = run(capsys, str(secrets_dir), "--import-from", str(external(tmp_path, external_db_password="pw")))
    assert code == 0 and not (secrets_dir / "external-s3-access-key-id").exists()
    assert "external-s3-access-key-id" not in err


def test_reimport_of_an_unchanged_credential_says_unchanged(tmp_path, capsys):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    source = external(tmp_path, external_db_password="pw")
    run(capsys, str(secrets_dir), "--import-from", str(source))
    code, _, err = run(capsys, str(secrets_dir), "--import-from", str(source))
    assert code == 0 and "credentials: external-db-password: unchanged" in err.splitlines()


def test_changed_credential_is_refreshed_on_the_next_run(tmp_path, capsys):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    source = external(tmp_path, external_db_password="old-pw")
    run(capsys, str(secrets_dir), "--import-from", str(source))
    (source / "external-db-password").write_text("rotated-pw\n")
    code, _, err = run(capsys, str(secrets_dir), "--import-from", str(source))
    assert code == 0 and "credentials: external-db-password: imported" in err.splitlines()
    assert (secrets_dir / "external-db-password").read_text() == "rotated-pw"


@pytest.mark.parametrize("content", ["", "\n \n"])
def test_empty_import_source_is_refused_and_the_old_copy_kept(tmp_path, capsys, content):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    source = external(tmp_path, external_db_password="pw")
    run(capsys, str(secrets_dir), "--import-from", str(source))
    (source / "external-db-password").write_text(content)
    code, _, err = run(capsys, str(secrets_dir), "--import-from", str(source))
    assert code == 1
    assert err.splitlines()[-1] == (f"credentials: error: {source / 'external-db-password'} is empty; "
                                    "write the credential into it")
    assert (secrets_dir / "external-db-password").read_text() == "pw"


def test_missing_import_folder_is_refused_naming_it(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path), "--import-from", str(tmp_path / "absent"))
    assert code == 1
    assert err.splitlines()[-1] == (f"credentials: error: {tmp_path / 'absent'} is not a directory; "
                                    "create it with the external credentials (docs/external.md)")


def test_imported_values_are_never_printed(tmp_path, capsys):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    source = external(tmp_path, external_db_password="db-pw-VALUE", external_s3_secret_access_key="s3-VALUE")
    first = run(capsys, str(secrets_dir), "--import-from", str(source))
    second = run(capsys, str(secrets_dir), "--import-from", str(source))
    assert "VALUE" not in "".join(first[1:] + second[1:])


def test_without_import_from_no_external_credential_is_written(tmp_path, capsys):
    external(tmp_path, external_db_password="pw")
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    run(capsys, str(secrets_dir))
    assert sorted(p.name for p in secrets_dir.iterdir()) == sorted(SECRETS)


def test_import_from_runs_after_the_generated_secrets_are_ensured(tmp_path, capsys):
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    code, _, err = run(capsys, str(secrets_dir), "--import-from", str(external(tmp_path, external_db_password="pw")))
    assert code == 0 and sorted(p.name for p in secrets_dir.iterdir()) == sorted([*SECRETS, "external-db-password"])
    assert err.splitlines()[-1] == "credentials: external-db-password: imported"


def test_usage_error_without_a_directory_exits_2(capsys):
    with pytest.raises(SystemExit) as raised:
        credentials.main([])
    assert raised.value.code == 2 and "directory" in capsys.readouterr().err


def test_help_names_the_imported_files(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        credentials.main(["--help"])
    out = capsys.readouterr().out
    assert "external-db-password, external-s3-access-key-id, external-s3-secret-access-key" in out


def test_help_describes_the_command_and_its_arguments(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        credentials.main(["--help"])
    out = capsys.readouterr().out
    assert "[--import-from DIR] directory" in out.splitlines()[0]
    assert "Create the stack's random credentials if they do not exist yet." in out.splitlines()
    assert re.search(r"^ +directory +where the secret files live \(the secrets volume\)$", out, re.MULTILINE)
    assert "--import-from DIR" in out.split("options:")[1]
