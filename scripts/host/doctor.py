#!/usr/bin/env python3
"""`make doctor`: what is wrong with the stack started from this checkout, one line each, with the fix.

In order: Docker and Compose versions; each service's state and health; the
published port and who else holds it; the Host allow-list against the public
URL; the bucket; the experiment id in the env file against the server; and
what goose would see after `source .env` in this shell (the traps of
docs/getting-started.md: a disabled SDK, compression, a gRPC protocol, another
endpoint) and whether that endpoint takes a batch; and the goose on this
shell's PATH, if it is a release that cannot export. Each check prints `ok` or
`FAIL` and one line; the exit status is the number of failed checks.

Runs on the host (the Docker SDK, in .venv-host); the stores are read by
scripts/store.py inside the mlflow container, which holds their credentials.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.models.containers import Container

import compose_settings
from lib import envfile
from lib import otlp
from lib import stack_config as cfg
from compose_settings import CONFIG_FILES_LABEL
from engine import compose_project, connect, container_env, project_containers, running, service, store_facts
from lib.errors import StackError
from lib.mlflow_api import tls_context

MIN_ENGINE = (26, 0)  # each container mounts single files of the secrets volume (volume subpaths)
# Volume subpaths (each container mounts single secret files): Compose 2.26.0
# (docker/compose #11652; 2.25 ignores the subpath and mounts the whole volume).
MIN_COMPOSE = (2, 26, 0)
GOOSE_PROTOCOLS = ("", "http/protobuf", "http/json")  # goose has only the HTTP transport
# goose releases whose exporter thread panics ("there is no reactor running") and sends no span: aaif-goose/goose
# issue #9494 (1.36.0), and 1.37.0 run against this stack (tests/test_native_goose_cli.py).
EXPORTER_PANICS = ((1, 36), (1, 37))
EMPTY_BATCH_ANSWER = b"no spans found"  # mlflow/server/otel_api.py, for a batch that got past every check
INVALID_HOST_ANSWER = "Invalid Host header"  # mlflow/server/security_utils.py, a Host not allowed


class Failed(StackError):
    """One failed check: the line says what is wrong and the command that fixes it."""


class NotChecked(Exception):
    """A check that needs what an earlier one found broken (MLflow running): shown, not counted."""


def compact(reply: bytes) -> str:
    """A server's answer as a short one-line quote."""
    return repr(" ".join(reply[:300].decode("utf-8", "replace").split())[:100])


@dataclass
class Doctor:
    directory: Path
    shell: Mapping[str, str]
    env_file: Path | None
    settings: dict[str, str] = field(default_factory=dict)
    engine: docker.DockerClient | None = None
    containers: list[Container] = field(default_factory=list)
    facts: dict | None = None

    @property
    def files(self) -> str:
        mlflow = next((c for c in self.containers if service(c) == "mlflow"), None)
        return mlflow.labels.get(CONFIG_FILES_LABEL, "") if mlflow else ""

    @property
    def team(self) -> bool:
        return compose_settings.is_team(self.files)

    @property
    def public_url(self) -> str:
        return cfg.check_url(cfg.default_public_url(self.settings), "MLFLOW_PUBLIC_URL")

    @property
    def port(self) -> int:
        """The port the stack publishes: the proxy's in team mode, MLflow's in local mode."""
        if self.team:
            return compose_settings.team_https_port(self.settings)
        return int(self.settings.get("MLFLOW_PORT") or cfg.DEFAULT_PORT)

    def up_command(self) -> str:
        return "make team-up" if self.team else "make up"


def version_tuple(text: str) -> tuple[int, ...]:
    """The first version in `text`: '26.1.5+dfsg1' -> (26, 1, 5); 'v2.26.1-4' -> (2, 26, 1); ' 1.37.0' (goose)."""
    match = re.search(r"\d+(?:\.\d+)+", text)
    if not match:
        raise ValueError(f"no version in {text!r}")
    return tuple(int(part) for part in match.group().split("."))


def dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def check_docker(doctor: Doctor) -> str:
    doctor.engine = connect()
    engine_version = doctor.engine.version()["Version"]
    if version_tuple(engine_version) < MIN_ENGINE:
        raise Failed(f"Docker Engine {engine_version} is older than {dotted(MIN_ENGINE)} (volume subpaths): "
                     "upgrade Docker Engine")
    compose = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    if compose.returncode != 0:
        raise Failed("the Compose plugin does not answer (docker compose version): install Docker Compose v2")
    if version_tuple(compose.stdout) < MIN_COMPOSE:
        raise Failed(f"Docker Compose {compose.stdout.strip()} is older than {dotted(MIN_COMPOSE)} "
                     "(volume subpaths: an older one mounts every secret into each container): "
                     "upgrade Docker Compose")
    return f"Docker Engine {engine_version}, Compose {compose.stdout.strip()}"


def check_services(doctor: Doctor) -> str | list[str]:
    """One line per service that is not as it should be: servers running (and healthy), jobs done."""
    assert doctor.engine is not None
    doctor.containers = project_containers(doctor.engine, doctor.directory)
    if not doctor.containers:
        raise Failed(f"no stack was started from {doctor.directory}: make up (or make team-up)")
    problems = []
    for name in ("mlflow", "retention", *(("proxy",) if doctor.team else ())):
        if not any(service(c) == name for c in doctor.containers):
            problems.append(f"{name}: not created: {doctor.up_command()}")
    for container in sorted(doctor.containers, key=service):
        state = container.attrs["State"]
        one_shot = container.attrs["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")
        health = state.get("Health", {}).get("Status")
        if one_shot and state["Status"] == "exited" and state["ExitCode"] != 0:
            problems.append(f"{service(container)}: failed (exit {state['ExitCode']}): "
                            f"docker logs {container.name} says why; {doctor.up_command()} runs it again")
        elif not one_shot and state["Status"] != "running":
            problems.append(f"{service(container)}: {state['Status']}: docker logs {container.name} says why; "
                            f"{doctor.up_command()} starts it")
        elif not one_shot and health == "starting":
            problems.append(f"{service(container)}: starting, its health check not passed yet: wait a minute; "
                            f"if it stays, docker logs {container.name} says why")
        elif not one_shot and health not in (None, "healthy"):
            problems.append(f"{service(container)}: {health}: docker logs {container.name} says why")
    return problems or f"{len(doctor.containers)} containers: servers running and healthy, jobs done"


def listening_process(port: int) -> str | None:
    """'name (pid N)' of a host process listening on TCP `port`, from /proc (needs the rights to read it)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in {f"socket:[{inode}]" for inode in inodes}:
                    return f"{(proc / 'comm').read_text().strip()} (pid {proc.name})"
        except OSError:
            continue
    return "a process this user cannot see"


def check_port(doctor: Doctor) -> str:
    assert doctor.engine is not None
    port = doctor.port
    if doctor.team:
        publisher, fix = "proxy", "or change the port in MLFLOW_PUBLIC_URL"
    else:
        publisher, fix = "mlflow", "or set MLFLOW_PORT to a free port in .env"
    for container in doctor.engine.containers.list():
        for bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).values():
            if any(int(binding["HostPort"]) == port for binding in bindings or []):
                if container in doctor.containers and service(container) == publisher:
                    return f"port {port}: published by {publisher}"
                raise Failed(f"port {port}: held by container {container.name} "
                             f"(project {compose_project(container) or 'none'}), not this stack's {publisher}: "
                             f"docker stop {container.name}, {fix}; then {doctor.up_command()}")
    holder = listening_process(port)
    if holder:
        raise Failed(f"port {port}: held by {holder}, not this stack's {publisher}: stop it, {fix}; "
                     f"then {doctor.up_command()}")
    raise Failed(f"port {port}: nothing listens; {publisher} does not publish it: {doctor.up_command()}")


def answer_on_this_host(port: int, public: urllib.parse.SplitResult) -> tuple[int, str]:
    """GET / on 127.0.0.1:port as a client of the public URL sends it: its Host, and its name in TLS
    (the proxy picks the certificate by that name; whether the client trusts it is not this check's matter).
    Not /health: MLflow exempts /health and /version from its Host check (mlflow/server/security_utils.py)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if public.scheme == "https":
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                                  server_hostname=public.hostname)
        connection.request("GET", "/", headers={"Host": public.netloc})
        response = connection.getresponse()
        return response.status, response.read(200).decode("utf-8", "replace").strip()
    finally:
        connection.close()


def check_allowed_host(doctor: Doctor) -> str:
    """MLflow (and the proxy) answer the public URL's Host: the URL they were started with is today's."""
    url = doctor.public_url
    mlflow = running(doctor.containers, "mlflow")
    if mlflow is None:
        raise NotChecked("mlflow is not running")
    started = container_env(mlflow).get("MLFLOW_PUBLIC_URL", "")
    if started.rstrip("/") != url:
        raise Failed(f"MLFLOW_PUBLIC_URL is {url} but mlflow was started for {started}, so it answers "
                     f"403 Invalid Host header at {url}: {doctor.up_command()} recreates it")
    parsed = urllib.parse.urlsplit(url)
    try:
        status, body = answer_on_this_host(doctor.port, parsed)
    except OSError as exc:
        raise Failed(f"{url}: no answer on 127.0.0.1:{doctor.port} ({exc}): {doctor.up_command()}") from None
    if status == 403 and INVALID_HOST_ANSWER in body:
        raise Failed(f"{url}/ answered 403 {compact(body.encode())} for Host {parsed.netloc}: the allow-list "
                     f"mlflow was started with lacks it; {doctor.up_command()} recreates it from MLFLOW_PUBLIC_URL")
    # MLflow's UI page, or in team mode its demand for an account: anything else is not MLflow answering.
    if status not in ((200, 401) if doctor.team else (200,)):
        raise Failed(f"{url}/ answered {status} {compact(body.encode())} for Host {parsed.netloc}: "
                     f"docker logs {mlflow.name} says why")
    return f"MLflow answers Host {parsed.netloc}"


def stores(doctor: Doctor) -> dict:
    if running(doctor.containers, "mlflow") is None:
        raise NotChecked("mlflow is not running")
    if doctor.facts is None:
        doctor.facts = store_facts(doctor.containers)
    return doctor.facts


def check_bucket(doctor: Doctor) -> str:
    bucket = stores(doctor)["bucket"]
    if bucket["error"]:
        fix = ("create it in your object store (docs/external.md)" if "compose.external.yaml" in doctor.files
               else f"{doctor.up_command()} creates it (the bucket job)")
        raise Failed(f"{bucket['error']}: {fix}")
    return f"bucket {bucket['name']} answers"


def rewrite_command(doctor: Doctor) -> str:
    return "make user NAME=... rewrites a person's file" if doctor.team else "make up rewrites .env"


def env_files(doctor: Doctor) -> list[Path]:
    """The env file to check: --env-file; else .env in local mode, the people's files in team mode."""
    if doctor.env_file is not None:
        return [doctor.env_file]
    if doctor.team:
        return sorted((doctor.directory / "users").glob("*.env"))
    return [doctor.directory / ".env"]


def check_experiment(doctor: Doctor) -> str | list[str]:
    experiments = {e["id"]: e["name"] for e in stores(doctor)["databases"]["tracking"].get("experiments", [])}
    fix = rewrite_command(doctor)
    problems = []
    for path in env_files(doctor):
        if not path.is_file():
            problems.append(f"{path}: missing: {fix}")
            continue
        try:
            experiment = otlp.traces_headers(envfile.parse(path.read_text())).get("x-mlflow-experiment-id")
        except ValueError as exc:
            problems.append(f"{path}: unreadable OTLP headers ({exc}): {fix}")
            continue
        if not experiment:
            problems.append(f"{path}: no x-mlflow-experiment-id in the OTLP headers: {fix}")
        elif experiment not in experiments:
            problems.append(f"{path}: experiment {experiment} is not on the server (deleted, or the stack was "
                            f"recreated by down -v): {fix}")
    checked = ", ".join(path.name for path in env_files(doctor)) or "no env files yet"
    return problems or f"{checked}: the experiment is on the server"


def check_evaluation(doctor: Doctor) -> str:
    """Judges started on an experiment score nothing without MLflow's job runner, and MLflow says nothing."""
    mlflow = running(doctor.containers, "mlflow")
    if mlflow is None:
        raise NotChecked("mlflow is not running")
    switch = container_env(mlflow).get("EVALUATION") or "off"
    judges = stores(doctor)["databases"]["tracking"].get("started_judges", [])
    named = ", ".join(f"{judge['name']} on experiment {judge['experiment']}" for judge in judges)
    if judges and switch != "on":
        raise Failed(f"judges are started ({named}) but mlflow runs with EVALUATION={switch}: nothing scores "
                     f"new traces; set EVALUATION=on in .env, then {doctor.up_command()}")
    if switch == "on":
        return f"EVALUATION=on: {named} score new traces" if judges else "EVALUATION=on; no judge started yet"
    return f"EVALUATION={switch}; no judge started"


def check_redaction(doctor: Doctor) -> str:
    """Which redaction is in force: what the mlflow container runs with (docs/security.md)."""
    mlflow = running(doctor.containers, "mlflow")
    if mlflow is None:
        raise NotChecked("mlflow is not running")
    env = container_env(mlflow)
    if (env.get("REDACTION") or "on").strip().lower() == "off":
        return "REDACTION=off: credentials in spans are stored as sent"
    own = len((env.get("REDACTION_PATTERNS") or "").split())
    return ("REDACTION=on: credentials in spans are replaced before they are stored"
            + (f", with {own} pattern{'s' if own != 1 else ''} of REDACTION_PATTERNS" if own else ""))


def check_goose_env(doctor: Doctor) -> str | list[str]:
    """What goose would read after `source FILE` in this shell (aaif-goose/goose crates/goose/src/otel/otlp.rs)."""
    if doctor.env_file is None and doctor.team:
        return "team mode: make doctor ENV_FILE=users/NAME.env checks what goose sees with a person's file"
    path = env_files(doctor)[0]
    env = envfile.source_otel(path, doctor.shell)
    name = path.name if doctor.env_file is None else str(path)
    problems = []
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        problems.append(f"OTEL_SDK_DISABLED=true after source {name}: goose sends nothing; "
                        "unset OTEL_SDK_DISABLED in your shell")
    for key in cfg.OWNED_REMOVED_KEYS:
        if key in env:
            problems.append(f"{key}={env[key]} after source {name}: goose's exporter has no compression and "
                            f"sends nothing; unset {key} in your shell")
    protocol_key = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" if env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    else "OTEL_EXPORTER_OTLP_PROTOCOL")
    if env.get(protocol_key, "").strip().lower() not in GOOSE_PROTOCOLS:
        problems.append(f"{protocol_key}={env[protocol_key]} after source {name}: goose has only HTTP and skips "
                        f"export; unset it in your shell")
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() not in ("", "otlp"):
        problems.append(f"OTEL_TRACES_EXPORTER={env['OTEL_TRACES_EXPORTER']} after source {name}: goose exports "
                        "no traces; unset it in your shell")
    try:
        endpoint, headers = otlp.traces_endpoint(env), otlp.traces_headers(env)
    except ValueError as exc:
        return [*problems, f"{name}: {exc}: {rewrite_command(doctor)}"]
    expected = f"{doctor.public_url}/v1/traces"
    if endpoint != expected:
        problems.append(f"after source {name} goose sends traces to {endpoint}, not {expected}: "
                        f"{rewrite_command(doctor)}")
    try:
        # A batch without spans passes the same TLS, account and experiment-permission checks as goose's
        # and stores nothing: MLflow then answers 400 for the missing spans, which is as far as it goes.
        status, reply = otlp.export(endpoint, b"", headers, timeout=10,
                                    context=tls_context(env.get("OTEL_EXPORTER_OTLP_CERTIFICATE")))
    except OSError as exc:
        problems.append(f"cannot reach {endpoint} ({getattr(exc, 'reason', exc)}): {doctor.up_command()}")
    else:
        if not (status == 400 and EMPTY_BATCH_ANSWER in reply):
            problems.append(f"{endpoint} answered {status} {compact(reply)} to goose's settings in {name}")
    return problems or f"after source {name} in this shell goose sends to {endpoint}, which accepts its settings"


def check_goose_cli(doctor: Doctor) -> str:
    """The goose this shell runs: a release whose exporter cannot send is named (its panic scrolls by in a
    session, and the spans are lost)."""
    path = shutil.which("goose", path=doctor.shell.get("PATH", ""))
    if path is None:
        return "no goose on this shell's PATH: nothing to check on this machine"
    try:
        printed = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        printed = ""
    try:
        version = version_tuple(printed)
    except ValueError:
        raise Failed(f"{path} --version printed no version: reinstall goose") from None
    if version[:2] in EXPORTER_PANICS:
        raise Failed(f"goose {dotted(version)} ({path}) sends no traces: its exporter thread panics "
                     "(aaif-goose/goose issue #9494); upgrade goose: goose update")
    return f"goose {dotted(version)} ({path})"


# A check returns its ok line, or raises Failed / returns the lines of what failed.
Check = Callable[[Doctor], "str | list[str]"]
# (name, check, whether the later checks can run when this one fails)
CHECKS: list[tuple[str, Check, bool]] = [
    ("docker", check_docker, False),
    ("services", check_services, True),
    ("port", check_port, True),
    ("host", check_allowed_host, True),
    ("bucket", check_bucket, True),
    ("experiment", check_experiment, True),
    ("evaluation", check_evaluation, True),
    ("redaction", check_redaction, True),
    ("goose", check_goose_env, True),
    ("goose-cli", check_goose_cli, True),
]


def run_checks(doctor: Doctor) -> int:
    failures = 0
    for index, (name, check, later_can_run) in enumerate(CHECKS):
        try:
            result = check(doctor)
        except NotChecked as exc:
            print(f"--   {name:<10} not checked: {exc}")
            continue
        except (StackError, ValueError, docker.errors.DockerException) as exc:
            result = [str(exc)]
            if not later_can_run:
                print(f"FAIL {name:<10} {exc}")
                print(f"     {len(CHECKS) - index - 1} more checks need this one; rerun make doctor after the fix")
                return 1
        if isinstance(result, str):
            print(f"ok   {name:<10} {result}")
            continue
        for line in result:
            print(f"FAIL {name:<10} {line}")
        failures += len(result)
    return failures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Check the stack started from this checkout, and the env file "
                                                 "goose reads, one line each; the exit status counts the failures.")
    parser.add_argument("--directory", type=Path, default=Path.cwd(),
                        help="the checkout the stack was started from (default: the current directory)")
    parser.add_argument("--env-file", type=Path, default=None,
                        help="the env file goose sources (default: .env; in team mode users/*.env, and the "
                             "shell check only with this option)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    directory = args.directory.resolve()
    doctor = Doctor(directory, os.environ, args.env_file.resolve() if args.env_file else None,
                    compose_settings.read_settings(directory))
    failures = run_checks(doctor)
    print(f"\n{failures} problem{'s' if failures != 1 else ''} found." if failures else
          "\nNo problems found. Next: source .env && goose session, then open the Traces link make up printed.")
    return failures


if __name__ == "__main__":
    sys.exit(main())
