#!/usr/bin/env python3
"""make up, make team-up and make restore: start the stack, wait, print the bootstrap's summary.

  up.py                 local mode (the compose files Compose reads itself: COMPOSE_FILE, else compose.yaml)
  up.py --team          team mode: compose.team.yaml after compose.yaml; the proxy on MLFLOW_PUBLIC_URL's port
  up.py --restart       the running stack again, in its mode, its containers as they were created
  up.py --restore FILE  make restore: the backup checked while everything runs, then MLflow stopped,
                        the stores replaced (scripts/restore.py in the migrate service) and the
                        stack started again as --restart does (its migrate job upgrades an older
                        backup), with the retention limit it was created with

Steps: the backups folder (made here, by the user, so that it is theirs, not
root's); the servers, waited for until healthy; what the migrate job did when
it did more than check; the bootstrap job, waited for by name (Compose 2.26's
--wait counts a finished one-shot job as a failure). Compose's progress goes
to stderr: in a terminal its live view, elsewhere (CI, a pipe, a log) its plain
lines, each with the seconds since the start.

Stdlib only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import compose_settings
from lib.errors import StackError, run_command

# The services waited for: mlflow (and the proxy in team mode), and retention, which exits on a bad
# TRACE_RETENTION_DAYS.
LOCAL_WAIT = ("mlflow", "retention")
TEAM_WAIT = ("proxy", "retention")


class Compose:
    """`docker compose` with the stack's files, run in the checkout."""

    def __init__(self, command: Sequence[str], files: Sequence[str], env: dict[str, str]) -> None:
        self.command = [*command, *(arg for name in files for arg in ("-f", name))]
        self.env = env

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], env=self.env, text=True, **kwargs)

    def output(self, *args: str) -> str:
        return self.run(*args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout

    def container(self, service: str) -> str:
        """The id of the service's container, running or exited ('' when there is none)."""
        return next(iter(self.output("ps", "--all", "--quiet", service).split()), "")


def docker_logs(container: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "logs", container], text=True, **kwargs)


def with_seconds(line: str, seconds: float) -> str:
    """A Compose progress line with the seconds since make up began: '[ 24s] Container ... Healthy'."""
    return f"[{int(seconds):3d}s] {line}"


def failed_jobs(ps_lines: str) -> list[str]:
    """The services of `compose ps --format '{{.Service}}:{{.ExitCode}}'` lines that exited non-zero."""
    services = []
    for line in ps_lines.splitlines():
        name, _, code = line.strip().rpartition(":")
        if name and code.strip() not in ("", "0"):
            services.append(name)
    return services


def make_backups_folder(directory: Path) -> None:
    (directory / "backups").mkdir(mode=0o700, exist_ok=True)


def start_servers(compose: Compose, wait_for: Sequence[str], flags: Sequence[str]) -> int:
    """compose up --wait for the servers; Compose's progress on stderr, timed when not a terminal."""
    command = ["up", "--detach", "--build", "--wait", *flags, *wait_for]
    if sys.stderr.isatty():
        return compose.run(*command).returncode
    start = time.monotonic()
    with subprocess.Popen([*compose.command, *command], env=compose.env, text=True, stderr=subprocess.PIPE) as process:
        for line in process.stderr:
            print(with_seconds(line.rstrip("\n"), time.monotonic() - start), file=sys.stderr, flush=True)
    return process.returncode


def report_failed_jobs(compose: Compose) -> None:
    """Each job that exited non-zero, with the last line it logged."""
    for service in failed_jobs(compose.output("ps", "--all", "--status", "exited", "--format",
                                              "{{.Service}}:{{.ExitCode}}")):
        print(f"make up: {service} failed:", file=sys.stderr)
        logs = docker_logs(compose.container(service), stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
        print("\n".join(logs.splitlines()[-1:]), file=sys.stderr)


def show_migration(compose: Compose) -> None:
    """What the migrate job did, when it did more than check (an upgrade, after a backup)."""
    logs = docker_logs(compose.container("migrate"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
    for line in logs.splitlines():
        if line.startswith("migrate: upgraded"):
            print(line, flush=True)


def run_bootstrap(compose: Compose) -> int:
    """The bootstrap job, run again; its summary on stdout, or all it said on stderr when it failed."""
    compose.run("up", "--detach", "--no-deps", "--force-recreate", "bootstrap",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = compose.run("wait", "bootstrap", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    container = compose.container("bootstrap")
    if status == 0:
        docker_logs(container, stderr=subprocess.DEVNULL)
    else:
        docker_logs(container, stdout=sys.stderr)
        print(f"make up: the bootstrap failed (exit {status}); see above", file=sys.stderr)
    return status


def backup_file(value: str) -> Path:
    """The backup make restore was given, checked before anything runs."""
    if not value:
        raise StackError("say which backup: make restore FILE=backups/goose-mlflow-....tar")
    if not Path(value).is_file():
        raise StackError(f"{value} is not a file; make backup writes them into backups/")
    return Path(value).resolve()


def restore_run(backup: Path, flags: Sequence[str], check: bool) -> list[str]:
    """`compose run` of restore.py in the migrate service, the backup mounted read-only."""
    inside = f"/restore/{backup.name}"
    return ["run", "--rm", "--no-deps", "--volume", f"{backup}:{inside}:ro", "migrate",
            "python3", "scripts/restore.py", *(["--check"] if check else []), *flags, inside]


def restore_flags(args: argparse.Namespace, retention_days: str) -> list[str]:
    """FORCE and PRUNE, and the limit the stack starts again with (restore.py counts what it would delete)."""
    return [*(["--force"] if args.force else []), *(["--prune"] if args.prune else []),
            "--retention-days", retention_days]


def servers_to_stop(files: Sequence[str]) -> list[str]:
    """What must not write while the stores are replaced: MLflow, retention, and team mode's proxy."""
    return [*(["proxy"] if compose_settings.is_team(list(files)) else []), "retention", "mlflow"]


def restore(args: argparse.Namespace) -> int:
    backup = backup_file(args.restore)
    env = dict(os.environ)
    command = shlex.split(args.compose)
    settings = compose_settings.read_settings(args.directory, env)
    files = compose_settings.running_files(command, settings)
    compose = Compose(command, files, env)
    flags = restore_flags(args, compose_settings.running_retention_days(command, settings))
    status = compose.run(*restore_run(backup, flags, check=True)).returncode
    if status != 0:
        return status
    compose.run("stop", *servers_to_stop(files))
    if compose.run(*restore_run(backup, flags, check=False)).returncode != 0:
        # restore.py changes nothing when it fails (one transaction): the stack comes back as it was.
        print("make restore: failed (see above); starting the stack again", file=sys.stderr)
        compose.run("up", "--detach", "--wait", "--no-recreate", *wait_list(files),
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return 1
    return up(argparse.Namespace(**{**vars(args), "restart": True}))


def wait_list(files: Sequence[str]) -> tuple[str, ...]:
    """The services to wait for in the mode these compose files start."""
    return TEAM_WAIT if compose_settings.is_team(list(files)) else LOCAL_WAIT


def plan(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], tuple[str, ...], list[str]]:
    """(compose files, services to wait for, extra flags) for the mode asked; may set TEAM_HTTPS_PORT."""
    if args.restart:
        files = compose_settings.running_files(shlex.split(args.compose), env)
        return files, wait_list(files), ["--no-recreate"]
    if args.team:
        settings = compose_settings.read_settings(args.directory, env)
        env["TEAM_HTTPS_PORT"] = str(compose_settings.team_https_port(settings))
        return compose_settings.compose_files(settings, team=True), TEAM_WAIT, []
    return [], LOCAL_WAIT, []


def up(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    files, wait_for, flags = plan(args, env)
    compose = Compose(shlex.split(args.compose), files, env)
    make_backups_folder(args.directory)
    status = start_servers(compose, wait_for, flags)
    if status != 0:
        report_failed_jobs(compose)
        return status
    show_migration(compose)
    return run_bootstrap(compose)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Start the stack, wait until it is healthy, print the "
                                                 "bootstrap's summary (make up, make team-up).")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--team", action="store_true", help="team mode: the TLS proxy and accounts (docs/team.md)")
    mode.add_argument("--restart", action="store_true",
                      help="the running stack again, in its mode, without recreating its containers")
    mode.add_argument("--restore", metavar="FILE",
                      help="make restore: restore this backup into the running stack, then start it again")
    parser.add_argument("--force", action="store_true", help="with --restore: replace a stack that holds data")
    parser.add_argument("--prune", action="store_true",
                        help="with --restore: let the retention limit delete the backup's older traces")
    parser.add_argument("--compose", default=os.environ.get("COMPOSE", "docker compose"),
                        help="the Compose command (default: $COMPOSE, else %(default)s)")
    parser.add_argument("--directory", type=Path, default=Path.cwd(), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    status: list[int] = []
    name = "make team-up" if args.team else "make restore" if args.restore is not None else "make up"
    code = run_command(name, lambda: status.append(restore(args) if args.restore is not None else up(args)))
    return code or status[0]


if __name__ == "__main__":
    sys.exit(main())
