"""The compose loader the native tests start services from (harness.compose_file) reads every
combination of compose files as `docker compose config` does: same services, images, commands,
environment, ports, volumes, users, order and health checks. So the native tests cannot drift
from what Compose runs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness.compose_file import REPO, compose_files, load_compose
from harness.project import require_compose_cli

SETTINGS = {
    "MLFLOW_PORT": "5123",
    "MLFLOW_PUBLIC_URL": "https://mlflow.example.com",
    "EXTERNAL_DATABASE_URI": "postgresql+psycopg2://goose@db.example.com:5432/goose?sslmode=require",
    "EXTERNAL_ARTIFACTS_DESTINATION": "s3://bucket/goose",
    "EXTERNAL_SECRETS_DIR": "/srv/external-secrets",
    "MINIO_IMAGE": "",  # empty counts as unset for ${VAR:-default}
}
COMBINATIONS = {"local": (False, False), "team": (True, False), "external": (False, True),
                "team+external": (True, True)}


def compose_config(team: bool, external: bool, tmp_path: Path) -> dict:
    require_compose_cli()
    empty_env_file = tmp_path / "empty.env"  # the developer's .env must not count
    empty_env_file.write_text("")
    files = [arg for path in compose_files(team, external) for arg in ("--file", str(path))]
    result = subprocess.run(["docker", "compose", "--project-directory", str(REPO), "--env-file", str(empty_env_file),
                             *files, "config", "--format", "json"],
                            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **SETTINGS},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]


def port(short: str) -> tuple[str, str, int]:
    host_ip, published, target = short.rsplit(":", 2)
    return host_ip, published, int(target)


def mount(entry: str | dict) -> tuple[str, str, bool, str]:
    if isinstance(entry, dict):
        return entry["source"], entry["target"], bool(entry.get("read_only")), entry.get("volume", {}).get("subpath", "")
    source, target, *mode = entry.split(":")
    if source.startswith("."):
        source = str((REPO / source).resolve())
    return source, target, mode == ["ro"], ""


def loaded_view(service: dict) -> dict:
    """What both readings must agree on, from the loader's short syntax."""
    return {
        "image": service.get("image"),
        "command": service.get("command"),
        "environment": {key: str(value) for key, value in (service.get("environment") or {}).items()},
        "depends_on": {name: spec["condition"] for name, spec in (service.get("depends_on") or {}).items()},
        "ports": sorted(port(item) for item in service.get("ports") or []),
        "volumes": sorted(mount(item) for item in service.get("volumes") or []),
        "user": service.get("user"),
        "working_dir": service.get("working_dir"),
        "restart": service.get("restart"),
        "healthcheck": (service.get("healthcheck") or {}).get("test"),
    }


def config_view(service: dict) -> dict:
    """The same, from `docker compose config`'s long syntax."""
    return {
        "image": service.get("image"),
        "command": service.get("command"),
        # `config` prints a literal $ as $$, ready to be read again.
        "environment": {key: "" if value is None else str(value).replace("$$", "$")
                        for key, value in (service.get("environment") or {}).items()},
        "depends_on": {name: spec["condition"] for name, spec in (service.get("depends_on") or {}).items()},
        "ports": sorted((item.get("host_ip", ""), str(item["published"]), int(item["target"]))
                        for item in service.get("ports") or []),
        "volumes": sorted((item["source"], item["target"], bool(item.get("read_only")),
                           (item.get("volume") or {}).get("subpath", "")) for item in service.get("volumes") or []),
        "user": service.get("user"),
        "working_dir": service.get("working_dir"),
        "restart": service.get("restart"),
        "healthcheck": (service.get("healthcheck") or {}).get("test"),
    }


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_loader_runs_the_services_compose_runs(combination, tmp_path):
    config = compose_config(*COMBINATIONS[combination], tmp_path)
    loaded = load_compose(SETTINGS, *COMBINATIONS[combination])["services"]
    assert sorted(loaded) == sorted(config)


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_loader_reads_each_service_as_compose_does(combination, tmp_path):
    config = compose_config(*COMBINATIONS[combination], tmp_path)
    loaded = load_compose(SETTINGS, *COMBINATIONS[combination])["services"]
    for name in sorted(set(loaded) & set(config)):
        assert loaded_view(loaded[name]) == config_view(config[name]), name
