"""scripts/backup.py against the native stack (real PostgreSQL and pg_dump, S3 stand-in): where a backup
goes and what it never overwrites."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from datetime import datetime, timedelta, timezone

from lib.archive import NAME_PREFIX
from harness.compose_file import REPO
from harness.native import SCRIPTS, run_in_entrypoint


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


def test_a_backup_killed_while_it_writes_leaves_no_named_file_that_is_not_whole(native_stack, tmp_path):
    """SIGKILL (no cleanup runs) once the archive has bytes on disk, at several sizes: whatever carries a
    backup's name reads as a whole backup; what a kill cut short only has a hidden .partial name."""
    spec = native_stack.compose["services"]["migrate"]
    environment = native_stack.job_env(spec, {"/opt/stack/scripts": str(SCRIPTS), "/project": str(REPO),
                                              **native_stack.replacements})
    killed_while_writing = 0
    for written in (1, 4096, 65536):
        process = run_in_entrypoint(["python3", "scripts/backup.py", "--directory", str(tmp_path)], environment,
                                    cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            if any(path.stat().st_size >= written for path in tmp_path.iterdir() if path.name.startswith(
                    (f".{NAME_PREFIX}", NAME_PREFIX)) and path.stat().st_mtime > time.time() - 60):
                break
            time.sleep(0.01)
        killed_while_writing += process.poll() is None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    for archive in tmp_path.glob(f"{NAME_PREFIX}*.tar"):
        checked = native_stack.run_job("migrate", command=["python3", "scripts/restore.py", "--check", "--force",
                                                           str(archive)])
        assert checked.returncode == 0, checked.stderr
    assert killed_while_writing, "every backup ended before its kill"
