"""scripts/host/up.py (make up, make team-up, the restart that ends make restore): the steps that decide.

What it starts, waits for and prints is shown against the real engine by
test_docker_stack.py (local), test_docker_team.py (team) and
test_docker_operations.py (the restart after a restore).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import up
from lib.errors import StackError


def args_for(directory: Path, *argv: str) -> argparse.Namespace:
    return up.parse_args([*argv, "--directory", str(directory)])


def test_a_progress_line_gets_the_whole_seconds_since_the_start_right_aligned():
    assert up.with_seconds(" Container goose-mlflow-mlflow-1  Healthy", 24.9) == "[ 24s]  Container goose-mlflow-mlflow-1  Healthy"
    assert up.with_seconds("x", 1234.0) == "[1234s] x"


def test_only_jobs_that_exited_non_zero_are_reported():
    assert up.failed_jobs("database:0\nmigrate:3\ncredentials:0\nbucket:137\n") == ["migrate", "bucket"]


def test_no_exited_job_reports_nothing():
    assert up.failed_jobs("") == []


def test_local_mode_leaves_the_files_to_compose_and_waits_for_mlflow_and_retention(tmp_path):
    env: dict[str, str] = {}
    assert up.plan(args_for(tmp_path), env) == ([], ("mlflow", "retention"), [])
    assert env == {}


def test_team_mode_adds_the_team_file_waits_for_the_proxy_and_listens_on_the_urls_port(tmp_path):
    (tmp_path / ".env").write_text("MLFLOW_PUBLIC_URL=https://mlflow.example.com:8443\n")
    env: dict[str, str] = {}
    files, wait_for, flags = up.plan(args_for(tmp_path, "--team"), env)
    assert (files, wait_for, flags) == (["compose.yaml", "compose.team.yaml"], ("proxy", "retention"), [])
    assert env["TEAM_HTTPS_PORT"] == "8443"


def test_team_mode_follows_compose_file_so_external_services_override_it(tmp_path):
    (tmp_path / ".env").write_text("MLFLOW_PUBLIC_URL=https://mlflow.example.com\n")
    env = {"COMPOSE_FILE": "compose.yaml:compose.external.yaml"}
    files, _, _ = up.plan(args_for(tmp_path, "--team"), env)
    assert files == ["compose.yaml", "compose.team.yaml", "compose.external.yaml"]
    assert env["TEAM_HTTPS_PORT"] == "443"


def test_team_mode_without_a_public_url_is_refused_before_anything_starts(tmp_path, capsys):
    assert up.main(["--team", "--directory", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("make team-up: error: team mode needs MLFLOW_PUBLIC_URL")
    assert not (tmp_path / "backups").exists()


def test_team_and_restart_are_exclusive(tmp_path):
    with pytest.raises(SystemExit):
        up.parse_args(["--team", "--restart"])


def test_the_backups_folder_is_made_private(tmp_path):
    up.make_backups_folder(tmp_path)
    assert (tmp_path / "backups").stat().st_mode & 0o777 == 0o700


def test_an_existing_backups_folder_is_kept_as_it_is(tmp_path):
    (tmp_path / "backups").mkdir(mode=0o750)
    (tmp_path / "backups" / "old.tar").write_text("kept")
    up.make_backups_folder(tmp_path)
    assert (tmp_path / "backups" / "old.tar").read_text() == "kept"


def test_a_stack_error_is_not_swallowed_as_success(tmp_path):
    with pytest.raises(StackError):
        up.plan(args_for(tmp_path, "--team"), {})


def test_restore_without_a_file_says_which_is_wanted_and_runs_nothing(tmp_path, capsys):
    assert up.main(["--restore", "", "--compose", "false", "--directory", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        "make restore: error: say which backup: make restore FILE=backups/goose-mlflow-....tar\n")


def test_restore_of_a_path_that_is_no_file_names_it_and_where_backups_are(tmp_path, capsys):
    missing = tmp_path / "backups" / "goose-mlflow-x.tar"
    assert up.main(["--restore", str(missing), "--compose", "false", "--directory", str(tmp_path)]) == 1
    assert capsys.readouterr().err == (
        f"make restore: error: {missing} is not a file; make backup writes them into backups/\n")


def test_restore_mounts_the_backup_read_only_into_the_migrate_job(tmp_path):
    backup = tmp_path / "goose-mlflow-20261207T101010Z.tar"
    assert up.restore_run(backup, ["--force", "--retention-days", "30"], check=True) == [
        "run", "--rm", "--no-deps", "--volume", f"{backup}:/restore/{backup.name}:ro", "migrate",
        "python3", "scripts/restore.py", "--check", "--force", "--retention-days", "30", f"/restore/{backup.name}"]
    assert "--check" not in up.restore_run(backup, [], check=False)


def test_restore_tells_restore_py_force_prune_and_the_limit_the_stack_starts_again_with(tmp_path):
    assert up.restore_flags(args_for(tmp_path, "--restore", "b.tar"), "") == ["--retention-days", ""]
    assert up.restore_flags(args_for(tmp_path, "--restore", "b.tar", "--force", "--prune"), "30") == [
        "--force", "--prune", "--retention-days", "30"]


def test_restore_stops_the_proxy_too_in_team_mode():
    assert up.servers_to_stop(["compose.yaml"]) == ["retention", "mlflow"]
    assert up.servers_to_stop([]) == ["retention", "mlflow"]
    assert up.servers_to_stop(["/x/compose.yaml", "/x/compose.team.yaml"]) == ["proxy", "retention", "mlflow"]
