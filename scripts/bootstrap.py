#!/usr/bin/env python3
"""Create the goose-traces experiment and write the env file goose sources.

Runs as the stack's one-shot `bootstrap` service once MLflow is healthy, and
from the host with flags. Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import envfile
import stack_config as cfg
from mlflow_api import MlflowClient, StackError, ensure_experiment


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Create the MLflow experiment for goose's traces and write goose's env file.")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="where this script reaches MLflow (default: $MLFLOW_TRACKING_URI, else the public URL)")
    parser.add_argument("--public-url", default=cfg.default_public_url(),
                        help="the URL goose uses to reach MLflow, written into the env file "
                             "(default: $MLFLOW_PUBLIC_URL, else http://localhost:$MLFLOW_PORT)")
    parser.add_argument("--experiment", default=os.environ.get("GOOSE_EXPERIMENT", cfg.DEFAULT_EXPERIMENT),
                        help="experiment name (default: $GOOSE_EXPERIMENT, else %(default)s)")
    parser.add_argument("--env-file", type=Path, default=Path(os.environ.get("GOOSE_ENV_FILE", cfg.DEFAULT_ENV_FILE)),
                        help="env file to create or update (default: .env at the repository root)")
    parser.add_argument("--timeout", type=float, default=cfg.DEFAULT_TIMEOUT_S,
                        help="seconds to wait for MLflow to become healthy (default: %(default)s)")
    return parser.parse_args(argv)


def check_env_file(env_file: Path) -> str:
    """The env file's current text; fails before anything changes if it cannot be rewritten."""
    existing = envfile.read_text(env_file)
    directory = env_file.parent
    if not directory.is_dir():
        raise StackError(f"cannot write {env_file}: directory {directory} does not exist; create it or pass --env-file")
    file_ok = os.access(env_file, os.W_OK) if env_file.exists() else True
    if not file_ok or not os.access(directory, os.W_OK | os.X_OK):
        raise StackError(f"cannot write {env_file}: permission denied; fix its permissions or pass --env-file")
    return existing


def warn_about_user_lines(env_file: Path, existing: str) -> None:
    keys = {envfile.assigned_key(line) for line in existing.splitlines()}
    for key in cfg.OWNED_REMOVED_KEYS:
        if key in keys:
            print(f"bootstrap: removing {key} from {env_file}: goose cannot compress OTLP and would drop every span",
                  file=sys.stderr)
    for key in cfg.OVERRIDING_KEYS:
        if key in keys:
            print(f"bootstrap: warning: {env_file} sets {key}, which overrides what this stack writes", file=sys.stderr)


def display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def run(args: argparse.Namespace) -> str:
    """Do the bootstrap; returns the summary for stdout."""
    public_url = cfg.check_url(args.public_url, "public URL")
    tracking_uri = cfg.check_url(args.tracking_uri or public_url, "tracking URI")
    experiment = cfg.check_experiment_name(args.experiment)
    env_file = args.env_file.absolute()
    # Check the env file before MLflow is touched: bad input changes nothing.
    check_env_file(env_file)

    client = MlflowClient(tracking_uri)
    print(f"bootstrap: waiting for MLflow at {tracking_uri}", file=sys.stderr)
    client.wait_until_healthy(args.timeout)
    experiment_id, action = ensure_experiment(client, experiment)
    print(f"bootstrap: experiment {experiment!r} {action} (id {experiment_id})", file=sys.stderr)

    existing = check_env_file(env_file)
    warn_about_user_lines(env_file, existing)
    text = envfile.merge(existing, cfg.goose_env(public_url, experiment_id), remove=cfg.OWNED_REMOVED_KEYS)
    try:
        changed = envfile.write_atomic(env_file, text)
    except (envfile.EnvFileError, OSError) as exc:
        raise StackError(f"cannot write {env_file}: {exc}") from None
    shown = display_path(env_file)
    return "\n".join([
        f"MLflow:     {public_url}",
        f"Experiment: {experiment} (id {experiment_id}, {action})",
        f"Env file:   {shown} ({'written' if changed else 'unchanged'})",
        f"Traces:     {cfg.traces_ui_url(public_url, experiment_id)}",
        "",
        "Next:",
        f"  source {shown} && goose session",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        print(run(args))
    except (StackError, envfile.EnvFileError) as exc:
        print(f"bootstrap: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
