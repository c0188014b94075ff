"""The one error type of the stack's commands.

Every command catches it in main(), prints it as one line prefixed with the
command's name, and exits 1; its message names the problem and the fix.
"""

from __future__ import annotations


class StackError(RuntimeError):
    """A failure to report as one line, naming the problem and the fix."""
