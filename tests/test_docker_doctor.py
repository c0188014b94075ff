"""`make doctor` under a real Docker engine: each check, broken on its own, names what is wrong and the fix.

One local stack (a clean copy) is broken one way at a time and repaired
after; team mode uses the deployment the team suite shares. The exit status
of scripts/host/doctor.py (what `make doctor` runs) is the number of failed
checks; `make` itself exits 2 when there is any.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from lib import envfile
from harness.compose_file import load_compose
from harness.project import ComposeProject

pytestmark = pytest.mark.docker

CHECKS = ("docker", "services", "port", "host", "bucket", "experiment", "evaluation", "redaction", "goose", "goose-cli")


@pytest.fixture(scope="module")
def local(local_stack: ComposeProject) -> ComposeProject:
    return local_stack


def check_line(name: str, text: str) -> str:
    return f"FAIL {name:<10} {text}"


def put_file(container, path: str, data: bytes) -> None:
    """Write one file into a running container (a tar of one member, as `docker cp` sends it)."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        member = tarfile.TarInfo(Path(path).name)
        member.size, member.mode = len(data), 0o644
        tar.addfile(member, io.BytesIO(data))
    assert container.put_archive(str(Path(path).parent), archive.getvalue())


def test_a_healthy_local_stack_passes_every_check(local):
    code, failed, lines = local.doctor()
    assert (code, failed) == (0, [])
    assert [line.split()[1] for line in lines if line.startswith("ok")] == list(CHECKS)


def test_make_doctor_says_no_problems_on_a_healthy_stack(local):
    result = local.run("make", "doctor")
    assert result.stdout.strip().splitlines()[-1].startswith("No problems found. Next: source .env && goose session")


def test_no_engine_is_one_failure_and_stops_the_checks(local):
    code, failed, lines = local.doctor(DOCKER_HOST="unix:///nonexistent/docker.sock")
    assert code == 1 and failed[0].startswith("FAIL docker     no Docker engine answers (")
    assert failed[0].endswith("; start Docker") and f"{len(CHECKS) - 1} more checks need this one" in lines[1]


def test_a_stopped_service_is_named_with_the_command_that_starts_it(local):
    local.compose("stop", "retention")
    try:
        code, failed, _ = local.doctor()
    finally:
        local.compose("up", "--detach", "--wait", "retention")
    container = local.container("retention").name
    assert failed == [check_line("services", f"retention: exited: docker logs {container} says why; "
                                             "make up starts it")]
    assert code == 1


def test_a_port_held_by_another_process_names_the_process(local):
    local.compose("stop", "mlflow")
    squatter = subprocess.Popen([sys.executable, "-m", "http.server", str(local.port), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        name = Path(f"/proc/{squatter.pid}/comm").read_text().strip()
        code, failed, lines = local.doctor()
    finally:
        squatter.kill()
        squatter.wait()
        local.compose("up", "--detach", "--wait", "mlflow")
    assert check_line("port", f"port {local.port}: held by {name} (pid {squatter.pid}), not this stack's mlflow: "
                              "stop it, or set MLFLOW_PORT to a free port in .env; then make up") in failed
    # What needs MLflow is not checked, not counted.
    assert "--   host       not checked: mlflow is not running" in lines
    assert code == len(failed)


def test_a_port_held_by_another_container_names_the_container(local):
    image = load_compose({})["services"]["bootstrap"]["image"]  # any image of the stack with python3
    local.compose("stop", "mlflow")
    squatter = local.engine.containers.run(image, ["python3", "-m", "http.server", "8080"], detach=True,
                                           entrypoint=[], ports={"8080/tcp": ("127.0.0.1", local.port)})
    try:
        code, failed, _ = local.doctor()
    finally:
        squatter.remove(force=True)
        local.compose("up", "--detach", "--wait", "mlflow")
    assert check_line("port", f"port {local.port}: held by container {squatter.name} (project none), not this "
                              f"stack's mlflow: docker stop {squatter.name}, or set MLFLOW_PORT to a free port in "
                              ".env; then make up") in failed, failed
    assert code == len(failed)


def test_a_changed_public_url_fails_the_host_check(local):
    before = local.env_file.read_text()
    local.env_file.write_text(before + f"MLFLOW_PUBLIC_URL=http://devbox:{local.port}\n")
    try:
        code, failed, _ = local.doctor()
    finally:
        local.env_file.write_text(before)
    assert check_line("host", f"MLFLOW_PUBLIC_URL is http://devbox:{local.port} but mlflow was started for "
                              f"http://localhost:{local.port}, so it answers 403 Invalid Host header at "
                              f"http://devbox:{local.port}: make up recreates it") in failed
    assert code == len(failed)


def test_a_host_mlflow_refuses_is_named_with_mlflows_answer(local):
    # MLflow started for today's URL, yet refusing its Host: the allow-list the entrypoint derives, narrowed.
    # (/health would pass: MLflow exempts it from the Host check.)
    narrow = local.directory / "narrow-hosts.yaml"
    narrow.write_text("services:\n  mlflow:\n    environment:\n"
                      "      MLFLOW_SERVER_ALLOWED_HOSTS: 127.0.0.1,127.0.0.1:*,mlflow,mlflow:*\n")
    local.compose("-f", "compose.yaml", "-f", narrow.name, "up", "--detach", "--wait", "mlflow")
    try:
        code, failed, lines = local.doctor()
    finally:
        local.compose("up", "--detach", "--wait", "mlflow")
        narrow.unlink()
    host = f"localhost:{local.port}"
    refusal = "403 'Invalid Host header - possible DNS rebinding attack detected'"
    assert failed == [
        check_line("host", f"http://{host}/ answered {refusal} for Host {host}: the allow-list mlflow was started "
                           "with lacks it; make up recreates it from MLFLOW_PUBLIC_URL"),
        check_line("goose", f"http://{host}/v1/traces answered {refusal} to goose's settings in .env")], lines
    assert code == 2


def test_an_image_older_than_the_checkout_is_named_with_the_rebuild(local):
    # scripts/store.py of an image built before the doctor printed only the databases' schema.
    mlflow = local.container("mlflow")
    old_store = ("import json\nprint(json.dumps({'tracking': {'name': 'mlflow', 'revision': 'r', "
                 "'image_revision': 'r', 'experiments': []}}))\n")
    code, current = mlflow.exec_run(["cat", "scripts/store.py"])
    assert code == 0, current
    put_file(mlflow, "/opt/stack/scripts/store.py", old_store.encode())
    try:
        code, failed, _ = local.doctor()
    finally:
        put_file(mlflow, "/opt/stack/scripts/store.py", current)
    older = "mlflow runs an image older than this checkout: make up rebuilds it"
    assert failed == [check_line("bucket", older), check_line("experiment", older), check_line("evaluation", older)]
    assert code == 3


def test_a_missing_bucket_is_named_with_the_job_that_creates_it(local):
    code, output = local.container("mlflow").exec_run(
        ["docker-entrypoint.sh", "python3", "-c", "from lib import store; b = store.artifact_bucket(); c = b.client(); "
         "[c.delete_object(Bucket=b.name, Key=b.prefix + k) for k, _ in b.objects()]; c.delete_bucket(Bucket=b.name)"],
        environment={"PYTHONPATH": "scripts"})
    assert code == 0, output.decode()
    try:
        code, failed, lines = local.doctor()
    finally:
        local.up()
    assert failed == [check_line("bucket", "bucket mlflow-artifacts: An error occurred (404) when calling the "
                                           "HeadBucket operation: Not Found: make up creates it (the bucket job)")], lines
    assert code == 1


def test_a_stale_experiment_id_in_dot_env_is_caught(local):
    before = local.env_file.read_text()
    # Only in the traces headers: those are the ones goose sends.
    local.env_file.write_text(envfile.merge(before, {"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-mlflow-experiment-id=987654"}))
    try:
        code, failed, _ = local.doctor()
    finally:
        local.env_file.write_text(before)
    assert check_line("experiment", f"{local.env_file}: experiment 987654 is not on the server (deleted, or the "
                                    "stack was recreated by down -v): make up rewrites .env") in failed
    assert code == len(failed)


def test_goose_1_37_on_the_path_is_one_failure_and_the_rest_pass(local, goose):
    code, failed, lines = local.doctor(PATH=f"{goose.parent}:{os.environ['PATH']}")
    assert failed == [check_line("goose-cli", f"goose 1.37.0 ({goose}) sends no traces: its exporter thread panics "
                                              "(aaif-goose/goose issue #9494); upgrade goose: goose update")]
    assert code == 1 and len([line for line in lines if line.startswith("ok ")]) == len(CHECKS) - 1


def test_compression_in_the_shell_is_caught_although_dot_env_is_fine(local):
    code, failed, _ = local.doctor(OTEL_EXPORTER_OTLP_COMPRESSION="gzip")
    assert failed == [check_line("goose", "OTEL_EXPORTER_OTLP_COMPRESSION=gzip after source .env: goose's exporter "
                                          "has no compression and sends nothing; unset "
                                          "OTEL_EXPORTER_OTLP_COMPRESSION in your shell")]
    assert code == 1


def test_the_pins_in_dot_env_defeat_the_shells_other_traps(local):
    code, failed, _ = local.doctor(OTEL_SDK_DISABLED="true", OTEL_EXPORTER_OTLP_PROTOCOL="grpc",
                             OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://collector.example:4318/v1/traces")
    assert (code, failed) == (0, [])


def test_an_env_file_without_the_pins_lets_the_shells_traps_through(local):
    before = local.env_file.read_text()
    pins = ("OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    local.env_file.write_text(envfile.merge(before, {}, remove=pins))
    try:
        # goose reads `true` in any case, and the traces protocol before the generic one.
        code, failed, _ = local.doctor(OTEL_SDK_DISABLED="True", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                                 OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc")
    finally:
        local.env_file.write_text(before)
    assert failed == [
        check_line("goose", "OTEL_SDK_DISABLED=true after source .env: goose sends nothing; "
                            "unset OTEL_SDK_DISABLED in your shell"),
        check_line("goose", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc after source .env: goose has only HTTP and "
                            "skips export; unset it in your shell")]
    assert code == 2


# Team mode --------------------------------------------------------------------

def test_a_healthy_team_stack_passes_every_check(team_deployment):
    code, failed, lines = team_deployment.doctor()
    assert (code, failed) == (0, [])
    assert f"ok   port       port {team_deployment.https_port}: published by proxy" in lines


def test_a_persons_env_file_passes_the_goose_check_through_the_proxy(team_deployment):
    code, failed, lines = team_deployment.doctor("--env-file", "users/alice.env")
    assert (code, failed) == (0, [])
    assert any(line.startswith("ok   goose      after source ") for line in lines)


def test_a_persons_wrong_password_is_answered_401_through_the_proxy(team_deployment):
    stale = team_deployment.directory / "users" / "stale.env"
    values = team_deployment.values("alice")
    wrong = values["OTEL_EXPORTER_OTLP_HEADERS"].rsplit("Basic%20", 1)[0] + "Basic%20YWxpY2U6d3Jvbmc%3D"
    stale.write_text(envfile.merge(team_deployment.person_env_file("alice").read_text(), {
        "OTEL_EXPORTER_OTLP_HEADERS": wrong, "OTEL_EXPORTER_OTLP_TRACES_HEADERS": wrong}))
    try:
        code, failed, _ = team_deployment.doctor("--env-file", str(stale))
    finally:
        stale.unlink()
    assert len(failed) == 1 and failed[0].startswith(
        f"FAIL goose      {team_deployment.url}/v1/traces answered 401 ") and failed[0].endswith(
        f"to goose's settings in {stale}")
    assert code == 1


def test_a_person_who_lost_access_to_the_experiment_is_answered_403(team_deployment):
    team_deployment.run("make", "user", "NAME=dora", f"CA_FILE={team_deployment.ca}")
    experiment = team_deployment.values("dora")["MLFLOW_EXPERIMENT_ID"]
    # Permissions are managed inside the network only: the proxy refuses their routes to everyone.
    assert team_deployment.inside("admin", f"revoke('dora', 'experiment', {experiment!r})") == "None"
    try:
        code, failed, _ = team_deployment.doctor("--env-file", "users/dora.env")
    finally:
        team_deployment.run("make", "remove-user", "NAME=dora")
    assert len(failed) == 1 and failed[0].startswith(
        f"FAIL goose      {team_deployment.url}/v1/traces answered 403 ") and failed[0].endswith(
        f"to goose's settings in {team_deployment.person_env_file('dora')}")
    assert code == 1


def test_a_removed_proxy_is_named_with_make_team_up(team_deployment):
    team_deployment.compose("rm", "--stop", "--force", "proxy")
    try:
        code, failed, _ = team_deployment.doctor()
    finally:
        team_deployment.up("team-up")
    assert check_line("services", "proxy: not created: make team-up") in failed
    assert check_line("port", f"port {team_deployment.https_port}: nothing listens; proxy does not publish it: "
                              "make team-up") in failed
    assert code == len(failed)
