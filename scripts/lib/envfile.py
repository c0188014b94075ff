"""Render, merge and atomically write env files that both bash and Compose read.

An env file here is a list of `export KEY=VALUE` lines. The bootstrap owns a
fixed set of keys; every other line a user wrote stays byte for byte. A write
that would not change the file does not touch it, so reruns are no-ops.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from lib.errors import StackError

HEADER = "# Written by scripts/bootstrap.py; lines it does not own are kept as they are."

# Characters that need no quoting in bash nor in Compose's dotenv parser.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_./:=,%@+\-]*")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def render_line(key: str, value: str) -> str:
    """One `export KEY=VALUE` line, single-quoted only when it has to be."""
    if not _KEY.fullmatch(key):
        raise StackError(f"invalid variable name {key!r}: use letters, digits and _")
    if "'" in value or "\n" in value or "\r" in value:
        raise StackError(f"value of {key} holds a quote or newline, which env files cannot carry")
    if _PLAIN_VALUE.fullmatch(value):
        return f"export {key}={value}"
    return f"export {key}='{value}'"


def assigned_key(line: str) -> str | None:
    """The variable a line assigns, or None for comments, blanks and other lines."""
    match = _ASSIGNMENT.match(line)
    return match.group(1) if match else None


def merge(existing: str, values: Mapping[str, str], remove: Iterable[str] = ()) -> str:
    """The file text with `values` set and `remove` keys dropped.

    An owned key keeps its position (its first line is replaced, later
    duplicates dropped); new keys are appended below a header comment.
    """
    owned = set(values) | set(remove)
    written: set[str] = set()
    lines_out: list[str] = []
    for line in existing.splitlines(keepends=True):
        key = assigned_key(line)
        if key not in owned:
            lines_out.append(line)
            continue
        if key in values and key not in written:
            ending = "\n" if line.endswith("\n") else ""
            lines_out.append(render_line(key, values[key]) + ending)
            written.add(key)
    missing = [key for key in values if key not in written]
    if missing:
        if lines_out and not lines_out[-1].endswith("\n"):
            lines_out[-1] += "\n"
        if not any(line.rstrip("\n") == HEADER for line in lines_out):
            if lines_out and lines_out[-1].strip():
                lines_out.append("\n")
            lines_out.append(HEADER + "\n")
        lines_out.extend(render_line(key, values[key]) + "\n" for key in missing)
    return "".join(lines_out)


def parse(text: str) -> dict[str, str]:
    """KEY -> value of the assignments in lines of the form this module writes.

    Plain and single-quoted values only; a line in another form (double quotes,
    expansions) is returned as written after the `=`.
    """
    values: dict[str, str] = {}
    for line in text.splitlines():
        key = assigned_key(line)
        if key is None:
            continue
        value = line.split("=", 1)[1].strip()
        if len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        values[key] = value
    return values


def give_to_directory_owner(path: Path) -> None:
    """When we run as root (a container, sudo), hand `path` to its directory's owner."""
    if os.geteuid() == 0:
        owner = Path(path).absolute().parent.stat()
        os.chown(path, owner.st_uid, owner.st_gid)


def read_text(path: Path) -> str:
    """The file's text, or "" when it does not exist yet."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""
    except UnicodeDecodeError as exc:
        raise StackError(f"{path} is not UTF-8 text; fix or move it, then rerun") from exc


def write_atomic(path: Path, text: str, mode: int = 0o644) -> bool:
    """Replace `path` with `text` in one rename; True when the file changed.

    The file keeps an existing file's mode and owner; a new one gets `mode`
    and, when we run as root (inside a container or under sudo), the owner of
    its directory, so the developer can edit it without sudo.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    except (OSError, UnicodeDecodeError) as exc:
        raise StackError(f"cannot read {path}: {exc}") from exc
    if current == text:
        return False
    if not directory.is_dir():
        raise StackError(f"directory {directory} does not exist; create it or pass another path")
    try:
        reference = path.stat() if current is not None else directory.stat()
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StackError(
            f"cannot write {path}: {exc.strerror}; fix the directory's permissions or pass another path"
        ) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, (reference.st_mode & 0o7777) if current is not None else mode)
        if os.geteuid() == 0:  # keep the file the developer's, not root's
            os.chown(tmp_name, reference.st_uid, reference.st_gid)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return True


def source_otel(env_file: Path, shell_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The OTEL_* variables a shell has after `source env_file`: a bare shell's, or one that starts with
    `shell_env` (make doctor passes the user's, to see what goose would inherit from it)."""
    if not env_file.is_file():
        raise StackError(f"{env_file} does not exist; run make up (or scripts/bootstrap.py) first")
    shell = subprocess.run(
        ["bash", "-c", 'set -a; source "$1" >/dev/null || exit 1; env -0', "source", str(env_file)],
        capture_output=True, env=dict(shell_env or {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}), check=False)
    if shell.returncode != 0:
        raise StackError(f"bash could not source {env_file}: {shell.stderr.decode().strip()}")
    pairs = (item.partition("=") for item in shell.stdout.decode().split("\0") if item)
    return {key: value for key, _, value in pairs if key.startswith("OTEL_")}
