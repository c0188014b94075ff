"""The real compose.yaml under a real Docker engine, from a clean copy of the repository.

Runs whenever an engine answers; in CI (CI=true) a missing engine or image is a
failure, never a skip. Uses its own compose project name and port, so a
developer's running stack is left alone. Tests run in file order: up, use,
restart, down/up, down -v/up.
"""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest

from lib import envfile, otlp
from harness import bare_client, guide
from harness.fake_credentials import capture_content, credentials, in_context, leaked, look_alikes
from harness.commands import bare_client_round_trip, client_env, experiment_id_in, source_and_emit
from harness.project import ComposeProject, clean_copy, image_files, require_engine

from lib.mlflow_api import MlflowApiError
from credentials import SECRETS
from test_compose_policy import MLFLOW_VERSION
from test_dependencies import JOB_FOLDERS, MISSING_BY_DESIGN, mlflow_installation

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def docker_stack(tmp_path_factory):
    require_engine()
    deployment = ComposeProject(clean_copy(tmp_path_factory.mktemp("clean-copy")))
    try:
        deployment.up_output = deployment.up()
        yield deployment
    finally:
        deployment.down()


@pytest.fixture(scope="module")
def sent(docker_stack):
    """A trace sent with the stock OTel SDK configured from the host's .env."""
    return source_and_emit(docker_stack.env_file, f"docker-{uuid.uuid4().hex[:8]}")


def test_make_up_brings_every_service_up_healthy(docker_stack):
    states = docker_stack.states()
    for name in ("postgres", "minio", "mlflow", "retention"):
        assert states[name][:2] == ("running", "healthy"), states
    for name in ("credentials", "database", "bucket", "migrate", "bootstrap"):
        assert states[name][0] == "exited" and states[name][2] == 0, states


def test_the_image_carries_only_the_stacks_commands_and_the_services_jobs(docker_stack):
    image = docker_stack.container("mlflow").image.tags[0]
    root = docker_stack.directory
    code = [*root.glob("scripts/*.py"), *root.glob("scripts/lib/*.py"), *(path for folder in JOB_FOLDERS
                                                                       for path in root.glob(f"{folder}/*.py"))]
    assert set(image_files(image, "/opt/stack")) == {f"stack/{path.relative_to(root)}" for path in code} | {
        "stack/constraints.txt"}


def test_every_file_of_mlflow_in_the_image_is_the_pinned_releases(docker_stack):
    report = mlflow_installation("docker", "run", "--rm", "-i", "--entrypoint", "python3",
                                 docker_stack.container("mlflow").image.tags[0])
    assert (report["version"], report["owners"], report["unrecorded"]) == (
        MLFLOW_VERSION, {"mlflow": MLFLOW_VERSION, "mlflow-skinny": MLFLOW_VERSION}, [])


def test_pip_check_in_the_image_names_only_the_dropped_mlflow_tracing(docker_stack):
    report = mlflow_installation("docker", "run", "--rm", "-i", "--entrypoint", "python3",
                                 docker_stack.container("mlflow").image.tags[0])
    assert report["pip_check"] == MISSING_BY_DESIGN


def test_a_client_that_knows_only_the_tracking_uri_reads_and_writes_artifacts(docker_stack):
    """A notebook's `mlflow.set_tracking_uri(...)` and nothing else: no presigned URL naming the store inside
    the stack is offered (3.17.2 offered them and such a client retried for over ten minutes)."""
    assert bare_client_round_trip(client_env(docker_stack.url)) == {
        "presigned_uploads": False, "presigned_downloads": False, "read_back": bare_client.TEXT}


def test_the_getting_started_bootstrap_from_the_host_writes_the_same_env_file(docker_stack, tmp_path):
    block = guide.filled(guide.block("docs/getting-started.md", "sh", "python3 scripts/bootstrap.py --tracking-uri"),
                         {"http://localhost:5000": docker_stack.url})
    # The system's python3 on a bare PATH: the bootstrap needs nothing but the standard library.
    result = guide.run(docker_stack, block, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert envfile.parse((tmp_path / "goose.env").read_text()) == envfile.parse(docker_stack.env_file.read_text())
    assert "usage: bootstrap.py" in result.stdout


def test_make_up_prints_the_bootstrap_summary(docker_stack):
    assert "source .env && goose session" in docker_stack.up_output
    assert f"{docker_stack.url}/#/experiments/" in docker_stack.up_output


def test_make_up_outside_a_terminal_shows_each_container_with_the_seconds_since_start(docker_stack):
    result = docker_stack.run("make", "up")
    progress = [line for line in result.stderr.splitlines() if re.match(r"\[ *\d+s\] ", line)]
    assert any(re.fullmatch(rf"\[ *\d+s\] +Container {docker_stack.name}-mlflow-1 +Healthy", line)
               for line in progress), result.stderr


def test_env_file_on_the_host_points_at_the_published_port(docker_stack):
    text = docker_stack.env_file.read_text()
    assert f"export OTEL_EXPORTER_OTLP_ENDPOINT={docker_stack.url}\n" in text
    assert experiment_id_in(docker_stack.env_file) == str(
        docker_stack.client().get_experiment_by_name("goose-traces")["experiment_id"])


def test_env_file_belongs_to_the_repository_owner_not_root(docker_stack):
    assert docker_stack.env_file.stat().st_uid == docker_stack.directory.stat().st_uid


def test_only_mlflow_is_published_and_only_on_loopback(docker_stack):
    assert docker_stack.published() == {("mlflow", "127.0.0.1", docker_stack.port)}


def test_make_verify_passes(docker_stack):
    result = docker_stack.run("make", "verify")
    assert "OK: trace tr-" in result.stdout and "CHAT_MODEL" in result.stdout


def test_sdk_trace_from_the_env_file_lands_with_token_usage(docker_stack, sent):
    trace = docker_stack.client().get_trace(sent)
    usage = json.loads(trace["trace_info"]["trace_metadata"]["mlflow.trace.tokenUsage"])
    assert usage["total_tokens"] == 366
    assert trace["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] == experiment_id_in(
        docker_stack.env_file)


def test_secrets_are_never_in_logs_or_the_env_file(docker_stack):
    logs = docker_stack.logs()
    env_text = docker_stack.env_file.read_text()
    for name in SECRETS:
        value = docker_stack.secret(name)
        assert len(value) >= 12
        assert value not in logs and value not in env_text, name


def test_readmes_command_reads_a_credential(docker_stack):
    result = docker_stack.run("docker", "compose", "exec", "postgres", "cat", "/run/secrets/stack/postgres-password")
    assert result.stdout.strip() == docker_stack.secret("postgres-password")


def test_each_container_holds_only_the_credentials_it_reads(docker_stack):
    assert docker_stack.exec("mlflow", "ls", "/run/secrets/stack").split() == [
        "minio-root-password", "minio-root-user", "mlflow-db-password", "mlflow-kek-passphrase"]
    assert docker_stack.exec("postgres", "ls", "/run/secrets/stack").split() == ["postgres-password"]


@pytest.fixture(scope="module")
def captured(docker_stack):
    """A goose session with content capture, a credential of every kind and look-alikes in it, sent to .env's
    endpoint; an artifact logged beside it, so the bucket is scanned with something in it."""
    found, alike = credentials(), look_alikes()
    spans = otlp.goose_session(f"captured-{uuid.uuid4().hex[:8]}")
    capture_content(spans, [*in_context(found).values(), *alike.values()])
    status, _ = otlp.export(docker_stack.url + "/v1/traces", otlp.encode_export_request(
        spans, {"service.name": "goose"}), {"x-mlflow-experiment-id": experiment_id_in(docker_stack.env_file)})
    assert status == 200
    assert bare_client_round_trip(client_env(docker_stack.url))["read_back"] == bare_client.TEXT
    return {"credentials": found, "look_alikes": alike, "trace_id": "tr-" + spans[0].trace_id.hex(), "spans": spans}


def test_no_credential_of_a_captured_session_is_in_the_database_the_bucket_or_a_log(docker_stack, captured):
    found = captured["credentials"]
    assert leaked(found, docker_stack.database_dump()) == []
    assert leaked(found, docker_stack.bucket_text()) == []
    assert leaked(found, docker_stack.logs()) == []


def test_a_captured_sessions_spans_ids_and_hashes_are_stored_whole(docker_stack, captured):
    dump = docker_stack.database_dump()
    assert [name for name, value in captured["look_alikes"].items() if value not in dump] == []
    stored = docker_stack.client().get_trace(captured["trace_id"])
    assert sorted(span["name"] for span in stored["spans"]) == sorted(span.name for span in captured["spans"])
    assert "[REDACTED:github-token]" in json.dumps(stored)


def test_make_status_counts_the_credentials_replaced(docker_stack, captured):
    lines = docker_stack.run("make", "status").stdout.splitlines()
    redaction = lines[lines.index("Redaction:") + 1:lines.index("Redaction:") + 3]
    # Each of the 11 lines sits in a tool's arguments and result and in two messages of each model call.
    assert redaction[0].startswith("  on: 66 credentials replaced since mlflow started (anthropic-key 6, ")
    assert redaction[1] == "  0 values stored unscanned (bytes that are not text)"


def wait_healthy(deployment: ComposeProject, timeout: float = 180) -> None:
    deployment.client().wait_until_healthy(timeout)


def test_mlflow_killed_comes_back_by_its_restart_policy_with_its_data(docker_stack, sent):
    restarts = docker_stack.kill_main_process("mlflow")
    docker_stack.wait_restarted("mlflow", restarts, timeout=120)
    wait_healthy(docker_stack)
    assert docker_stack.client().get_trace(sent)["trace_info"]["trace_id"] == sent


def test_artifacts_survive_a_crash_of_the_object_store(docker_stack, tmp_path):
    import mlflow

    mlflow.set_tracking_uri(docker_stack.url)
    artifact = tmp_path / "kept.txt"
    artifact.write_text("still here ✓")
    with mlflow.start_run(experiment_id=mlflow.create_experiment(f"crash-{uuid.uuid4().hex[:6]}")) as run:
        mlflow.log_artifact(str(artifact))
    restarts = docker_stack.kill_main_process("minio")
    docker_stack.wait_restarted("minio", restarts, timeout=120)
    downloaded = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="kept.txt",
                                                     dst_path=str(tmp_path / "back"))
    assert open(downloaded, encoding="utf-8").read() == "still here ✓"


def send_aged_trace(deployment: ComposeProject, experiment_id: str, days_ago: int) -> str:
    from lib import otlp

    spans = otlp.goose_session("retention", now_ns=time.time_ns() - days_ago * 86_400 * 10**9)
    status, _ = otlp.export(f"{deployment.url}/v1/traces", otlp.encode_export_request(spans, {}),
                            {"x-mlflow-experiment-id": experiment_id})
    assert status == 200
    return "tr-" + spans[0].trace_id.hex()


def wait_for_log(deployment: ComposeProject, service: str, text: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while text not in deployment.container(service).logs().decode():
        assert time.monotonic() < deadline, f"{service} did not log {text!r}"
        time.sleep(1)


@pytest.fixture(scope="module")
def retention_30(docker_stack):
    """TRACE_RETENTION_DAYS=30 in the settings, with traces from 40 and 2 days ago sent before `make up`."""
    experiment = docker_stack.client().create_experiment(f"retention-{uuid.uuid4().hex[:6]}")
    sent = {"old": send_aged_trace(docker_stack, experiment, 40), "new": send_aged_trace(docker_stack, experiment, 2)}
    docker_stack.env["TRACE_RETENTION_DAYS"] = "30"
    try:
        docker_stack.up()  # recreates the retention service with the setting
        yield experiment, sent
    finally:
        del docker_stack.env["TRACE_RETENTION_DAYS"]


def test_the_retention_service_applies_the_limit_when_it_starts(docker_stack, retention_30):
    experiment, sent = retention_30
    wait_for_log(docker_stack, "retention", f"(id {experiment}): 1 traces from before")
    stored = docker_stack.client().trace_ids(experiment)
    assert sent["old"] not in stored and sent["new"] in stored


def test_make_prune_applies_the_limit_now(docker_stack, retention_30):
    wait_for_log(docker_stack, "retention", "Retention: 30 days")  # the service's own first pass is over
    experiment = docker_stack.client().create_experiment(f"prune-{uuid.uuid4().hex[:6]}")
    old = send_aged_trace(docker_stack, experiment, 40)
    result = docker_stack.run("make", "prune")
    assert result.stdout.startswith("Retention: 30 days\n") and f"(id {experiment}): 1 traces from before" in result.stdout
    assert old not in docker_stack.client().trace_ids(experiment)


def test_make_prune_refuses_a_limit_the_running_stack_was_not_started_with(docker_stack, retention_30):
    """A new limit written to the settings without `make up`: make prune says so and deletes nothing."""
    experiment = docker_stack.client().create_experiment(f"unapplied-{uuid.uuid4().hex[:6]}")
    kept = send_aged_trace(docker_stack, experiment, 10)
    docker_stack.env["TRACE_RETENTION_DAYS"] = "7"
    try:
        result = docker_stack.run("make", "prune", check=False)
    finally:
        docker_stack.env["TRACE_RETENTION_DAYS"] = "30"
    assert result.returncode != 0
    assert ("retention: error: .env (or your shell) sets TRACE_RETENTION_DAYS=7, but the running stack was started "
            "with TRACE_RETENTION_DAYS=30: run make up to apply it") in result.stderr
    assert kept in docker_stack.client().trace_ids(experiment)


def test_every_acknowledged_trace_survives_kills_under_load(docker_stack):
    """SIGKILL to MLflow's, PostgreSQL's and MinIO's main process in turn while goose-shaped load runs:
    each comes back by its restart policy, and every trace acknowledged with 200 is stored with its spans."""
    import load

    experiment = docker_stack.client().create_experiment(f"faults-{uuid.uuid4().hex[:6]}")

    def kill_each_in_turn() -> None:
        for service in ("mlflow", "postgres", "minio"):
            time.sleep(3)
            restarts = docker_stack.kill_main_process(service)
            docker_stack.wait_restarted(service, restarts, timeout=180)
        docker_stack.client().wait_until_healthy(180)

    exporters = load.run_exporters(f"http://127.0.0.1:{docker_stack.port}", experiment, concurrency=4,
                                   seconds=60, traces=5, prompt="x", during=kill_each_in_turn)
    acked = {trace_id for exporter in exporters for trace_id in exporter.acked}
    assert acked, "no batch was acknowledged"
    assert load.lost_traces(acked, docker_stack.client().trace_ids(experiment)) == set()
    assert docker_stack.incomplete_traces(experiment, spans_per_trace=3) == 0


def test_restart_of_mlflow_keeps_experiment_and_traces(docker_stack, sent):
    experiment_id = experiment_id_in(docker_stack.env_file)
    docker_stack.compose("restart", "mlflow")
    wait_healthy(docker_stack)
    assert docker_stack.client().get_trace(sent)["trace_info"]["trace_id"] == sent
    assert str(docker_stack.client().get_experiment_by_name("goose-traces")["experiment_id"]) == experiment_id


def test_down_then_up_keeps_everything_and_an_identical_env_file(docker_stack, sent):
    before = docker_stack.env_file.read_bytes()
    secrets_before = {name: docker_stack.secret(name) for name in SECRETS}
    docker_stack.run("make", "down")
    docker_stack.up()
    assert docker_stack.env_file.read_bytes() == before
    assert docker_stack.client().get_trace(sent)["trace_info"]["trace_id"] == sent
    assert {name: docker_stack.secret(name) for name in SECRETS} == secrets_before


def test_down_v_then_up_starts_clean(docker_stack, sent):
    secrets_before = {name: docker_stack.secret(name) for name in SECRETS}
    docker_stack.compose("down", "--volumes")
    docker_stack.up()
    with pytest.raises(MlflowApiError) as missing:
        docker_stack.client().get_trace(sent)
    assert missing.value.status == 404
    secrets_after = {name: docker_stack.secret(name) for name in SECRETS}
    assert all(secrets_after[name] != secrets_before[name] for name in SECRETS)
    assert experiment_id_in(docker_stack.env_file) == str(
        docker_stack.client().get_experiment_by_name("goose-traces")["experiment_id"])

