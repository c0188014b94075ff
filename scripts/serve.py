#!/usr/bin/env python3
"""The mlflow service's server: MLflow's own `mlflow server ARGS`, its app behind lib/ingest.py in each worker.

Everything `mlflow server` does stays MLflow's (its options, the auth
bootstrap of --app-name basic-auth, its workers and job runner); one step
changes: where it would start uvicorn on its app, uvicorn starts
lib.ingest:create_app, which serves that same app behind the ingest layer
(every span names the account that sent it, and loses its credentials
unless REDACTION=off). MLflow's private
_build_uvicorn_command is that step: tests/test_native_attribution.py fails
if a release changes it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from lib import redact
from lib.errors import StackError, run_command
from lib.ingest import WRAPPED_APP, tally_directory

SCRIPTS = Path(__file__).resolve().parent
INGEST_FACTORY = "lib.ingest:create_app"


def behind_ingest(build: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """MLflow's uvicorn command, serving the ingest layer, which serves the app MLflow chose."""

    def build_behind_ingest(uvicorn_opts, host, port, workers, app_name, env_file=None, is_factory=False):
        os.environ[WRAPPED_APP] = f"{app_name}()" if is_factory else app_name
        return build(uvicorn_opts, host, port, workers, INGEST_FACTORY, env_file, True)

    return build_behind_ingest


def importable_in_workers() -> None:
    """uvicorn's workers inherit this environment: lib.ingest from scripts/ (no module of the image's packages has
    the name of one there: tests/test_dependencies.py)."""
    paths = [path for path in os.environ.get("PYTHONPATH", "").split(os.pathsep) if path]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, str(SCRIPTS)])


def check_redaction_settings() -> None:
    """REDACTION and REDACTION_PATTERNS as each worker will read them: a bad one stops the server here, in one line."""
    try:
        redact.from_settings(dict(os.environ))
    except ValueError as exc:
        raise StackError(str(exc)) from None


def forget_old_tallies() -> None:
    """make status counts what redaction did since this server started: a restarted container's old tallies go."""
    for path in tally_directory().glob("*.json"):
        path.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    import mlflow.server
    from mlflow.cli import cli

    if run_command("serve", check_redaction_settings):
        return 1
    forget_old_tallies()
    importable_in_workers()
    mlflow.server._build_uvicorn_command = behind_ingest(mlflow.server._build_uvicorn_command)
    return cli.main(args=["server", *argv], prog_name="mlflow", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
