#!/usr/bin/env python3
"""Bring MLflow's databases to the schema this image expects, backing up first; never downgrade.

The one-shot `migrate` job, run on every `up` before the MLflow server starts,
so that the server never migrates by itself (MLflow's store migrates a
database silently at start-up when a release adds tables). For each database
(tracking; accounts in team mode), its alembic revision against the image's:

  none yet     a new database: the tracking schema is made here as MLflow's server would make it
               (the accounts' by MLflow when it starts)
  the same     nothing to do
  older        back up everything first (backup.py), then MLflow's own upgrade:
               `mlflow db upgrade` (tracking), `python -m mlflow.server.auth db upgrade` (accounts)
  unknown      a newer MLflow wrote it: stop, naming the backup to restore

Then the tracking database refuses the experiment tags the stack keeps out (store.refuse_experiment_tags:
issue-detection schedules, docs/security.md). Any failure exits 1 with one line, and `make up` fails with it.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from lib import store
from lib.archive import DEFAULT_DIRECTORY, NAME_PREFIX, mlflow_version, read_manifest, take_backup
from lib.errors import StackError, reason_in, run_command


def log(message: str) -> None:
    print(f"migrate: {message}", file=sys.stderr, flush=True)


def upgrade_command(database: store.Database) -> list[str]:
    """MLflow's own command that upgrades a database of this kind to the image's head."""
    if database.kind == "tracking":
        return ["mlflow", "db", "upgrade", database.uri]
    return [sys.executable, "-m", "mlflow.server.auth", "db", "upgrade", "--url", database.uri]


def backup_to_restore(directory: Path, database: store.Database) -> str:
    """The newest backup this image can read, as `make restore` takes it, or advice when there is none."""
    for path in sorted(directory.glob(f"{NAME_PREFIX}*.tar"), reverse=True):
        try:
            revision = read_manifest(path)["databases"][database.kind]["revision"]
        except (StackError, KeyError, TypeError):
            continue
        if revision is None or store.known_to_image(database, revision):
            return f"make restore FILE=backups/{path.name} FORCE=1"
    return "no backup in backups/ has a schema this MLflow knows: start the newer image again"


def plan(databases: list[store.Database], directory: Path) -> list[tuple[store.Database, str, str]]:
    """(database, its revision, the image's) for each database to upgrade; logs the others."""
    behind = []
    for database in databases:
        current, head = store.schema_revision(database), store.image_head(database)
        if current is None and database.kind == "tracking":
            store.create_schema(database)
            log(f"{database.kind} database {database.name}: new; created MLflow {mlflow_version()}'s schema {head}")
        elif current is None:
            log(f"{database.kind} database {database.name}: new; MLflow {mlflow_version()} creates its schema")
        elif current == head:
            log(f"{database.kind} database {database.name}: schema {head}, as MLflow {mlflow_version()} expects")
        elif store.known_to_image(database, current):
            behind.append((database, current, head))
        else:
            raise StackError(f"the {database.kind} database is at schema {current}, which MLflow {mlflow_version()} "
                             f"does not know: a newer MLflow wrote it and there is no way down. Go back to that "
                             f"MLflow's image, or restore a backup taken before the upgrade: "
                             f"{backup_to_restore(directory, database)}")
    return behind


def upgrade(database: store.Database, current: str, head: str, backup: Path) -> None:
    log(f"{database.kind} database {database.name}: upgrading schema {current} -> {head}")
    result = subprocess.run(upgrade_command(database), capture_output=True, text=True)
    if result.returncode != 0:
        reason = reason_in(result.stderr, f"exit {result.returncode}")
        raise StackError(f"upgrading the {database.kind} database from {current} to {head} failed: {reason}. "
                         f"PostgreSQL rolled the upgrade back; the backup taken first is backups/{backup.name} "
                         f"(make restore FILE=backups/{backup.name} FORCE=1 if the data looks wrong)")
    now = store.schema_revision(database)
    if now != head:
        raise StackError(f"the {database.kind} database is at {now} after the upgrade, not {head}; "
                         f"the backup taken first is backups/{backup.name}")
    log(f"{database.kind} database {database.name}: now at {head}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Upgrade MLflow's databases to this image's schema, backing up first.")
    parser.add_argument("--backups", type=Path, default=DEFAULT_DIRECTORY,
                        help="where backups are (default: %(default)s, ./backups on the host)")
    return parser.parse_args(argv)


def upgrade_all(databases: list[store.Database], directory: Path) -> str:
    """Each database behind the image upgraded, after one backup of everything; what was done."""
    behind = plan(databases, directory)
    if not behind:
        return "migrate: nothing to upgrade"
    log(f"MLflow {mlflow_version()} expects a newer schema; backing up before the upgrade")
    backup = take_backup(directory, reason=f"before the upgrade to MLflow {mlflow_version()}")
    log(f"backup written: backups/{backup.name}")
    for database, current, head in behind:
        upgrade(database, current, head, backup)
    return f"migrate: upgraded to MLflow {mlflow_version()}'s schema; backup first: backups/{backup.name}"


def run(args: argparse.Namespace) -> str:
    with store.one_line_errors():
        databases = store.databases()
        done = upgrade_all(databases, args.backups)
        store.refuse_experiment_tags(databases[0])
        log(f"tracking database {databases[0].name}: experiment tags refused: "
            f"{', '.join(store.REFUSED_EXPERIMENT_TAGS)}")
    return done


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("migrate", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
