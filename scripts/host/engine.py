"""The stack as the Docker engine sees it, for the host commands (make status, make doctor).

A stack is found by the checkout it was started from (the working directory
Compose labels its containers with), so either command works in local, team
and external mode without being told the compose files.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
from docker.models.containers import Container

from compose_settings import CONTAINER_NUMBER_LABEL, PROJECT_DIR_LABEL, PROJECT_LABEL, SERVICE_LABEL
from lib.errors import StackError


def connect() -> docker.DockerClient:
    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        raise StackError(f"no Docker engine answers ({exc}); start Docker") from None
    return engine


def project_containers(engine: docker.DockerClient, directory: Path) -> list[Container]:
    return engine.containers.list(all=True, filters={"label": f"{PROJECT_DIR_LABEL}={directory}"})


def compose_project(container: Container) -> str | None:
    """The Compose project that created the container, if one did: images built by Compose carry its
    project label too, and so does any container run from them by hand, without the labels only Compose
    sets on what it creates."""
    labels = container.labels
    return labels.get(PROJECT_LABEL) if CONTAINER_NUMBER_LABEL in labels else None


def service(container: Container) -> str:
    return container.labels[SERVICE_LABEL]


def running(containers: list[Container], name: str) -> Container | None:
    return next((c for c in containers if service(c) == name and c.status == "running"), None)


def store_facts(containers: list[Container]) -> dict:
    """scripts/store.py's JSON, run inside the mlflow container, which holds the stores' credentials."""
    mlflow = running(containers, "mlflow")
    if mlflow is None:
        raise StackError("mlflow is not running (make up)")
    code, (stdout, stderr) = mlflow.exec_run(["docker-entrypoint.sh", "python3", "scripts/store.py"], demux=True)
    if code != 0 or not stdout:
        lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines() or [f"exit {code}"]
        raise StackError(lines[-1])
    facts = json.loads(stdout)
    if not {"databases", "bucket", "redaction"} <= set(facts):
        # scripts/ of the checkout changed after the image was built (a git pull without make up).
        raise StackError("mlflow runs an image older than this checkout: make up rebuilds it")
    return facts


def container_env(container: Container) -> dict[str, str]:
    """The environment the container was created with."""
    return dict(item.split("=", 1) for item in container.attrs["Config"].get("Env") or [] if "=" in item)
