"""The one error type of the stack's commands.

Every command catches it in main(), prints it as one line prefixed with the
command's name, and exits 1; its message names the problem and the fix.
"""

from __future__ import annotations

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
