"""The tree says where code runs: docs/architecture.md's Layout names what a newcomer's `ls` shows."""

from __future__ import annotations

import re
import subprocess

from harness.compose_file import REPO


def top_level_entries() -> set[str]:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return {path.split("/")[0] for path in tracked.splitlines()} - {".gitignore", "README.md"}


def layout_entries() -> set[str]:
    page = (REPO / "docs" / "architecture.md").read_text()
    block = page.split("## Layout", 1)[1].split("```", 2)[1]
    return {re.split(r"[/\s]", line, maxsplit=1)[0] for line in block.splitlines() if line and not line[0].isspace()}


def test_the_layout_names_every_top_level_entry_and_nothing_else():
    assert layout_entries() == top_level_entries()


def test_the_image_build_context_holds_only_the_image_the_stacks_commands_and_the_services_jobs():
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    assert {rule.lstrip("!").split("/")[0] for rule in rules[1:]} == {"mlflow", "scripts", "postgres", "minio"}
