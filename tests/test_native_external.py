"""External services, natively: MLflow on a "managed" PostgreSQL database and S3 bucket.

The managed side is a separate role, database and bucket on the native
servers, reachable only with credentials the credentials job imports, exactly as
compose.external.yaml wires them; the bundled database and bucket stay unused.
"""

from __future__ import annotations

import urllib.request
import uuid

import boto3
import psycopg2
import pytest

from harness.commands import run_script, source_and_emit
from harness.compose_file import SECRETS_IN_CONTAINER, load_compose
from harness.native import free_port, stop_processes
from lib.mlflow_api import MlflowClient

ROLE, DATABASE, BUCKET, PREFIX = "managed", "managed_mlflow", "managed-bucket", "goose"


@pytest.fixture(scope="module")
def external(native_stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("external")
    password = uuid.uuid4().hex
    admin = psycopg2.connect(native_stack.database_uri("postgres", native_stack.secret("postgres-password"), "postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {ROLE} LOGIN PASSWORD %s", (password,))
        cursor.execute(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
    admin.close()
    s3 = boto3.client("s3", endpoint_url=native_stack.s3_url, region_name="us-east-1",
                      aws_access_key_id=native_stack.secret("minio-root-user"),
                      aws_secret_access_key=native_stack.secret("minio-root-password"))
    s3.create_bucket(Bucket=BUCKET)

    provided = root / "external-secrets"
    provided.mkdir(mode=0o700)
    (provided / "external-db-password").write_text(password + "\n")
    (provided / "external-s3-access-key-id").write_text(native_stack.secret("minio-root-user"))
    (provided / "external-s3-secret-access-key").write_text(native_stack.secret("minio-root-password"))
    for path in provided.iterdir():
        path.chmod(0o600)
    secrets = root / "secrets"
    secrets.mkdir()

    port = free_port()
    compose = load_compose({
        "MLFLOW_PORT": str(port),
        "EXTERNAL_DATABASE_URI": f"postgresql+psycopg2://{ROLE}@127.0.0.1:{native_stack.postgres.port}/{DATABASE}",
        "EXTERNAL_ARTIFACTS_DESTINATION": f"s3://{BUCKET}/{PREFIX}",
        "EXTERNAL_S3_ENDPOINT_URL": native_stack.s3_url}, external=True)
    replacements = {SECRETS_IN_CONTAINER: str(secrets), "/run/external": str(provided)}
    imported = native_stack.run_job("credentials", compose=compose, replacements=replacements)
    assert imported.returncode == 0, imported.stderr
    log = imported.stderr
    server, url = native_stack.start_mlflow(compose, replacements, port, "mlflow-external.log")
    try:
        yield {"url": url, "password": password, "s3": s3, "compose": compose, "secrets": secrets, "log": log,
               "replacements": replacements}
    finally:
        stop_processes([server])


def managed_db(native_stack, password: str):
    connection = psycopg2.connect(native_stack.database_uri(ROLE, password, DATABASE))
    connection.autocommit = True
    return connection


def test_bundled_services_are_switched_off(external):
    assert sorted(external["compose"]["services"]) == ["bootstrap", "credentials", "migrate", "mlflow", "retention"]


def test_external_credentials_are_imported_readable_and_not_printed(external):
    assert (external["secrets"] / "external-db-password").read_text() == external["password"]
    assert (external["secrets"] / "external-db-password").stat().st_mode & 0o777 == 0o444
    assert external["password"] not in external["log"] and "external-db-password: imported" in external["log"]


def test_experiments_live_in_the_managed_database(native_stack, external, tmp_path):
    result = run_script("bootstrap.py", "--tracking-uri", external["url"], "--experiment", "external-goose",
                              "--env-file", str(tmp_path / ".env"))
    assert result.returncode == 0, result.stderr
    with managed_db(native_stack, external["password"]).cursor() as cursor:
        cursor.execute("SELECT count(*) FROM experiments WHERE name = 'external-goose'")
        assert cursor.fetchone() == (1,)
    bundled = psycopg2.connect(native_stack.database_uri("mlflow", native_stack.secret("mlflow-db-password"), "mlflow"))
    with bundled.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM experiments WHERE name = 'external-goose'")
        assert cursor.fetchone() == (0,)
    bundled.close()


def test_traces_from_the_env_file_land_in_the_managed_database(native_stack, external, tmp_path):
    env_file = tmp_path / ".env"
    assert run_script("bootstrap.py", "--tracking-uri", external["url"], "--public-url", external["url"],
                            "--env-file", str(env_file)).returncode == 0
    trace_id = source_and_emit(env_file, f"external-{uuid.uuid4().hex[:6]}")
    with managed_db(native_stack, external["password"]).cursor() as cursor:
        cursor.execute("SELECT count(*) FROM spans WHERE trace_id = %s", (trace_id,))
        assert cursor.fetchone() == (3,)


def test_artifacts_land_in_the_managed_bucket_under_its_prefix(external, tmp_path):
    client = MlflowClient(external["url"])
    experiment_id = client.create_experiment(f"external-artifacts-{uuid.uuid4().hex[:6]}")
    run_id = client.create_run(experiment_id)
    artifact_path = f"{experiment_id}/{run_id}/artifacts/note.txt"
    request = urllib.request.Request(
        f"{external['url']}/api/2.0/mlflow-artifacts/artifacts/{artifact_path}", data=b"managed", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    keys = [obj["Key"] for obj in external["s3"].list_objects_v2(Bucket=BUCKET).get("Contents", [])]
    assert f"{PREFIX}/{artifact_path}" in keys


def test_backup_and_restore_take_the_managed_database_and_only_the_bucket_prefix(native_stack, external, tmp_path):
    """make backup and make restore run in the migrate service, which external mode points at the managed stores."""
    external["s3"].put_object(Bucket=BUCKET, Key=f"{PREFIX}/9/run/artifacts/kept.txt", Body=b"managed artifact")
    external["s3"].put_object(Bucket=BUCKET, Key="outside-the-prefix.txt", Body=b"not the stack's")

    def in_migrate(*command: str):
        return native_stack.run_job("migrate", compose=external["compose"], replacements=external["replacements"],
                                    command=["python3", *command])

    taken = in_migrate("scripts/backup.py", "--directory", str(tmp_path))
    assert taken.returncode == 0, taken.stderr
    archive = tmp_path / taken.stdout.strip().rsplit("/", 1)[-1]
    import tarfile
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"databases/tracking.dump", "artifacts/9/run/artifacts/kept.txt", "manifest.json"} <= names
    assert not any("outside-the-prefix" in name for name in names)

    external["s3"].delete_object(Bucket=BUCKET, Key=f"{PREFIX}/9/run/artifacts/kept.txt")
    restored = in_migrate("scripts/restore.py", "--force", str(archive))
    assert restored.returncode == 0, restored.stderr
    assert restored.stdout.startswith(f"Restored {archive.name}:")
    body = external["s3"].get_object(Bucket=BUCKET, Key=f"{PREFIX}/9/run/artifacts/kept.txt")["Body"].read()
    assert body == b"managed artifact"
    assert external["s3"].get_object(Bucket=BUCKET, Key="outside-the-prefix.txt")["Body"].read() == b"not the stack's"
