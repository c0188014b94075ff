"""The stdlib OTLP encoder produces what the official protobuf classes read, shaped like goose's spans."""

from __future__ import annotations

import http.server
import io
import ssl
import threading
import time
import urllib.error
import urllib.request

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from lib import otlp


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


# Byte for byte what the official classes write: every field number and wire type.

def official_any(value):
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        return common_pb2.AnyValue(int_value=value)
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[official_any(item) for item in value]))


def official_key_values(attributes):
    return [common_pb2.KeyValue(key=key, value=official_any(value)) for key, value in attributes.items()]


def official_request(spans, resource, scope_name="goose"):
    return ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=official_key_values(resource)),
        scope_spans=[trace_pb2.ScopeSpans(
            scope=common_pb2.InstrumentationScope(name=scope_name),
            spans=[trace_pb2.Span(
                trace_id=span.trace_id, span_id=span.span_id, parent_span_id=span.parent_span_id, name=span.name,
                kind=trace_pb2.Span.SPAN_KIND_INTERNAL, start_time_unix_nano=span.start_ns,
                end_time_unix_nano=span.end_ns, attributes=official_key_values(span.attributes),
                status=trace_pb2.Status(code=span.status_code)) for span in spans])])])


def one_span(**attributes):
    return otlp.Span(b"\x01" * 16, b"\x02" * 8, "s", 1, 2, attributes=attributes)


def test_goose_session_encodes_byte_for_byte_as_the_official_classes_do():
    spans = otlp.goose_session("s1", now_ns=1_700_000_000_000_000_000)
    resource = {"service.name": "goose", "host.name": "laptop"}
    assert otlp.encode_export_request(spans, resource) == official_request(spans, resource).SerializeToString()


@pytest.mark.parametrize("value", [True, False, 0, 1, 127, 128, 300, 2**40, 2**63 - 1, -1, -5, -(2**63), 0.0, 1.5,
                                   -2.25, 1e300, "", "x", "é ✓", [], ["a"], ["a", "", "ü"], [1, True, 2.5]])
def test_attribute_value_encodes_as_the_official_classes_do(value):
    span = one_span(k=value)
    assert otlp.encode_export_request([span], {}) == official_request([span], {}).SerializeToString()


def test_scope_name_encodes_as_the_official_classes_do():
    spans = [one_span()]
    assert (otlp.encode_export_request(spans, {"a": 1}, scope_name="verify")
            == official_request(spans, {"a": 1}, "verify").SerializeToString())


@pytest.mark.parametrize("status", [otlp.STATUS_OK, otlp.STATUS_ERROR])
def test_status_encodes_as_the_official_classes_do(status):
    span = otlp.Span(b"\x01" * 16, b"\x02" * 8, "s", 1, 2, b"\x03" * 8, {}, status)
    assert otlp.encode_export_request([span], {}) == official_request([span], {}).SerializeToString()


def test_timestamps_up_to_the_largest_fixed64_encode_as_the_official_classes_do():
    span = otlp.Span(b"\x01" * 16, b"\x02" * 8, "s", 2**63, 2**64 - 1)
    assert otlp.encode_export_request([span], {}) == official_request([span], {}).SerializeToString()


def test_empty_span_name_and_scope_name_are_left_out_as_the_official_classes_do():
    span = otlp.Span(b"\x01" * 16, b"\x02" * 8, "", 1, 2)
    assert (otlp.encode_export_request([span], {}, scope_name="")
            == official_request([span], {}, scope_name="").SerializeToString())


def test_default_scope_is_goose():
    assert decode([]).resource_spans[0].scope_spans[0].scope.name == "goose"


def test_empty_string_attribute_stays_a_string():
    kv = decode([one_span(k="")]).resource_spans[0].scope_spans[0].spans[0].attributes[0]
    assert (kv.key, kv.value.WhichOneof("value"), kv.value.string_value) == ("k", "string_value", "")


def test_false_and_zero_attributes_keep_their_types():
    attrs = decode([one_span(f=False, z=0, d=0.0)]).resource_spans[0].scope_spans[0].spans[0].attributes
    assert [(kv.key, kv.value.WhichOneof("value")) for kv in attrs] == [
        ("f", "bool_value"), ("z", "int_value"), ("d", "double_value")]


@pytest.mark.parametrize("value", [-1, -(2**63), 2**63 - 1, 2**62 + 12345])
def test_negative_and_large_ints_round_trip(value):
    assert attributes(decode([one_span(k=value)]).resource_spans[0].scope_spans[0].spans[0])["k"] == value


@pytest.mark.parametrize("value", [0.1, -2.5e-300, float("inf")])
def test_floats_round_trip_exactly(value):
    assert attributes(decode([one_span(k=value)]).resource_spans[0].scope_spans[0].spans[0])["k"] == value


def test_string_arrays_round_trip_in_order():
    span = one_span(k=["tool_calls", "", "stop"])
    assert attributes(decode([span]).resource_spans[0].scope_spans[0].spans[0])["k"] == ["tool_calls", "", "stop"]


def test_root_span_has_no_parent_span_id_field():
    span = otlp.Span(b"\x01" * 16, b"\x02" * 8, "root", 1, 2)
    # An empty field written anyway would decode the same; only the bytes show it is absent.
    assert otlp.encode_export_request([span], {}) == official_request([span], {}).SerializeToString()


def test_child_span_carries_its_parent_id():
    span = otlp.Span(b"\x01" * 16, b"\x02" * 8, "child", 1, 2, b"\x09" * 8)
    assert decode([span]).resource_spans[0].scope_spans[0].spans[0].parent_span_id == b"\x09" * 8


def test_spans_keep_their_order_and_ids():
    spans = [otlp.Span(b"\x01" * 16, bytes([i]) * 8, f"s{i}", i, i + 1) for i in range(1, 4)]
    decoded = decode(spans).resource_spans[0].scope_spans[0].spans
    assert [(s.span_id, s.name, s.start_time_unix_nano) for s in decoded] == [
        (bytes([i]) * 8, f"s{i}", i) for i in range(1, 4)]


def test_request_without_spans_still_carries_resource_and_scope():
    request = decode([], {"service.name": "goose"})
    assert len(request.resource_spans) == 1 and len(request.resource_spans[0].scope_spans) == 1
    assert list(request.resource_spans[0].scope_spans[0].spans) == []



# goose_session: the shape of one goose reply.

def test_default_session_is_chat_tool_chat_with_gpt_4o_mini_from_openai():
    spans = otlp.goose_session("s1", now_ns=0)
    assert [span.name for span in spans] == ["invoke_agent goose", "chat gpt-4o-mini",
                                             "execute_tool developer__shell", "chat gpt-4o-mini"]
    assert {(s.attributes["gen_ai.provider.name"], s.attributes["gen_ai.request.model"],
             s.attributes["gen_ai.response.model"]) for s in spans if s.name.startswith("chat")} == {
        ("openai", "gpt-4o-mini", "gpt-4o-mini")}
    assert [(s.attributes["gen_ai.usage.input_tokens"], s.attributes["gen_ai.usage.output_tokens"])
            for s in spans if s.name.startswith("chat")] == [(1200, 80), (1450, 35)]
    assert spans[0].attributes["goose.prompt"] == "List the files in this folder."


def test_root_span_carries_the_session_and_agent():
    root = otlp.goose_session("sess-1", prompt="hi", now_ns=0)[0]
    assert (root.name, root.parent_span_id, root.attributes) == ("invoke_agent goose", b"", {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "goose", "session.id": "sess-1",
        "gen_ai.conversation.id": "sess-1", "goose.prompt": "hi"})


def test_chat_span_attributes_follow_the_genai_conventions():
    chat = otlp.goose_session("s", model="claude-x", provider="anthropic", tokens=[(7, 3)], tools=[], now_ns=0)[1]
    assert (chat.name, chat.attributes) == ("chat claude-x", {
        "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic", "gen_ai.request.model": "claude-x",
        "gen_ai.response.model": "claude-x", "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3,
        "gen_ai.response.finish_reasons": ["stop"]})


def test_tool_span_names_the_tool_and_its_call():
    tool = otlp.goose_session("sess-9", tokens=[(1, 1), (2, 2)], tools=["developer__text_editor"], now_ns=0)[2]
    assert (tool.name, tool.attributes) == ("execute_tool developer__text_editor", {
        "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "developer__text_editor",
        "gen_ai.tool.call.id": "call_0_sess-9"})


def test_model_calls_before_a_tool_call_finish_with_tool_calls_and_the_last_with_stop():
    spans = otlp.goose_session("s", tokens=[(1, 1), (2, 2), (3, 3)], tools=["a", "b"], now_ns=0)
    assert [(s.name, s.attributes.get("gen_ai.response.finish_reasons")) for s in spans[1:]] == [
        ("chat gpt-4o-mini", ["tool_calls"]), ("execute_tool a", None), ("chat gpt-4o-mini", ["tool_calls"]),
        ("execute_tool b", None), ("chat gpt-4o-mini", ["stop"])]
    assert [s.attributes.get("gen_ai.tool.call.id") for s in spans if s.name.startswith("execute_tool")] == [
        "call_0_s", "call_1_s"]


def test_tools_beyond_the_model_calls_are_not_emitted():
    spans = otlp.goose_session("s", tokens=[(1, 1)], tools=["a", "b"], now_ns=0)
    assert [s.name for s in spans] == ["invoke_agent goose", "chat gpt-4o-mini", "execute_tool a"]


def test_spans_follow_each_other_in_time_inside_the_root():
    spans = otlp.goose_session("s", tokens=[(1, 1), (2, 2)], tools=["a"], now_ns=1_000_000_000)
    assert [(s.start_ns, s.end_ns) for s in spans] == [
        (1_000_000_000, 1_154_000_000), (1_001_000_000, 1_051_000_000), (1_052_000_000, 1_102_000_000),
        (1_103_000_000, 1_153_000_000)]


def test_session_starts_now_unless_told_otherwise():
    before = time.time_ns()
    root = otlp.goose_session("s")[0]
    assert before <= root.start_ns <= time.time_ns()


def test_session_ids_are_random_of_otel_sizes_and_shared_trace():
    first, second = otlp.goose_session("s"), otlp.goose_session("s")
    assert {len(s.trace_id) for s in first} == {16} and {len(s.span_id) for s in first} == {8}
    assert len({s.trace_id for s in first}) == 1 and first[0].trace_id != second[0].trace_id
    assert len({s.span_id for s in first + second}) == len(first) + len(second)
    assert {s.parent_span_id for s in first[1:]} == {first[0].span_id}


def test_every_span_of_a_session_is_ok_and_internal():
    decoded = decode(otlp.goose_session("s")).resource_spans[0].scope_spans[0].spans
    assert {(s.status.code, s.kind) for s in decoded} == {(otlp.STATUS_OK, otlp.SPAN_KIND_INTERNAL)}


# parse_headers: OTEL_EXPORTER_OTLP_HEADERS as goose reads it.

def test_empty_headers_setting_is_no_headers():
    assert otlp.parse_headers("") == {}


def test_empty_and_blank_header_entries_are_skipped():
    assert otlp.parse_headers(" ,a=1,, ,b=2,") == {"a": "1", "b": "2"}


def test_header_value_keeps_equals_signs_after_the_first():
    assert otlp.parse_headers("Authorization=Basic dXNlcjpwdw==") == {"Authorization": "Basic dXNlcjpwdw=="}


def test_header_keys_and_values_are_stripped_then_url_decoded():
    assert otlp.parse_headers("  k  =  %20a%2Cb%3D  ") == {"k": " a,b="}


def test_header_with_an_empty_value_is_kept():
    assert otlp.parse_headers("k=") == {"k": ""}


@pytest.mark.parametrize("value, entry", [("no-equals-sign", "no-equals-sign"), ("=v", "=v"), (" =v", " =v"),
                                          ("a=1,b", "b")])
def test_header_entry_without_a_key_or_equals_sign_is_refused_naming_it(value, entry):
    with pytest.raises(ValueError) as raised:
        otlp.parse_headers(value)
    assert str(raised.value) == f"header entry {entry!r} is not key=value"


# traces_endpoint: the OTel spec's rules for OTLP/HTTP.

def test_per_signal_endpoint_is_used_as_is():
    assert otlp.traces_endpoint({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://other/x/"}) == "http://other/x/"


def test_empty_per_signal_endpoint_falls_back_to_the_base():
    environ = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://h:5000"}
    assert otlp.traces_endpoint(environ) == "http://h:5000/v1/traces"


@pytest.mark.parametrize("base, url", [("http://h:5000", "http://h:5000/v1/traces"),
                                       ("http://h:5000//", "http://h:5000/v1/traces"),
                                       ("https://h.example/otel/", "https://h.example/otel/v1/traces"),
                                       ("http://h/X", "http://h/X/v1/traces")])
def test_base_endpoint_gets_v1_traces_appended_after_its_path(base, url):
    assert otlp.traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": base}) == url


@pytest.mark.parametrize("environ", [{}, {"OTEL_EXPORTER_OTLP_ENDPOINT": ""}])
def test_missing_endpoint_is_an_error(environ):
    with pytest.raises(ValueError) as raised:
        otlp.traces_endpoint(environ)
    assert str(raised.value) == "OTEL_EXPORTER_OTLP_ENDPOINT is not set"


# export: one POST to a local server.

class Recorder(http.server.BaseHTTPRequestHandler):
    requests: list = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Recorder.requests.append((self.command, self.path, self.headers, body))
        answer = b"answer-%d" % Recorder.status
        self.send_response(Recorder.status)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *_args):
        pass


@pytest.fixture
def server():
    Recorder.requests, Recorder.status = [], 200
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_export_posts_the_protobuf_body_with_the_headers(server):
    status, body = otlp.export(server + "/v1/traces", b"\x0a\x00", {"x-mlflow-experiment-id": "3"})
    [(method, path, headers, sent)] = Recorder.requests
    assert (status, body, method, path, sent) == (200, b"answer-200", "POST", "/v1/traces", b"\x0a\x00")
    assert (headers["Content-Type"], headers["x-mlflow-experiment-id"]) == ("application/x-protobuf", "3")


def test_export_returns_an_http_error_instead_of_raising(server):
    Recorder.status = 401
    assert otlp.export(server + "/v1/traces", b"", {}) == (401, b"answer-401")


def test_export_content_type_cannot_be_overridden_by_the_headers(server):
    otlp.export(server + "/v1/traces", b"", {"Content-Type": "text/plain"})
    assert Recorder.requests[0][2]["Content-Type"] == "application/x-protobuf"


def test_export_passes_its_timeout_and_tls_context_to_urlopen(monkeypatch):
    seen = {}

    class Answer:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *_args):
            return False

        def read(self):
            return b"ok"

    def fake_urlopen(request, timeout, context):
        seen.update(timeout=timeout, context=context, url=request.full_url)
        return Answer()
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    context = ssl.create_default_context()
    assert otlp.export("https://h.example/v1/traces", b"", {}, timeout=2.5, context=context) == (200, b"ok")
    assert seen == {"timeout": 2.5, "context": context, "url": "https://h.example/v1/traces"}


def test_export_waits_ten_seconds_by_default(monkeypatch):
    seen = {}

    def fake_urlopen(request, timeout, context):
        seen.update(timeout=timeout, context=context)
        raise urllib.error.HTTPError(request.full_url, 503, "busy", {}, io.BytesIO(b"later"))
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    assert otlp.export("http://h/v1/traces", b"", {}) == (503, b"later")
    assert seen == {"timeout": 10.0, "context": None}


# traces_headers: which headers an exporter sends with traces (the traces form, when set at all, wins whole).

def test_traces_headers_replace_the_generic_ones_whole():
    assert otlp.traces_headers({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "a=1",
                                "OTEL_EXPORTER_OTLP_HEADERS": "a=2,b=3"}) == {"a": "1"}


def test_empty_traces_headers_still_hide_the_generic_ones():
    assert otlp.traces_headers({"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "", "OTEL_EXPORTER_OTLP_HEADERS": "a=2"}) == {}


def test_without_traces_headers_the_generic_ones_are_sent():
    assert otlp.traces_headers({"OTEL_EXPORTER_OTLP_HEADERS": "a=2,b=3"}) == {"a": "2", "b": "3"}


def test_only_the_tool_calls_named_failed_carry_goose_s_error_type():
    spans = otlp.goose_session("s", tools=("developer__shell", "developer__text_editor"), tokens=((1, 1),) * 3,
                               failed_tools=(1,))
    tools = [span for span in spans if span.name.startswith("execute_tool")]
    assert [span.attributes.get("error.type") for span in tools] == [None, "tool_error"]
