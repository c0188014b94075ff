"""Backup, restore and status of the real stack under a real Docker engine, as docs/operations.md runs them.

A local stack gets goose sessions, an assessment, a run with artifacts and a
versioned prompt with an alias; `make backup` takes it; the bad files and a
stack that holds data are refused without a change; `docker compose down -v`,
`make up` and `make restore` bring back the same rows and the same objects.
Team mode does the same with accounts. Tests run in file order.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest

from harness.commands import experiment_id_in, fill, source_and_emit
from harness.project import REPO_OWNER_UID, ComposeProject, clean_copy, filled_stack, require_engine
from harness.team import TeamDeployment
from credentials import SECRETS
from test_docker_stack import send_aged_trace, wait_for_log

pytestmark = pytest.mark.docker

ACCOUNT_TABLES = ("experiment_permissions", "registered_model_permissions")


def accounts(project: ComposeProject) -> dict[str, str]:
    """Every account but the admin (whose password is the stack's own) with its hash, and every permission."""
    return {"users": project.sql("SELECT string_agg(username || ':' || password_hash || ':' || is_admin, ',' "
                                 "ORDER BY username) FROM users WHERE username <> 'admin'", "mlflow_auth"),
            **project.table_digests(ACCOUNT_TABLES, "mlflow_auth")}


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}


def restore_errors(result: subprocess.CompletedProcess) -> list[str]:
    """The lines restore.py printed as errors (make adds its own line after them)."""
    return [line for line in result.stderr.splitlines() if line.startswith("restore: error: ")]


def mlflow_is_healthy(project: ComposeProject) -> bool:
    return project.states()["mlflow"][:2] == ("running", "healthy")


# Local mode -------------------------------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A local stack holding three goose sessions, an assessment, a run with artifacts and a prompt."""
    require_engine()
    directory = clean_copy(tmp_path_factory.mktemp("operations"))
    # As `make up` run by the checkout's owner makes it (the tests run make as root).
    (directory / "backups").mkdir(mode=0o700)
    os.chown(directory / "backups", REPO_OWNER_UID, REPO_OWNER_UID)
    with filled_stack(directory, sessions=3) as project:
        yield project


@pytest.fixture(scope="module")
def archive(local) -> Path:
    return local.backup()


def test_make_backup_prints_the_archive_path_last(local, archive):
    assert archive.parent == local.directory / "backups"
    assert archive.name.startswith("goose-mlflow-") and archive.name.endswith("Z.tar") and archive.is_file()


def test_the_backup_is_readable_by_the_owner_of_backups_only(local, archive):
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert stat.S_IMODE(archive.parent.stat().st_mode) == 0o700
    assert archive.stat().st_uid == REPO_OWNER_UID and archive.parent.stat().st_uid == REPO_OWNER_UID


def test_the_manifest_names_version_schema_counts_and_every_members_checksum(local, archive):
    from lib import store

    contents = members(archive)
    manifest = json.loads(contents.pop("manifest.json"))
    assert manifest["mlflow_version"] == local.container("mlflow").image.tags[0].rsplit(":", 1)[1]
    tracking = manifest["databases"]["tracking"]
    assert tracking["revision"] == local.sql("SELECT version_num FROM alembic_version")
    for label in ("experiments", "runs", "traces", "spans", "assessments"):
        table = store.COUNTED_TABLES["tracking"][label]
        assert tracking["counts"][label] == int(local.sql(f"SELECT count(*) FROM {table}")) > 0, label
    assert manifest["artifacts"]["objects"] == len(local.digests) >= 2
    assert manifest["members"] == {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}


def test_the_backup_holds_no_credential_of_the_stack(local, archive):
    dump_sql = local.compose("run", "--rm", "--no-deps", "--volume", f"{archive}:/restore/backup.tar:ro", "migrate",
                             "sh", "-c", "tar -xOf /restore/backup.tar databases/tracking.dump | pg_restore -f -").stdout
    assert "CREATE TABLE public.spans" in dump_sql
    raw = archive.read_bytes()
    for name in SECRETS:
        value = local.secret(name)
        assert value.encode() not in raw and value not in dump_sql, name


def test_restore_refuses_a_stack_that_holds_data_and_changes_nothing(local, archive):
    result = local.restore(archive, check=False)
    [error] = restore_errors(result)
    assert result.returncode != 0 and error.startswith("restore: error: this stack holds data already (")
    assert "3 traces" in error and "1 runs" in error and "2 artifacts" in error and "FORCE=1" in error
    assert mlflow_is_healthy(local) and local.table_digests() == local.before


def corrupt(data: bytes) -> bytes:
    """One byte of the tracking dump flipped: still a tar, a checksum no longer matches."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        offset = tar.getmember("databases/tracking.dump").offset_data + 100
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def foreign(_: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    return out.getvalue()


@pytest.mark.parametrize("damage, message", [
    (corrupt, "databases/tracking.dump does not match its checksum"),
    (lambda data: data[: len(data) // 2], "truncated"),
    (foreign, "has no manifest.json: it is not a goose-mlflow backup"),
    (lambda _: b"just some text\n" * 100, "not a readable tar archive"),
], ids=["corrupt", "truncated", "foreign-tar", "not-a-tar"])
def test_a_damaged_or_foreign_file_is_refused_in_one_line_and_nothing_changes(local, archive, damage, message):
    bad = archive.with_name(f"bad-{uuid.uuid4().hex[:6]}.tar")
    bad.write_bytes(damage(archive.read_bytes()))
    result = local.restore(bad, "FORCE=1", check=False)
    errors = restore_errors(result)
    assert result.returncode != 0 and len(errors) == 1 and message in errors[0], result.stderr
    assert mlflow_is_healthy(local) and local.table_digests() == local.before


def test_restore_into_a_fresh_stack_brings_back_every_row_and_object(local, archive):
    local.down()
    local.up()
    assert local.table_digests()["trace_info"].startswith("0|")
    started = local.container("mlflow").attrs["State"]["StartedAt"]
    result = local.restore(archive)
    assert f"Restored {archive.name}:" in result.stdout
    # MLflow was stopped while its database was replaced, and started again.
    assert local.container("mlflow").attrs["State"]["StartedAt"] > started
    assert local.table_digests() == local.before
    assert local.artifact_digests() == local.digests


def test_the_env_file_works_after_the_restore(local):
    trace_id = source_and_emit(local.env_file, f"after-restore-{uuid.uuid4().hex[:6]}")
    assert trace_id in local.client().trace_ids(experiment_id_in(local.env_file))


def test_a_backup_taken_under_load_restores_every_trace_whole(local):
    import load

    experiment = local.client().create_experiment(f"backup-under-load-{uuid.uuid4().hex[:6]}")
    taken: list[Path] = []
    exporters = load.run_exporters(f"http://127.0.0.1:{local.port}", experiment, concurrency=4, seconds=25,
                                   traces=5, prompt="x", during=lambda: taken.append(local.backup()))
    assert sum(exporter.statuses["200"] for exporter in exporters) > 0
    manifest = json.loads(members(taken[0])["manifest.json"])
    result = local.restore(taken[0], "FORCE=1")
    assert "replacing" in result.stderr
    assert int(local.sql("SELECT count(*) FROM trace_info")) == manifest["databases"]["tracking"]["counts"]["traces"]
    assert int(local.sql(f"SELECT count(*) FROM trace_info WHERE experiment_id = {int(experiment)}")) > 0
    assert local.incomplete_traces(experiment, spans_per_trace=3) == 0


def test_the_documented_cron_line_takes_a_backup(local):
    """docs/operations.md's crontab, run as cron runs it: its PATH, the checkout's path in place of /srv/goose-mlflow."""
    import re

    from harness.compose_file import REPO

    doc = (REPO / "docs" / "operations.md").read_text()
    path = re.search(r"^PATH=(\S+)$", doc, re.M).group(1)
    command = re.search(r"^[0-9]+ [0-9]+ \* \* \* (.+)$", doc, re.M).group(1)
    before = set((local.directory / "backups").glob("goose-mlflow-*.tar"))
    environment = {"PATH": path, "HOME": "/root", "COMPOSE_PROJECT_NAME": local.name, "MLFLOW_PORT": str(local.port)}
    result = subprocess.run(["sh", "-c", command.replace("/srv/goose-mlflow", str(local.directory))],
                            env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert len(set((local.directory / "backups").glob("goose-mlflow-*.tar")) - before) == 1
    assert "backup: error" not in (local.directory / "backups" / "backup.log").read_text()


def test_make_status_shows_health_disk_schema_traces_and_the_last_backup(local):
    output = local.run("make", "status").stdout
    revision = local.sql("SELECT version_num FROM alembic_version")
    experiment = experiment_id_in(local.env_file)
    traces = local.sql(f"SELECT count(*) FROM trace_info WHERE experiment_id = {int(experiment)}")
    assert "  mlflow     running, healthy" in output and "  migrate    done" in output
    assert f"{local.name}_pgdata" in output
    assert f"tracking database mlflow: schema {revision}, as the image expects" in output
    assert f"experiment {experiment} goose-traces: {traces} traces, newest " in output
    newest = max((local.directory / "backups").glob("goose-mlflow-*.tar"), key=lambda path: path.stat().st_mtime)
    assert f"backups/{newest.name}: " in output
    assert "\nRedaction:\n  on: " in output and "\n  0 values stored unscanned (bytes that are not text)\n" in output
    assert output.rstrip().splitlines()[-1].startswith("Next: ")


def test_a_restore_the_retention_limit_would_undo_is_refused_until_pruning_is_said(local):
    """A backup holding a trace of 40 days ago, then TRACE_RETENTION_DAYS=30 applied (make up; the retention
    service deletes that trace): make restore names how many of the backup's traces the limit deletes when the
    stack starts again and changes nothing; PRUNE=1 restores and says so, and the service deletes it again."""
    old = send_aged_trace(local, experiment_id_in(local.env_file), 40)
    archive = local.backup()
    total = int(local.sql("SELECT count(*) FROM trace_info"))
    local.env["TRACE_RETENTION_DAYS"] = "30"
    try:
        local.up()
        wait_for_log(local, "retention", "Retention: 30 days")
        before = local.table_digests()
        refused = local.restore(archive, "FORCE=1", check=False)
        [error] = restore_errors(refused)
        assert refused.returncode != 0 and error.startswith(
            f"restore: error: TRACE_RETENTION_DAYS=30 deletes 1 of this backup's {total:,} traces (those started before ")
        assert mlflow_is_healthy(local) and local.table_digests() == before
        pruned = local.restore(archive, "FORCE=1", "PRUNE=1")
        assert f"retention: TRACE_RETENTION_DAYS=30 deletes 1 of this backup's {total:,} traces" in pruned.stdout
        deadline = time.monotonic() + 180  # the service's first pass after its restart
        while old in local.client().trace_ids(experiment_id_in(local.env_file)) and time.monotonic() < deadline:
            time.sleep(3)
        assert old not in local.client().trace_ids(experiment_id_in(local.env_file))
    finally:
        del local.env["TRACE_RETENTION_DAYS"]


# Team mode --------------------------------------------------------------------


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """Team mode with alice and bob; alice has sent a session and populated the stack through her env file."""
    require_engine()
    deployment = TeamDeployment(clean_copy(tmp_path_factory.mktemp("team-operations")))
    try:
        deployment.start(("alice", "bob"))
        fill(deployment.person_env_file("alice"), 1)
        deployment.before = deployment.table_digests()
        deployment.accounts = accounts(deployment)
        deployment.digests = deployment.artifact_digests()
        yield deployment
    finally:
        deployment.down()


def test_team_make_up_makes_a_private_backups_folder(team):
    assert stat.S_IMODE((team.directory / "backups").stat().st_mode) == 0o700


def test_team_restore_into_a_fresh_stack_brings_back_data_accounts_and_permissions(team):
    # make backup and make restore find team mode from the running stack, not from COMPOSE_FILE.
    compose_file = team.env.pop("COMPOSE_FILE")
    try:
        archive = team.backup()
        manifest = json.loads(members(archive)["manifest.json"])
        assert manifest["databases"]["accounts"]["revision"] == team.sql(
            "SELECT version_num FROM alembic_version_auth", "mlflow_auth")
        team.env["COMPOSE_FILE"] = compose_file
        team.down()
        team.up("team-up")
        # A rebuilt stack has a new local CA: the documented step hands it out again (docs/operations.md).
        team.run("make", "team-ca")
        del team.env["COMPOSE_FILE"]
        team.restore(archive)
    finally:
        team.env["COMPOSE_FILE"] = compose_file
    assert team.table_digests() == team.before
    assert accounts(team) == team.accounts
    assert team.artifact_digests() == team.digests


def test_team_a_persons_existing_env_file_works_after_the_restore(team):
    result = team.run("make", "verify", f"ENV_FILE={team.person_env_file('alice')}")
    assert "Spans:" in result.stdout


def test_team_the_admin_of_the_stack_restored_into_still_works(team):
    result = team.run("make", "user", "NAME=carol", f"CA_FILE={team.ca}")
    assert "users/carol.env" in result.stdout
    trace_id = source_and_emit(team.person_env_file("carol"), f"carol-{uuid.uuid4().hex[:6]}")
    assert trace_id in team.client("carol").trace_ids(experiment_id_in(team.person_env_file("carol")))
