#!/usr/bin/env python3
"""The stack's compose files and mode, and its settings as Compose reads them (the shell's environment over .env).

The one owner of "which compose files, and is this team mode?": make (up.py
and the targets below), the doctor, status and the tests ask this module.
The team targets follow what the user set rather than a fixed list, and the
targets that act on a running stack (backup, restore, judge, ...) follow the
files its containers were started with:

  compose_settings.py compose-files [--team]   the files of COMPOSE_FILE (default compose.yaml),
                                       with compose.team.yaml after compose.yaml for --team
  compose_settings.py running-files            the files the running stack was started with (empty: none runs)
  compose_settings.py team-https-port          the port of MLFLOW_PUBLIC_URL (443 without one);
                                       a TEAM_HTTPS_PORT that disagrees is refused
  compose_settings.py setting NAME             NAME's value (empty when unset)

up.py's restore also asks it for the retention limit the running stack was
created with (a restore starts it again as it was).

Stdlib only: it runs before any venv exists.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from lib import envfile
from lib import stack_config as cfg
from lib.errors import StackError, run_command

BASE_FILE = "compose.yaml"
TEAM_FILE = "compose.team.yaml"
HTTPS_DEFAULT_PORT = 443
# The labels Compose puts on what it creates (engine.py and the tests' harness read them from here).
PROJECT_LABEL = "com.docker.compose.project"
PROJECT_DIR_LABEL = "com.docker.compose.project.working_dir"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"  # the files it was started with, comma-separated
SERVICE_LABEL = "com.docker.compose.service"
CONTAINER_NUMBER_LABEL = "com.docker.compose.container-number"


def read_settings(directory: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """`.env` of `directory` with the environment on top: Compose's own precedence."""
    settings = envfile.parse(envfile.read_text(directory / ".env"))
    settings.update(environ)
    return settings


def compose_files(settings: Mapping[str, str], team: bool = False) -> list[str]:
    """The files Compose would read; for team mode, compose.team.yaml right after compose.yaml.

    Right after, not last: compose.external.yaml overrides team mode's
    accounts database, so it has to come later.
    """
    separator = settings.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
    files = [name for name in (settings.get("COMPOSE_FILE") or BASE_FILE).split(separator) if name]
    if team and not any(Path(name).name == TEAM_FILE for name in files):
        bases = [index for index, name in enumerate(files) if Path(name).name == BASE_FILE]
        if not bases:
            raise StackError(f"COMPOSE_FILE={settings['COMPOSE_FILE']} does not name {BASE_FILE}; "
                             f"start it with {BASE_FILE}, e.g. COMPOSE_FILE={BASE_FILE}:{TEAM_FILE}")
        files.insert(bases[0] + 1, TEAM_FILE)
    return files


def is_team(files: list[str] | str) -> bool:
    """Team mode: compose.team.yaml among the files (a list, or the label's comma-separated text)."""
    names = files.split(",") if isinstance(files, str) else files
    return any(Path(name).name == TEAM_FILE for name in names)


def _container(compose: list[str], service: str, environ: Mapping[str, str]) -> str:
    """The id of the service's container in the checkout's project, running or exited ('' when none)."""
    result = subprocess.run([*compose, "ps", "--all", "--quiet", service], env=dict(environ), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return next(iter(result.stdout.split()), "")


def _inspect(container: str, template: str) -> str:
    return subprocess.run(["docker", "inspect", "--format", template, container], text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()


def running_files(compose: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """The compose files the running stack (its mlflow container) was started with; [] when none was."""
    container = _container(compose, "mlflow", environ)
    if not container:
        return []
    label = _inspect(container, f'{{{{index .Config.Labels "{CONFIG_FILES_LABEL}"}}}}')
    return [name for name in label.split(",") if name]


def running_retention_days(compose: list[str], settings: Mapping[str, str]) -> str:
    """TRACE_RETENTION_DAYS of the retention container as created, else the settings' (none created yet)."""
    container = _container(compose, "retention", settings)
    if not container:
        return settings.get("TRACE_RETENTION_DAYS", "")
    env = _inspect(container, "{{range .Config.Env}}{{println .}}{{end}}")
    return next((line.split("=", 1)[1] for line in env.splitlines()
                 if line.startswith("TRACE_RETENTION_DAYS=")), "")


def team_https_port(settings: Mapping[str, str]) -> int:
    """The port the proxy must listen on: the one teammates' URL names."""
    url = settings.get("MLFLOW_PUBLIC_URL") or ""
    if not url:
        raise StackError("team mode needs MLFLOW_PUBLIC_URL: add e.g. MLFLOW_PUBLIC_URL=https://mlflow.example.com "
                         "to .env (docs/team.md)")
    url = cfg.check_url(url, "MLFLOW_PUBLIC_URL")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "https":
        raise StackError(f"MLFLOW_PUBLIC_URL={url} is not https: team mode serves TLS only; "
                         f"write https://{parsed.netloc}")
    port = parsed.port or HTTPS_DEFAULT_PORT
    explicit = (settings.get("TEAM_HTTPS_PORT") or "").strip()
    if explicit and explicit != str(port):
        raise StackError(f"TEAM_HTTPS_PORT={explicit} disagrees with MLFLOW_PUBLIC_URL={url} (port {port}): "
                         f"remove TEAM_HTTPS_PORT (the URL's port is used) or make them equal")
    return port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Print a setting of the stack as Compose reads it (for make).")
    parser.add_argument("--directory", type=Path, default=Path.cwd(),
                        help="the checkout whose .env is read (default: the current directory)")
    parser.add_argument("--compose", default=os.environ.get("COMPOSE", "docker compose"),
                        help="the Compose command that finds the running stack (default: $COMPOSE, else %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    files = commands.add_parser("compose-files", help="the compose files, joined by ':'")
    files.add_argument("--team", action="store_true", help="with compose.team.yaml")
    commands.add_parser("running-files", help="the running stack's compose files as -f options (empty: none runs)")
    commands.add_parser("team-https-port", help="the port of MLFLOW_PUBLIC_URL, checked against TEAM_HTTPS_PORT")
    setting = commands.add_parser("setting", help="one setting's value (empty when unset)")
    setting.add_argument("name", help="e.g. TRACE_RETENTION_DAYS")
    return parser.parse_args(argv)


def answer(args: argparse.Namespace) -> str:
    settings = read_settings(args.directory)
    if args.command == "compose-files":
        return ":".join(compose_files(settings, team=args.team))
    if args.command == "setting":
        return settings.get(args.name, "")
    if args.command == "running-files":
        return " ".join(f"-f {shlex.quote(name)}" for name in running_files(shlex.split(args.compose), settings))
    return str(team_https_port(settings))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Named for what the user ran or set: these lines end up under a make target.
    return run_command("make team-up" if args.command == "team-https-port" else "COMPOSE_FILE", lambda: answer(args))


if __name__ == "__main__":
    sys.exit(main())
