#!/usr/bin/env python3
"""make backup: back up every MLflow database and every artifact into backups/goose-mlflow-<UTC time>.tar.

Runs in the stack's `migrate` service, which holds the stores' credentials
and mounts ./backups; what the archive holds, and how it is written, is
archive.py's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib import store
from lib.archive import DEFAULT_DIRECTORY, log, take_backup
from lib.errors import run_command
from lib.units import human_size


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Back up MLflow's databases and artifacts into one tar file.")
    parser.add_argument("--directory", type=Path, default=DEFAULT_DIRECTORY,
                        help="folder to write the backup into (default: %(default)s, ./backups on the host)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> str:
    with store.one_line_errors():
        path = take_backup(args.directory)
    log(f"{path.name}: {human_size(path.stat().st_size)}, mode 0600. Next: keep a copy off this machine; "
        f"restore with make restore FILE=backups/{path.name}")
    return f"backups/{path.name}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("backup", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
