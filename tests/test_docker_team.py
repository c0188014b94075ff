"""Team mode under a real Docker engine: `make team-up`, accounts, TLS proxy, caps, nothing else exposed.

The deployment (conftest's team_deployment, harness/team.py) is shared with
the security suite; alice and bob have accounts.
"""

from __future__ import annotations

import csv
import datetime as dt
import http.client
import io
import json
import ssl
import sys
import uuid
from pathlib import Path

import pytest

from lib import otlp
from lib import stack_config as cfg
from compose_settings import PROJECT_LABEL
from harness import bare_client, guide
from harness.commands import bare_client_round_trip, client_env, experiment_id_in, run_sourced, source_and_emit
from harness.compose_file import REPO, load_compose
from harness.project import ComposeProject, clean_copy
from harness.proxy import otlp_batch_of

pytestmark = pytest.mark.docker
TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()


@pytest.fixture(scope="module")
def team(team_deployment):
    return team_deployment


def https(team, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
          with_ca: bool = True) -> tuple[int, dict[str, str]]:
    status, response_headers, _ = team.request(method, path, headers, body, with_ca=with_ca)
    return status, response_headers


def test_team_up_brings_the_stack_up_behind_the_proxy(team):
    states = team.states()
    for name in ("postgres", "minio", "mlflow", "proxy"):
        assert states[name][:2] == ("running", "healthy"), states
    assert "Experiment: goose-traces" in team.up_output


def test_only_the_proxy_is_published_and_on_the_bind_address(team):
    # On the port of MLFLOW_PUBLIC_URL: the deployment sets no TEAM_HTTPS_PORT.
    assert "TEAM_HTTPS_PORT" not in team.env
    assert team.published() == {("proxy", "127.0.0.1", team.https_port), ("proxy", "127.0.0.1", team.http_port)}


def test_the_server_certificate_verifies_with_the_generated_ca(team):
    assert https(team, "GET", "/health")[0] == 200


def test_the_server_certificate_does_not_verify_without_it(team):
    with pytest.raises(ssl.SSLCertVerificationError):
        https(team, "GET", "/health", with_ca=False)


def test_otlp_without_credentials_is_refused(team):
    status, _ = https(team, "POST", "/v1/traces", {"x-mlflow-experiment-id": "1",
                                                   "Content-Type": "application/x-protobuf"}, b"\x0a\x00")
    assert status == 401


def test_otlp_with_a_wrong_password_is_refused(team):
    status, _ = https(team, "POST", "/v1/traces", {
        "x-mlflow-experiment-id": "1", "Content-Type": "application/x-protobuf",
        "Authorization": cfg.basic_auth("alice", "wrong-password-123")}, b"\x0a\x00")
    assert status == 401


def test_user_env_file_sourced_by_the_sdk_lands_a_trace_over_tls(team):
    trace_id = source_and_emit(team.person_env_file("alice"), f"team-{uuid.uuid4().hex[:6]}")
    assert team.client("alice").get_trace(trace_id)["trace_info"]["trace_id"] == trace_id


def test_alices_and_bobs_sessions_through_the_proxy_each_name_their_sender(team):
    sent = {name: source_and_emit(team.person_env_file(name), f"who-{uuid.uuid4().hex[:6]}") for name in ("alice", "bob")}
    admin = team.client()
    assert {name: admin.get_trace(trace_id)["trace_info"]["trace_metadata"].get("mlflow.trace.user")
            for name, trace_id in sent.items()} == {"alice": "alice", "bob": "bob"}


def usage_total(team, person: str) -> dict[str, str]:
    """make usage's row of this person's total today (zeros when they sent nothing today)."""
    result = team.run("make", "usage", "CSV=1", f"SINCE={TODAY}")
    rows = {row["person"]: row for row in csv.DictReader(io.StringIO(result.stdout)) if row["day"] == "total"}
    return rows.get(person, {"replies": "0", "input tokens": "0", "output tokens": "0", "cost (USD)": "0"})


def test_make_usage_counts_what_each_person_sent_through_the_proxy(team):
    before = {name: usage_total(team, name) for name in ("alice", "bob")}
    sent = source_and_emit(team.person_env_file("alice"), f"usage-{uuid.uuid4().hex[:6]}")
    after = {name: usage_total(team, name) for name in ("alice", "bob")}
    assert after["bob"] == before["bob"]
    delta = {key: int(after["alice"][key]) - int(before["alice"][key]) for key in ("replies", "input tokens",
                                                                                   "output tokens")}
    # One goose reply, one model call of 321 tokens in and 45 out (harness/otel_emit.py).
    assert delta == {"replies": 1, "input tokens": 321, "output tokens": 45}
    cost = json.loads(team.client().get_trace(sent)["trace_info"]["trace_metadata"]["mlflow.trace.cost"])
    assert float(after["alice"]["cost (USD)"]) - float(before["alice"]["cost (USD)"]) == pytest.approx(
        cost["total_cost"])


def test_make_usage_prints_a_table_of_the_period_and_how_to_ask_for_another(team):
    source_and_emit(team.person_env_file("bob"), f"usage-{uuid.uuid4().hex[:6]}")
    lines = team.run("make", "usage", f"SINCE={TODAY}").stdout.splitlines()
    assert lines[0] == f"Usage {TODAY} to {TODAY} (UTC)"
    assert any(line.split()[:2] == [TODAY, "bob"] for line in lines)
    assert lines[-1] == "Another period: make usage SINCE=YYYY-MM-DD UNTIL=YYYY-MM-DD"


def test_bob_claiming_to_be_alice_through_the_proxy_is_recorded_as_bob(team):
    spans = otlp.goose_session(f"claim-{uuid.uuid4().hex[:6]}")
    for span in spans:
        span.attributes["user.id"] = "alice"
    body = otlp.encode_export_request(spans, {"service.name": "goose", "user.id": "alice"})
    experiment_id = experiment_id_in(team.person_env_file("bob"))
    status, _ = https(team, "POST", "/v1/traces", {
        "x-mlflow-experiment-id": experiment_id, "Content-Type": "application/x-protobuf",
        "Authorization": cfg.basic_auth("bob", team.password("bob"))}, body)
    assert status == 200
    trace = team.client().get_trace("tr-" + spans[0].trace_id.hex())
    assert trace["trace_info"]["trace_metadata"].get("mlflow.trace.user") == "bob"


def test_user_env_file_points_at_the_public_url_and_the_ca(team):
    values = team.values("alice")
    assert values["OTEL_EXPORTER_OTLP_ENDPOINT"] == team.url and values["OTEL_EXPORTER_OTLP_CERTIFICATE"] == team.ca
    assert team.person_env_file("alice").stat().st_mode & 0o777 == 0o600
    assert values["MLFLOW_TRACKING_PASSWORD"] not in team.user_output["alice"]


def test_make_verify_passes_with_the_user_env_file(team):
    result = team.run("make", "verify", "ENV_FILE=users/alice.env")
    assert "OK: trace tr-" in result.stdout


def test_user_cannot_write_to_another_experiment(team):
    other = team.client("admin").create_experiment(f"private-{uuid.uuid4().hex[:6]}")
    status, _ = https(team, "POST", "/v1/traces", {
        "x-mlflow-experiment-id": other, "Content-Type": "application/x-protobuf", **team.auth("alice")}, b"\x0a\x00")
    assert status == 403


def test_unknown_host_header_is_rejected_by_the_proxy(team):
    status, _ = https(team, "GET", "/health", {"Host": "attacker.example"})
    assert status == 421


def test_body_over_the_cap_gets_413_and_the_server_keeps_answering(team):
    # Only the headers go out: the proxy must refuse on the declared size alone,
    # before any of the body would reach MLflow (and without racing the upload).
    connection = http.client.HTTPSConnection("localhost", team.https_port, timeout=60,
                                             context=ssl.create_default_context(cafile=team.ca))
    try:
        connection.putrequest("POST", "/v1/traces")
        for name, value in {"x-mlflow-experiment-id": "1", "Content-Type": "application/x-protobuf",
                            "Content-Length": "10000001"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        assert connection.getresponse().status == 413
    finally:
        connection.close()
    assert https(team, "GET", "/health")[0] == 200


def post_otlp(team, body: bytes, chunked: bool) -> int:
    """POST /v1/traces as alice, with Content-Length or chunked: the status (0: the proxy cut it off)."""
    experiment_id = team.client("admin").get_experiment_by_name("goose-traces")["experiment_id"]
    return team.request("POST", "/v1/traces", {"x-mlflow-experiment-id": experiment_id,
                                               "Content-Type": "application/x-protobuf", **team.auth("alice")},
                        body, chunked=chunked)[0]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_batch_of_exactly_the_cap_lands_and_one_byte_more_is_refused(team, chunked):
    """The cap is inclusive on both paths: 10,000,000 bytes pass, 10,000,001 do not."""
    assert [post_otlp(team, otlp_batch_of(size), chunked) for size in (10_000_000, 10_000_001)] == [200, 413]


def test_plain_http_on_the_tls_port_is_refused(team):
    connection = http.client.HTTPConnection("localhost", team.https_port, timeout=30)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 400


def test_plain_http_port_redirects_to_https(team):
    connection = http.client.HTTPConnection("localhost", team.http_port, timeout=30)
    connection.request("GET", "/health")
    response = connection.getresponse()
    assert response.status == 308 and response.getheader("Location") == f"{team.url}/health"


def test_database_and_object_store_are_not_reachable_from_the_host(team):
    assert not {service for service, _, _ in team.published()} & {"postgres", "minio"}


def test_rerun_of_make_user_keeps_the_same_file(team):
    before = team.person_env_file("alice").read_bytes()
    result = team.run("make", "user", "NAME=alice", f"CA_FILE={team.ca}")
    assert "(kept;" in result.stdout
    assert team.person_env_file("alice").read_bytes() == before


def test_team_guides_command_reads_the_admin_password(team):
    result = team.run("docker", "compose", "-f", "compose.yaml", "-f", "compose.team.yaml", "exec", "mlflow", "cat",
                      "/run/secrets/stack/mlflow-admin-password")
    assert result.stdout.strip() == team.secret("mlflow-admin-password")


def test_a_persons_mlflow_client_logs_and_reads_back_an_artifact_through_the_proxy(team):
    code = ("import mlflow, pathlib, sys; p = pathlib.Path(sys.argv[1]); p.write_text('via the proxy');"
            "mlflow.set_experiment(sys.argv[2]);"
            "run = mlflow.start_run(); mlflow.log_artifact(str(p)); mlflow.end_run();"
            "print(open(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=p.name,"
            " dst_path=str(p.parent / 'back'))).read())")
    work = team.directory / "bob-work"
    work.mkdir(exist_ok=True)
    result = run_sourced(team.person_env_file("bob"), sys.executable, "-c", code, str(work / "note.txt"),
                         f"bob-{uuid.uuid4().hex[:6]}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "via the proxy"


def test_a_client_that_knows_only_the_tracking_uri_and_an_account_reads_and_writes_artifacts(team):
    """A teammate's notebook: the public URL, bob's account and the team CA, none of the env file's other
    settings. No presigned URL naming the store inside the stack is offered."""
    env = {**client_env(team.url), "MLFLOW_TRACKING_USERNAME": "bob", "MLFLOW_TRACKING_PASSWORD": team.password("bob"),
           "MLFLOW_TRACKING_SERVER_CERT_PATH": team.ca}
    assert bare_client_round_trip(env) == {
        "presigned_uploads": False, "presigned_downloads": False, "read_back": bare_client.TEXT}


def test_a_team_https_port_that_disagrees_with_the_public_url_is_refused_before_anything_starts(tmp_path):
    project = ComposeProject(clean_copy(tmp_path))
    project.env_file.write_text("MLFLOW_PUBLIC_URL=https://localhost:8443\nTEAM_HTTPS_PORT=443\n")
    try:
        result = project.run("make", "team-up", check=False)
        started = project.containers() + project.engine.volumes.list(
            filters={"label": f"{PROJECT_LABEL}={project.name}"})
    finally:
        project.down()  # were the check to regress, what it started must not hold port 8443 for later tests
    assert result.returncode != 0
    assert result.stderr.splitlines()[0] == ("make team-up: error: TEAM_HTTPS_PORT=443 disagrees with "
                                     "MLFLOW_PUBLIC_URL=https://localhost:8443 (port 8443): remove TEAM_HTTPS_PORT "
                                     "(the URL's port is used) or make them equal")
    # docs/team.md shows this output as it is.
    page = (REPO / "docs" / "team.md").read_text()
    assert all(line in page for line in result.stderr.splitlines() if not line.startswith("make: ***"))
    assert started == []


def teammate_machine(team, goose: Path, script: str) -> str:
    """`script` in bash, as root, on a Debian box beside the stack (the host's network, so `localhost` is the
    proxy's name) with alice.env, ca.crt and goose 1.37.0 copied over; its output and goose's."""
    image = load_compose({})["services"]["bootstrap"]["image"]  # the stack's Debian image, run as root
    files = team.directory / "users"
    # No sudo on the box; as root it changes nothing.
    prelude = "sudo() { \"$@\"; }\ncp /copied/alice.env /copied/ca.crt .\n"
    return team.engine.containers.run(
        image, ["bash", "-euo", "pipefail", "-c", prelude + script], entrypoint=[], user="root", remove=True,
        network_mode="host", working_dir="/root", stderr=True, environment={
            # goose's model call goes to the proxy too: its answer shows whether goose's TLS trusted the CA.
            "GOOSE_PROVIDER": "openai", "GOOSE_MODEL": "gpt-4o-mini", "OPENAI_API_KEY": "sk-none",
            "OPENAI_HOST": team.url, "GOOSE_DISABLE_KEYRING": "1"},
        volumes={str(files / "alice.env"): {"bind": "/copied/alice.env", "mode": "ro"},
                 str(files / "ca.crt"): {"bind": "/copied/ca.crt", "mode": "ro"},
                 str(goose): {"bind": "/usr/local/bin/goose", "mode": "ro"}}).decode()


def test_the_guides_commands_make_goose_on_a_debian_machine_trust_the_team_ca(team, goose):
    block = guide.block("docs/team.md", "sh", "sudo update-ca-certificates")
    debian = "\n".join(line for line in block.splitlines() if not line.endswith("# macOS"))
    session = "source alice.env && goose session"
    assert session in debian
    goose_run = "source alice.env && goose run --no-session --text 'say hi' || true"
    untrusted = teammate_machine(team, goose, goose_run)
    trusted = teammate_machine(team, goose, debian.replace(session, goose_run) + "\nls ~/.config/goose-mlflow/ca.crt")
    # The CA is the only difference between the two runs: goose names a failed verification this way.
    assert f"Could not connect to localhost:{team.https_port}" in untrusted
    assert f"Could not connect" not in trusted
    # The proxy's answer, over verified TLS: MLflow wants an account for every route.
    assert f"failed for {team.url}/v1/chat/completions. Status: 401 Unauthorized" in trusted, trusted
    assert trusted.rstrip().endswith("/root/.config/goose-mlflow/ca.crt")
