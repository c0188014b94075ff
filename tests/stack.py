"""Temporary: names the tests imported from here before tests/harness/ (removed once every test imports harness)."""

from harness.commands import run_script  # noqa: F401
from harness.native import ENTRYPOINT, free_port  # noqa: F401
