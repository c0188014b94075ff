"""The backup archive: taking one (every MLflow database and every artifact, into one tar file) and reading its manifest.

`make backup` (backup.py) takes one in the stack's `migrate` service (which
holds the stores' credentials and mounts ./backups); the migrate job takes
one before it upgrades a schema; restore.py reads them. The archive:

    databases/tracking.dump   pg_dump --format=custom of MLflow's tracking database
    databases/accounts.dump   team mode: the accounts' database
    artifacts/<key>           every object under MLFLOW_ARTIFACTS_DESTINATION
    manifest.json             MLflow version, schema revisions, counts, sha256 of every member

Each database is dumped in one snapshot, and its counts are read in that same
snapshot, so a backup taken while goose keeps sending is consistent. The file
is written under a temporary name and renamed when complete, mode 0600 in a
0700 folder, owned by the folder's owner. It holds no credential of the stack:
accounts keep only password hashes, and the stack's generated secrets are not
in it (the restored-into stack keeps its own).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from lib import store
from lib.envfile import give_to_directory_owner
from lib.errors import StackError, reason_in
from lib.units import human_size

FORMAT = "goose-mlflow-backup/1"
MANIFEST = "manifest.json"
NAME_PREFIX = "goose-mlflow-"
DEFAULT_DIRECTORY = Path("/backups")
CHUNK = 1 << 20


class HashingReader(io.RawIOBase):
    """Reads through a stream, keeping the sha256 of what passed."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.sha256.update(data)
        return data


@dataclass
class Archive:
    """A backup being written: members go in with their checksums recorded for the manifest."""

    tar: tarfile.TarFile
    checksums: dict[str, str]

    def add_stream(self, name: str, stream: BinaryIO, size: int) -> None:
        reader = HashingReader(stream)
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o600, int(time.time())
        self.tar.addfile(info, reader)
        self.checksums[name] = reader.sha256.hexdigest()

    def add_bytes(self, name: str, data: bytes) -> None:
        self.add_stream(name, io.BytesIO(data), len(data))


def log(message: str) -> None:
    print(f"backup: {message}", file=sys.stderr, flush=True)


def dump_database(archive: Archive, database: store.Database) -> dict:
    """pg_dump of one database in a snapshot shared with the counts; its manifest entry."""
    with closing(database.connect()) as connection:
        connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            snapshot = cursor.fetchone()[0]
        counts = store.counts(database, connection)
        revision = store.schema_revision(database, connection)
        with tempfile.TemporaryDirectory() as scratch:
            dump = Path(scratch) / "dump"
            # --file, not stdout: into a seekable file pg_dump records where each table's data starts,
            # which pg_restore needs when it restores in another order than the dump's.
            # --no-owner/--no-privileges: the dump restores into any role's database (the stack's or a managed one).
            result = subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                                     f"--snapshot={snapshot}", f"--file={dump}", f"--dbname={database.libpq_uri}"],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise StackError(f"pg_dump of the {database.kind} database failed: "
                                 f"{reason_in(result.stderr, f'exit {result.returncode}')}")
            size = dump.stat().st_size
            with open(dump, "rb") as stream:
                archive.add_stream(f"databases/{database.kind}.dump", stream, size)
    log(f"{database.kind} database {database.name}: {human_size(size)} dumped ("
        + ", ".join(f"{count} {label}" for label, count in counts.items()) + ")")
    return {"name": database.name, "revision": revision, "counts": counts}


def copy_artifacts(archive: Archive, bucket: store.Bucket) -> dict:
    client = bucket.client()
    objects = total = 0
    for key, _ in bucket.objects():
        try:
            found = client.get_object(Bucket=bucket.name, Key=bucket.prefix + key)
        except client.exceptions.NoSuchKey:
            log(f"artifacts: {key} was deleted while the backup ran; left out")
            continue
        # The size of what is read: the object may have been replaced since it was listed.
        size = found["ContentLength"]
        with closing(found["Body"]):
            archive.add_stream(f"artifacts/{key}", found["Body"], size)
        objects += 1
        total += size
        if objects % 200 == 0:
            log(f"artifacts: {objects} objects ({human_size(total)}) so far")
    log(f"artifacts: {objects} objects ({human_size(total)}) from s3://{bucket.name}/{bucket.prefix}")
    return {"objects": objects, "bytes": total}


def mlflow_version() -> str:
    from importlib.metadata import version

    return version("mlflow")


def take_backup(directory: Path, reason: str = "make backup") -> Path:
    """Write a complete backup into `directory`; its path. A failure leaves no file behind."""
    databases, bucket = store.databases(), store.artifact_bucket()
    prepare_directory(directory)
    created = datetime.now(timezone.utc)
    final = directory / f"{NAME_PREFIX}{created:%Y%m%dT%H%M%SZ}.tar"
    # mkstemp: a name of its own (mode 0600), even for two backups started in the same second.
    descriptor, partial_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".partial", dir=directory)
    partial = Path(partial_name)
    try:
        with os.fdopen(descriptor, "wb") as file, tarfile.open(fileobj=file, mode="w", format=tarfile.PAX_FORMAT) as tar:
            archive = Archive(tar, {})
            manifest = {"format": FORMAT, "created": created.isoformat(timespec="seconds"), "reason": reason,
                        "mlflow_version": mlflow_version(),
                        "databases": {database.kind: dump_database(archive, database) for database in databases},
                        "artifacts": copy_artifacts(archive, bucket)}
            manifest["members"] = dict(archive.checksums)
            archive.add_bytes(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode())
            tar.close()
            # On disk before it gets its name: a crash after the link must not leave a named, empty file.
            file.flush()
            os.fsync(file.fileno())
        # A link, not a rename: it fails rather than replace a backup of the same second.
        os.link(partial, final)
        sync_directory(directory)
    except FileExistsError:
        raise StackError(f"{final} exists already (another backup in the same second); run it again") from None
    finally:
        partial.unlink(missing_ok=True)
    give_to_directory_owner(final)
    return final


def sync_directory(directory: Path) -> None:
    """The folder's entries (a new backup's name) on disk."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def prepare_directory(directory: Path) -> None:
    """The backups folder exists and only its owner may enter it."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)
    except OSError as exc:
        raise StackError(f"cannot use {directory} for backups: {exc.strerror}; check its owner and mode") from None


def read_manifest(path: Path) -> dict:
    """The manifest of a backup file, or a StackError saying why the file is not a backup of this stack."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            names = tar.getnames()
            if MANIFEST not in names:
                # The manifest is written last: a backup cut short has members and no manifest.
                if any(name.startswith("databases/") for name in names):
                    raise StackError(f"{path.name} is truncated (its manifest, written last, is missing); "
                                     "use another backup")
                raise StackError(f"{path.name} has no {MANIFEST}: it is not a goose-mlflow backup")
            manifest = json.loads(tar.extractfile(MANIFEST).read())
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise StackError(f"{path.name} is not a readable tar archive ({exc}): truncated, corrupt or not a "
                         "goose-mlflow backup; use another backup") from None
    except (ValueError, UnicodeDecodeError):
        raise StackError(f"{path.name}: {MANIFEST} is not JSON: the backup is corrupt; use another backup") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StackError(f"{path.name} is not a goose-mlflow backup of format {FORMAT}")
    return manifest
