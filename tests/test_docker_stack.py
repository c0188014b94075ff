"""The real compose.yaml under a real Docker engine, from a clean copy of the repository.

Runs whenever an engine answers; in CI (CI=true) a missing engine or image is a
failure, never a skip. Uses its own compose project name and port, so a
developer's running stack is left alone. Tests run in file order: up, use,
restart, down/up, down -v/up.
"""

from __future__ import annotations

import json
import uuid

import pytest

from harness.commands import experiment_id_in, source_and_emit
from harness.project import ComposeProject, clean_copy, image_files, require_engine

from mlflow_api import MlflowApiError
from stack_secrets import SECRETS

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
    for name in ("postgres", "minio", "mlflow"):
        assert states[name][:2] == ("running", "healthy"), states
    for name in ("secrets", "database", "bucket", "bootstrap"):
        assert states[name][0] == "exited" and states[name][2] == 0, states


def test_the_image_carries_only_the_stacks_commands(docker_stack):
    image = docker_stack.container("mlflow").image.tags[0]
    commands = {f"stack/scripts/{path.name}" for path in (docker_stack.directory / "scripts").iterdir()}
    assert set(image_files(image, "/opt/stack")) == commands | {"stack/requirements.txt", "stack/constraints.txt"}


def test_make_up_prints_the_bootstrap_summary(docker_stack):
    assert "source .env && goose session" in docker_stack.up_output
    assert f"{docker_stack.url}/#/experiments/" in docker_stack.up_output


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


def wait_healthy(deployment: ComposeProject, timeout: float = 180) -> None:
    deployment.client().wait_until_healthy(timeout)


def test_mlflow_killed_comes_back_by_its_restart_policy_with_its_data(docker_stack, sent):
    restarts = docker_stack.kill_main_process("mlflow")
    docker_stack.wait_restarted("mlflow", restarts, timeout=120)
    wait_healthy(docker_stack)
    assert docker_stack.client().get_trace(sent)["trace_info"]["trace_id"] == sent


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
