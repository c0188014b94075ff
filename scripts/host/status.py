#!/usr/bin/env python3
"""`make status`: the state of the stack started from this checkout, in one screen.

Each service's state and health, the disk use of each volume, every
database's schema revision against the one the image expects, the trace
count and newest trace per experiment, and the age of the last backup in
backups/. Runs on the host and asks the Docker engine (the Docker SDK); the
databases' part is read by scripts/store.py inside the running mlflow
container, which holds their credentials.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import docker
from docker.models.containers import Container

from compose_settings import PROJECT_LABEL
from engine import connect, project_containers, service, store_facts
from lib.errors import StackError
from lib.units import age, human_size


def fail(message: str) -> int:
    print(f"status: error: {message}", file=sys.stderr)
    return 1


def service_lines(containers: list[Container]) -> list[str]:
    lines = []
    for container in sorted(containers, key=service):
        state = container.attrs["State"]
        if state["Status"] == "exited":
            shown = "done" if state["ExitCode"] == 0 else f"FAILED (exit {state['ExitCode']})"
        else:
            shown = state["Status"] + (f", {state['Health']['Status']}" if "Health" in state else "")
        lines.append(f"  {service(container):<10} {shown}")
    return lines


def volume_lines(engine: docker.DockerClient, project: str) -> list[str]:
    lines = []
    for volume in engine.df().get("Volumes") or []:
        if (volume.get("Labels") or {}).get(PROJECT_LABEL) == project:
            size = (volume.get("UsageData") or {}).get("Size", -1)
            lines.append(f"  {volume['Name']:<32} {human_size(size) if size >= 0 else 'unknown'}")
    return sorted(lines)


def database_lines(containers: list[Container], now: float) -> list[str]:
    """Schema and traces, from inside the mlflow container."""
    try:
        facts = store_facts(containers)
    except StackError as exc:
        return [f"  unavailable: {exc}"]
    lines = []
    for kind, entry in facts["databases"].items():
        revision = entry["revision"]
        verdict = ("as the image expects" if revision == entry["image_revision"]
                   else f"image expects {entry['image_revision']}")
        lines.append(f"  {kind} database {entry['name']}: schema {revision or 'not created yet'}, {verdict}")
        for experiment in entry.get("experiments", []):
            newest = experiment["newest_ms"]
            when = (f"newest {datetime.fromtimestamp(newest / 1000, timezone.utc):%Y-%m-%d %H:%M} UTC "
                    f"({age(now - newest / 1000)} ago)") if newest else "none yet"
            lines.append(f"    experiment {experiment['id']} {experiment['name']}: {experiment['traces']} traces, {when}")
    return lines


def redaction_lines(containers: list[Container]) -> list[str]:
    """Whether credentials are redacted, how many since mlflow started, and the values it could not scan."""
    try:
        found = store_facts(containers)["redaction"]
    except StackError as exc:
        return [f"  unavailable: {exc}"]
    if found["mode"] == "off":
        return ["  off (REDACTION=off): credentials in spans are stored as sent"]
    kinds = ", ".join(f"{kind} {count}" for kind, count in found["redacted"].items())
    return [f"  on: {sum(found['redacted'].values())} credentials replaced since mlflow started"
            + (f" ({kinds})" if kinds else ""),
            f"  {found['unscanned']} values stored unscanned (bytes that are not text)"]


def backup_line(directory: Path, now: float) -> str:
    backups = sorted(directory.glob("goose-mlflow-*.tar"), key=lambda path: path.stat().st_mtime)
    if not backups:
        return "  none yet: make backup (docs/operations.md has a cron line)"
    last = backups[-1]
    return f"  backups/{last.name}: {age(now - last.stat().st_mtime)} old, {len(backups)} in backups/"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Show the state of the stack started from this checkout.")
    parser.add_argument("--directory", type=Path, default=Path.cwd(),
                        help="the checkout the stack was started from (default: the current directory)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    directory = args.directory.resolve()
    try:
        engine = connect()
        containers = project_containers(engine, directory)
    except (StackError, docker.errors.DockerException) as exc:
        return fail(f"{exc}; then make status")
    if not containers:
        return fail(f"no stack was started from {directory}; start it with make up (or make team-up)")
    now = time.time()
    project = containers[0].labels[PROJECT_LABEL]
    print(f"Stack {project} ({directory})")
    print("Services:", *service_lines(containers), sep="\n")
    print("Volumes:", *volume_lines(engine, project), sep="\n")
    print("Databases:", *database_lines(containers, now), sep="\n")
    print("Redaction:", *redaction_lines(containers), sep="\n")
    print("Last backup:", backup_line(directory / "backups", now), sep="\n")
    print("\nNext: make logs follows every service; make backup takes a backup now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
