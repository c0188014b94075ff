"""docs/scaling.md's replicas section run as written: three MLflow servers behind team mode's proxy.

A team-mode project of its own (README's team block, alice's account), then
the page's steps: compose.scale.yaml from its block, COMPOSE_FILE in .env,
`make team-up` again, `docker compose ps mlflow`, `make verify` with alice's
file. The reader's shell has no COMPOSE_FILE, so neither has the
test's once team mode is up: `.env` names the files.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import guide
from harness.project import clean_copy, require_engine
from harness.team import TeamDeployment

pytestmark = pytest.mark.docker

PAGE = "docs/scaling.md"


@pytest.fixture(scope="module")
def scaled(tmp_path_factory) -> Iterator[TeamDeployment]:
    require_engine()
    team = TeamDeployment(clean_copy(tmp_path_factory.mktemp("scaling")))
    try:
        team.start(("alice",))
        team.env.pop("COMPOSE_FILE")
        (team.directory / "compose.scale.yaml").write_text(guide.block(PAGE, "yaml", "replicas: 3"))
        guide.run(team, guide.block(PAGE, "sh", "compose.scale.yaml\" >> .env"))
        yield team
    finally:
        team.down()


def replicas(team: TeamDeployment) -> list[str]:
    """The state column of each mlflow replica, from the page's `docker compose ps mlflow`."""
    shown = guide.run(team, "docker compose ps mlflow").stdout.splitlines()
    assert shown[0].split()[:2] == guide.console(PAGE, "docker compose ps mlflow")[0].split()[:2]  # NAME IMAGE
    return [line for line in shown[1:] if line.strip()]


def test_make_team_up_with_the_scale_file_brings_three_healthy_replicas(scaled):
    assert guide.console(PAGE, "make team-up") == ["..."]  # the page's step, run as written
    guide.run(scaled, "make team-up")
    rows = replicas(scaled)
    assert len(rows) == 3 and all("(healthy)" in row for row in rows), rows


def test_make_verify_with_alices_file_goes_through_the_replicas(scaled):
    shown = guide.run(scaled, "make verify ENV_FILE=users/alice.env").stdout.splitlines()
    page = guide.console(PAGE, "make verify ENV_FILE=users/alice.env")
    assert shown[0] == page[0]  # the command make prints
    assert shown[1].startswith("OK: trace tr-") and shown[1].endswith(
        "(kept: this account may not delete traces; its session id starts with verify-)")
    assert shown[2:4] == page[2:4]  # spans and tokens

