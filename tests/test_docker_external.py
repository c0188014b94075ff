"""docs/external.md as written, under a real Docker engine.

A managed PostgreSQL 17 (TLS on, an admin that is not a superuser, as on RDS)
and an S3 store run as a Compose project of their own (harness/
external-services.yaml), reached at the Docker bridge's address as a managed
service is reached over the network. The guide's blocks are read from the
page and run as written, with names, hosts and passwords filled in.
"""

from __future__ import annotations

import secrets
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
import pytest

from harness import guide
from harness.commands import populate, source_and_emit
from harness.compose_file import REPO, load_compose
from harness.native import free_port
from harness.project import ComposeProject, bridge_address, clean_copy, require_engine

pytestmark = pytest.mark.docker

GUIDE = "docs/external.md"
SERVICES_FILE = REPO / "harness" / "external-services.yaml"
BUCKET = "acme-goose-traces"
ADMIN = "rds_admin"  # CREATEROLE and CREATEDB, not a superuser: RDS's master user
BUNDLED = ("postgres", "minio", "database", "bucket")


@dataclass
class ManagedServices:
    """The managed PostgreSQL and S3, and how the test (as their admin) reaches them."""

    name: str
    env: dict[str, str]
    host: str
    pg_port: int
    s3_port: int

    def compose(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(["docker", "compose", "-p", self.name, "-f", str(SERVICES_FILE), *args],
                                input=stdin, capture_output=True, text=True, env=self.env, timeout=600)
        assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def psql(self, sql: str, user: str = "postgres", database: str = "postgres") -> str:
        """SQL as `user` over TCP (the superuser: over the socket), stopping at the first error."""
        login = ["-h", "127.0.0.1", "-U", user] if user != "postgres" else ["-U", user]
        return self.compose("exec", "-T", "-e", f"PGPASSWORD={self.env['ADMIN_PASSWORD']}", "managed-postgres",
                            "psql", *login, "-d", database, "-v", "ON_ERROR_STOP=1", "-At", stdin=sql).strip()

    @property
    def s3(self):
        return boto3.client("s3", endpoint_url=f"http://{self.host}:{self.s3_port}", region_name="eu-west-1",
                            aws_access_key_id=self.env["S3_ACCESS_KEY"],
                            aws_secret_access_key=self.env["S3_SECRET_KEY"])


@pytest.fixture(scope="module")
def managed() -> Iterator[ManagedServices]:
    require_engine()
    stack = load_compose({"MLFLOW_PUBLIC_URL": "https://localhost"})["services"]
    host = bridge_address()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "EXTERNAL_BIND": host,
           "POSTGRES_IMAGE": stack["postgres"]["image"], "MINIO_IMAGE": stack["minio"]["image"],
           "SUPERUSER_PASSWORD": secrets.token_hex(16), "ADMIN_PASSWORD": secrets.token_hex(16),
           "S3_ACCESS_KEY": "AKIA" + secrets.token_hex(8).upper(), "S3_SECRET_KEY": secrets.token_hex(20)}
    services = ManagedServices(f"goose-mlflow-managed-{uuid.uuid4().hex[:6]}", env, host, 0, 0)
    try:
        services.compose("up", "--detach", "--wait")
        services.pg_port = int(services.compose("port", "managed-postgres", "5432").rsplit(":", 1)[1])
        services.s3_port = int(services.compose("port", "managed-s3", "9000").rsplit(":", 1)[1])
        services.psql(f"CREATE ROLE {ADMIN} LOGIN PASSWORD '{env['ADMIN_PASSWORD']}' CREATEROLE CREATEDB")
        services.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
        yield services
    finally:
        services.compose("down", "--volumes")


@pytest.fixture(scope="module")
def deployment(managed: ManagedServices, tmp_path_factory) -> Iterator[ComposeProject]:
    # Only what the guide leaves to the reader's network: the proxy's HTTP port and address.
    project = ComposeProject(clean_copy(tmp_path_factory.mktemp("external")),
                             {"TEAM_HTTP_PORT": str(free_port()), "TEAM_BIND_ADDRESS": "127.0.0.1"})
    url = f"https://localhost:{free_port()}"
    db_password = secrets.token_hex(16)
    try:
        managed.psql(guide.filled(guide.block(GUIDE, "sql", "CREATE ROLE goose_mlflow"),
                                  {"<a long random password>": db_password}), user=ADMIN)
        guide.run(project, guide.filled(guide.block(GUIDE, "sh", "sudo install -d -m 700 external-secrets"), {
            "<db password>": db_password, "AKIA...": managed.env["S3_ACCESS_KEY"],
            "<secret access key>": managed.env["S3_SECRET_KEY"]}))
        settings = guide.filled(guide.block(GUIDE, "sh", "EXTERNAL_DATABASE_URI="), {
            "https://mlflow.acme.example": url,
            "acme-db.abc123.eu-west-1.rds.amazonaws.com:5432": f"{managed.host}:{managed.pg_port}"})
        # The guide's line for any S3 store other than AWS.
        project.env_file.write_text(settings + f"EXTERNAL_S3_ENDPOINT_URL=http://{managed.host}:{managed.s3_port}\n")
        guide.run(project, guide.filled(guide.block(GUIDE, "sh", "make team-ca"), {
            "/home/alice/.config/goose-mlflow/ca.crt": str(project.directory / "users" / "ca.crt")}))
        yield project
    finally:
        project.down()


def test_the_guides_sql_gives_a_non_superuser_admin_the_two_databases(managed, deployment):
    owners = managed.psql("SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database "
                          "WHERE datname LIKE 'goose_mlflow%' ORDER BY 1")
    assert owners.splitlines() == ["goose_mlflow:goose_mlflow", "goose_mlflow_auth:goose_mlflow"]


def test_the_bundled_postgres_and_minio_are_never_created(deployment):
    assert {service: deployment.containers(service) for service in BUNDLED} == {
        service: [] for service in BUNDLED}


def test_the_services_that_ran_are_the_ones_the_guide_shows(deployment):
    command = "docker compose ps --all --format '{{.Service}} {{.State}}'"
    shown = guide.run(deployment, command).stdout.splitlines()
    assert shown == guide.console(GUIDE, command)


def test_alices_traces_land_in_the_managed_database(managed, deployment):
    env_file = deployment.directory / "users" / "alice.env"
    trace_id = source_and_emit(env_file, f"external-{uuid.uuid4().hex[:6]}")
    assert managed.psql(f"SELECT count(*) FROM spans WHERE trace_id = '{trace_id}'", database="goose_mlflow") == "3"


def test_the_accounts_live_in_the_managed_auth_database(managed, deployment):
    users = managed.psql("SELECT username FROM users ORDER BY username", database="goose_mlflow_auth")
    assert users.splitlines() == ["admin", "alice"]


def test_an_artifact_alice_logs_lands_in_the_managed_bucket(managed, deployment):
    env_file = deployment.directory / "users" / "alice.env"
    source_and_emit(env_file, f"external-{uuid.uuid4().hex[:6]}")
    run = populate(env_file=env_file)["run"]
    listed = managed.s3.list_objects_v2(Bucket=BUCKET, Prefix="mlflow/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    assert any(run in key and key.endswith("report/summary.txt") for key in keys), keys


def test_a_rotated_database_password_works_after_the_guides_restart(managed, deployment):
    new_password = secrets.token_hex(16)
    managed.psql(f"ALTER ROLE goose_mlflow PASSWORD '{new_password}'", user=ADMIN)
    # MLflow's pooled connections would hide a stale password: end them, as a failover does.
    managed.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = 'goose_mlflow'")
    guide.run(deployment, guide.filled(guide.block(GUIDE, "sh", "<new db password>"),
                                               {"<new db password>": new_password}))
    env_file = deployment.directory / "users" / "alice.env"
    trace_id = source_and_emit(env_file, f"rotated-{uuid.uuid4().hex[:6]}")
    assert managed.psql(f"SELECT count(*) FROM spans WHERE trace_id = '{trace_id}'", database="goose_mlflow") == "3"


def test_a_missing_external_bucket_is_named_with_where_to_create_it(managed, deployment):
    # Last in this module: the bucket comes back empty.
    for item in managed.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        managed.s3.delete_object(Bucket=BUCKET, Key=item["Key"])
    managed.s3.delete_bucket(Bucket=BUCKET)
    try:
        code, failed, _ = deployment.doctor()
    finally:
        managed.s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert failed == [f"FAIL {'bucket':<10} bucket {BUCKET}: An error occurred (404) when calling the HeadBucket "
                      "operation: Not Found: create it in your object store (docs/external.md)"]
    assert code == 1
