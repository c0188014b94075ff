#!/usr/bin/env python3
"""Restore a backup written by backup.py into the stack's stores.

`make restore FILE=...` runs this in the stack's `migrate` service with the
MLflow server stopped, then starts the stack again (whose migrate job brings
an older backup's schema up to this image's). In order, and nothing is
changed until the first three pass:

1. the file: a tar with a manifest of this format, every member present and
   matching its sha256, no member the manifest does not name;
2. the image: its MLflow knows every schema revision in the backup (a backup
   from a newer MLflow is refused);
3. the stack: it holds no trace, run, model, artifact, experiment but
   Default and the bootstrap's, or account but the admin (a fresh `make up`),
   unless --force; and the retention limit it will start with deletes none of
   the backup's traces (counted in its dump), unless --prune;
4. each database's schema is replaced by the dump; artifacts are uploaded;
5. team mode: the admin account gets this stack's admin password (a backup
   carries only the old stack's hash of it);
6. the counts in the stores are checked against the manifest and printed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

from psycopg2 import sql

from lib import stack_config as cfg
from lib import store
from lib.archive import CHUNK, MANIFEST, mlflow_version, read_manifest
from lib.errors import StackError, reason_in, run_command

# What a stack may hold and still count as empty: MLflow's Default experiment and the bootstrap's.
EMPTY_WHEN_ZERO = ("runs", "traces", "registered_models", "logged_models")
FRESH_EXPERIMENTS = 2


def log(message: str) -> None:
    print(f"restore: {message}", file=sys.stderr, flush=True)


def verify_file(path: Path) -> dict:
    """The manifest, once every member is present and intact; else a StackError naming the problem."""
    manifest = read_manifest(path)
    expected = manifest.get("members")
    if not isinstance(expected, dict) or not expected:
        raise StackError(f"{path.name}: the manifest lists no members: the backup is corrupt; use another backup")
    seen: set[str] = set()
    try:
        with tarfile.open(path, mode="r:") as tar:
            for member in tar:
                if member.name == MANIFEST:
                    continue
                if member.name not in expected or not member.isfile():
                    raise StackError(f"{path.name} holds {member.name!r}, which its manifest does not list: "
                                     "it was changed after the backup; use another backup")
                digest = hashlib.sha256()
                stream = tar.extractfile(member)
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                if digest.hexdigest() != expected[member.name]:
                    raise StackError(f"{path.name}: {member.name} does not match its checksum: the backup is "
                                     "corrupt; use another backup")
                seen.add(member.name)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StackError(f"{path.name} is truncated or corrupt ({exc}); use another backup") from None
    missing = sorted(set(expected) - seen)
    if missing:
        raise StackError(f"{path.name} lacks {missing[0]}{' and more' if len(missing) > 1 else ''}: "
                         "the backup is truncated; use another backup")
    return manifest


def check_image_reads(manifest: dict, databases: list[store.Database]) -> None:
    """Every database of the backup has a place in this stack, at a revision this MLflow knows."""
    kinds = {database.kind: database for database in databases}
    for kind, entry in manifest["databases"].items():
        if kind not in kinds:
            raise StackError(f"the backup holds team mode's {kind} database and this stack has none; "
                             "restore it into team mode (make team-up first)")
        revision = entry.get("revision")
        if revision and not store.known_to_image(kinds[kind], revision):
            raise StackError(f"the backup comes from MLflow {manifest.get('mlflow_version')}, whose {kind} schema "
                             f"({revision}) this stack's MLflow {mlflow_version()} does not know; restore it "
                             "into a stack with that MLflow or newer")


def held_data(databases: list[store.Database], bucket: store.Bucket) -> list[str]:
    """What the stack holds beyond a fresh `make up`: '12 traces', '3 objects', ...; empty when nothing."""
    held = []
    for database in databases:
        counts = store.counts(database)
        if database.kind == "tracking":
            held += [f"{counts[label]} {label}" for label in EMPTY_WHEN_ZERO if counts.get(label)]
            if counts.get("experiments", 0) > FRESH_EXPERIMENTS:
                held.append(f"{counts['experiments'] - FRESH_EXPERIMENTS} experiments besides Default and the bootstrap's")
        elif counts.get("users", 0) > 1:
            held.append(f"{counts['users'] - 1} accounts besides the admin")
    objects = sum(1 for _ in bucket.objects())
    if objects:
        held.append(f"{objects} artifacts")
    return held


def trace_start_times(path: Path) -> list[int]:
    """Each trace's start (timestamp_ms) in the backup's tracking dump, read by pg_restore as COPY text."""
    with tarfile.open(path, mode="r:") as tar, tempfile.TemporaryDirectory() as scratch:
        dump = Path(scratch) / "tracking.dump"
        with open(dump, "wb") as file:
            stream = tar.extractfile("databases/tracking.dump")
            while chunk := stream.read(CHUNK):
                file.write(chunk)
        result = subprocess.run(["pg_restore", "--data-only", "--table=trace_info", "--file=-", str(dump)],
                                capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"reading the traces of {path.name} failed: {reason_in(result.stderr, 'pg_restore')}")
    starts, column = [], None
    for line in result.stdout.splitlines():
        if column is None:
            if line.startswith("COPY ") and ".trace_info (" in line:
                column = [name.strip() for name in line.split("(", 1)[1].split(")", 1)[0].split(",")].index(
                    "timestamp_ms")
        elif line == "\\.":
            break
        else:
            starts.append(int(line.split("\t")[column]))
    return starts


def check_retention(path: Path, days: int | None, prune: bool, now_ms: int) -> str | None:
    """What the retention limit the stack starts with will delete of the backup's traces: refused unless
    `prune`, said when pruned, None when nothing goes."""
    if days is None:
        return None
    cutoff_ms = cfg.retention_cutoff_ms(days, now_ms)
    starts = trace_start_times(path)
    doomed = sum(1 for start in starts if start <= cutoff_ms)
    if not doomed:
        return None
    cutoff = datetime.fromtimestamp(cutoff_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    what = (f"TRACE_RETENTION_DAYS={days} deletes {doomed:,} of this backup's {len(starts):,} traces (those "
            f"started before {cutoff}) as soon as the stack starts again")
    if not prune:
        raise StackError(f"{what}. To keep them, remove TRACE_RETENTION_DAYS from .env (or raise it) and run "
                         "make up, then restore; to restore and let them go, add PRUNE=1")
    return f"{what} (PRUNE=1)"


def restore_database(database: store.Database, dump: Path) -> None:
    """Replace the database's schema by the dump's, in one pg_restore transaction.

    The schema is dropped and made again by its owner, MLflow's role: no
    superuser needed, so it works on a managed PostgreSQL too.
    """
    with closing(database.connect()) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_schema()")
            schema = cursor.fetchone()[0]
            # PUBLIC keeps USAGE, as on a new database's public schema (read-only roles, dashboards).
            cursor.execute(sql.SQL("DROP SCHEMA {0} CASCADE; CREATE SCHEMA {0}; GRANT USAGE ON SCHEMA {0} TO PUBLIC")
                           .format(sql.Identifier(schema)))
    result = subprocess.run(["pg_restore", "--no-owner", "--no-privileges", "--single-transaction", "--exit-on-error",
                             f"--dbname={database.libpq_uri}", str(dump)], capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"pg_restore of the {database.kind} database failed: "
                         f"{reason_in(result.stderr, f'exit {result.returncode}')}; the database is empty now: "
                         "restore again (FORCE=1) from another backup")


def clear_bucket(bucket: store.Bucket) -> None:
    client = bucket.client()
    keys = [bucket.prefix + key for key, _ in bucket.objects()]
    for start in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket.name, Delete={"Objects": [{"Key": key} for key in keys[start:start + 1000]]})


def restore_files(path: Path, databases: list[store.Database], bucket: store.Bucket) -> int:
    """Load each dump and upload each artifact; the number of artifacts."""
    kinds = {database.kind: database for database in databases}
    client, uploaded = bucket.client(), 0
    with tarfile.open(path, mode="r:") as tar, tempfile.TemporaryDirectory() as scratch:
        for member in tar:
            stream = tar.extractfile(member)
            if member.name.startswith("databases/"):
                kind = Path(member.name).stem
                dump = Path(scratch) / f"{kind}.dump"
                with open(dump, "wb") as file:
                    while chunk := stream.read(CHUNK):
                        file.write(chunk)
                restore_database(kinds[kind], dump)
                log(f"{kind} database {kinds[kind].name} restored")
                dump.unlink()
            elif member.name.startswith("artifacts/"):
                client.upload_fileobj(stream, bucket.name, bucket.prefix + member.name[len("artifacts/"):])
                uploaded += 1
                if uploaded % 200 == 0:
                    log(f"artifacts: {uploaded} uploaded so far")
    log(f"artifacts: {uploaded} uploaded to s3://{bucket.name}/{bucket.prefix}")
    return uploaded


def reset_admin_password(databases: list[store.Database]) -> str | None:
    """Team mode: the admin account takes this stack's admin password, hashed as MLflow hashes it."""
    username, password = os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME"), os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD")
    accounts = [database for database in databases if database.kind == "accounts"]
    if not (accounts and username and password):
        return None
    from werkzeug.security import generate_password_hash

    with closing(accounts[0].connect()) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE users SET password_hash = %s, is_admin = true WHERE username = %s",
                       (generate_password_hash(password), username))
        connection.commit()
        return username if cursor.rowcount else None


def check_counts(manifest: dict, databases: list[store.Database], objects: int) -> list[str]:
    """A line per store with what it holds now; a StackError if that differs from the manifest."""
    lines = []
    for database in databases:
        entry = manifest["databases"].get(database.kind)
        if entry is None:
            continue
        now = store.counts(database)
        differs = {label: (count, now.get(label)) for label, count in entry["counts"].items() if now.get(label) != count}
        if differs:
            raise StackError(f"the {database.kind} database holds other counts than the backup: {differs}")
        lines.append(f"{database.kind}: " + ", ".join(f"{count} {label}" for label, count in now.items()))
    if objects != manifest["artifacts"]["objects"]:
        raise StackError(f"{objects} artifacts uploaded, the backup lists {manifest['artifacts']['objects']}")
    lines.append(f"artifacts: {objects} objects")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Restore a goose-mlflow backup into the stack's stores.")
    parser.add_argument("file", type=Path, help="the backup (a backups/goose-mlflow-*.tar)")
    parser.add_argument("--force", action="store_true", help="replace what the stack holds (default: refuse)")
    parser.add_argument("--check", action="store_true",
                        help="check the file and that the stack may take it, change nothing")
    parser.add_argument("--retention-days", metavar="DAYS", default=None,
                        help="TRACE_RETENTION_DAYS the stack starts with after the restore (make restore: .env's)")
    parser.add_argument("--prune", action="store_true",
                        help="restore even if that limit deletes some of the backup's traces (default: refuse)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str | None:
    if not args.file.is_file():
        raise StackError(f"{args.file} is not a file; give a backup written by make backup")
    databases, bucket = store.databases(), store.artifact_bucket()
    with store.one_line_errors():
        manifest = verify_file(args.file)
        check_image_reads(manifest, databases)
        held = held_data(databases, bucket)
        if held and not args.force:
            raise StackError(f"this stack holds data already ({', '.join(held)}); restore into a fresh stack "
                             "(docker compose down -v, then make up), or give FORCE=1 to replace it")
        pruned = check_retention(args.file, cfg.retention_days(args.retention_days), args.prune, int(time.time() * 1000))
        if pruned:
            log(pruned)
        if args.check:
            log(f"{args.file.name}: every checksum matches (MLflow {manifest['mlflow_version']}, taken "
                f"{manifest['created']}); this stack {'holds data, which FORCE=1 replaces' if held else 'is empty'}: "
                "stopping MLflow to restore it")
            return None
        if held:
            log(f"replacing {', '.join(held)} (FORCE=1)")
            clear_bucket(bucket)
        objects = restore_files(args.file, databases, bucket)
        admin = reset_admin_password(databases)
        if admin:
            log(f"account {admin} takes this stack's admin password")
        lines = check_counts(manifest, databases, objects)
    return "\n".join([f"Restored {args.file.name}:", *lines, *([f"retention: {pruned}"] if pruned else [])])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("restore", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
