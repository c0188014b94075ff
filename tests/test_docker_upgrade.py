"""Upgrading MLflow and PostgreSQL under the real Docker engine, as docs/operations.md does it.

MLflow: data written by the previous minor release stays readable.
The previous release's image is built from the same Dockerfile with the older
pin (its own tag, its own lock from `make lock-image`), in a clean copy whose pin is then
moved back to the current one, as an upgrade moves it. Tests run in file order
on one project: a sabotaged migration fails `make up` and changes nothing; the
real one backs up first and upgrades; going back to the older image is refused.
PostgreSQL: a stack on an older major version is moved to the pinned one by
backup, a new data volume and restore.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness import guide
from harness.commands import experiment_id_in
from harness.compose_file import REPO
from harness.project import ComposeProject, clean_copy, filled_stack, require_engine
from test_compose_policy import MLFLOW_VERSION

pytestmark = pytest.mark.docker

# An older major version of PostgreSQL than compose.yaml's (.ci/offline-images builds it).
OLDER_POSTGRES_IMAGE = "postgres:15-bookworm"
# The newest release of the minor before the pinned one on the package index; move it with the pin.
PREVIOUS_MLFLOW = "3.17.2"
PINNED_FILES = ("compose.yaml", "mlflow/requirements.txt", "mlflow/overrides.txt", "mlflow/constraints.txt",
                "constraints-dev.txt")
# A table MLflow 3.18's first migration creates: made by hand first, it makes that migration fail.
CREATED_BY_THE_UPGRADE = "skills"


def test_the_previous_release_is_the_minor_before_the_pin():
    pinned, previous = (tuple(int(part) for part in v.split(".")[:2]) for v in (MLFLOW_VERSION, PREVIOUS_MLFLOW))
    assert previous == (pinned[0], pinned[1] - 1)


def pin_mlflow(directory: Path, version: str) -> str:
    """Point the copy at `version` as a maintainer does, with make bump-mlflow (the image's tag, its pin, the
    overrides and both locks); back at the pin, the repository's own files. What the command printed."""
    if version == MLFLOW_VERSION:
        for name in PINNED_FILES:
            shutil.copy2(REPO / name, directory / name)
        return ""
    return subprocess.run(["make", "--no-print-directory", "bump-mlflow", f"VERSION={version}",
                           f"UV={Path(sys.executable).with_name('uv')}"],
                          cwd=directory, capture_output=True, text=True, check=True).stdout


def content(project: ComposeProject) -> dict[str, str]:
    """What a user reads back, in columns every schema since the older release has."""
    queries = {
        "spans": "SELECT string_agg(trace_id || span_id || md5(content), ',' ORDER BY trace_id, span_id) FROM spans",
        "traces": "SELECT string_agg(request_id || ':' || experiment_id, ',' ORDER BY request_id) FROM trace_info",
        "assessments": "SELECT string_agg(assessment_id || name || value, ',' ORDER BY assessment_id) FROM assessments",
        "runs": "SELECT string_agg(run_uuid || name, ',' ORDER BY run_uuid) FROM runs",
        "params": "SELECT string_agg(run_uuid || key || value, ',' ORDER BY run_uuid, key) FROM params",
        "prompts": "SELECT string_agg(name || version || source, ',' ORDER BY name, version) FROM model_versions",
        "aliases": "SELECT string_agg(name || alias || version, ',' ORDER BY name) FROM registered_model_aliases",
    }
    return {name: project.sql(query) for name, query in queries.items()}


def revision(project: ComposeProject) -> str:
    return project.sql("SELECT version_num FROM alembic_version")


def backups(project: ComposeProject) -> list[Path]:
    return sorted((project.directory / "backups").glob("goose-mlflow-*.tar"))


def manifest(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        return json.loads(tar.extractfile("manifest.json").read())


@pytest.fixture(scope="module")
def older(tmp_path_factory):
    """A stack run by the previous release's image, holding goose sessions, a run, artifacts and a prompt."""
    require_engine()
    directory = clean_copy(tmp_path_factory.mktemp("upgrade"))
    bumped = pin_mlflow(directory, PREVIOUS_MLFLOW)
    with filled_stack(directory) as project:
        project.bumped = bumped
        assert project.container("mlflow").image.tags == [f"goose-mlflow/mlflow:{PREVIOUS_MLFLOW}"]
        project.older_revision = revision(project)
        project.content = content(project)
        yield project


def test_make_bump_mlflow_moved_every_pin_of_the_copy(older):
    """The older stack's copy was moved with make bump-mlflow VERSION=<previous>: every place names it, and
    the command said so as docs/operations.md shows."""
    assert older.bumped.splitlines() == guide.console("docs/operations.md", f"make bump-mlflow VERSION={PREVIOUS_MLFLOW}")
    read = {name: (older.directory / name).read_text() for name in PINNED_FILES}
    assert f"mlflow[auth]=={PREVIOUS_MLFLOW}\n" in read["mlflow/requirements.txt"]
    assert f"&mlflow-image goose-mlflow/mlflow:{PREVIOUS_MLFLOW}\n" in read["compose.yaml"]
    for lock in ("mlflow/constraints.txt", "constraints-dev.txt"):
        assert re.findall(r"^(mlflow(?:-skinny|-tracing)?)==(\S+)$", read[lock], re.M) == [
            ("mlflow", PREVIOUS_MLFLOW), ("mlflow-skinny", PREVIOUS_MLFLOW), ("mlflow-tracing", PREVIOUS_MLFLOW)], lock
    assert "mlflow-tracing" not in read["mlflow/overrides.txt"]  # the previous release's is on the index


def test_a_failed_migration_fails_make_up_and_leaves_the_data_and_a_backup(older):
    # Owned by MLflow's role, as its own tables are: the backup before the upgrade can read it.
    older.sql(f"SET ROLE mlflow; CREATE TABLE {CREATED_BY_THE_UPGRADE} (lease_key text)")
    pin_mlflow(older.directory, MLFLOW_VERSION)
    result = older.run("make", "up", check=False)
    assert result.returncode != 0
    assert "make up: migrate failed:" in result.stderr
    assert f"migrate: error: upgrading the tracking database from {older.older_revision} to " in result.stderr
    assert f'relation "{CREATED_BY_THE_UPGRADE}" already exists' in result.stderr
    # make up stops at the failed job: the bootstrap never ran.
    assert "the bootstrap failed" not in result.stderr
    [taken] = backups(older)
    assert f"backups/{taken.name}" in result.stderr
    assert manifest(taken)["mlflow_version"] == MLFLOW_VERSION  # the new image took it, of the old schema
    assert manifest(taken)["databases"]["tracking"]["revision"] == older.older_revision
    assert revision(older) == older.older_revision and content(older) == older.content
    assert "mlflow" not in {name for name, (status, _, _) in older.states().items() if status == "running"}


def test_make_up_with_the_new_pin_backs_up_then_upgrades_and_the_data_reads_back(older):
    older.sql(f"DROP TABLE {CREATED_BY_THE_UPGRADE}")
    before = set(backups(older))
    output = older.up()
    [taken] = set(backups(older)) - before
    assert f"migrate: upgraded to MLflow {MLFLOW_VERSION}'s schema; backup first: backups/{taken.name}" in output
    assert manifest(taken)["databases"]["tracking"]["revision"] == older.older_revision
    logs = older.container("migrate").logs().decode()
    assert f"upgrading schema {older.older_revision} -> {revision(older)}" in logs
    assert f"backup written: backups/{taken.name}" in logs and f"now at {revision(older)}" in logs
    # The server started on a schema already at its head: it had nothing to migrate by itself.
    assert (older.container("mlflow").attrs["State"]["StartedAt"]
            > older.container("migrate").attrs["State"]["FinishedAt"])
    assert revision(older) != older.older_revision
    assert content(older) == older.content
    assert older.artifact_digests() == older.digests
    assert len(older.client().trace_ids(experiment_id_in(older.env_file))) == 2


def test_a_database_newer_than_the_image_is_refused_naming_the_backup_to_restore(older):
    newest_readable = backups(older)[-1]
    pin_mlflow(older.directory, PREVIOUS_MLFLOW)
    result = older.run("make", "up", check=False)
    assert result.returncode != 0
    assert f"which MLflow {PREVIOUS_MLFLOW} does not know: a newer MLflow wrote it" in result.stderr
    assert f"make restore FILE=backups/{newest_readable.name} FORCE=1" in result.stderr
    pin_mlflow(older.directory, MLFLOW_VERSION)


def test_a_backup_of_the_older_release_restores_into_a_fresh_stack_and_is_migrated(older):
    """The backup the migrate job took before the upgrade holds the older schema: restored into a
    stack of the current release, the restore's `make up` migrates it, and the data reads back."""
    [before_upgrade] = [path for path in backups(older)
                        if manifest(path)["databases"]["tracking"]["revision"] == older.older_revision][-1:]
    older.down()
    older.up()
    result = older.run("make", "restore", f"FILE=backups/{before_upgrade.name}")
    assert f"migrate: upgraded to MLflow {MLFLOW_VERSION}'s schema" in result.stdout
    assert revision(older) != older.older_revision
    assert content(older) == older.content
    assert older.artifact_digests() == older.digests


@pytest.fixture(scope="module")
def older_postgres(tmp_path_factory):
    """A stack on PostgreSQL 15 (POSTGRES_IMAGE), holding goose sessions, a run, artifacts and a prompt."""
    require_engine()
    with filled_stack(clean_copy(tmp_path_factory.mktemp("postgres-upgrade")),
                      {"POSTGRES_IMAGE": OLDER_POSTGRES_IMAGE}) as project:
        yield project


def test_a_postgresql_major_upgrade_through_backup_and_restore_keeps_everything(older_postgres):
    """docs/operations.md's sequence: make backup, make down, remove pgdata, the new POSTGRES_IMAGE,
    make up, make restore FORCE=1 (the artifacts' volume was kept)."""
    project = older_postgres
    assert project.sql("SHOW server_version").startswith("15.")
    archive = project.backup()
    project.run("make", "down")
    project.run("docker", "volume", "rm", f"{project.name}_pgdata")
    del project.env["POSTGRES_IMAGE"]
    project.up()
    project.restore(archive, "FORCE=1")
    assert project.sql("SHOW server_version").startswith("17.")
    assert project.table_digests() == project.before
    assert project.artifact_digests() == project.digests
