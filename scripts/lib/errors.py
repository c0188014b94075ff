"""The one error type of the stack's commands.

Every command catches it in main(), prints it as one line prefixed with the
command's name, and exits 1; its message names the problem and the fix.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable


class StackError(RuntimeError):
    """A failure to report as one line, naming the problem and the fix."""


def run_command(name: str, work: Callable[[], str | None]) -> int:
    """A command's main(): do `work`, print its result (if any) to stdout and return the exit status.

    A StackError is printed as one line, `NAME: error: ...`, on stderr, and
    the status is 1; anything else is a bug and keeps its traceback.
    """
    try:
        result = work()
    except StackError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    if result is not None:
        print(result)
    return 0


def reason_in(stderr: str, fallback: str) -> str:
    """The line of a failed tool's stderr that says why: its last error line (pg_dump's `error:`, a
    Python exception's `SomethingError: ...`), else its last line, else `fallback`. SQLAlchemy ends
    with a "Background on this error" link, pg_restore with a fragment of SQL: neither says why."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines
              if "error:" in line.lower() or re.match(r"^[\w.]*(Error|Exception)\b", line)]
    return (errors or lines or [fallback])[-1]
