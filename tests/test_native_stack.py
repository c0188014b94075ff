"""The stack's path end to end, natively: real PostgreSQL, real MLflow, S3 stand-in.

MLflow runs through mlflow/docker-entrypoint.sh with compose.yaml's command and
environment; traces are sent by the stock OpenTelemetry SDK configured only
from the env file the bootstrap wrote; assertions read PostgreSQL, MLflow's API
and the bucket.
"""

from __future__ import annotations

import copy
import json
import urllib.error
import urllib.request
import uuid

import boto3
import psycopg2
import pytest

from lib import store
from harness.commands import experiment_id_in, run_script, source_and_emit
from harness.native import free_port
from lib.mlflow_api import MlflowApiError, MlflowClient

@pytest.fixture(scope="module")
def db(native_stack):
    connection = psycopg2.connect(native_stack.database_uri("mlflow", native_stack.secret("mlflow-db-password"), "mlflow"))
    connection.autocommit = True
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def emitted(native_stack, bootstrapped):
    session_id = f"native-{uuid.uuid4().hex[:8]}"
    return source_and_emit(bootstrapped, session_id), session_id


def stored_spans(db, trace_id: str) -> dict[str, dict[str, object]]:
    """Span name -> attributes, decoded from the rows MLflow wrote to the spans table."""
    with db.cursor() as cursor:
        cursor.execute("SELECT name, content FROM spans WHERE trace_id = %s", (trace_id,))
        rows = cursor.fetchall()
    return {name: {key: json.loads(value) for key, value in json.loads(content)["attributes"].items()}
            for name, content in rows}


def test_bootstrap_creates_goose_traces_experiment(native_stack, bootstrapped):
    experiment = MlflowClient(native_stack.mlflow_url).get_experiment_by_name("goose-traces")
    assert experiment["lifecycle_stage"] == "active"
    assert experiment_id_in(bootstrapped) == str(experiment["experiment_id"])


def test_env_file_points_goose_at_the_public_url(native_stack, bootstrapped):
    text = bootstrapped.read_text()
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:{native_stack.mlflow_port}\n" in text
    assert "COMPRESSION" not in text


def test_rerun_keeps_experiment_id_and_leaves_env_file_identical(native_stack, bootstrapped):
    before, mtime = bootstrapped.read_bytes(), bootstrapped.stat().st_mtime_ns
    result = run_script("bootstrap.py", "--tracking-uri", native_stack.mlflow_url, "--env-file", str(bootstrapped),
                              env=native_stack.service_env("bootstrap"), cwd=bootstrapped.parent)
    assert result.returncode == 0, result.stderr
    assert "(unchanged)" in result.stdout
    assert bootstrapped.read_bytes() == before and bootstrapped.stat().st_mtime_ns == mtime


def test_summary_tells_what_to_do_next(native_stack, bootstrapped):
    result = run_script("bootstrap.py", "--tracking-uri", native_stack.mlflow_url, "--env-file", str(bootstrapped),
                              env=native_stack.service_env("bootstrap"), cwd=bootstrapped.parent)
    assert "source .env && goose session" in result.stdout
    assert f"http://localhost:{native_stack.mlflow_port}/#/experiments/" in result.stdout
    assert "waiting for MLflow" in result.stderr and "waiting" not in result.stdout


def test_deleted_experiment_is_restored_not_duplicated(native_stack, tmp_path):
    client = MlflowClient(native_stack.mlflow_url)
    name = f"restore-{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(name)
    client.delete_experiment(experiment_id)
    result = run_script("bootstrap.py", "--tracking-uri", native_stack.mlflow_url,
                              "--experiment", name, "--env-file", str(tmp_path / ".env"))
    assert result.returncode == 0, result.stderr
    assert experiment_id_in(tmp_path / ".env") == experiment_id
    assert client.get_experiment_by_name(name)["lifecycle_stage"] == "active"


def test_existing_user_lines_survive_a_successful_bootstrap(native_stack, tmp_path):
    env_file = tmp_path / ".env"
    user = "# team settings\nMLFLOW_PORT=5000\nexport OTEL_EXPORTER_OTLP_COMPRESSION=gzip\nexport GOOSE_MODE=auto\n"
    env_file.write_text(user)
    result = run_script("bootstrap.py", "--tracking-uri", native_stack.mlflow_url, "--env-file", str(env_file))
    assert result.returncode == 0, result.stderr
    text = env_file.read_text()
    assert text.startswith("# team settings\nMLFLOW_PORT=5000\nexport GOOSE_MODE=auto\n")
    assert "COMPRESSION" not in text and "removing OTEL_EXPORTER_OTLP_COMPRESSION" in result.stderr


def test_sdk_trace_lands_in_goose_traces_with_span_types(native_stack, bootstrapped, emitted, db):
    trace_id, _ = emitted
    with db.cursor() as cursor:
        cursor.execute("SELECT experiment_id FROM trace_info WHERE request_id = %s", (trace_id,))
        assert cursor.fetchone() == (int(experiment_id_in(bootstrapped)),)
    types = {name: attributes["mlflow.spanType"] for name, attributes in stored_spans(db, trace_id).items()}
    assert types == {"invoke_agent goose": "AGENT", "chat gpt-4o": "CHAT_MODEL",
                     "execute_tool developer__shell": "TOOL"}


def test_sdk_trace_carries_token_usage(native_stack, emitted):
    trace = MlflowClient(native_stack.mlflow_url).get_trace(emitted[0])
    usage = json.loads(trace["trace_info"]["trace_metadata"]["mlflow.trace.tokenUsage"])
    assert usage == {"input_tokens": 321, "output_tokens": 45, "total_tokens": 366}


def test_ingest_prices_tokens_without_reaching_outside(native_stack, emitted, outbound):
    # Pricing the chat span's tokens makes MLflow, by default, fetch a price
    # catalog from GitHub on the ingest path; compose.yaml turns that off.
    trace = MlflowClient(native_stack.mlflow_url).get_trace(emitted[0])
    cost = json.loads(trace["trace_info"]["trace_metadata"]["mlflow.trace.cost"])
    assert cost["total_cost"] > 0  # priced from the catalog bundled with MLflow
    assert outbound.requests == []


def test_unicode_attributes_are_stored_intact(emitted, db):
    from harness.otel_emit import PROMPT

    assert stored_spans(db, emitted[0])["invoke_agent goose"]["goose.prompt"] == PROMPT


def test_session_id_links_the_trace_to_its_goose_session(native_stack, emitted):
    trace = MlflowClient(native_stack.mlflow_url).get_trace(emitted[0])
    assert trace["trace_info"]["trace_metadata"]["mlflow.trace.session"] == emitted[1]


def test_verify_passes_and_leaves_nothing_in_goose_traces(native_stack, bootstrapped, db):
    experiment_id = experiment_id_in(bootstrapped)
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM trace_info WHERE experiment_id = %s", (int(experiment_id),))
        before = cursor.fetchone()[0]
    result = run_script("verify.py", "--env-file", str(bootstrapped))
    assert result.returncode == 0, result.stderr
    assert "OK: trace tr-" in result.stdout and "total 2765" in result.stdout
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM trace_info WHERE experiment_id = %s", (int(experiment_id),))
        assert cursor.fetchone()[0] == before


def test_verify_refuses_a_trace_stored_in_another_experiment_than_the_env_file_names(native_stack, emitted):
    # MLflow 3.18.0 stores a trace where the header says (or refuses it), so no
    # server here can misplace one; the check is fed a real stored trace instead.
    import verify

    trace = MlflowClient(native_stack.mlflow_url).get_trace(emitted[0])
    stored_in = trace["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"]
    verify.check_stored_in(trace, stored_in)
    with pytest.raises(verify.StepFailed, match=f"trace landed in experiment {stored_in}, expected 999999"):
        verify.check_stored_in(trace, "999999")


def test_verify_names_the_failing_step_when_mlflow_is_unreachable(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(f"export OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:{free_port()}\n"
                        "export OTEL_EXPORTER_OTLP_HEADERS=x-mlflow-experiment-id=1\n")
    result = run_script("verify.py", "--env-file", str(env_file))
    assert result.returncode == 1 and "step 'send OTLP' failed" in result.stderr


def test_artifact_logged_through_mlflow_lands_in_the_bucket(native_stack, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(native_stack.mlflow_url)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("artifact body ✓")
    experiment_id = mlflow.create_experiment(f"artifacts-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_artifact(str(artifact))
    s3 = boto3.client("s3", endpoint_url=native_stack.s3_url, region_name="us-east-1",
                      aws_access_key_id=native_stack.secret("minio-root-user"),
                      aws_secret_access_key=native_stack.secret("minio-root-password"))
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=native_stack.bucket).get("Contents", [])]
    key = next(k for k in keys if run.info.run_id in k and k.endswith("notes.txt"))
    assert s3.get_object(Bucket=native_stack.bucket, Key=key)["Body"].read().decode() == "artifact body ✓"


def request_status(url: str, host: str) -> int:
    request = urllib.request.Request(url, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("host", ["mlflow:5000", "localhost:5000", "127.0.0.1"])
def test_service_name_and_loopback_hosts_are_accepted(native_stack, host):
    url = native_stack.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert request_status(url, host) == 200


def test_unknown_host_header_is_rejected(native_stack):
    url = native_stack.mlflow_url + "/api/2.0/mlflow/experiments/search?max_results=1"
    assert request_status(url, "attacker.example") == 403


def test_mlflow_connects_as_its_own_unprivileged_role(native_stack, db):
    with db.cursor() as cursor:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False,)
        cursor.execute("SELECT count(*) FROM alembic_version")
        assert cursor.fetchone()[0] == 1


def set_experiment_tag(native_stack, experiment_id: str, key: str, value: str) -> None:
    MlflowClient(native_stack.mlflow_url).request("POST", "/api/2.0/mlflow/experiments/set-experiment-tag", {
        "experiment_id": experiment_id, "key": key, "value": value})


def guard_installed(db) -> bool:
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_trigger WHERE tgname = %s", (store.GUARD,))
        return cursor.fetchone()[0] == 1


def test_the_migrate_job_gave_the_new_database_the_images_schema_before_mlflow_started(native_stack, db):
    with db.cursor() as cursor:
        cursor.execute("SELECT version_num FROM alembic_version")
        assert cursor.fetchone()[0] == store.image_head(store.Database("tracking", "postgresql://unused/mlflow"))
    assert guard_installed(db)


@pytest.mark.parametrize("key", store.REFUSED_EXPERIMENT_TAGS)
def test_an_issue_detection_schedule_tag_is_refused_with_the_reason(native_stack, bootstrapped, db, key):
    experiment_id = experiment_id_in(bootstrapped)
    with pytest.raises(MlflowApiError) as refused:
        set_experiment_tag(native_stack, experiment_id, key, '{"version": 1, "cadence": "hourly"}')
    assert refused.value.status == 400 and f"experiment tag {key} is refused by this stack" in str(refused.value)
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM experiment_tags WHERE key = %s", (key,))
        assert cursor.fetchone()[0] == 0


def test_other_experiment_tags_are_still_set(native_stack, bootstrapped, db):
    """The UI keeps an experiment's description in a tag; the detection state tag is MLflow's own writing."""
    experiment_id = experiment_id_in(bootstrapped)
    for key in ("mlflow.note.content", "mlflow.issueDetection.scheduleState"):
        set_experiment_tag(native_stack, experiment_id, key, "kept")
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM experiment_tags WHERE experiment_id = %s AND value = 'kept'",
                       (int(experiment_id),))
        assert cursor.fetchone()[0] == 2


def test_a_rerun_of_the_migrate_job_puts_a_dropped_guard_back(native_stack, db, tmp_path):
    with db.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER {store.GUARD} ON experiment_tags")
    again = native_stack.run_job("migrate", "--backups", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "experiment tags refused: mlflow.issueDetection.schedule" in again.stderr
    assert guard_installed(db)


def test_database_refuses_a_wrong_password(native_stack):
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(native_stack.database_uri("mlflow", "wrong-password", "mlflow"))


def test_database_job_rerun_keeps_what_exists(native_stack):
    again = native_stack.run_job("database")
    assert again.returncode == 0, again.stderr
    assert "role mlflow exists" in again.stderr and "database mlflow exists" in again.stderr


def test_database_job_leaves_the_database_closed_to_other_roles(native_stack):
    admin = psycopg2.connect(native_stack.database_uri("postgres", native_stack.secret("postgres-password"), "postgres"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("CREATE ROLE intruder LOGIN PASSWORD 'intruder-password'")
    admin.close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(native_stack.database_uri("intruder", "intruder-password", "mlflow"))


def test_database_job_refuses_a_database_name_that_is_not_an_identifier(native_stack):
    refused = native_stack.run_job("database", "--databases", "mlflow;drop")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "database: error: database 'mlflow;drop' is not a plain identifier; use a-z, 0-9 and _ (at most 63)"]


def test_search_traces_applies_the_filter(native_stack, bootstrapped, emitted):
    client = MlflowClient(native_stack.mlflow_url)
    experiment_id = experiment_id_in(bootstrapped)
    hits, _ = client.search_traces(experiment_id, filter_string=f"metadata.`mlflow.trace.session` = '{emitted[1]}'")
    misses, _ = client.search_traces(experiment_id, filter_string="metadata.`mlflow.trace.session` = 'no-such'")
    assert [trace["trace_id"] for trace in hits] == [emitted[0]] and misses == []


def test_env_file_the_bootstrap_creates_is_world_readable_and_owner_writable(bootstrapped):
    assert bootstrapped.stat().st_mode & 0o777 == 0o644


def test_bucket_job_with_a_wrong_key_fails_naming_the_bucket(native_stack, tmp_path):
    compose = copy.deepcopy(native_stack.compose)
    (tmp_path / "wrong-key").write_text("not-the-secret-key")
    compose["services"]["bucket"]["environment"]["AWS_SECRET_ACCESS_KEY_FILE"] = str(tmp_path / "wrong-key")
    refused = native_stack.run_job("bucket", "--bucket", "another-bucket", compose=compose)
    assert refused.returncode == 1
    assert refused.stderr.startswith("bucket: error: bucket another-bucket at http://127.0.0.1:")
    assert "(403)" in refused.stderr


def test_database_job_refuses_to_create_a_role_without_a_password(native_stack):
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(native_stack.postgres.port), "PGUSER": "postgres",
           "PGPASSWORD": native_stack.secret("postgres-password"), "MLFLOW_DB_PASSWORD": ""}
    refused = run_script("postgres/database.py", "--role", "nopassword", "--databases", "", env=env)
    assert refused.returncode == 1
    assert "role nopassword is missing and MLFLOW_DB_PASSWORD is empty" in refused.stderr
    admin = psycopg2.connect(native_stack.database_uri("postgres", native_stack.secret("postgres-password"), "postgres"))
    with admin.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_roles WHERE rolname = 'nopassword'")
        assert cursor.fetchone() == (0,)
    admin.close()


def test_artifacts_survive_a_crash_of_the_object_store(native_stack, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(native_stack.mlflow_url)
    artifact = tmp_path / "kept.txt"
    artifact.write_text("still here ✓")
    with mlflow.start_run(experiment_id=mlflow.create_experiment(f"crash-{uuid.uuid4().hex[:6]}")) as run:
        mlflow.log_artifact(str(artifact))
    native_stack.crash_and_restart_s3()
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="kept.txt",
                                                     dst_path=str(tmp_path / "back"))
    assert open(downloaded, encoding="utf-8").read() == "still here ✓"
