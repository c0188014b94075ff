"""Running the stack's commands, and goose's stand-in, as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

from lib import envfile
from lib import stack_config as cfg
from harness.native import REPO, SCRIPTS

EMITTER = Path(__file__).with_name("otel_emit.py")
POPULATE = Path(__file__).with_name("populate.py")
BARE_CLIENT = Path(__file__).with_name("bare_client.py")


def run_script(name: str, *args: str, env: Mapping[str, str] | None = None,
               cwd: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run scripts/<name>, or a job's file by its path from the repository (`mlflow/credentials.py`),
    with this interpreter, as a user would (`stdin` piped in); scripts/ is on PYTHONPATH, as in the image."""
    command = [sys.executable, str(REPO / name if "/" in name else SCRIPTS / name), *args]
    full_env = {**os.environ, "PYTHONPATH": str(SCRIPTS), **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300,
                          input=stdin)


def run_sourced(env_file: Path, *command: str, shell: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
    """`source ENV_FILE && COMMAND` in bash with a bare environment (plus `shell`), as a teammate's shell runs it."""
    clean_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **(shell or {})}
    return subprocess.run(["bash", "-c", 'source "$1" && shift && exec "$@"', "sourced", str(env_file), *command],
                          capture_output=True, text=True, env=clean_env, timeout=300)


def source_and_emit(env_file: Path, session_id: str, failed_tool: bool = False) -> str:
    """Source the env file in bash, then export a session with the stock SDK (its tool call failed, with
    `failed_tool`); returns the MLflow trace id."""
    result = run_sourced(env_file, sys.executable, str(EMITTER), session_id, *(["--failed-tool"] if failed_tool else []))
    assert result.returncode == 0, result.stderr
    return "tr-" + result.stdout.strip()


def experiment_id_in(env_file: Path) -> str:
    """The experiment id an env file's OTLP headers name."""
    headers = envfile.parse(env_file.read_text())["OTEL_EXPORTER_OTLP_HEADERS"]
    return headers.split(",")[0].removeprefix("x-mlflow-experiment-id=")


def client_env(url: str) -> dict[str, str]:
    """A bare environment with MLflow's own client pointed at a stack by its URL alone, as a notebook's is."""
    return {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "MLFLOW_TRACKING_URI": url}


def populate(env: Mapping[str, str] | None = None, env_file: Path | None = None) -> dict[str, str]:
    """harness/populate.py with MLflow's client configured by `env`, or by sourcing a person's `env_file`."""
    if env_file is not None:
        result = run_sourced(env_file, sys.executable, str(POPULATE))
    else:
        result = subprocess.run([sys.executable, str(POPULATE)], capture_output=True, text=True, timeout=300,
                                env=dict(env or {}))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def fill(env_file: Path, sessions: int, client: Mapping[str, str] | None = None) -> dict[str, str]:
    """What a team keeps in a stack: `sessions` goose sessions sent through `env_file`, then populate.py's
    assessment, run with artifacts and versioned prompt, through MLflow's client configured by `client`
    (a local stack's, client_env) or, without it, by sourcing the same env file (a person's, team mode)."""
    for n in range(sessions):
        source_and_emit(env_file, f"{env_file.stem}-{n}-{uuid.uuid4().hex[:6]}")
    return populate(client) if client is not None else populate(env_file=env_file)


def bare_client_round_trip(env: Mapping[str, str]) -> dict:
    """harness/bare_client.py with MLflow's client configured by `env` alone: what the server advertised and
    the artifact's text read back. Two minutes at most: a client sent to the store's inside address hangs."""
    result = subprocess.run([sys.executable, str(BARE_CLIENT)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])
