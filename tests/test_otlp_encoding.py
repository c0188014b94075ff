"""The stdlib OTLP encoder produces what the official protobuf classes read, shaped like goose's spans."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import otlp


def decode(spans, resource=None):
    request = ExportTraceServiceRequest()
    request.ParseFromString(otlp.encode_export_request(spans, resource or {"service.name": "goose"}))
    return request


def attributes(span):
    out = {}
    for kv in span.attributes:
        kind = kv.value.WhichOneof("value")
        value = getattr(kv.value, kind)
        out[kv.key] = list(v.string_value for v in value.values) if kind == "array_value" else value
    return out


def test_session_has_invoke_agent_root_with_chat_and_tool_children():
    spans = otlp.goose_session("s1", tokens=[(10, 2), (20, 3)], tools=["developer__shell"])
    decoded = decode(spans).resource_spans[0].scope_spans[0].spans
    names = [attributes(span)["gen_ai.operation.name"] for span in decoded]
    assert names == ["invoke_agent", "chat", "execute_tool", "chat"]
    root = decoded[0]
    assert root.parent_span_id == b"" and all(span.parent_span_id == root.span_id for span in decoded[1:])
    assert len({span.trace_id for span in decoded}) == 1 and len(root.trace_id) == 16


def test_token_usage_and_ints_survive_encoding():
    chat = decode(otlp.goose_session("s1", tokens=[(1200, 80)], tools=[])).resource_spans[0].scope_spans[0].spans[1]
    attrs = attributes(chat)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (1200, 80)
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]


def test_unicode_strings_round_trip():
    spans = otlp.goose_session("sess-ü", prompt="héllo 世界 ✓")
    root = decode(spans).resource_spans[0].scope_spans[0].spans[0]
    assert attributes(root)["goose.prompt"] == "héllo 世界 ✓"
    assert attributes(root)["session.id"] == "sess-ü"


@pytest.mark.parametrize("value", [True, -5, 2**40, 1.5, "x"])
def test_scalar_attribute_types_round_trip(value):
    span = otlp.Span(b"\x01" * 16, b"\x02" * 8, "s", 1, 2, attributes={"k": value})
    assert attributes(decode([span]).resource_spans[0].scope_spans[0].spans[0])["k"] == value


def test_timestamps_kind_and_status_are_encoded():
    span = otlp.Span(b"\x01" * 16, b"\x02" * 8, "s", 1_700_000_000_000_000_001, 1_700_000_000_000_000_999,
                     status_code=otlp.STATUS_ERROR)
    decoded = decode([span]).resource_spans[0].scope_spans[0].spans[0]
    assert (decoded.start_time_unix_nano, decoded.end_time_unix_nano) == (1_700_000_000_000_000_001, 1_700_000_000_000_000_999)
    assert decoded.kind == otlp.SPAN_KIND_INTERNAL and decoded.status.code == otlp.STATUS_ERROR


def test_resource_attributes_are_encoded():
    request = decode([], {"service.name": "goose", "host.name": "laptop"})
    resource = {kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes}
    assert resource == {"service.name": "goose", "host.name": "laptop"}


def test_headers_are_split_and_url_decoded_like_goose_does():
    headers = otlp.parse_headers("x-mlflow-experiment-id=3, Authorization=Basic%20dXNlcjpwdw==")
    assert headers == {"x-mlflow-experiment-id": "3", "Authorization": "Basic dXNlcjpwdw=="}


def test_malformed_header_entry_is_an_error():
    with pytest.raises(ValueError):
        otlp.parse_headers("no-equals-sign")


def test_endpoint_gets_v1_traces_appended_and_per_signal_endpoint_is_used_as_is():
    assert otlp.traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:5000/"}) == "http://h:5000/v1/traces"
    assert otlp.traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:5000",
                                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other/x"}) == "http://other/x"
