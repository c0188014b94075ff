#!/usr/bin/env python3
"""Create MLflow's PostgreSQL role and databases if they are missing (idempotent).

The one-shot `database` job, run on every `up` once PostgreSQL is healthy: as
the superuser, it makes the role MLflow connects as (so MLflow never holds the
superuser password) and each database MLflow uses, owned by that role and
closed to everyone else: `mlflow` for tracking and, in team mode, `mlflow_auth`
for accounts. What exists is left as it is, so a volume made by an older
release, or by local mode before team mode, gets only what it lacks. Connects
with libpq's PG* variables; the image's entrypoint reads PGPASSWORD and
MLFLOW_DB_PASSWORD from their *_FILE. Never prints a password.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from lib.errors import StackError, run_command
from lib.store import one_line_errors

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.match(value):
        raise StackError(f"{what} {value!r} is not a plain identifier; use a-z, 0-9 and _ (at most 63)")
    return value


def connect(retries: int) -> psycopg2.extensions.connection:
    for attempt in range(retries):
        try:
            connection = psycopg2.connect(dbname="postgres")
            connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
            return connection
        except psycopg2.OperationalError:
            if attempt == retries - 1:
                raise
            time.sleep(1)
    raise StackError("no connection attempt was made; give --retries 1 or more")


def ensure_role(cursor: Cursor, role: str, password: str) -> str:
    """'created' or 'exists'; an existing role keeps the password it has."""
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    if cursor.fetchone():
        return "exists"
    if not password:
        raise StackError(f"role {role} is missing and MLFLOW_DB_PASSWORD is empty; mount the secrets volume")
    cursor.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(role)), (password,))
    return "created"


def ensure_database(cursor: Cursor, name: str, owner: str) -> str:
    """'created' or 'exists'."""
    cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if cursor.fetchone():
        return "exists"
    cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
    cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
    return "created"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Create MLflow's PostgreSQL role and databases if missing.")
    parser.add_argument("--role", default=os.environ.get("MLFLOW_DB_USER", "mlflow"),
                        help="role MLflow connects as, owner of the databases (default: $MLFLOW_DB_USER, else mlflow)")
    parser.add_argument("--databases", default=os.environ.get("MLFLOW_DATABASES", "mlflow"),
                        help="comma-separated databases to create (default: $MLFLOW_DATABASES, else mlflow)")
    parser.add_argument("--retries", type=int, default=30, help="connection attempts, 1 s apart (default: %(default)s)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    role = check_identifier(args.role, "role")
    databases = [check_identifier(name.strip(), "database") for name in args.databases.split(",") if name.strip()]
    with one_line_errors():
        connection = connect(args.retries)
        try:
            with connection.cursor() as cursor:
                state = ensure_role(cursor, role, os.environ.get("MLFLOW_DB_PASSWORD", ""))
                print(f"database: role {role} {state}", file=sys.stderr)
                for name in databases:
                    print(f"database: database {name} {ensure_database(cursor, name, role)}", file=sys.stderr)
        finally:
            connection.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("database", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
