"""A backup file is checked before anything is restored: scripts/lib/archive.py's format, scripts/restore.py's checks.

Archives here are written with archive.py's own Archive (no database needed):
a dump member, an artifact and the manifest, as take_backup writes them.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from lib.archive import FORMAT, MANIFEST, Archive, read_manifest
from lib.errors import StackError
from restore import verify_file

MEMBERS = {"databases/tracking.dump": b"PGDMP" + bytes(range(256)) * 40, "artifacts/1/abc/artifacts/notes.txt": b"hi"}


def write_backup(path: Path, members: dict[str, bytes] = MEMBERS, manifest_extra: dict | None = None,
                 extra_member: tuple[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        archive = Archive(tar, {})
        for name, data in members.items():
            archive.add_bytes(name, data)
        manifest = {"format": FORMAT, "mlflow_version": "3.17.2", "created": "2026-11-30T07:00:00+00:00",
                    "databases": {"tracking": {"revision": "dc11669786a5", "counts": {}}},
                    "artifacts": {"objects": 1, "bytes": 2}, "members": dict(archive.checksums),
                    **(manifest_extra or {})}
        archive.add_bytes(MANIFEST, json.dumps(manifest).encode())
        if extra_member:
            archive.add_bytes(*extra_member)
    return path


def test_a_backup_as_written_passes_every_check(tmp_path):
    manifest = verify_file(write_backup(tmp_path / "good.tar"))
    assert set(manifest["members"]) == set(MEMBERS)


def test_the_manifest_records_the_sha256_of_what_was_written(tmp_path):
    import hashlib

    manifest = read_manifest(write_backup(tmp_path / "good.tar"))
    assert manifest["members"] == {name: hashlib.sha256(data).hexdigest() for name, data in MEMBERS.items()}


def test_one_flipped_byte_is_a_checksum_mismatch(tmp_path):
    path = write_backup(tmp_path / "b.tar")
    data = bytearray(path.read_bytes())
    with tarfile.open(path) as tar:
        data[tar.getmember("databases/tracking.dump").offset_data + 7] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StackError, match="databases/tracking.dump does not match its checksum"):
        verify_file(path)


def test_a_member_the_manifest_does_not_list_is_refused(tmp_path):
    path = write_backup(tmp_path / "b.tar", extra_member=("artifacts/planted.txt", b"x"))
    with pytest.raises(StackError, match="holds 'artifacts/planted.txt', which its manifest does not list"):
        verify_file(path)


def test_a_member_the_manifest_lists_but_the_file_lacks_is_refused(tmp_path):
    import hashlib

    listed = {"artifacts/gone.txt": hashlib.sha256(b"gone").hexdigest()}
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        archive = Archive(tar, {})
        archive.add_bytes("databases/tracking.dump", b"dump")
        manifest = {"format": FORMAT, "members": {**archive.checksums, **listed}}
        archive.add_bytes(MANIFEST, json.dumps(manifest).encode())
    with pytest.raises(StackError, match="lacks artifacts/gone.txt: the backup is truncated"):
        verify_file(tmp_path / "b.tar")


def test_a_file_cut_short_is_called_truncated(tmp_path):
    path = write_backup(tmp_path / "b.tar")
    path.write_bytes(path.read_bytes()[:6000])
    with pytest.raises(StackError, match="truncated"):
        verify_file(path)


def test_a_tar_without_manifest_is_not_a_backup(tmp_path):
    with tarfile.open(tmp_path / "other.tar", "w") as tar:
        info = tarfile.TarInfo("notes.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(StackError, match="has no manifest.json: it is not a goose-mlflow backup"):
        read_manifest(tmp_path / "other.tar")


def test_a_file_that_is_no_tar_at_all_is_refused(tmp_path):
    (tmp_path / "text.tar").write_text("just text\n" * 200)
    with pytest.raises(StackError, match="is not a readable tar archive"):
        read_manifest(tmp_path / "text.tar")


def test_a_manifest_of_another_format_is_refused(tmp_path):
    path = write_backup(tmp_path / "b.tar", manifest_extra={"format": "someone-else/9"})
    with pytest.raises(StackError, match=f"is not a goose-mlflow backup of format {FORMAT}"):
        read_manifest(path)


def test_a_manifest_that_is_not_json_is_refused(tmp_path):
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        Archive(tar, {}).add_bytes(MANIFEST, b"{not json")
    with pytest.raises(StackError, match="manifest.json is not JSON"):
        read_manifest(tmp_path / "b.tar")


def test_members_are_written_readable_by_the_owner_only(tmp_path):
    with tarfile.open(write_backup(tmp_path / "b.tar")) as tar:
        assert {member.mode for member in tar} == {0o600}


def test_a_file_cut_before_its_manifest_is_called_truncated(tmp_path):
    path = write_backup(tmp_path / "b.tar")
    with tarfile.open(path) as tar:
        manifest_at = tar.getmember(MANIFEST).offset
    path.write_bytes(path.read_bytes()[:manifest_at])
    with pytest.raises(StackError, match=r"is truncated \(its manifest, written last, is missing\)"):
        read_manifest(path)


def test_a_backup_from_a_newer_mlflow_is_refused_before_the_stack_is_touched(tmp_path, monkeypatch, capsys):
    """The image check comes before any connection: no database is needed to refuse it."""
    import restore

    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "postgresql+psycopg2://mlflow@127.0.0.1:1/mlflow")
    monkeypatch.setenv("MLFLOW_ARTIFACTS_DESTINATION", "s3://bucket")
    path = write_backup(tmp_path / "newer.tar",
                        manifest_extra={"databases": {"tracking": {"revision": "ffffffffffff", "counts": {}}}})
    assert restore.main(["--check", str(path)]) == 1
    assert "whose tracking schema (ffffffffffff) this stack's MLflow" in capsys.readouterr().err


def test_a_failed_backup_leaves_no_file_behind(tmp_path, monkeypatch):
    from lib import archive
    from lib import store

    class BrokenBucket(store.Bucket):
        def objects(self):
            raise StackError("the object store went away")

    monkeypatch.setattr(store, "databases", lambda: [])
    monkeypatch.setattr(store, "artifact_bucket", lambda: BrokenBucket("b", "", None))
    with pytest.raises(StackError, match="went away"):
        archive.take_backup(tmp_path / "backups")
    assert list((tmp_path / "backups").iterdir()) == []


@pytest.mark.parametrize("stderr, reason", [
    ("INFO  [alembic] Running upgrade\nsqlalchemy.exc.ProgrammingError: (psycopg2.errors.DuplicateTable) relation "
     "\"scheduler_leases\" already exists\n[SQL: CREATE TABLE scheduler_leases]\n"
     "(Background on this error at: https://sqlalche.me/e/21/f405)\n",
     "sqlalchemy.exc.ProgrammingError: (psycopg2.errors.DuplicateTable) relation \"scheduler_leases\" already exists"),
    ("pg_restore: error: could not execute query: ERROR:  relation \"spans\" already exists\nCommand was: CREATE TABLE\n$$;;\n",
     "pg_restore: error: could not execute query: ERROR:  relation \"spans\" already exists"),
    ("just one line\n", "just one line"),
    ("", "exit 3"),
], ids=["sqlalchemy", "pg_restore", "plain", "silent"])
def test_a_failed_tools_reason_is_its_error_line(stderr, reason):
    from lib.errors import reason_in

    assert reason_in(stderr, "exit 3") == reason
