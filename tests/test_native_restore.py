"""scripts/restore.py against the native stack (real PostgreSQL, pg_dump/pg_restore, MLflow, S3 stand-in):
what it checks before it changes anything. Only --check runs here, which touches no store."""

from __future__ import annotations

import subprocess
import time
import uuid
from contextlib import closing

import psycopg2
import pytest

from lib import otlp
from lib import stack_config as cfg
from lib.mlflow_api import MlflowClient


def send_aged(url: str, experiment_id: str, days_ago: float) -> None:
    spans = otlp.goose_session(f"restore-{uuid.uuid4().hex[:6]}", now_ns=time.time_ns() - int(days_ago * cfg.DAY_MS * 10**6))
    status, _ = otlp.export(url + "/v1/traces", otlp.encode_export_request(spans, {"service.name": "goose"}),
                            {"x-mlflow-experiment-id": experiment_id})
    assert status == 200


@pytest.fixture(scope="module")
def backup(native_stack, tmp_path_factory):
    """A backup of the native stack holding traces from 40, 20 and 2 days ago; with how many traces it holds
    and how many of them started more than 30 days ago."""
    experiment = MlflowClient(native_stack.mlflow_url).create_experiment(f"restore-{uuid.uuid4().hex[:6]}")
    for days in (40, 20, 2):
        send_aged(native_stack.mlflow_url, experiment, days)
    directory = tmp_path_factory.mktemp("backups")
    taken = in_migrate(native_stack, "scripts/backup.py", "--directory", str(directory))
    assert taken.returncode == 0, taken.stderr
    connection = psycopg2.connect(native_stack.database_uri("mlflow", native_stack.secret("mlflow-db-password"),
                                                            "mlflow"))
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(*) FILTER (WHERE timestamp_ms <= %s) FROM trace_info",
                       (int(time.time() * 1000) - 30 * cfg.DAY_MS,))
        total, older = cursor.fetchone()
    connection.close()
    return directory / taken.stdout.strip().rsplit("/", 1)[-1], total, older


def in_migrate(native_stack, *command: str):
    return native_stack.run_job("migrate", command=["python3", *command])


def check(native_stack, archive, *flags: str):
    return in_migrate(native_stack, "scripts/restore.py", "--check", "--force", *flags, str(archive))


def test_a_limit_that_would_delete_backed_up_traces_is_refused_saying_how_many(native_stack, backup):
    archive, total, older = backup
    result = check(native_stack, archive, "--retention-days", "30")
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"restore: error: TRACE_RETENTION_DAYS=30 deletes {older:,} of this backup's {total:,} "
                           "traces (those started before ")
    assert line.endswith("as soon as the stack starts again. To keep them, remove TRACE_RETENTION_DAYS from .env (or "
                         "raise it) and run make up, then restore; to restore and let them go, add PRUNE=1")


def test_prune_lets_the_restore_go_ahead_and_says_what_will_go(native_stack, backup):
    archive, total, older = backup
    result = check(native_stack, archive, "--retention-days", "30", "--prune")
    assert result.returncode == 0, result.stderr
    assert f"restore: TRACE_RETENTION_DAYS=30 deletes {older:,} of this backup's {total:,} traces" in result.stderr
    assert "(PRUNE=1)" in result.stderr


def test_a_limit_that_deletes_none_of_the_backup_goes_ahead_without_a_word(native_stack, backup):
    archive, _, _ = backup
    result = check(native_stack, archive, "--retention-days", "36500")
    assert result.returncode == 0, result.stderr
    assert "TRACE_RETENTION_DAYS" not in result.stderr


def test_no_limit_goes_ahead(native_stack, backup):
    archive, _, _ = backup
    result = check(native_stack, archive, "--retention-days", "")
    assert result.returncode == 0 and "TRACE_RETENTION_DAYS" not in result.stderr, result.stderr


def test_a_limit_that_is_not_a_number_of_days_is_refused_before_anything(native_stack, backup):
    archive, _, _ = backup
    result = check(native_stack, archive, "--retention-days", "30d")
    assert result.returncode == 1
    assert "TRACE_RETENTION_DAYS='30d' is not a whole number of days" in result.stderr


# What restore.py checks and does inside, against a database of its own beside the native stack's.

@pytest.fixture
def fresh(native_stack, monkeypatch):
    """A new tracking database owned by MLflow's role, with MLflow's schema and its Default experiment and
    the bootstrap's (as after a first `make up`), and an empty bucket: (database, bucket)."""
    import boto3

    from lib import store
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    name = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(native_stack.database_uri("postgres", native_stack.secret("postgres-password"),
                                                       "postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} OWNER mlflow")
    uri = native_stack.database_uri("mlflow", native_stack.secret("mlflow-db-password"), name)
    database = store.Database("tracking", uri.replace("postgresql://", "postgresql+psycopg2://"))
    SqlAlchemyStore(database.uri, "s3://unused").create_experiment("goose-traces")
    s3 = boto3.client("s3", endpoint_url=native_stack.s3_url, region_name="us-east-1",
                      aws_access_key_id=native_stack.secret("minio-root-user"),
                      aws_secret_access_key=native_stack.secret("minio-root-password"))
    s3.create_bucket(Bucket=name.replace("_", "-"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", native_stack.secret("minio-root-user"))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", native_stack.secret("minio-root-password"))
    yield database, store.Bucket(name.replace("_", "-"), "", native_stack.s3_url)
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE {name} WITH (FORCE)")
    admin.close()


def test_a_stack_as_make_up_leaves_it_counts_as_empty(fresh):
    import restore

    database, bucket = fresh
    assert restore.held_data([database], bucket) == []


def test_one_experiment_more_than_a_fresh_stack_counts_as_data(fresh):
    import restore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    database, bucket = fresh
    SqlAlchemyStore(database.uri, "s3://unused").create_experiment("someone's")
    assert restore.held_data([database], bucket) == ["1 experiments besides Default and the bootstrap's"]


def test_a_restore_that_fails_midway_leaves_no_half_database(native_stack, fresh, tmp_path):
    """A dump whose last step fails: its tables and rows are restored, then a foreign key they break is
    refused. One transaction, so nothing of it is left."""
    import restore
    from lib import store
    from lib.errors import StackError

    database, _ = fresh
    name = f"broken_{uuid.uuid4().hex[:8]}"
    superuser = native_stack.secret("postgres-password")
    with closing(psycopg2.connect(native_stack.database_uri("postgres", superuser, "postgres"))) as admin:
        admin.autocommit = True
        admin.cursor().execute(f"CREATE DATABASE {name}")
    with closing(psycopg2.connect(native_stack.database_uri("postgres", superuser, name))) as broken, \
            broken, broken.cursor() as cursor:
        # Replica mode skips foreign-key checks: rows no consistent database holds.
        cursor.execute("CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (parent_id int REFERENCES "
                       "parent); SET session_replication_role = replica; INSERT INTO child VALUES (42)")
    dump = tmp_path / "tracking.dump"
    subprocess.run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges", f"--file={dump}",
                    f"--dbname={native_stack.database_uri('postgres', superuser, name)}"], check=True)
    with pytest.raises(StackError, match="pg_restore of the tracking database failed.*foreign key"):
        restore.restore_database(database, dump)
    with closing(database.connect()) as connection:
        assert store.existing_tables(connection) == set()


def test_counts_that_differ_from_the_manifest_fail_the_restore(fresh):
    import restore
    from lib import store
    from lib.errors import StackError

    database, _ = fresh
    manifest = {"databases": {"tracking": {"counts": {**store.counts(database), "traces": 3}}},
                "artifacts": {"objects": 0}}
    with pytest.raises(StackError, match="holds other counts than the backup"):
        restore.check_counts(manifest, [database], 0)
