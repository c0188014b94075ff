#!/usr/bin/env python3
"""Generate the stack's credentials once and keep them; import external ones.

Runs as the one-shot `credentials` service on every `up`: a generated file that
exists is never rewritten, so PostgreSQL and MinIO keep accepting the
credentials they were initialised with. With --import-from (external services,
compose.external.yaml), the credentials of a managed database and bucket are
copied in from a folder only root may read, refreshed on every run so that a
rotated password takes effect. Prints only names, never values.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from lib import envfile
from lib.errors import StackError, run_command

# name -> random bytes (token_urlsafe gives [A-Za-z0-9_-], safe in URIs and env files).
SECRETS = {
    "postgres-password": 24,      # PostgreSQL superuser
    "mlflow-db-password": 24,     # PostgreSQL role MLflow connects as
    "minio-root-user": 12,        # MinIO root access key (MinIO wants >= 3 chars)
    "minio-root-password": 24,    # MinIO root secret key (MinIO wants >= 8 chars)
    "mlflow-admin-password": 24,  # MLflow basic-auth admin, team mode (MLflow wants >= 12 chars)
    "mlflow-secret-key": 32,      # MLflow's Flask secret key (sessions, CSRF), team mode
    "mlflow-kek-passphrase": 32,  # encrypts the AI Gateway's stored provider keys
}
# Credentials of external services, copied in by --import-from when present.
IMPORTED = ("external-db-password", "external-s3-access-key-id", "external-s3-secret-access-key")
# Readable by every container of the stack that mounts the volume (they run as
# different users: postgres, root in MinIO, the mlflow user); only the secrets
# service mounts it writable, and on the host the volume is root's alone.
FILE_MODE = 0o444


def ensure_secret(directory: Path, name: str, nbytes: int) -> bool:
    """Create directory/name with a random value unless it exists; True when created."""
    path = directory / name
    if path.exists():
        if not path.read_text().strip():
            raise StackError(f"{path} is empty; delete it only if the stack's volumes are new")
        return False
    envfile.write_atomic(path, secrets.token_urlsafe(nbytes), mode=FILE_MODE)
    return True


def import_secret(directory: Path, source: Path) -> str:
    """Copy `source` into directory/<its name>; 'imported', 'unchanged' or raises on an empty file."""
    value = source.read_text().strip()
    if not value:
        raise StackError(f"{source} is empty; write the credential into it")
    changed = envfile.write_atomic(directory / source.name, value, mode=FILE_MODE)
    return "imported" if changed else "unchanged"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Create the stack's random credentials if they do not exist yet.")
    parser.add_argument("directory", type=Path, help="where the secret files live (the secrets volume)")
    parser.add_argument("--import-from", type=Path, metavar="DIR",
                        help=f"also copy these files from DIR when present: {', '.join(IMPORTED)}")
    return parser.parse_args(argv)


def generate_missing(directory: Path) -> None:
    if not directory.is_dir():
        raise StackError(f"{directory} is not a directory; mount the secrets volume there")
    for name, nbytes in SECRETS.items():
        created = ensure_secret(directory, name, nbytes)
        print(f"credentials: {name}: {'generated' if created else 'kept'}", file=sys.stderr)


def import_external(directory: Path, source: Path) -> None:
    if not source.is_dir():
        raise StackError(f"{source} is not a directory; create it with the external credentials (docs/external.md)")
    for name in IMPORTED:
        if (source / name).is_file():
            print(f"credentials: {name}: {import_secret(directory, source / name)}", file=sys.stderr)


def run(args: argparse.Namespace) -> None:
    generate_missing(args.directory)
    if args.import_from is not None:
        import_external(args.directory, args.import_from)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("credentials", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
