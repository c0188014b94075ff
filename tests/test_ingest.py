"""scripts/lib/ingest.py's rewriting of an OTLP export, in process (end to end: test_native_attribution.py)."""

from __future__ import annotations

import base64

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from lib import ingest, otlp


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
