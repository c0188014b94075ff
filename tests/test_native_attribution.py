"""Every trace names the account that sent it (scripts/serve.py, scripts/lib/ingest.py), natively.

The servers are compose.yaml's and compose.team.yaml's mlflow services run
through the image's entrypoint, so these tests also fail if an MLflow release
changes what serve.py relies on (the uvicorn command `mlflow server` builds):
the ingest layer would then not run, and no trace would name its sender.
Through the real proxy and goose's own path: test_docker_team.py.
"""

from __future__ import annotations

import base64
import gzip
import json
import urllib.error
import urllib.request
import uuid

import pytest
from google.protobuf.json_format import MessageToJson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from harness.commands import run_script
from lib import envfile, otlp
from lib import stack_config as cfg
from lib.mlflow_api import MlflowApiError, MlflowClient

USER = "mlflow.trace.user"


def session(claimed_user: str | None = None) -> tuple[str, list[otlp.Span]]:
    """A goose reply, each span claiming `claimed_user` when given; its trace id as MLflow names it."""
    spans = otlp.goose_session(f"who-{uuid.uuid4().hex[:8]}")
    if claimed_user:
        for span in spans:
            span.attributes["user.id"] = claimed_user
    return "tr-" + spans[0].trace_id.hex(), spans


def send(url: str, experiment_id: str, spans: list[otlp.Span], auth: str | None = None,
         resource: dict | None = None, content_type: str = "application/x-protobuf", encoding: str | None = None) -> int:
    body = otlp.encode_export_request(spans, resource or {"service.name": "goose"})
    if content_type == "application/json":
        body = otlp_json(body)
    if encoding == "gzip":
        body = gzip.compress(body)
    headers = {"x-mlflow-experiment-id": experiment_id, "Content-Type": content_type,
               **({"Content-Encoding": encoding} if encoding else {}), **({"Authorization": auth} if auth else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/v1/traces", data=body, headers=headers),
                                    timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


def otlp_json(body: bytes) -> bytes:
    """OTLP/JSON of a protobuf export request: protobuf's JSON mapping, but ids in hex, as OTLP/JSON has them."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    document = json.loads(MessageToJson(request))
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(document).encode()


def recorded_user(client: MlflowClient, trace_id: str) -> str | None:
    return client.get_trace(trace_id)["trace_info"]["trace_metadata"].get(USER)


@pytest.fixture(scope="module")
def accounts(team_stack, tmp_path_factory) -> dict[str, str]:
    """ann and bo, made as make user makes them: name -> Authorization header."""
    directory = tmp_path_factory.mktemp("attribution")
    headers = {}
    for name in ("ann", "bo"):
        result = team_stack.run_job("bootstrap", "--public-url", team_stack.url, "--user", name,
                                    "--users-dir", str(directory / "users"))
        assert result.returncode == 0, result.stderr
        values = envfile.parse((directory / "users" / f"{name}.env").read_text())
        headers[name] = cfg.basic_auth(name, values["MLFLOW_TRACKING_PASSWORD"])
    return headers


@pytest.fixture(scope="module")
def team_experiment(team_stack) -> tuple[MlflowClient, str]:
    admin = MlflowClient(team_stack.url, headers={"Authorization": cfg.basic_auth("admin", team_stack.admin_password)})
    return admin, str(admin.get_experiment_by_name("goose-traces")["experiment_id"])


def test_each_persons_session_names_its_sender(team_stack, accounts, team_experiment):
    admin, experiment_id = team_experiment
    sent = {}
    for name in ("ann", "bo"):
        sent[name], spans = session()
        assert send(team_stack.url, experiment_id, spans, accounts[name]) == 200
    assert {name: recorded_user(admin, trace_id) for name, trace_id in sent.items()} == {"ann": "ann", "bo": "bo"}


def test_a_teammate_claiming_anothers_name_is_recorded_as_themselves(team_stack, accounts, team_experiment):
    admin, experiment_id = team_experiment
    trace_id, spans = session(claimed_user="ann")
    assert send(team_stack.url, experiment_id, spans, accounts["bo"], resource={"service.name": "goose",
                                                                                "user.id": "ann"}) == 200
    assert recorded_user(admin, trace_id) == "bo"


@pytest.mark.parametrize("content_type, encoding", [("application/json", None), ("application/x-protobuf", "gzip")])
def test_a_claim_in_json_or_a_compressed_body_is_recorded_as_the_sender_too(team_stack, accounts, team_experiment,
                                                                            content_type, encoding):
    admin, experiment_id = team_experiment
    trace_id, spans = session(claimed_user="ann")
    assert send(team_stack.url, experiment_id, spans, accounts["bo"], content_type=content_type,
                encoding=encoding) == 200
    assert recorded_user(admin, trace_id) == "bo"


def test_a_wrong_password_is_still_refused_and_stores_nothing(team_stack, accounts, team_experiment):
    admin, experiment_id = team_experiment
    trace_id, spans = session()
    assert send(team_stack.url, experiment_id, spans, cfg.basic_auth("ann", "not-her-password")) == 401
    with pytest.raises(MlflowApiError) as missing:
        admin.get_trace(trace_id)
    assert missing.value.status == 404


def test_a_body_mlflow_cannot_read_is_refused_as_mlflow_refuses_it(team_stack, accounts, team_experiment):
    _, experiment_id = team_experiment
    status, _ = otlp.export(team_stack.url + "/v1/traces", b"\xff\xffnot protobuf", {
        "x-mlflow-experiment-id": experiment_id, "Content-Type": "application/x-protobuf",
        "Authorization": accounts["bo"]})
    assert status == 400


def test_in_local_mode_a_trace_names_no_one_whatever_the_client_claims(native_stack, bootstrapped):
    client = MlflowClient(native_stack.mlflow_url)
    experiment_id = str(client.get_experiment_by_name("goose-traces")["experiment_id"])
    trace_id, spans = session(claimed_user="ann")
    assert send(native_stack.mlflow_url, experiment_id, spans) == 200
    assert recorded_user(client, trace_id) is None


def test_the_rest_of_mlflow_is_served_as_before(native_stack, bootstrapped):
    """Everything but the OTLP route goes straight to MLflow: the bootstrap's own calls, a search, the UI."""
    result = run_script("verify.py", "--env-file", str(bootstrapped))
    assert result.returncode == 0, result.stderr
