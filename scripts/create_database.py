#!/usr/bin/env python3
"""Create a PostgreSQL database for a role if it does not exist (idempotent).

Team mode's one-shot `auth-db` job: MLflow's basic-auth app keeps its users in
a database of its own, and a volume initialised in local mode does not have it
yet (initdb scripts run only on an empty data directory). Connects with libpq's
PG* variables (the image's entrypoint reads PGPASSWORD from PGPASSWORD_FILE).
"""

from __future__ import annotations

import argparse
import re
import sys
import time

import psycopg2
from psycopg2 import sql

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def ensure_database(name: str, owner: str, retries: int) -> str:
    """'created' or 'exists'."""
    for attempt in range(retries):
        try:
            connection = psycopg2.connect(dbname="postgres")
            break
        except psycopg2.OperationalError:
            if attempt == retries - 1:
                raise
            time.sleep(1)
    connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return "exists"
            cursor.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
            cursor.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)))
            return "created"
    finally:
        connection.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Create a PostgreSQL database owned by a role, if missing.")
    parser.add_argument("--name", required=True, help="database to create")
    parser.add_argument("--owner", required=True, help="role that owns it")
    parser.add_argument("--retries", type=int, default=30, help="connection attempts, 1 s apart (default: %(default)s)")
    args = parser.parse_args(argv)
    for value in (args.name, args.owner):
        if not _IDENTIFIER.match(value):
            print(f"create_database: error: {value!r} is not a plain identifier (a-z, 0-9, _)", file=sys.stderr)
            return 2
    try:
        state = ensure_database(args.name, args.owner, args.retries)
    except psycopg2.Error as exc:
        print(f"create_database: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    print(f"create_database: database {args.name} {state}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
