"""Running the stack's commands, and goose's stand-in, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import envfile
from harness.native import SCRIPTS

EMITTER = Path(__file__).with_name("otel_emit.py")


def run_script(name: str, *args: str, env: Mapping[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run scripts/<name> with this interpreter, as a user would."""
    command = [sys.executable, str(SCRIPTS / name), *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=full_env, cwd=cwd, timeout=300)


def run_sourced(env_file: Path, *command: str) -> subprocess.CompletedProcess:
    """`source ENV_FILE && COMMAND` in bash with a bare environment, as a teammate's shell runs it."""
    clean_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}
    return subprocess.run(["bash", "-c", 'source "$1" && shift && exec "$@"', "sourced", str(env_file), *command],
                          capture_output=True, text=True, env=clean_env, timeout=300)


def source_and_emit(env_file: Path, session_id: str) -> str:
    """Source the env file in bash, then export a session with the stock SDK; returns the MLflow trace id."""
    result = run_sourced(env_file, sys.executable, str(EMITTER), session_id)
    assert result.returncode == 0, result.stderr
    return "tr-" + result.stdout.strip()


def experiment_id_in(env_file: Path) -> str:
    """The experiment id an env file's OTLP headers name."""
    headers = envfile.parse(env_file.read_text())["OTEL_EXPORTER_OTLP_HEADERS"]
    return headers.split(",")[0].removeprefix("x-mlflow-experiment-id=")
