"""Credentials in a session are replaced before MLflow stores them (scripts/lib/ingest.py, scripts/lib/redact.py).

The servers are compose.yaml's mlflow service run natively through the
image's entrypoint; what is stored is read whole with pg_dump. Through
Docker (the database dump, the bucket and every container's logs):
test_docker_stack.py.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from harness.fake_credentials import capture_content, credentials, in_context, leaked, look_alikes
from harness.native import free_port, stop_processes
from lib import otlp
from lib.ingest import read_tallies
from lib.mlflow_api import MlflowClient


def database_dump(native_stack) -> str:
    """The whole tracking database as SQL text, as MLflow's own role reads it."""
    uri = native_stack.database_uri("mlflow", native_stack.secret("mlflow-db-password"), "mlflow")
    return subprocess.run([str(native_stack.postgres.bindir / "pg_dump"), "--no-owner", uri], capture_output=True,
                          text=True, check=True).stdout


def send_captured_session(url: str, experiment_id: str, lines: list[str]) -> tuple[str, list[otlp.Span]]:
    spans = otlp.goose_session(f"redact-{uuid.uuid4().hex[:8]}")
    capture_content(spans, lines)
    status, _ = otlp.export(url + "/v1/traces", otlp.encode_export_request(spans, {"service.name": "goose"}),
                            {"x-mlflow-experiment-id": experiment_id})
    assert status == 200
    return "tr-" + spans[0].trace_id.hex(), spans


def stored_tool_result(native_stack, trace_id: str) -> str:
    """The text of the tool result MLflow stored for the trace (span attributes are JSON-encoded in its rows)."""
    [(content,)] = native_stack.query("SELECT content FROM spans WHERE trace_id = %s AND name LIKE 'execute_tool%%'",
                                      (trace_id,))
    value = json.loads(json.loads(content)["attributes"]["gen_ai.tool.call.result"])
    return (json.loads(value) if isinstance(value, str) else value)[0]["text"]


@pytest.fixture(scope="module")
def experiment_id(native_stack, bootstrapped) -> str:
    return str(MlflowClient(native_stack.mlflow_url).get_experiment_by_name("goose-traces")["experiment_id"])


@pytest.fixture(scope="module")
def sent(native_stack, experiment_id) -> dict:
    """One session through the stack's server, with a credential of every kind and look-alikes in its content."""
    found, alike = credentials(), look_alikes()
    trace_id, spans = send_captured_session(native_stack.mlflow_url, experiment_id,
                                            [*in_context(found).values(), *alike.values()])
    return {"credentials": found, "look_alikes": alike, "trace_id": trace_id, "spans": spans}


def server(native_stack, tmp_path_factory, **env: str) -> Iterator[str]:
    """Another mlflow service of compose.yaml on the same stores, with `env` over its environment."""
    tallies = tmp_path_factory.mktemp("tallies")
    process, url = native_stack.start_mlflow(native_stack.compose, native_stack.replacements, free_port(),
                                             f"mlflow-{uuid.uuid4().hex[:6]}.log",
                                             extra_env={"REDACTION_TALLY_DIR": str(tallies), **env})
    try:
        yield url, tallies
    finally:
        stop_processes([process])


@pytest.fixture(scope="module")
def redaction_off(native_stack, bootstrapped, tmp_path_factory):
    yield from server(native_stack, tmp_path_factory, REDACTION="off")


@pytest.fixture(scope="module")
def team_patterns(native_stack, bootstrapped, tmp_path_factory):
    yield from server(native_stack, tmp_path_factory, REDACTION_PATTERNS=r"acme-token=acme_[0-9a-f]{32} "
                                                                         r"ticket-secret=ticket:(\w{12})")


def test_no_credential_of_the_session_is_anywhere_in_the_database(native_stack, sent):
    assert leaked(sent["credentials"], database_dump(native_stack)) == []


def test_each_credential_is_stored_as_its_marker_with_the_text_around_it(native_stack, sent):
    text = stored_tool_result(native_stack, sent["trace_id"])
    for kind, line in in_context(sent["credentials"]).items():
        assert line.replace(sent["credentials"][kind], f"[REDACTED:{kind}]") in text, kind


def test_ids_hashes_and_image_data_are_stored_as_they_came(native_stack, sent):
    dump = database_dump(native_stack)
    assert [name for name, value in sent["look_alikes"].items() if value not in dump] == []


def test_every_span_is_stored(native_stack, sent):
    stored = MlflowClient(native_stack.mlflow_url).get_trace(sent["trace_id"])
    assert sorted(span["name"] for span in stored["spans"]) == sorted(span.name for span in sent["spans"])


def test_with_redaction_off_credentials_are_stored_as_sent(native_stack, experiment_id, redaction_off):
    """The same check as above against a server with REDACTION=off: it would fail, so it can."""
    url, _ = redaction_off
    found = credentials()
    send_captured_session(url, experiment_id, list(in_context(found).values()))
    assert leaked(found, database_dump(native_stack)) == list(found)


def test_a_teams_own_patterns_are_redacted_under_their_kinds_and_counted(native_stack, experiment_id, team_patterns):
    url, tallies = team_patterns
    token, ticket = "acme_" + uuid.uuid4().hex, "ticket:" + uuid.uuid4().hex[:12]
    trace_id, _ = send_captured_session(url, experiment_id, [f"deploy with {token}", f"see {ticket}"])
    dump = database_dump(native_stack)
    assert token not in dump and ticket.split(":")[1] not in dump
    assert "[REDACTED:acme-token]" in str(MlflowClient(url).get_trace(trace_id))
    # Each line is in a tool's arguments and result and in two messages of each of the two model calls.
    assert read_tallies(tallies).as_dict() == {"redacted": {"acme-token": 6, "ticket-secret": 6}, "unscanned": 0}


def test_a_bad_team_pattern_stops_the_server_in_one_line(native_stack, tmp_path):
    log_name = f"mlflow-bad-{uuid.uuid4().hex[:6]}.log"
    with pytest.raises(Exception):
        native_stack.start_mlflow(native_stack.compose, native_stack.replacements, free_port(), log_name,
                                  extra_env={"REDACTION_PATTERNS": "acme-token=acme_[0-9"})
    lines = (native_stack.root / log_name).read_text().splitlines()
    assert [line for line in lines if line.startswith("serve: ")] == [
        "serve: error: REDACTION_PATTERNS entry acme-token: 'acme_[0-9' is not a regular expression "
        "(unterminated character set at position 5); fix it in .env and run make up"]
