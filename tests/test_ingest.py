"""scripts/lib/ingest.py's rewriting of an OTLP export, in process (end to end: test_native_attribution.py)."""

from __future__ import annotations

import base64
import json
import os

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from harness.fake_credentials import capture_content, credentials, in_context, look_alikes
from lib import ingest, otlp, redact


def request_claiming(user: str) -> ExportTraceServiceRequest:
    spans = otlp.goose_session("s")
    for span in spans:
        span.attributes["user.id"] = user
    request = ExportTraceServiceRequest()
    request.ParseFromString(otlp.encode_export_request(spans, {"service.name": "goose", "user.id": user}))
    return request


def users(request: ExportTraceServiceRequest) -> list[list[str]]:
    """Each span's user.id values, then the resource's."""
    return [[a.value.string_value for a in span.attributes if a.key == "user.id"]
            for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans] + [
        [a.value.string_value for a in rs.resource.attributes if a.key == "user.id"] for rs in request.resource_spans]


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("authorization, user", [
    (basic("bo:secret"), "bo"), (basic("bo:pa:ss"), "bo"), ("basic " + base64.b64encode(b"bo:x").decode(), "bo"),
    (None, None), ("", None), ("Bearer abc", None), (basic("no-colon"), None), (basic(":secret"), None),
    ("Basic not-base64!", None)])
def test_the_user_is_the_name_in_basic_credentials_and_no_one_otherwise(authorization, user):
    assert ingest.basic_user(authorization) == user


def test_every_span_names_the_sender_and_nothing_else_the_client_said():
    request = request_claiming("ann")
    ingest.stamp_user(request, "bo")
    assert users(request) == [["bo"]] * 4 + [[]]


def test_without_a_sender_no_span_names_anyone():
    request = request_claiming("ann")
    ingest.stamp_user(request, None)
    assert users(request) == [[]] * 5


def test_the_other_attributes_are_kept_as_they_came():
    request = request_claiming("ann")
    before = [[(a.key, a.value) for a in span.attributes if a.key != "user.id"]
              for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    ingest.stamp_user(request, "bo")
    after = [[(a.key, a.value) for a in span.attributes if a.key != "user.id"]
             for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]
    assert after == before


@pytest.mark.parametrize("body, content_type, encoding", [
    (b"\xff\xff", "application/x-protobuf", None), (b"{", "application/json", None),
    (b"x", "text/plain", None), (b"not gzip", "application/x-protobuf", "gzip"),
    (b"", "application/x-protobuf", "br")])
def test_a_body_mlflow_would_refuse_is_not_read(body, content_type, encoding):
    assert ingest.parse(body, content_type, encoding) is None


def test_the_rewritten_body_is_sent_as_uncompressed_protobuf_of_its_new_length():
    scope = {"type": "http", "headers": [(b"content-type", b"application/json"), (b"content-encoding", b"gzip"),
                                         (b"content-length", b"99"), (b"authorization", b"Basic x")]}
    assert sorted(ingest.with_protobuf_body(scope, 12)["headers"]) == [
        (b"authorization", b"Basic x"), (b"content-length", b"12"), (b"content-type", b"application/x-protobuf")]


def captured_session(lines: list[str]) -> ExportTraceServiceRequest:
    spans = otlp.goose_session("s")
    capture_content(spans, lines)
    request = ExportTraceServiceRequest()
    request.ParseFromString(otlp.encode_export_request(spans, {"service.name": "goose"}))
    return request


def every_text(request: ExportTraceServiceRequest) -> str:
    return str(request)


def test_every_credential_in_captured_content_is_replaced_and_the_rest_kept():
    found = credentials(7)
    request = captured_session(list(in_context(found).values()))
    tally = ingest.redact_request(request, redact.Redactor())
    text = every_text(request)
    # Not a line of any credential remains (a private key's lines each on their own).
    assert [kind for kind, secret in found.items() if any(line in text for line in secret.splitlines())] == []
    # Each line sits in a tool's arguments, its result and two messages of each of the two model calls.
    assert tally.as_dict() == {"redacted": {kind: 6 for kind in sorted(found)}, "unscanned": 0}
    assert "gh auth status: Token: [REDACTED:github-token]" in json.loads(
        next(a.value.string_value for a in spans_of(request)[2].attributes if a.key == "gen_ai.tool.call.result")
    )[0]["text"]


def test_look_alikes_and_ids_stay_as_they_came():
    values = look_alikes(8)
    request = captured_session(list(values.values()))
    before = request.SerializeToString()
    assert not ingest.redact_request(request, redact.Redactor())
    assert request.SerializeToString() == before


def spans_of(request: ExportTraceServiceRequest) -> list:
    return [span for rs in request.resource_spans for ss in rs.scope_spans for span in ss.spans]


def test_span_names_status_events_links_scopes_and_resources_are_scanned_too():
    secret = credentials(9)["github-token"]
    request = captured_session([])
    span = spans_of(request)[0]
    span.name = f"run {secret}"
    span.status.message = f"failed with {secret}"
    event = span.events.add(name=f"exception {secret}")
    event.attributes.add(key="exception.message").value.string_value = secret
    span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8).attributes.add(key="note").value.string_value = secret
    request.resource_spans[0].scope_spans[0].scope.attributes.add(key="s").value.string_value = secret
    request.resource_spans[0].resource.attributes.add(key="r").value.string_value = secret
    nested = span.attributes.add(key="nested").value
    nested.array_value.values.add().kvlist_value.values.add(key="k").value.string_value = secret
    span.attributes.add(key="raw").value.bytes_value = secret.encode()
    tally = ingest.redact_request(request, redact.Redactor())
    assert secret not in str(request) and secret.encode() not in request.SerializeToString()
    assert tally.as_dict() == {"redacted": {"github-token": 9}, "unscanned": 0}


def test_bytes_that_are_not_text_are_kept_and_counted():
    request = captured_session([])
    spans_of(request)[0].attributes.add(key="blob").value.bytes_value = b"\xff\xfe" + os.urandom(32)
    before = request.SerializeToString()
    tally = ingest.redact_request(request, redact.Redactor())
    assert request.SerializeToString() == before
    assert tally.as_dict() == {"redacted": {}, "unscanned": 1}


def test_each_workers_tally_is_kept_in_its_file_and_make_status_reads_their_sum(tmp_path):
    first, second = ingest.WorkerTally(tmp_path), ingest.WorkerTally(tmp_path)
    second.path = tmp_path / "other-worker.json"
    first.record(ingest.Tally({"github-token": 2}, 1))
    first.record(ingest.Tally({"github-token": 1, "jwt": 1}))
    second.record(ingest.Tally({"jwt": 3}))
    second.record(ingest.Tally())
    assert json.loads(first.path.read_text()) == {"redacted": {"github-token": 3, "jwt": 1}, "unscanned": 1}
    assert ingest.read_tallies(tmp_path).as_dict() == {"redacted": {"github-token": 3, "jwt": 4}, "unscanned": 1}


def test_no_tally_is_read_where_no_worker_wrote_one(tmp_path):
    assert ingest.read_tallies(tmp_path / "absent").as_dict() == {"redacted": {}, "unscanned": 0}
