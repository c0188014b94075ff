"""Team mode against a hostile teammate: each finding of the probe (docs/security.md), replayed as the
attacker did it, through the real proxy, with two real accounts.

bob is the attacker; alice holds a private experiment with a run artifact and
a trace. A test named test_exposure_... asserts a hole only MLflow can close,
exactly as docs/security.md states it: the day a pinned release closes it, the
test fails, and the docs are corrected with it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import socket
import ssl
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from lib import otlp
from harness.commands import run_sourced

pytestmark = pytest.mark.docker

SECRET_ARTIFACT = b"alice's private notes"


@pytest.fixture(scope="module")
def team(team_deployment):
    return team_deployment


@pytest.fixture(scope="module")
def goose_traces(team) -> str:
    return str(team.client("admin").get_experiment_by_name("goose-traces")["experiment_id"])


@pytest.fixture(scope="module")
def alices_private(team) -> dict[str, str]:
    """alice's own experiment (only she may read it) with a run artifact and a trace."""
    alice = team.client("alice")
    experiment_id = alice.create_experiment(f"alice-private-{uuid.uuid4().hex[:6]}")
    run_id = alice.create_run(experiment_id)
    key = f"{experiment_id}/{run_id}/artifacts/notes.txt"
    status, _, _ = team.request("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{key}", team.auth("alice"),
                                SECRET_ARTIFACT)
    assert status == 200
    spans = otlp.goose_session(f"alice-{uuid.uuid4().hex[:6]}")
    status, _, _ = otlp_post(team, "alice", experiment_id, spans)
    assert status == 200
    return {"experiment_id": experiment_id, "run_id": run_id, "key": key,
            "trace_id": "tr-" + spans[0].trace_id.hex(), "trace_bytes": spans[0].trace_id.hex()}


def otlp_post(team, person: str, experiment_id: str, spans: list[otlp.Span], **headers: str):
    body = otlp.encode_export_request(spans, {"service.name": "goose"})
    return team.request("POST", "/v1/traces", {
        "x-mlflow-experiment-id": experiment_id, "Content-Type": "application/x-protobuf", **team.auth(person),
        **headers}, body)


def api(team, person: str, method: str, path: str, body: dict | None = None, **headers: str):
    status, _, reply = team.request(method, path, {**team.auth(person), "Content-Type": "application/json",
                                                   **headers}, json.dumps(body).encode() if body is not None else None)
    return status, reply


# HIGH -----------------------------------------------------------------------

def test_high_model_version_sourced_from_the_bucket_is_refused(team, alices_private):
    """Finding: a model version whose source is s3://<bucket>/<experiment>/<run> let any account read any
    object of the bucket through get-artifact, fetched with the store's own credentials."""
    model = f"bob-model-{uuid.uuid4().hex[:6]}"
    assert api(team, "bob", "POST", "/api/2.0/mlflow/registered-models/create", {"name": model})[0] == 200
    status, reply = api(team, "bob", "POST", "/api/2.0/mlflow/model-versions/create", {
        "name": model, "source": f"s3://mlflow-artifacts/{alices_private['experiment_id']}/"
                                 f"{alices_private['run_id']}/artifacts"})
    assert status == 400 and b"Invalid model version source" in reply
    status, reply = api(team, "bob", "GET", f"/api/2.0/mlflow/model-versions/get-artifact?name={model}"
                                            "&version=1&path=notes.txt")
    assert status != 200 and SECRET_ARTIFACT not in reply


def test_high_fix_keeps_prompts_working_for_an_account(team):
    name = f"bob-prompt-{uuid.uuid4().hex[:6]}"
    result = run_sourced(team.person_env_file("bob"), sys.executable, "-c",
                         "import sys, mlflow; p = mlflow.genai.register_prompt(name=sys.argv[1], template='Hi {{x}}');"
                         "print(mlflow.genai.load_prompt(f'prompts:/{sys.argv[1]}/{p.version}').template)", name)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "Hi {{x}}"


def test_high_alices_artifact_is_not_readable_by_bob_directly(team, alices_private):
    status, reply = api(team, "bob", "GET", f"/api/2.0/mlflow-artifacts/artifacts/{alices_private['key']}")
    assert status == 403 and SECRET_ARTIFACT not in reply


def test_high_spans_sent_to_bobs_experiment_with_alices_trace_id_are_refused(team, goose_traces, alices_private):
    """Finding: MLflow 3.17.2 checked only the header's experiment on /v1/traces, so bob, who may write to
    goose-traces, added spans to a trace of alice's private experiment by reusing its trace id. 3.18.0
    checks the trace's own experiment (SqlAlchemyStore._log_spans_once)."""
    span = otlp.Span(bytes.fromhex(alices_private["trace_bytes"]), os.urandom(8), "bob was here",
                     time.time_ns(), time.time_ns() + 1000)
    status, _, reply = otlp_post(team, "bob", goose_traces, [span])
    assert status != 200 and b"already exists in another experiment" in reply, (status, reply)
    names = [item["name"] for item in team.client("alice").get_trace(alices_private["trace_id"])["spans"]]
    assert "bob was here" not in names


# The jobs API (docs/security.md): each of the probe's four attacks, as bob sent them.
JOBS = "/ajax-api/3.0/jobs/"
JOBS_REFUSED = (403, b"refused at the proxy: server jobs are started on the server (docs/security.md)")


def regex_scorer(pattern: str) -> str:
    from mlflow.genai.scorers.builtin_scorers import RegexMatch

    return json.dumps(RegexMatch(pattern=pattern).model_dump())


@pytest.fixture(scope="module")
def bobs_run(team, goose_traces) -> str:
    return team.client("bob").create_run(goose_traces)


def run_data(team, person: str, run_id: str) -> dict:
    return team.client(person).request("GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]


def test_high_a_private_trace_is_not_copied_into_goose_traces_through_the_jobs_api(team, alices_private, bobs_run,
                                                                                    goose_traces):
    before = team.client("admin").trace_ids(goose_traces)
    status, reply = api(team, "bob", "POST", JOBS, {"job_name": "invoke_genai_evaluate", "params": {
        "trace_ids": [alices_private["trace_id"]], "serialized_scorers": [regex_scorer("alice")],
        "run_id": bobs_run, "experiment_id": goose_traces}})
    assert (status, reply) == JOBS_REFUSED
    assert team.client("admin").trace_ids(goose_traces) == before
    assert "metrics" not in run_data(team, "bob", bobs_run)["data"]


def test_high_a_private_trace_is_neither_probed_nor_annotated_through_the_jobs_api(team, alices_private):
    status, reply = api(team, "bob", "POST", JOBS, {"job_name": "invoke_scorer", "params": {
        "experiment_id": alices_private["experiment_id"], "serialized_scorer": regex_scorer("secret"),
        "trace_ids": [alices_private["trace_id"]], "log_assessments": True}})
    assert (status, reply) == JOBS_REFUSED
    assert not team.client("alice").get_trace(alices_private["trace_id"])["trace_info"].get("assessments")


@pytest.mark.parametrize("job_name", ["invoke_genai_evaluate", "invoke_issue_detection", "run_online_trace_scorer"])
def test_high_private_runs_and_experiments_are_not_written_through_the_jobs_api(team, alices_private, job_name):
    run_before = run_data(team, "alice", alices_private["run_id"])
    experiment_before = team.client("alice").get_experiment(alices_private["experiment_id"])
    params = {
        "invoke_genai_evaluate": {"trace_ids": [alices_private["trace_id"]], "run_id": alices_private["run_id"],
                                  "serialized_scorers": [regex_scorer("x")]},
        "invoke_issue_detection": {"experiment_id": alices_private["experiment_id"], "run_id": alices_private["run_id"],
                                   "trace_ids": [alices_private["trace_id"]], "categories": ["bob"]},
        "run_online_trace_scorer": {"experiment_id": alices_private["experiment_id"], "online_scorers": [{
            "name": "bobs", "serialized_scorer": regex_scorer("x"), "online_config": {"sample_rate": 1.0}}]},
    }[job_name]
    assert api(team, "bob", "POST", JOBS, {"job_name": job_name, "params": params}) == JOBS_REFUSED
    assert run_data(team, "alice", alices_private["run_id"]) == run_before
    assert team.client("alice").get_experiment(alices_private["experiment_id"]) == experiment_before


def test_high_a_gateway_judge_is_not_run_on_demand_through_the_jobs_api(team, goose_traces, alices_private):
    from mlflow.genai import make_judge

    judge = make_judge(name="bobs_oracle", model="gateway:/judge", feedback_value_type=str,
                       instructions="Quote the secret in {{ trace }}.")
    status, reply = api(team, "bob", "POST", JOBS, {"job_name": "invoke_scorer", "params": {
        "experiment_id": goose_traces, "serialized_scorer": json.dumps(judge.model_dump()),
        "trace_ids": [alices_private["trace_id"]], "log_assessments": False}})
    assert (status, reply) == JOBS_REFUSED


@pytest.mark.parametrize("path", ["/ajax-api/3.0/jobs", "/AJAX-API/3.0/Jobs/", "/ajax-api/3.0/job%73/",
                                  "//ajax-api/3.0/jobs/", "/ajax-api//3.0//jobs/", "/ajax-api/3.0/jobs/search",
                                  "/api/3.0/jobs/", "/ajax-api/3.0/mlflow/jobs/1", "/ajax-api/3.0/jobs/cancel/1"])
def test_high_every_spelling_of_the_jobs_api_is_refused_at_the_proxy(team, path):
    assert api(team, "bob", "POST", path, {"job_name": "invoke_scorer", "params": {}}) == JOBS_REFUSED


def test_high_mlflow_itself_refuses_a_teammates_job_inside_the_network(team):
    """Behind the proxy too: MLflow 3.18.0 lets only the admin submit a job."""
    script = ("import json, sys, urllib.request, urllib.error\n"
              "request = urllib.request.Request('http://127.0.0.1:5000/ajax-api/3.0/jobs/', method='POST',"
              " data=json.dumps({'job_name': 'invoke_scorer', 'params': {}}).encode(),"
              " headers={'Content-Type': 'application/json', 'Authorization': sys.argv[1]})\n"
              "try:\n    print(urllib.request.urlopen(request).status)\n"
              "except urllib.error.HTTPError as error:\n    print(error.code)")
    assert team.exec("mlflow", "python3", "-c", script, team.auth("bob")["Authorization"]).strip() == "403"


# MEDIUM ---------------------------------------------------------------------

# Judges on goose-traces: alice's judge in the probe; here the one make judge started, with a gateway
# endpoint set up (without one, MLflow 3.18.0 refused bob's registration itself).
JUDGE_WRITE = (403, b"refused at the proxy: judges are registered on the server with make judge (docs/evaluation.md)")


@pytest.fixture(scope="module")
def teams_judge(team, tmp_path_factory) -> Iterator[str]:
    """A judge started on goose-traces with make judge (EVALUATION stays off: it never runs); removed after,
    so the shared deployment starts no judge for the doctor suite."""
    key = tmp_path_factory.mktemp("key") / "provider.key"
    key.write_text("sk-never-called\n")
    team.run("bash", "-c", f"make gateway-endpoint NAME=security-judge MODEL=openai:/gpt-4o-mini < {key}")
    name = f"alice_judge_{uuid.uuid4().hex[:6]}"
    team.run("bash", "-c", f"echo \"Alice's review of {{{{ trace }}}}\" | "
                           f"make judge NAME={name} MODEL=gateway:/security-judge")
    yield name
    team.run("make", "remove-judge", f"NAME={name}")


def judge_instructions(team, goose_traces: str, name: str) -> str:
    scorer = team.client("admin").request("GET", "/api/3.0/mlflow/scorers/get",
                                          query={"experiment_id": goose_traces, "name": name})["scorer"]
    return json.loads(scorer["serialized_scorer"])["instructions_judge_pydantic_data"]["instructions"]


def test_medium_a_teammate_cannot_take_over_the_teams_judge(team, goose_traces, teams_judge):
    """Finding: bob registered his judge under the name of alice's on goose-traces, which MLflow made its
    version 2; her next read returned his definition."""
    from mlflow.genai import make_judge

    bobs = make_judge(name=teams_judge, model="gateway:/security-judge", feedback_value_type=str,
                      instructions="Bob's takeover of {{ trace }}")
    assert api(team, "bob", "POST", "/api/3.0/mlflow/scorers/register", {
        "experiment_id": goose_traces, "name": teams_judge,
        "serialized_scorer": json.dumps(bobs.model_dump())}) == JUDGE_WRITE
    assert judge_instructions(team, goose_traces, teams_judge) == "Alice's review of {{ trace }}"


def test_medium_a_teammate_cannot_delete_the_teams_judge(team, goose_traces, teams_judge):
    assert api(team, "bob", "DELETE", "/api/3.0/mlflow/scorers/delete",
               {"experiment_id": goose_traces, "name": teams_judge}) == JUDGE_WRITE
    assert judge_instructions(team, goose_traces, teams_judge) == "Alice's review of {{ trace }}"


def test_medium_a_teammate_cannot_stop_the_teams_judge(team, goose_traces, teams_judge):
    assert api(team, "bob", "PUT", "/ajax-api/3.0/mlflow/scorers/online-config",
               {"experiment_id": goose_traces, "name": teams_judge, "sample_rate": 0}) == JUDGE_WRITE
    assert team.sql("SELECT c.sample_rate FROM online_scoring_configs c JOIN scorers s ON s.scorer_id = c.scorer_id "
                    f"WHERE s.scorer_name = '{teams_judge}'") == "1"


def test_medium_compressed_request_body_is_refused_at_the_proxy(team, goose_traces):
    """Finding: a 1 MB gzip body expanded without bound inside MLflow (711 MiB to 2.57 GiB)."""
    body = gzip.compress(otlp.encode_export_request(otlp.goose_session("gzip"), {"service.name": "goose"}))
    status, _, reply = team.request("POST", "/v1/traces", {
        "x-mlflow-experiment-id": goose_traces, "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip", **team.auth("bob")}, body)
    assert status == 415 and b"compressed request bodies are refused" in reply


def test_medium_uncompressed_otlp_still_lands(team, goose_traces):
    assert otlp_post(team, "bob", goose_traces, otlp.goose_session("plain"))[0] == 200


def test_medium_mlflow_is_memory_limited(team):
    assert team.container("mlflow").attrs["HostConfig"]["Memory"] == 2 * 1024**3


@pytest.mark.parametrize("prefix", ["/api/2.0", "/ajax-api/2.0"])
def test_medium_a_teammate_cannot_rename_the_shared_experiment(team, goose_traces, prefix):
    """Finding: EDIT on goose-traces let anyone rename it, so the next make user made a second one."""
    status, reply = api(team, "bob", "POST", f"{prefix}/mlflow/experiments/update",
                        {"experiment_id": goose_traces, "new_name": "not-goose-traces"})
    assert status == 403 and b"managed on the server" in reply
    assert team.client("admin").get_experiment(goose_traces)["name"] == "goose-traces"


def test_medium_a_teammate_cannot_delete_the_shared_experiment(team, goose_traces):
    status, _ = api(team, "bob", "POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": goose_traces})
    assert status == 403
    assert team.client("admin").get_experiment(goose_traces)["lifecycle_stage"] == "active"


# LOW ------------------------------------------------------------------------

def test_low_a_foreign_origin_is_refused(team):
    """Finding: MLflow lets loopback origins on any port make credentialed requests."""
    name = f"via-origin-{uuid.uuid4().hex[:6]}"
    status, _ = api(team, "bob", "POST", "/api/2.0/mlflow/experiments/create", {"name": name},
                    Origin="http://localhost:3000")
    assert status == 403
    assert team.client("admin").get_experiment_by_name(name) is None


def test_low_the_public_origin_is_served(team):
    status, _ = api(team, "bob", "POST", "/api/2.0/mlflow/experiments/create",
                    {"name": f"same-origin-{uuid.uuid4().hex[:6]}"}, Origin=team.url)
    assert status == 200


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/users/list", "/ajax-api/2.0/mlflow/users/list",
                                  "/api/3.0/mlflow/users/permissions/list?username=alice"])
def test_low_account_listings_are_refused_to_teammates(team, path):
    status, reply = api(team, "bob", "GET", path)
    assert status == 403 and b"alice" not in reply


def test_low_a_person_still_sees_who_they_are(team):
    status, reply = api(team, "bob", "GET", "/api/2.0/mlflow/users/current")
    assert status == 200 and json.loads(reply)["user"]["username"] == "bob"


def test_low_a_person_still_sees_their_own_permissions_as_the_ui_asks(team):
    status, reply = api(team, "bob", "GET", "/ajax-api/3.0/mlflow/users/current/permissions")
    assert status == 200 and b"alice" not in reply


def test_low_account_admin_is_refused_through_the_proxy_even_to_the_admin(team):
    status, _ = api(team, "admin", "POST", "/api/2.0/mlflow/users/create",
                    {"username": "mallory", "password": "m" * 16})
    assert status == 403


def test_prometheus_metrics_are_refused_through_the_proxy(team):
    status, _, body = team.request("GET", "/metrics", headers=team.auth("admin"))
    assert status == 403 and b"mlflow_" not in body


def test_prometheus_metrics_answer_inside_the_network_to_an_account(team):
    """A scraper inside the network authenticates as an account (here the admin, whose password the
    retention container holds); without one, MLflow's basic-auth answers 401."""
    scrape = ("import base64, os, sys, urllib.request, urllib.error\n"
              "request = urllib.request.Request('http://mlflow:5000/metrics')\n"
              "if sys.argv[1] == 'auth':\n"
              "    token = base64.b64encode(f\"admin:{os.environ['MLFLOW_TRACKING_PASSWORD']}\".encode()).decode()\n"
              "    request.add_header('Authorization', 'Basic ' + token)\n"
              "try:\n"
              "    print(urllib.request.urlopen(request).read().decode())\n"
              "except urllib.error.HTTPError as exc:\n"
              "    print(exc.code)\n")
    assert "mlflow_otlp_request_duration_seconds" in team.exec("retention", "docker-entrypoint.sh", "python3", "-c",
                                                              scrape, "auth")
    assert team.exec("retention", "docker-entrypoint.sh", "python3", "-c", scrape, "none").strip() == "401"


def test_low_the_demo_generator_is_refused(team):
    assert api(team, "bob", "POST", "/ajax-api/3.0/mlflow/demo/generate", {})[0] == 403


def test_low_answers_name_no_server_software_and_demand_https(team):
    _, headers, _ = team.request("GET", "/health")
    assert "uvicorn" not in headers.get("Server", "").lower() and "caddy" not in headers.get("Server", "").lower()
    assert headers["Strict-Transport-Security"] == "max-age=31536000"


def test_low_answers_advertise_no_http3_on_a_port_that_is_not_published(team):
    """Finding: every answer carried `alt-svc: h3=":<port>"`, but only TCP is published."""
    status, headers, _ = team.request("GET", "/health")
    assert status == 200 and "alt-svc" not in {name.lower() for name in headers}, headers


def test_low_a_zero_padded_content_length_over_the_cap_gets_413(team, goose_traces):
    context = ssl.create_default_context(cafile=team.ca)
    with socket.create_connection(("localhost", team.https_port), timeout=30) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(f"POST /v1/traces HTTP/1.1\r\nHost: localhost:{team.https_port}\r\n"
                    f"x-mlflow-experiment-id: {goose_traces}\r\nContent-Length: 000000000010000001\r\n\r\n".encode())
        assert tls.recv(64).startswith(b"HTTP/1.1 413")


def test_low_port_80_redirects_to_the_public_url_whatever_the_host(team):
    status, headers, _ = team.request("GET", "/health", {"Host": "attacker.example"}, port=team.http_port)
    assert status == 308 and headers["Location"] == f"{team.url}/health"


def test_low_ai_gateway_keys_are_encrypted_with_a_generated_passphrase(team):
    environ = dict(line.split("=", 1) for line in
                   team.exec("mlflow", "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ").splitlines() if "=" in line)
    digest = hashlib.sha256(environ.get("MLFLOW_CRYPTO_KEK_PASSPHRASE", "").encode()).hexdigest()
    assert digest == hashlib.sha256(team.secret("mlflow-kek-passphrase").encode()).hexdigest()


def test_low_a_client_dripping_its_headers_is_cut_off(team):
    """Finding: no read timeouts; one byte every 3 s held a connection open."""
    context = ssl.create_default_context(cafile=team.ca)
    with socket.create_connection(("localhost", team.https_port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(f"GET /health HTTP/1.1\r\nHost: localhost:{team.https_port}\r\n".encode())
        closed = False
        for _ in range(30):  # up to ~60 s; the proxy allows 10 s for the headers
            try:
                tls.sendall(b"X")
                time.sleep(2)
                tls.settimeout(0.1)
                closed = tls.recv(1) == b""
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            except OSError:
                closed = True
            if closed:
                break
        assert closed


def test_exposure_wrong_passwords_lock_nothing_out(team):
    """Finding: MLflow's basic-auth has no lockout; docs/security.md says so and how to limit guessing."""
    for _ in range(20):
        assert team.request("GET", "/api/2.0/mlflow/users/current",
                            {"Authorization": "Basic " + "Ym9iOndyb25n"})[0] == 401  # bob:wrong
    assert api(team, "bob", "GET", "/api/2.0/mlflow/users/current")[0] == 200
