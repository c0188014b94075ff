"""The stack's stores as its maintenance commands see them: MLflow's databases and the artifact bucket.

One place for what backup, restore, migrate and status need to know about
the stores: where they are (from the same settings the MLflow server reads,
so local, team and external mode look alike), each database's schema
revision against the one this image's MLflow expects, what they hold
(counts), and the bucket's objects. Runs in the stack's image, whose
entrypoint has turned the *_FILE secrets into PGPASSWORD and AWS_*.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import boto3
import psycopg2
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lib.errors import StackError

# Tables whose rows a backup counts and a restore must bring back, per database kind.
COUNTED_TABLES = {
    "tracking": {"experiments": "experiments", "runs": "runs", "traces": "trace_info", "spans": "spans",
                 "assessments": "assessments", "registered_models": "registered_models",
                 "model_versions": "model_versions", "logged_models": "logged_models"},
    "accounts": {"users": "users", "experiment_permissions": "experiment_permissions",
                 "registered_model_permissions": "registered_model_permissions"},
}


@contextmanager
def one_line_errors(where: str | None = None) -> Iterator[None]:
    """PostgreSQL's and the object store's errors inside, as one StackError line naming `where` (or the store)."""
    try:
        yield
    except psycopg2.Error as exc:
        raise StackError(f"{where or 'PostgreSQL'}: {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") \
            from None
    except (BotoCoreError, ClientError) as exc:
        raise StackError(f"{where or 'object store'}: {exc}") from None


# Experiment tags the tracking database refuses, for every account. MLflow 3.18.0's issue-detection
# dispatcher (a periodic task of the job runner, EVALUATION=on) runs detection with the model an
# experiment's schedule tag names, the team's gateway endpoint included, as the job runner's account; and
# any account that may edit an experiment (every teammate, on goose-traces) may set that tag
# (docs/security.md). Kept out by a trigger, which no request through MLflow can get around.
REFUSED_EXPERIMENT_TAGS = ("mlflow.issueDetection.schedule",)
GUARD = "goose_mlflow_refused_experiment_tag"


def started_judges(database: Database) -> list[dict]:
    """Judges started on an experiment (online scoring with a sampling rate above 0): they score new traces
    only while MLflow's job runner runs (EVALUATION=on)."""
    with closing(database.connect()) as connection, connection.cursor() as cursor:
        if not {"online_scoring_configs", "scorers", "experiments"} <= existing_tables(connection):
            return []
        cursor.execute("SELECT c.experiment_id, s.scorer_name FROM online_scoring_configs c "
                       "JOIN scorers s ON s.scorer_id = c.scorer_id "
                       "JOIN experiments e ON e.experiment_id = c.experiment_id "
                       "WHERE c.sample_rate > 0 AND e.lifecycle_stage = 'active' "
                       "ORDER BY c.experiment_id, s.scorer_name")
        return [{"experiment": str(row[0]), "name": row[1]} for row in cursor.fetchall()]


@dataclass(frozen=True)
class Database:
    """One of MLflow's databases: `kind` is tracking or accounts."""

    kind: str
    uri: str  # SQLAlchemy form, as MLflow reads it: postgresql+psycopg2://role@host:port/db?...

    @property
    def libpq_uri(self) -> str:
        """The URI pg_dump, pg_restore and psycopg2 take (the password comes from PGPASSWORD)."""
        return re.sub(r"^postgresql\+\w+://", "postgresql://", self.uri)

    @property
    def name(self) -> str:
        return urlsplit(self.uri).path.lstrip("/") or "postgres"

    @property
    def version_table(self) -> str:
        return "alembic_version" if self.kind == "tracking" else "alembic_version_auth"

    def connect(self) -> psycopg2.extensions.connection:
        try:
            return psycopg2.connect(self.libpq_uri)
        except psycopg2.OperationalError as exc:
            raise StackError(f"cannot connect to the {self.kind} database {self.name}: "
                             f"{str(exc).strip().splitlines()[0]}; is PostgreSQL up (make status)?") from None


def databases(environ: dict[str, str] | os._Environ = os.environ) -> list[Database]:
    """The tracking database and, in team mode, the accounts' database."""
    tracking = environ.get("MLFLOW_BACKEND_STORE_URI", "")
    if not tracking.startswith("postgresql"):
        raise StackError("MLFLOW_BACKEND_STORE_URI is not a PostgreSQL URI; run this in the stack's "
                         "migrate service (docker compose run --rm migrate ...)")
    found = [Database("tracking", tracking)]
    if environ.get("MLFLOW_AUTH_DATABASE_URI"):
        found.append(Database("accounts", environ["MLFLOW_AUTH_DATABASE_URI"]))
    return found


def existing_tables(connection: psycopg2.extensions.connection) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
        return {row[0] for row in cursor.fetchall()}


def schema_revision(database: Database, connection: psycopg2.extensions.connection | None = None) -> str | None:
    """The database's alembic revision, or None when MLflow has not created its schema there yet;
    in `connection`'s transaction when given."""
    if connection is None:
        with closing(database.connect()) as connection:
            return schema_revision(database, connection)
    if database.version_table not in existing_tables(connection):
        return None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT version_num FROM {database.version_table}")
        row = cursor.fetchone()
    return row[0] if row else None


def counts(database: Database, connection: psycopg2.extensions.connection | None = None) -> dict[str, int]:
    """Rows of each counted table that exists (an older schema may lack some); in `connection`'s
    transaction when given (a backup counts in the snapshot it dumps)."""
    if connection is None:
        with closing(database.connect()) as connection:
            return counts(database, connection)
    result = {}
    tables = existing_tables(connection)
    with connection.cursor() as cursor:
        for label, table in COUNTED_TABLES[database.kind].items():
            if table in tables:
                cursor.execute(f"SELECT count(*) FROM {table}")
                result[label] = cursor.fetchone()[0]
    return result


def traces_per_experiment(database: Database) -> list[tuple[str, str, int, int | None]]:
    """(experiment id, name, trace count, newest trace's start in ms or None), by experiment id."""
    with closing(database.connect()) as connection, connection.cursor() as cursor:
        if not {"experiments", "trace_info"} <= existing_tables(connection):
            return []
        cursor.execute("SELECT e.experiment_id, e.name, count(t.request_id), max(t.timestamp_ms) "
                       "FROM experiments e LEFT JOIN trace_info t ON t.experiment_id = e.experiment_id "
                       "WHERE e.lifecycle_stage = 'active' GROUP BY e.experiment_id, e.name "
                       "ORDER BY e.experiment_id")
        return [(str(row[0]), row[1], row[2], row[3]) for row in cursor.fetchall()]


@dataclass(frozen=True)
class Bucket:
    """Where MLflow keeps artifacts: a bucket and a key prefix (MLFLOW_ARTIFACTS_DESTINATION)."""

    name: str
    prefix: str  # "" or ending in "/"
    endpoint: str | None

    def client(self):
        return s3_client(self.endpoint)

    def objects(self) -> Iterator[tuple[str, int]]:
        """(key relative to the prefix, size) of every object under the prefix."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(self.prefix):], item["Size"]


def s3_client(endpoint: str | None):
    """boto3's S3 client for the stack's store: path-style (no bucket DNS), retried, region from the environment."""
    return boto3.client(
        "s3", endpoint_url=endpoint or None, region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))


def artifact_bucket(environ: dict[str, str] | os._Environ = os.environ) -> Bucket:
    destination = environ.get("MLFLOW_ARTIFACTS_DESTINATION", "")
    parts = urlsplit(destination)
    if parts.scheme != "s3" or not parts.netloc:
        raise StackError(f"MLFLOW_ARTIFACTS_DESTINATION={destination!r} is not s3://BUCKET[/PREFIX]; run this "
                         "in the stack's migrate service (docker compose run --rm migrate ...)")
    prefix = parts.path.strip("/")
    return Bucket(parts.netloc, f"{prefix}/" if prefix else "", environ.get("MLFLOW_S3_ENDPOINT_URL") or None)


def create_schema(database: Database) -> None:
    """A new tracking database gets the image's schema as MLflow's server would make it at start-up
    (mlflow.store.db.utils._initialize_tables: its tables, then its migrations up to the head)."""
    from mlflow.store.db.utils import _initialize_tables, create_sqlalchemy_engine_with_retry

    engine = create_sqlalchemy_engine_with_retry(database.uri)
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()


def refuse_experiment_tags(database: Database) -> None:
    """(Re)install the trigger that refuses REFUSED_EXPERIMENT_TAGS on experiments, in one transaction."""
    keys = ", ".join(f"'{key}'" for key in REFUSED_EXPERIMENT_TAGS)
    with closing(database.connect()) as connection, connection, connection.cursor() as cursor:
        cursor.execute(f"""
            CREATE OR REPLACE FUNCTION {GUARD}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'experiment tag % is refused by this stack: an issue-detection schedule would run on the team''s gateway model as the server (docs/security.md)', NEW.key;
            END $$;
            DROP TRIGGER IF EXISTS {GUARD} ON experiment_tags;
            CREATE TRIGGER {GUARD} BEFORE INSERT OR UPDATE ON experiment_tags
                FOR EACH ROW WHEN (NEW.key IN ({keys})) EXECUTE FUNCTION {GUARD}();""")


def image_head(database: Database) -> str:
    """The schema revision this image's MLflow expects of the database."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(database)).get_current_head()


def known_to_image(database: Database, revision: str) -> bool:
    """Whether this image's MLflow has `revision` in its migrations (if not, a newer MLflow wrote it)."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        return ScriptDirectory.from_config(alembic_config(database)).get_revision(revision) is not None
    except CommandError:
        return False


def alembic_config(database: Database):
    """MLflow's own alembic configuration of the database's kind (its migrations, its version table)."""
    if database.kind == "tracking":
        from mlflow.store.db.utils import _get_alembic_config
    else:
        from mlflow.server.auth.db.utils import _get_alembic_config
    return _get_alembic_config(database.uri)
