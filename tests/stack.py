"""Helpers the tests share: compose.yaml as data, free ports, real servers.

Native servers come from scripts/native_stack.py (also used by `make bench`);
what is here only the tests need.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from native_stack import (COMPOSE_FILE, ENTRYPOINT, EXTERNAL_COMPOSE_FILE, REPO, SECRETS_IN_CONTAINER,  # noqa: F401
                          TEAM_COMPOSE_FILE, NativePostgres, find_postgres_bindir, free_port, interpolate,
                          load_compose, new_root, python_path_env, replace_all, run_in_entrypoint, service_env,
                          start_mlflow, start_postgres, stop_processes, wait_for_http)

SCRIPTS = REPO / "scripts"
EMITTER = Path(__file__).with_name("otel_emit.py")
S3_STANDIN = Path(__file__).parent / "offline-images" / "silo" / "s3-standin"


def run_script(name: str, *args: str, env: Mapping[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run scripts/<name> with this interpreter, as a user would."""
    command = [sys.executable, str(SCRIPTS / name), *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def source_and_emit(env_file: Path, session_id: str) -> str:
    """Source the env file in bash, then export a session with the stock SDK; returns the MLflow trace id."""
    clean_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    result = subprocess.run(["bash", "-c", 'source "$1" && exec "$2" "$3" "$4"', "emit",
                             str(env_file), sys.executable, str(EMITTER), session_id],
                            capture_output=True, text=True, env=clean_env, timeout=120)
    assert result.returncode == 0, result.stderr
    return "tr-" + result.stdout.strip()


def experiment_id_in(env_file: Path) -> str:
    for line in env_file.read_text().splitlines():
        if line.startswith("export OTEL_EXPORTER_OTLP_HEADERS="):
            return line.rsplit("=", 1)[1]
    raise AssertionError("no headers line")


class Tripwire:
    """A listening socket that records every connection made to it and closes it.

    Set as a server's HTTP(S)_PROXY, it catches any request bound for the
    internet: the connection to the proxy is made before any name lookup.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.requests.append(connection.recv(200).split(b"\r\n", 1)[0])
                except OSError:
                    self.requests.append(b"(connection, nothing sent)")

    def proxy_env(self) -> dict[str, str]:
        """Proxy settings that send everything but loopback through the tripwire."""
        return {name: self.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")} | {
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def close(self) -> None:
        self._socket.close()
