"""A compose project in a clean copy of the repository, for the Docker end-to-end tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

import stack
import stack_config as cfg
from mlflow_api import MlflowClient

REPO_OWNER_UID = 4242  # the clean copy belongs to a non-root user, as a real checkout does


def engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True)
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip()[:200]}"
    compose = stack.load_compose({"MLFLOW_PUBLIC_URL": "https://localhost"}, team=True)
    images = {service["image"] for service in compose["services"].values() if "build" not in service}
    images.discard(compose["services"]["mlflow"]["image"])
    missing = [image for image in sorted(images)
               if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0]
    if missing:
        return f"images missing: {', '.join(missing)}; run make offline-images"
    return None


class Stack:
    """A compose project in a clean copy of the repository."""

    def __init__(self, directory: Path, settings: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.port = stack.free_port()
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": f"goose-mlflow-test-{uuid.uuid4().hex[:6]}",
                    "MLFLOW_PORT": str(self.port)}
        for key in ("MLFLOW_PUBLIC_URL", "GOOSE_EXPERIMENT", "MLFLOW_BUCKET", "COMPOSE_FILE"):
            self.env.pop(key, None)
        self.env.update(settings or {})
        self.url = self.env.get("MLFLOW_PUBLIC_URL", f"http://localhost:{self.port}")
        self.env_file = directory / ".env"

    def run(self, *command: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        result = subprocess.run(list(command), cwd=self.directory, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("docker", "compose", *args, check=check)

    def services(self) -> list[dict]:
        out = self.compose("ps", "--all", "--format", "json").stdout.strip()
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def secret(self, name: str) -> str:
        return self.compose("exec", "-T", "mlflow", "cat", f"{stack.SECRETS_IN_CONTAINER}/{name}").stdout.strip()

    def client(self) -> MlflowClient:
        return MlflowClient(self.url)


def clean_copy(destination: Path) -> Path:
    """The files git would check out, nothing else, owned by a non-root user as a real checkout is."""
    cfg.copy_checkout(destination)
    if os.geteuid() == 0:
        os.chown(destination, REPO_OWNER_UID, REPO_OWNER_UID)
    return destination



def require_engine() -> None:
    """Skip without an engine or images; in CI (CI=true) fail instead: nothing may skip there."""
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"Docker end-to-end tests must run in CI: {problem}")
        pytest.skip(problem)
