"""The pages agree with each other where they show the same commands (the tests run one copy as written)."""

from __future__ import annotations

from harness import guide


def without_comments(block: str) -> str:
    return "\n".join(line.split("  #")[0].rstrip() for line in block.splitlines()) + "\n"


def test_the_team_guides_first_steps_are_the_readmes_which_the_team_suite_runs():
    marker = 'echo "MLFLOW_PUBLIC_URL='
    assert without_comments(guide.block("docs/team.md", "sh", marker)) == without_comments(
        guide.block("README.md", "sh", marker))
