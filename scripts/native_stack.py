"""The stack's services run natively, configured from compose.yaml (never copied).

PostgreSQL from the machine's binaries and MLflow through the image's own
entrypoint, each with the command and environment compose.yaml gives the
container, with container addresses and paths replaced by native ones. The
tests start their services this way, and `make bench` its native target.
Needs PyYAML (the test virtualenv), unlike the stdlib-only commands.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

import stack_config as cfg

REPO = cfg.REPO_ROOT
COMPOSE_FILE = REPO / "compose.yaml"
TEAM_COMPOSE_FILE = REPO / "compose.team.yaml"
EXTERNAL_COMPOSE_FILE = REPO / "compose.external.yaml"
ENTRYPOINT = REPO / "mlflow" / "docker-entrypoint.sh"
POSTGRES_INIT_SCRIPTS = REPO / "postgres" / "initdb"
SECRETS_IN_CONTAINER = "/run/secrets/stack"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([-?])([^${}]*))?\}")


def _substitute(match: re.Match, environ: Mapping[str, str]) -> str:
    name, kind, text = match.groups()
    if environ.get(name):
        return environ[name]
    if kind == "?":
        raise KeyError(f"{name}: {text}")
    return text or ""


def interpolate(value: str, environ: Mapping[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, innermost first (defaults may nest)."""
    while True:
        new = _VARIABLE.sub(lambda m: _substitute(m, environ), value)
        if new == value:
            return new
        value = new


def _interpolate_tree(node: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, environ)
    if isinstance(node, list):
        return [_interpolate_tree(item, environ) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, environ) for key, value in node.items()}
    return node


class _Reset:
    """Compose's `!reset` tag: the key is removed from the merged result."""


class _Override:
    """Compose's `!override` tag: the value replaces, instead of merging with, the earlier one."""

    def __init__(self, value: Any) -> None:
        self.value = value


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
_ComposeLoader.add_constructor("!override", lambda loader, node: _Override(
    loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
    else loader.construct_sequence(node, deep=True)))


def _mount_target(volume: str) -> str:
    return volume.split(":")[1]


def _merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's override rules, as far as this repository uses them: maps merge,
    `volumes` lists merge by mount target, other values are replaced."""
    if key == "volumes" and isinstance(base, list) and isinstance(override, list):
        targets = {_mount_target(volume) for volume in override}
        return [volume for volume in base if _mount_target(volume) not in targets] + override
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if isinstance(value, _Reset):
                merged.pop(key, None)
            elif isinstance(value, _Override):
                merged[key] = value.value
            else:
                merged[key] = _merge(base[key], value, key) if key in base else value
        return merged
    return override


def load_compose(environ: Mapping[str, str] | None = None, team: bool = False,
                 external: bool = False) -> dict[str, Any]:
    """compose.yaml (plus the team and external overrides) with anchors merged and
    variables resolved against `environ`; services switched off by a profile are left out."""
    files = [COMPOSE_FILE] + ([TEAM_COMPOSE_FILE] if team else []) + ([EXTERNAL_COMPOSE_FILE] if external else [])
    merged: Any = {}
    for path in files:
        merged = _merge(merged, yaml.load(path.read_text(), Loader=_ComposeLoader))
    merged["services"] = {name: svc for name, svc in merged["services"].items() if not svc.get("profiles")}
    return _interpolate_tree(merged, environ or {})


def replace_all(text: str, replacements: Mapping[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text


def service_env(service: dict[str, Any], replacements: Mapping[str, str]) -> dict[str, str]:
    """A service's environment with container addresses and paths replaced by native ones."""
    return {key: replace_all(str(value), replacements) for key, value in (service.get("environment") or {}).items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def python_path_env() -> dict[str, str]:
    """PATH with this interpreter's bin first, so `python3` and `mlflow` are the test venv's."""
    return {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


class NativePostgres:
    """A throwaway PostgreSQL server from the machine's binaries, run as an unprivileged user."""

    def __init__(self, root: Path, superuser_password_file: Path) -> None:
        self.bindir = Path(find_postgres_bindir())
        self.root = root
        self.data = root / "data"
        self.sockets = root / "sockets"
        self.port = free_port()
        self.password_file = superuser_password_file
        self.run_as = "postgres" if os.geteuid() == 0 else None

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.run_as, "--"] if self.run_as else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.sockets.mkdir(parents=True)
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            os.chown(self.sockets, entry.pw_uid, entry.pw_gid)
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={self.password_file}")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.root / "server.log"),
                  "-o", f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


def find_postgres_bindir() -> str:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    if candidates:
        return str(candidates[0].parent)
    initdb = shutil.which("initdb")
    if initdb:
        return str(Path(initdb).resolve().parent)
    raise RuntimeError("no PostgreSQL server binaries: apt-get install postgresql")


def new_root(prefix: str) -> tuple[Path, Path]:
    """A fresh folder for native services and its secrets/ with generated credentials, as the secrets job makes them.

    Under /tmp with 0755: the unprivileged postgres user must reach it.
    """
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    secrets = root / "secrets"
    secrets.mkdir()
    subprocess.run([sys.executable, str(REPO / "scripts" / "stack_secrets.py"), str(secrets)],
                   check=True, capture_output=True, text=True)
    return root, secrets


def start_postgres(root: Path, secrets: Path, compose: dict, replacements: Mapping[str, str]) -> NativePostgres:
    """PostgreSQL with compose.yaml's init scripts run on its empty data directory, as the container does."""
    server = NativePostgres(root / "postgres", secrets / "postgres-password")
    server.start()
    env = {**os.environ, **service_env(compose["services"]["postgres"], replacements),
           "PGHOST": str(server.sockets), "PGPORT": str(server.port)}
    for script in sorted(POSTGRES_INIT_SCRIPTS.glob("*.sh")):
        subprocess.run(["sh", str(script)], check=True, env=env, capture_output=True, timeout=60)
    return server


def run_in_entrypoint(command: list[str], env: dict[str, str], **popen: object) -> subprocess.Popen:
    """Start `command` through the MLflow image's entrypoint, as the container does."""
    full_env = {**os.environ, **python_path_env(), **env}
    for name in ("PGPASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        full_env.pop(name, None)
    return subprocess.Popen(["sh", str(ENTRYPOINT), *command], env=full_env, **popen)


def start_mlflow(log_path: Path, compose: dict, replacements: dict[str, str],
                  port: int, extra_env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """compose.yaml's mlflow service, natively: its command, environment and entrypoint."""
    mlflow = compose["services"]["mlflow"]
    command = [arg.replace("--host=0.0.0.0", "--host=127.0.0.1").replace("--port=5000", f"--port={port}")
               for arg in mlflow["command"]]
    server = run_in_entrypoint(command, {**service_env(mlflow, replacements), **(extra_env or {})},
                                stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url + "/health", 180, server)
    except RuntimeError:
        stop_processes([server])
        raise
    return server, url


def stop_processes(processes: list[subprocess.Popen]) -> None:
    for process in reversed(processes):
        try:
            os.killpg(process.pid, 15)
        except (ProcessLookupError, PermissionError):
            process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
