"""Session fixtures: the stack's services started once, natively, for real.

PostgreSQL and MLflow are the real programs; S3 is the MinIO stand-in of the
offline images (moto behind a signature check, tests/README.md). Each is configured from compose.yaml.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import stack

sys.path.insert(0, str(stack.SCRIPTS))


@dataclass
class NativeStack:
    root: Path
    secrets: Path
    postgres: stack.NativePostgres
    s3_url: str
    mlflow_url: str
    mlflow_port: int
    compose: dict
    replacements: dict[str, str]
    outbound: stack.Tripwire  # MLflow's HTTP(S) proxy: whatever it tries to fetch from outside

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text().strip()

    @property
    def bucket(self) -> str:
        return self.compose["services"]["bucket"]["environment"]["MLFLOW_BUCKET"]

    def service_env(self, name: str) -> dict[str, str]:
        return stack.service_env(self.compose["services"][name], self.replacements)

    def database_uri(self, role: str, password: str, database: str) -> str:
        return f"postgresql://{role}:{password}@127.0.0.1:{self.postgres.port}/{database}"


def _start_s3(root: Path, compose: dict, replacements: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """The MinIO stand-in the Docker tests use too, with compose.yaml's minio settings (credentials checked)."""
    port = stack.free_port()
    env = {**os.environ, **stack.service_env(compose["services"]["minio"], replacements)}
    log = open(root / "s3.log", "w")
    process = subprocess.Popen([sys.executable, str(stack.S3_STANDIN), *compose["services"]["minio"]["command"],
                                "--address", f"127.0.0.1:{port}"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    stack.wait_for_http(url + "/minio/health/ready", 60, process)
    return process, url


@pytest.fixture(scope="session")
def native_stack() -> Iterator[NativeStack]:
    root, secrets = stack.new_root("goose-mlflow-native-")
    processes: list[subprocess.Popen] = []
    postgres = None
    try:
        mlflow_port = stack.free_port()
        compose = stack.load_compose({"MLFLOW_PORT": str(mlflow_port)})
        replacements = {stack.SECRETS_IN_CONTAINER: str(secrets)}
        s3_process, s3_url = _start_s3(root, compose, replacements)
        processes.append(s3_process)
        replacements["http://minio:9000"] = s3_url
        postgres = stack.start_postgres(root, secrets, compose, replacements)
        replacements["@postgres:5432/"] = f"@127.0.0.1:{postgres.port}/"

        bucket = compose["services"]["bucket"]
        job = stack.run_in_entrypoint(bucket["command"], stack.service_env(bucket, replacements), cwd=stack.REPO)
        assert job.wait(timeout=120) == 0, "create_bucket.py failed"

        outbound = stack.Tripwire()
        server, url = stack.start_mlflow(root / "mlflow.log", compose, replacements, mlflow_port,
                                         extra_env=outbound.proxy_env())
        processes.append(server)
        yield NativeStack(root, secrets, postgres, s3_url, url, mlflow_port, compose, replacements, outbound)
    finally:
        stack.stop_processes(processes)
        if postgres is not None:
            postgres.stop()
        if os.environ.get("KEEP_TEST_DIRS") != "1":
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def bootstrapped(native_stack: NativeStack) -> Path:
    """An env file written by the bootstrap against the native stack, as compose runs it."""
    env_dir = native_stack.root / "project"
    env_dir.mkdir(exist_ok=True)
    env_file = env_dir / ".env"
    result = stack.run_script("bootstrap.py", "--tracking-uri", native_stack.mlflow_url, "--env-file", str(env_file),
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

    def run_job(self, service: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """A one-shot service's command (plus `args`) through the entrypoint, with its team-mode environment."""
        spec = self.compose["services"][service]
        command = [stack.replace_all(arg, self.replacements) for arg in spec["command"]] + list(args)
        job = stack.run_in_entrypoint(command, stack.service_env(spec, self.replacements), cwd=cwd or stack.REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout, stderr = job.communicate(timeout=300)
        return subprocess.CompletedProcess(command, job.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def team_stack(native_stack: NativeStack) -> Iterator[TeamStack]:
    port = stack.free_port()
    compose = stack.load_compose({"MLFLOW_PORT": str(port), "MLFLOW_PUBLIC_URL": "https://mlflow.goose.test"},
                                 team=True)
    url = f"http://127.0.0.1:{port}"
    replacements = {**native_stack.replacements, "/opt/stack/scripts": str(stack.SCRIPTS),
                    "http://mlflow:5000": url}
    team = TeamStack(native_stack, url, compose, replacements)
    # The auth-db job, pointed at the native server (it names the host `postgres`).
    team.compose["services"]["auth-db"]["environment"].update(
        {"PGHOST": "127.0.0.1", "PGPORT": str(native_stack.postgres.port)})
    created = team.run_job("auth-db")
    assert created.returncode == 0, created.stderr
    server, _ = stack.start_mlflow(native_stack.root / "mlflow-team.log", compose, replacements, port)
    try:
        yield team
    finally:
        stack.stop_processes([server])
