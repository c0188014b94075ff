"""Goose-shaped traces, encoded as OTLP/HTTP protobuf with the stdlib alone.

goose exports `invoke_agent` root spans with `chat` (model call) and
`execute_tool` children, tagged with OTel GenAI attributes, as protobuf over
HTTP without compression. This module builds such sessions and encodes an
ExportTraceServiceRequest by hand (opentelemetry/proto/trace/v1/trace.proto),
so the verify and benchmark tools need no third-party package.
"""

from __future__ import annotations

import os
import ssl
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

SPAN_KIND_INTERNAL = 1
STATUS_OK = 1
STATUS_ERROR = 2
AttributeValue = str | bool | int | float | Sequence[str]

# Protobuf wire types.
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


@dataclass
class Span:
    trace_id: bytes
    span_id: bytes
    name: str
    start_ns: int
    end_ns: int
    parent_span_id: bytes = b""
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    status_code: int = STATUS_OK


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint(number << 3 | wire_type)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint(len(payload)) + payload


def _str_field(number: int, text: str) -> bytes:
    return _len_field(number, text.encode("utf-8")) if text else b""


def _any_value(value: AttributeValue) -> bytes:
    if isinstance(value, bool):
        return _tag(2, _VARINT) + _varint(int(value))
    if isinstance(value, int):
        return _tag(3, _VARINT) + _varint(value)
    if isinstance(value, float):
        return _tag(4, _I64) + struct.pack("<d", value)
    if isinstance(value, str):
        return _len_field(1, value.encode("utf-8"))
    array = b"".join(_len_field(1, _any_value(item)) for item in value)
    return _len_field(5, array)


def _key_values(number: int, attributes: Mapping[str, AttributeValue]) -> bytes:
    return b"".join(
        _len_field(number, _str_field(1, key) + _len_field(2, _any_value(value)))
        for key, value in attributes.items()
    )


def _span(span: Span) -> bytes:
    status = _tag(3, _VARINT) + _varint(span.status_code)
    return b"".join([
        _len_field(1, span.trace_id),
        _len_field(2, span.span_id),
        _len_field(4, span.parent_span_id) if span.parent_span_id else b"",
        _str_field(5, span.name),
        _tag(6, _VARINT) + _varint(SPAN_KIND_INTERNAL),
        _tag(7, _I64) + struct.pack("<Q", span.start_ns),
        _tag(8, _I64) + struct.pack("<Q", span.end_ns),
        _key_values(9, span.attributes),
        _len_field(15, status),
    ])


def encode_export_request(spans: Sequence[Span], resource: Mapping[str, AttributeValue],
                          scope_name: str = "goose") -> bytes:
    """An ExportTraceServiceRequest holding `spans` under one resource and scope."""
    scope = _str_field(1, scope_name)
    scope_spans = _len_field(1, scope) + b"".join(_len_field(2, _span(s)) for s in spans)
    resource_spans = _len_field(1, _key_values(1, resource)) + _len_field(2, scope_spans)
    return _len_field(1, resource_spans)


def goose_session(session_id: str, prompt: str = "List the files in this folder.",
                  model: str = "gpt-4o-mini", provider: str = "openai",
                  tokens: Sequence[tuple[int, int]] = ((1200, 80), (1450, 35)),
                  tools: Sequence[str] = ("developer__shell",), now_ns: int | None = None,
                  failed_tools: Sequence[int] = ()) -> list[Span]:
    """One goose reply: an invoke_agent root, a chat span per model call, an execute_tool span per tool call.

    Model calls and tool calls alternate as in goose's agent loop: chat,
    tool, chat, tool, ..., chat. The tool calls numbered in `failed_tools`
    (from 0) failed: goose records `error.type` on their spans.
    """
    trace_id = os.urandom(16)
    root_id = os.urandom(8)
    start = now_ns if now_ns is not None else time.time_ns()
    step_ns = 50_000_000
    children: list[Span] = []
    cursor = start + 1_000_000
    for index, (input_tokens, output_tokens) in enumerate(tokens):
        children.append(Span(trace_id, os.urandom(8), f"chat {model}", cursor, cursor + step_ns, root_id, {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": input_tokens,
            "gen_ai.usage.output_tokens": output_tokens,
            "gen_ai.response.finish_reasons": ["tool_calls" if index < len(tools) else "stop"],
        }))
        cursor += step_ns + 1_000_000
        if index < len(tools):
            children.append(Span(trace_id, os.urandom(8), f"execute_tool {tools[index]}", cursor,
                                 cursor + step_ns, root_id, {
                                     "gen_ai.operation.name": "execute_tool",
                                     "gen_ai.tool.name": tools[index],
                                     "gen_ai.tool.call.id": f"call_{index}_{session_id}",
                                     **({"error.type": "tool_error"} if index in failed_tools else {}),
                                 }))
            cursor += step_ns + 1_000_000
    root = Span(trace_id, root_id, "invoke_agent goose", start, cursor, b"", {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "goose",
        "session.id": session_id,
        "gen_ai.conversation.id": session_id,
        "goose.prompt": prompt,
    })
    return [root, *children]


def parse_headers(value: str) -> dict[str, str]:
    """OTEL_EXPORTER_OTLP_HEADERS (`k=v,k2=v2`, values URL-decoded) as a dict."""
    headers: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"header entry {item!r} is not key=value")
        headers[key.strip()] = urllib.parse.unquote(raw.strip())
    return headers


def traces_endpoint(environ: Mapping[str, str]) -> str:
    """Where an OTLP/HTTP exporter sends traces, by the OTel spec's rules."""
    if environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
    if not base:
        raise ValueError("OTEL_EXPORTER_OTLP_ENDPOINT is not set")
    return base.rstrip("/") + "/v1/traces"


def traces_headers(environ: Mapping[str, str]) -> dict[str, str]:
    """The headers an OTLP exporter sends with traces: the traces form, when set at all (even empty), wins."""
    if "OTEL_EXPORTER_OTLP_TRACES_HEADERS" in environ:
        return parse_headers(environ["OTEL_EXPORTER_OTLP_TRACES_HEADERS"])
    return parse_headers(environ.get("OTEL_EXPORTER_OTLP_HEADERS", ""))


def export(url: str, body: bytes, headers: Mapping[str, str], timeout: float = 10.0,
           context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """POST one protobuf batch; returns (status, response body) for any HTTP answer."""
    request = urllib.request.Request(url, data=body, method="POST", headers={
        **headers, "Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
