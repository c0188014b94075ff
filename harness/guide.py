"""The documented command sequences, read out of the pages, so that a test runs what the reader sees.

A test names a page, the fenced block's language and a piece of text only
that block holds; it fills the block's placeholders (each must be there, so a
rewritten page fails the test instead of silently running less) and runs it.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING

from harness.compose_file import REPO

if TYPE_CHECKING:
    from harness.project import ComposeProject

FENCE = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.MULTILINE | re.DOTALL)


def block(page: str, language: str, containing: str) -> str:
    """The one fenced `language` block of REPO/page that contains `containing`, dedented."""
    text = (REPO / page).read_text()
    found = [body for lang, body in FENCE.findall(text) if lang == language and containing in body]
    assert len(found) == 1, f"{page}: {len(found)} {language} blocks hold {containing!r}, expected 1"
    indent = min(len(line) - len(line.lstrip()) for line in found[0].splitlines() if line.strip())
    return "".join(line[indent:] if line.strip() else line.lstrip(" ") for line in found[0].splitlines(True))


def filled(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced; every placeholder must occur in it."""
    for placeholder, value in values.items():
        assert placeholder in text, f"the documented block no longer holds {placeholder!r}:\n{text}"
        text = text.replace(placeholder, value)
    return text


def console(page: str, command: str) -> list[str]:
    """The output lines a page shows under `$ command` in a console block (up to the next `$` line)."""
    body = block(page, "console", f"$ {command}\n")
    lines = body.splitlines()
    start = lines.index(f"$ {command}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("$ ")), len(lines))
    return lines[start:end]


def run(project: "ComposeProject", text: str, check: bool = True,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """A documented block in the project's directory, by bash as the reader's shell runs it (stops at the first
    failing command); `env` adds to the project's settings."""
    return project.run("env", *(f"{key}={value}" for key, value in (env or {}).items()),
                       "bash", "-euo", "pipefail", "-c", text, check=check)
