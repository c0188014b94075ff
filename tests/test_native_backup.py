"""scripts/backup.py against the native stack (real PostgreSQL and pg_dump, S3 stand-in): where a backup
goes and what it never overwrites."""

from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone

from backup import NAME_PREFIX


def take(native_stack, directory):
    return native_stack.run_job("migrate", command=["python3", "scripts/backup.py", "--directory", str(directory)])


def test_a_backup_never_replaces_one_of_the_same_second(native_stack, tmp_path):
    """The names of the next two minutes are taken already: the backup fails saying so and each stays whole."""
    now = datetime.now(timezone.utc)
    taken = {tmp_path / f"{NAME_PREFIX}{now + timedelta(seconds=second):%Y%m%dT%H%M%SZ}.tar": f"earlier {second}"
             for second in range(-2, 120)}
    for path, text in taken.items():
        path.write_text(text)
    result = take(native_stack, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().endswith("exists already (another backup in the same second); run it again")
    assert {path: path.read_text() for path in taken} == taken
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in taken)


def test_the_backups_folder_is_made_private_whatever_its_mode(native_stack, tmp_path):
    folder = tmp_path / "backups"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    result = take(native_stack, folder)
    assert result.returncode == 0, result.stderr
    [archive] = folder.glob(f"{NAME_PREFIX}*.tar")
    assert (stat.S_IMODE(folder.stat().st_mode), stat.S_IMODE(archive.stat().st_mode)) == (0o700, 0o600)
