#!/usr/bin/env python3
"""Create the goose-traces experiment and write the env file goose sources.

Runs as the stack's one-shot `bootstrap` service once MLflow is healthy, and
from the host with flags. In team mode it also manages per-person accounts:
`--user NAME` creates one (or keeps it) and writes that person's env file,
`--rotate` issues a new password, `--remove-user NAME` deletes it. It talks to
MLflow as $MLFLOW_TRACKING_USERNAME / $MLFLOW_TRACKING_PASSWORD when set (the
admin, in team mode). Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lib import accounts
from lib import envfile
from lib import stack_config as cfg
from lib.errors import StackError, run_command
from lib.mlflow_api import MlflowClient, ensure_experiment


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
    parser.add_argument("--env-file", type=Path, default=None,
                        help="env file to create or update (default: $GOOSE_ENV_FILE, else .env at the "
                             "repository root; with --user: USERS_DIR/NAME.env)")
    parser.add_argument("--no-env-file", action="store_true",
                        help="only create the experiment (team mode's server has no .env of its own)")
    team = parser.add_argument_group("team mode accounts (need admin credentials in "
                                     "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)")
    people = team.add_mutually_exclusive_group()
    people.add_argument("--user", metavar="NAME", help="create or keep this person's account and write their env file")
    people.add_argument("--remove-user", metavar="NAME", help="delete this person's account and their env file")
    team.add_argument("--rotate", action="store_true", help="with --user: issue a new password")
    team.add_argument("--prompts", choices=("on", "off"), default=None,
                      help="with --user: may register prompts and read the team's (on) or may not touch the "
                           "prompt registry (off: an account that only sends traces); default: a new account on, "
                           "an existing one as it is")
    team.add_argument("--users-dir", type=Path, default=Path(os.environ.get("GOOSE_USERS_DIR", cfg.DEFAULT_USERS_DIR)),
                      help="where per-person env files go (default: users/ at the repository root)")
    team.add_argument("--ca-file", default=os.environ.get("GOOSE_CA_FILE"),
                      help="path of the team's CA certificate ON THE PERSON'S MACHINE, written into their env "
                           "file for OTel SDKs and the MLflow client (default: $GOOSE_CA_FILE)")
    parser.add_argument("--timeout", type=float, default=cfg.DEFAULT_TIMEOUT_S,
                        help="seconds to wait for MLflow to become healthy (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.rotate and args.user is None:
        parser.error("--rotate goes with --user NAME")
    if args.prompts and args.user is None:
        parser.error("--prompts goes with --user NAME")
    return args


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


def display_path(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def user_env_file(args: argparse.Namespace, name: str) -> Path:
    """A person's env file: --env-file, else USERS_DIR/NAME.env; the name is checked first."""
    accounts.check_username(name)
    return (args.env_file or args.users_dir / f"{name}.env").absolute()


def write_env_file(env_file: Path, values: dict[str, str], mode: int) -> bool:
    existing = check_env_file(env_file)
    warn_about_user_lines(env_file, existing)
    text = envfile.merge(existing, values, remove=cfg.OWNED_REMOVED_KEYS)
    try:
        return envfile.write_atomic(env_file, text, mode=mode)
    except (StackError, OSError) as exc:
        raise StackError(f"cannot write {env_file}: {exc}") from None


def wait_for_mlflow(client: MlflowClient, timeout: float) -> None:
    print(f"bootstrap: waiting for MLflow at {client.base_url}", file=sys.stderr)
    client.wait_until_healthy(timeout)


def goose_experiment(client: MlflowClient, name: str, public_url: str) -> tuple[str, list[str]]:
    """The experiment's id, created or restored if need be, and the summary's first lines."""
    experiment_id, action = ensure_experiment(client, name)
    print(f"bootstrap: experiment {name!r} {action} (id {experiment_id})", file=sys.stderr)
    return experiment_id, [f"MLflow:     {public_url}", f"Experiment: {name} (id {experiment_id}, {action})"]


def pin(users_dir: Path, experiment: str, experiment_id: str) -> None:
    """Team mode: hold the experiment's name to the id the stack made it with (docs/security.md)."""
    accounts.prepare_users_dir(users_dir)
    state = accounts.pin_experiment(users_dir, experiment, experiment_id)
    print(f"bootstrap: experiment {experiment!r} id {experiment_id} {state} in {users_dir / accounts.PIN_FILE}",
          file=sys.stderr)


def local_env(client: MlflowClient, args: argparse.Namespace, public_url: str, experiment: str) -> str:
    """Local mode: the experiment and the developer's env file (team mode's server: the experiment only)."""
    env_file = None
    if not args.no_env_file:
        env_file = (args.env_file or Path(os.environ.get("GOOSE_ENV_FILE", cfg.DEFAULT_ENV_FILE))).absolute()
        check_env_file(env_file)  # before MLflow is touched: bad input changes nothing
    wait_for_mlflow(client, args.timeout)
    experiment_id, lines = goose_experiment(client, experiment, public_url)
    if env_file is None:  # team mode's server: pin the experiment people's env files will name
        pin(args.users_dir.absolute(), experiment, experiment_id)
        return "\n".join(lines)
    changed = write_env_file(env_file, cfg.goose_env(public_url, experiment_id), 0o644)
    shown = display_path(env_file)
    return "\n".join(lines + [
        f"Env file:   {shown} ({'written' if changed else 'unchanged'})",
        f"Traces:     {cfg.traces_ui_url(public_url, experiment_id)}",
        "",
        "Next:",
        f"  source {shown} && goose session",
    ])


def add_user(client: MlflowClient, args: argparse.Namespace, public_url: str, experiment: str) -> str:
    """Team mode: a person's account (created, kept or rotated) and their env file."""
    env_file = user_env_file(args, args.user)
    accounts.prepare_users_dir(env_file.parent)
    check_env_file(env_file)  # before MLflow is touched: bad input changes nothing
    wait_for_mlflow(client, args.timeout)
    experiment_id, lines = goose_experiment(client, experiment, public_url)
    pin(args.users_dir.absolute(), experiment, experiment_id)
    accounts.check_managed_by_the_stack(client, experiment, experiment_id)
    prompts = None if args.prompts is None else args.prompts == "on"
    password, account, prompts = accounts.ensure_account(client, client.base_url, args.user, experiment_id,
                                                         env_file, args.rotate, prompts)
    access = (f"may write to {experiment}, register prompts and read the team's" if prompts
              else f"may write to {experiment} only, no prompts")
    values = cfg.goose_env(public_url, experiment_id, auth=(args.user, password), ca_file=args.ca_file)
    changed = write_env_file(env_file, values, accounts.USER_FILE_MODE)
    shown = display_path(env_file)
    return "\n".join(lines + [
        f"Account:    {args.user} ({account}; {access})",
        f"Env file:   {shown} ({'written' if changed else 'unchanged'}; holds the password, mode 0600)",
        "",
        f"Give {shown} to {args.user}, privately. On their machine:",
        f"  source {env_file.name} && goose session",
    ])


def remove_user(client: MlflowClient, args: argparse.Namespace) -> str:
    """Team mode: delete a person's account and their env file."""
    env_file = user_env_file(args, args.remove_user)
    wait_for_mlflow(client, args.timeout)
    removed = accounts.remove_account(client, args.remove_user, env_file)
    return f"User {args.remove_user}: {removed}; {display_path(env_file)} removed"


def run(args: argparse.Namespace) -> str:
    """Check the settings, then do what the arguments ask; returns the summary for stdout."""
    public_url = cfg.check_url(args.public_url, "public URL")
    tracking_uri = cfg.check_url(args.tracking_uri or public_url, "tracking URI")
    experiment = cfg.check_experiment_name(args.experiment)
    client = MlflowClient(tracking_uri, headers=cfg.client_headers())
    if args.remove_user is not None:
        return remove_user(client, args)
    if args.user is not None:
        return add_user(client, args, public_url, experiment)
    return local_env(client, args, public_url, experiment)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("bootstrap", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
