"""Session fixtures: the stack's services started once, natively, for real.

PostgreSQL and MLflow are the real programs; S3 is the MinIO stand-in of the
offline images (tests/README.md). Each is configured from compose.yaml
(harness.native).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.commands import run_script
from harness.compose_file import load_compose
from harness.goose_cli import goose_binary
from harness.native import NativeStack, free_port, stop_processes
from harness.project import ComposeProject, clean_copy, require_engine
from harness.proxy import NativeProxy
from harness.team import TeamDeployment
from harness.tripwire import Tripwire

# The fixtures that start real programs on this machine (PostgreSQL, MLflow, Caddy, goose): a test asking
# for one is a native test, which `make test-fast` leaves out.
NATIVE_FIXTURES = frozenset({"native_stack", "bootstrapped", "team_stack", "native_proxy", "goose"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if NATIVE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.native)


@pytest.fixture(scope="session")
def outbound() -> Iterator[Tripwire]:
    """MLflow's HTTP(S) proxy: whatever it tries to fetch from outside."""
    tripwire = Tripwire()
    yield tripwire
    tripwire.close()


@pytest.fixture(scope="session")
def goose() -> Path:
    """goose 1.37.0's executable (harness/goose_cli.py)."""
    return goose_binary()


@pytest.fixture(scope="session")
def native_stack(outbound: Tripwire) -> Iterator[NativeStack]:
    stack = NativeStack.start("goose-mlflow-native-", mlflow_env=outbound.proxy_env())
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def bootstrapped(native_stack: NativeStack) -> Path:
    """An env file written by the bootstrap against the native stack, as compose runs it."""
    env_dir = native_stack.root / "project"
    env_dir.mkdir(exist_ok=True)
    env_file = env_dir / ".env"
    result = run_script("bootstrap.py", "--tracking-uri", native_stack.mlflow_url, "--env-file", str(env_file),
                        env=native_stack.service_env("bootstrap"), cwd=env_dir)
    assert result.returncode == 0, result.stderr
    return env_file


@dataclass
class TeamStack:
    """Team mode's MLflow (accounts on) beside the native stack, sharing its database and bucket."""

    native: NativeStack
    url: str
    compose: dict
    replacements: dict[str, str]

    @property
    def admin_password(self) -> str:
        return self.native.secret("mlflow-admin-password")

    def run_job(self, service: str, *args: str, cwd: Path | None = None,
                command: list[str] | None = None) -> subprocess.CompletedProcess:
        """A one-shot service's command (plus `args`), or another `command` in it, with its team-mode environment."""
        return self.native.run_job(service, *args, compose=self.compose, replacements=self.replacements, cwd=cwd,
                                   command=command)


@pytest.fixture(scope="session")
def team_stack(native_stack: NativeStack) -> Iterator[TeamStack]:
    port = free_port()
    compose = load_compose({"MLFLOW_PORT": str(port), "MLFLOW_PUBLIC_URL": "https://mlflow.goose.test"}, team=True)
    url = f"http://127.0.0.1:{port}"
    team = TeamStack(native_stack, url, compose, {**native_stack.replacements, "http://mlflow:5000": url})
    # Team mode's database job adds the accounts' database to the running server.
    created = team.run_job("database")
    assert created.returncode == 0, created.stderr
    server, _ = native_stack.start_mlflow(compose, team.replacements, port, "mlflow-team.log")
    try:
        yield team
    finally:
        stop_processes([server])


@pytest.fixture(scope="session")
def native_proxy(team_stack: TeamStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NativeProxy]:
    """proxy/Caddyfile run by the machine's Caddy in front of the native team MLflow (harness/proxy.py)."""
    proxy = NativeProxy(tmp_path_factory.mktemp("proxy"), int(team_stack.url.rsplit(":", 1)[1]))
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeProject]:
    """`make up` in a clean copy, shared by the browser and doctor suites (each puts back what it breaks)."""
    require_engine()
    project = ComposeProject(clean_copy(tmp_path_factory.mktemp("local-copy")))
    try:
        project.up()
        yield project
    finally:
        project.down()


@pytest.fixture(scope="session")
def team_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TeamDeployment]:
    """Team mode under the Docker engine, shared by the team and security suites: alice and bob have accounts."""
    require_engine()
    deployment = TeamDeployment(clean_copy(tmp_path_factory.mktemp("team-copy")))
    try:
        deployment.start(("alice", "bob"))
        yield deployment
    finally:
        deployment.down()
