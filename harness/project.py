"""A throwaway Compose project: the real compose files in a clean copy of the checkout.

Each project has its own name and port, so a developer's running stack is left
alone, and is removed with its volumes at the end. Compose operations go
through the Compose CLI (and `make`, as a user runs them); looking at the
containers (state, health, ports, logs, exec, processes, files) goes through
the Docker SDK. Used by the Docker tests and by `make bench` / `make profile`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from compose_settings import PROJECT_LABEL, SERVICE_LABEL
from harness.compose_file import REPO, SECRETS_IN_CONTAINER, load_compose
from harness.native import free_port
from lib.mlflow_api import MlflowClient

# What a team keeps in MLflow's database: table_digests compares every row of these (those the schema has), whole.
KEPT_TABLES = ("experiments", "experiment_tags", "trace_info", "trace_tags", "trace_request_metadata", "spans",
               "assessments", "runs", "params", "metrics", "tags", "registered_models", "registered_model_tags",
               "model_versions", "model_version_tags", "registered_model_aliases")
REPO_OWNER_UID = 4242  # the clean copy belongs to a non-root user, as a real checkout does
# Variables of the developer's shell that would change what the project runs,
# and those of an enclosing `make test`, so that `make` here runs as a user's
# top-level make (a nested one prints "Entering directory" lines).
PROJECT_SETTINGS = ("MLFLOW_PUBLIC_URL", "GOOSE_EXPERIMENT", "MLFLOW_BUCKET", "COMPOSE_FILE", "TRACE_RETENTION_DAYS",
                    "TEAM_HTTPS_PORT",
                    "MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")


def copy_checkout(destination: Path) -> Path:
    """The files git would check out (tracked, and new ones not ignored) as they are now, into `destination`.

    Nothing git ignores comes along: no .env, no .venv, no users/.
    """
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def clean_copy(destination: Path) -> Path:
    """The files git would check out, nothing else, owned by a non-root user as a real checkout is."""
    copy_checkout(destination)
    if os.geteuid() == 0:
        os.chown(destination, REPO_OWNER_UID, REPO_OWNER_UID)
    return destination


def engine_problem() -> str | None:
    """Why the Docker tests cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI"
    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as exc:
        return f"no Docker engine answers: {str(exc)[:200]}"
    compose = load_compose({"MLFLOW_PUBLIC_URL": "https://localhost"}, team=True)
    images = {service["image"] for service in compose["services"].values() if "build" not in service}
    images.discard(compose["services"]["mlflow"]["image"])
    missing = []
    for image in sorted(images):
        try:
            engine.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        return f"images missing: {', '.join(missing)}; run make offline-images"
    return None


def require_compose_cli() -> None:
    """Skip without the Compose CLI (it needs no engine); in CI (CI=true) fail instead."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return
    if os.environ.get("CI"):
        pytest.fail("the Compose CLI must be there in CI (.ci/run installs it)")
    pytest.skip("no docker compose CLI")


def bridge_address() -> str:
    """The host's address on Docker's default bridge: what a container reaches a service on this machine at
    (a managed database, an LLM provider), the way it reaches one elsewhere on the network."""
    return docker.from_env().networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]


def require_engine() -> None:
    """Skip without an engine or images; in CI (CI=true) fail instead: nothing may skip there."""
    problem = engine_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"Docker end-to-end tests must run in CI: {problem}")
        pytest.skip(problem)


class ComposeProject:
    """The compose files of a directory (a clean copy) under a project name of its own."""

    def __init__(self, directory: Path, settings: dict[str, str] | None = None,
                 name_prefix: str = "goose-mlflow-test") -> None:
        self.directory = directory
        self.port = free_port()
        self.name = f"{name_prefix}-{uuid.uuid4().hex[:6]}"
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": self.name, "MLFLOW_PORT": str(self.port)}
        for key in PROJECT_SETTINGS:
            self.env.pop(key, None)
        self.env.update(settings or {})
        self.url = self.env.get("MLFLOW_PUBLIC_URL", f"http://localhost:{self.port}")
        self.env_file = directory / ".env"
        self.engine = docker.from_env()
        self.up_seconds = 0.0

    def run(self, *command: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        """A command in the project's directory with its settings, as a user types it."""
        result = subprocess.run(list(command), cwd=self.directory, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("docker", "compose", *args, check=check)

    def doctor(self, *args: str, **shell: str) -> tuple[int, list[str], list[str]]:
        """scripts/host/doctor.py as `make doctor` runs it, in the user's shell plus `shell`:
        (its exit status, its FAIL lines, all its lines)."""
        result = subprocess.run([sys.executable, "scripts/host/doctor.py", *args], cwd=self.directory,
                                env={**self.env, "PYTHONPATH": "scripts", **shell}, capture_output=True, text=True,
                                timeout=120)
        lines = result.stdout.splitlines()
        return result.returncode, [line for line in lines if line.startswith("FAIL")], lines

    def up(self, target: str = "up") -> str:
        """`make up` (or `make team-up`); its output, and how long it took in up_seconds."""
        start = time.monotonic()
        output = self.run("make", target).stdout
        self.up_seconds = round(time.monotonic() - start, 1)
        return output

    def down(self) -> None:
        """Remove the containers and every volume of the project."""
        self.compose("down", "--volumes", "--remove-orphans", check=False)

    # Containers, through the Docker SDK ----------------------------------------

    def containers(self, service: str | None = None) -> list[Container]:
        """The project's containers (running or exited), of one service or all."""
        labels = [f"{PROJECT_LABEL}={self.name}"]
        if service:
            labels.append(f"{SERVICE_LABEL}={service}")
        return self.engine.containers.list(all=True, filters={"label": labels})

    def container(self, service: str) -> Container:
        [container] = self.containers(service)
        return container

    def states(self) -> dict[str, tuple[str, str, int]]:
        """Service -> (status, health, exit code) of its container."""
        states = {}
        for container in self.containers():
            state = container.attrs["State"]
            states[container.labels[SERVICE_LABEL]] = (
                state["Status"], state.get("Health", {}).get("Status", ""), state["ExitCode"])
        return states

    def published(self) -> set[tuple[str, str, int]]:
        """(service, host address, host port) of every port published on the host."""
        return {(container.labels[SERVICE_LABEL], binding["HostIp"], int(binding["HostPort"]))
                for container in self.containers()
                for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values()
                for binding in bindings or []}

    def exec(self, service: str, *command: str) -> str:
        exit_code, output = self.container(service).exec_run(list(command))
        if exit_code != 0:
            raise AssertionError(f"{' '.join(command)} in {service} exited {exit_code}: {output.decode()}")
        return output.decode()

    def sql(self, query: str, database: str = "mlflow") -> str:
        """A query's rows (psql -At: one line each, columns split by |), as the superuser in the postgres container."""
        return self.exec("postgres", "psql", "-U", "postgres", "-d", database, "-At", "-c", query).strip()

    def table_digests(self, tables: tuple[str, ...] = KEPT_TABLES, database: str = "mlflow") -> dict[str, str]:
        """Table -> 'rows|md5 of every row's text, sorted', for the tables the schema has (one psql call)."""
        present = [table for table in tables if table in
                   set(self.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", database).split())]
        query = " UNION ALL ".join(
            f"SELECT '{table}' || '|' || count(*) || '|' || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), "
            f"'')) FROM {table} t" for table in present)
        rows = self.sql(query, database).splitlines() if present else []
        return {table: digest for table, digest in (row.split("|", 1) for row in rows)}

    def backup(self) -> Path:
        """`make backup`; the archive it names on its last line."""
        return self.directory / self.run("make", "backup").stdout.strip().splitlines()[-1]

    def restore(self, archive: Path, *settings: str, check: bool = True) -> subprocess.CompletedProcess:
        """`make restore FILE=backups/...` with `settings` (FORCE=1)."""
        return self.run("make", "restore", f"FILE={archive.relative_to(self.directory)}", *settings, check=check)

    def incomplete_traces(self, experiment_id: str, spans_per_trace: int) -> int:
        """Traces of the experiment stored with another number of spans than they were sent with."""
        return int(self.sql(
            "SELECT count(*) FROM (SELECT t.request_id FROM trace_info t LEFT JOIN spans s ON s.trace_id = t.request_id "
            f"WHERE t.experiment_id = {int(experiment_id)} GROUP BY t.request_id "
            f"HAVING count(s.span_id) <> {int(spans_per_trace)}) AS partial"))

    def artifact_digests(self) -> dict[str, str]:
        """Key (under the artifact destination) -> sha256 of every object in the bucket, read in the mlflow
        container with the stack's own view of its store (scripts/store.py)."""
        script = ("import hashlib, json, sys; sys.path.insert(0, 'scripts'); from lib import store; "
                  "bucket = store.artifact_bucket(); s3 = bucket.client(); "
                  "print(json.dumps({key: hashlib.sha256(s3.get_object(Bucket=bucket.name, Key=bucket.prefix + key)"
                  "['Body'].read()).hexdigest() for key, _ in bucket.objects()}))")
        return json.loads(self.exec("mlflow", "docker-entrypoint.sh", "python3", "-c", script))

    def bucket_text(self) -> str:
        """Every object of the bucket, its key and body, as one text (bytes read as latin-1: nothing is lost)."""
        script = ("import sys; sys.path.insert(0, 'scripts'); from lib import store; "
                  "bucket = store.artifact_bucket(); s3 = bucket.client(); "
                  "[print(key, s3.get_object(Bucket=bucket.name, Key=bucket.prefix + key)['Body'].read()"
                  ".decode('latin-1')) for key, _ in bucket.objects()]")
        return self.exec("mlflow", "docker-entrypoint.sh", "python3", "-c", script)

    def database_dump(self, database: str = "mlflow") -> str:
        """The whole database as SQL text (pg_dump in the postgres container, as the superuser)."""
        return self.exec("postgres", "pg_dump", "-U", "postgres", database)

    def secret(self, name: str) -> str:
        """A generated credential, copied out of the secrets volume through the (exited) credentials job,
        the one container that mounts all of it."""
        [content] = archive_files(self.container("credentials"), f"{SECRETS_IN_CONTAINER}/{name}").values()
        return content.decode().strip()

    def logs(self) -> str:
        return "".join(container.logs().decode("utf-8", "replace") for container in self.containers())

    def pids(self, *services: str) -> list[int]:
        """Host pids of every process in the running containers (of these services, or all)."""
        pids = []
        for container in self.containers():
            if container.status != "running" or (services and container.labels[SERVICE_LABEL]
                                                 not in services):
                continue
            top = container.top(ps_args="-eo pid")
            column = top["Titles"].index("PID")
            pids += [int(row[column]) for row in top["Processes"]]
        return pids

    def kill_main_process(self, service: str) -> int:
        """SIGKILL the service's main process from the host, as a crash would (the engine sees an exit,
        not a stop, so the restart policy applies); returns the restart count before the kill."""
        container = self.container(service)
        os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)
        return container.attrs["RestartCount"]

    def wait_restarted(self, service: str, restarts_before: int, timeout: float) -> None:
        """Until the engine has restarted the service's container since `restarts_before` was read and
        its health check passes again."""
        deadline = time.monotonic() + timeout
        while True:
            attrs = self.container(service).attrs
            if attrs["RestartCount"] > restarts_before and attrs["State"].get("Health", {}).get("Status") == "healthy":
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{service} was not restarted and healthy within {timeout:g} s")
            time.sleep(0.5)

    def client(self, **kwargs) -> MlflowClient:
        return MlflowClient(self.url, **kwargs)


def archive_files(container: Container, path: str) -> dict[str, bytes]:
    """The regular files at or under `path` in a container, running or not (named from path's last part)."""
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers() if member.isfile()}


def image_files(image: str, path: str) -> Iterator[str]:
    """The regular files under `path` in an image (their names start with path's last part), from an archive
    of a container that is created, never started."""
    container = docker.from_env().containers.create(image, command=["true"], entrypoint=[])
    try:
        yield from archive_files(container, path)
    finally:
        container.remove(force=True)


@contextmanager
def filled_stack(directory: Path, settings: dict[str, str] | None = None, sessions: int = 2) -> Iterator[ComposeProject]:
    """`make up` in `directory`, then what a team keeps (harness.commands.fill); the project records its
    `table_digests()` as `before` and its `artifact_digests()` as `digests`. Removed with its volumes at the end."""
    from harness.commands import client_env, fill

    project = ComposeProject(directory, settings)
    try:
        project.up()
        fill(project.env_file, sessions, client_env(project.url))
        project.before = project.table_digests()
        project.digests = project.artifact_digests()
        yield project
    finally:
        project.down()
