"""OTLP ingest as the stack stores it: every span names the account that sent it, and no credential is stored.

MLflow fills a trace's user (`mlflow.trace.user`: the Traces tab's User
column and its filter) from the first span attribute `user.id` it stores
(`SqlAlchemyStore._log_spans_once`), and any client may set that attribute.
This ASGI layer sits in front of MLflow's app in each server worker
(scripts/serve.py puts it there) and rewrites `POST /v1/traces` before
MLflow reads it: every `user.id` the client sent (on a span, its scope or
its resource) is dropped, and every span gets `user.id` = the account of
the request's Basic credentials. MLflow's auth layer, behind this one,
still checks the password: a request whose credentials fail never reaches
the store. Without credentials (local mode) spans carry no `user.id`.

Then every text a span carries (its name, status message, attributes,
events and links, and its scope's and resource's attributes, nested
values included) has its credentials replaced by a marker naming their
kind (lib/redact.py), unless REDACTION=off. A bytes value that is not
UTF-8 text cannot be scanned: it is stored as it came and counted.

The body is read as MLflow reads it (its own decompression and JSON
mapping), and handed on as protobuf; one MLflow cannot parse is handed on
as it came, for MLflow to refuse. Every other request passes untouched.
"""

from __future__ import annotations

import base64
import importlib
import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from lib import redact

WRAPPED_APP = "STACK_WRAPPED_APP"  # the app this layer wraps, as uvicorn names it ("module:attr", "()" for a factory)
OTLP_PATH = "/v1/traces"
USER_KEY = "user.id"
PROTOBUF = "application/x-protobuf"
TALLY_DIR_SETTING = "REDACTION_TALLY_DIR"
DEFAULT_TALLY_DIR = "/tmp/redaction"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def basic_user(authorization: str | None) -> str | None:
    """The user name of `Authorization: Basic ...`, or None for no or other credentials."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, colon, _ = decoded.partition(":")
    return user if colon and user else None


def parse(body: bytes, content_type: str | None, content_encoding: str | None):
    """The ExportTraceServiceRequest MLflow would read from this body, or None where it would refuse it."""
    from google.protobuf.json_format import Parse as parse_json
    from mlflow.server.otel_api import _convert_otlp_json_ids_to_base64
    from mlflow.tracing.utils.otlp import decompress_otlp_body
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    media_type = (content_type or "").split(";")[0].strip()
    request = ExportTraceServiceRequest()
    try:
        if content_encoding:
            body = decompress_otlp_body(body, content_encoding.lower())
        if media_type == "application/json":
            parse_json(_convert_otlp_json_ids_to_base64(body), request, ignore_unknown_fields=True)
        elif media_type == PROTOBUF:
            request.ParseFromString(body)
        else:
            return None
    except Exception:  # noqa: BLE001 - whatever MLflow's own reading raises, MLflow refuses the body too
        return None
    return request


def _drop_user(attributes) -> None:
    kept = [attribute for attribute in attributes if attribute.key != USER_KEY]
    if len(kept) != len(attributes):
        del attributes[:]
        attributes.extend(kept)


def stamp_user(request, user: str | None) -> None:
    """Every span names `user` (or no one): what the client said about the user is dropped."""
    for resource_spans in request.resource_spans:
        _drop_user(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            _drop_user(scope_spans.scope.attributes)
            for span in scope_spans.spans:
                _drop_user(span.attributes)
                if user:
                    span.attributes.add(key=USER_KEY).value.string_value = user


class Tally:
    """What redaction did: credentials replaced, by kind, and values it could not scan (never a value)."""

    def __init__(self, redacted: dict[str, int] | None = None, unscanned: int = 0) -> None:
        self.redacted: dict[str, int] = dict(redacted or {})
        self.unscanned = unscanned

    def add(self, kinds: list[str]) -> None:
        for kind in kinds:
            self.redacted[kind] = self.redacted.get(kind, 0) + 1

    def merge(self, other: Tally) -> None:
        for kind, count in other.redacted.items():
            self.redacted[kind] = self.redacted.get(kind, 0) + count
        self.unscanned += other.unscanned

    def __bool__(self) -> bool:
        return bool(self.redacted or self.unscanned)

    def as_dict(self) -> dict[str, Any]:
        return {"redacted": dict(sorted(self.redacted.items())), "unscanned": self.unscanned}


def tally_directory() -> Path:
    """Where each server worker keeps its tally since the server started (the container's own /tmp)."""
    return Path(os.environ.get(TALLY_DIR_SETTING) or DEFAULT_TALLY_DIR)


class WorkerTally:
    """This worker's tally since it started, in TALLY_DIR/<pid>.json, rewritten whenever it grows."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{os.getpid()}.json"
        self.total = Tally()

    def record(self, tally: Tally) -> None:
        if not tally:
            return
        self.total.merge(tally)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.total.as_dict()))
        partial.replace(self.path)


def read_tallies(directory: Path) -> Tally:
    """Every worker's tally since the server started, summed (make status)."""
    total = Tally()
    for path in sorted(directory.glob("*.json")):
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        total.merge(Tally(found.get("redacted"), found.get("unscanned", 0)))
    return total


def _redact_value(value, redactor: redact.Redactor, tally: Tally) -> None:
    """An OTLP AnyValue, in place: its text, and every value an array or key-value list holds."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        text, found = redactor.redact(value.string_value)
        if found:
            value.string_value = text
            tally.add(found)
    elif kind == "bytes_value":
        try:
            decoded = value.bytes_value.decode("utf-8")
        except UnicodeDecodeError:
            tally.unscanned += 1
            return
        text, found = redactor.redact(decoded)
        if found:
            value.bytes_value = text.encode("utf-8")
            tally.add(found)
    elif kind == "array_value":
        for item in value.array_value.values:
            _redact_value(item, redactor, tally)
    elif kind == "kvlist_value":
        for item in value.kvlist_value.values:
            _redact_value(item.value, redactor, tally)


def _redact_attributes(attributes, redactor: redact.Redactor, tally: Tally) -> None:
    for attribute in attributes:
        _redact_value(attribute.value, redactor, tally)


def _redact_text(owner, field: str, redactor: redact.Redactor, tally: Tally) -> None:
    text, found = redactor.redact(getattr(owner, field))
    if found:
        setattr(owner, field, text)
        tally.add(found)


def redact_request(request, redactor: redact.Redactor) -> Tally:
    """Every text of every span in the export, with its credentials replaced (lib/redact.py)."""
    tally = Tally()
    for resource_spans in request.resource_spans:
        _redact_attributes(resource_spans.resource.attributes, redactor, tally)
        for scope_spans in resource_spans.scope_spans:
            _redact_attributes(scope_spans.scope.attributes, redactor, tally)
            for span in scope_spans.spans:
                _redact_text(span, "name", redactor, tally)
                _redact_text(span.status, "message", redactor, tally)
                _redact_attributes(span.attributes, redactor, tally)
                for event in span.events:
                    _redact_text(event, "name", redactor, tally)
                    _redact_attributes(event.attributes, redactor, tally)
                for link in span.links:
                    _redact_attributes(link.attributes, redactor, tally)
    return tally


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def with_protobuf_body(scope: Scope, length: int) -> Scope:
    """The request's scope for a re-encoded body: protobuf, not compressed, its new length."""
    dropped = {b"content-type", b"content-encoding", b"content-length"}
    headers = [(key, value) for key, value in scope["headers"] if key.lower() not in dropped]
    headers += [(b"content-type", PROTOBUF.encode()), (b"content-length", str(length).encode())]
    return {**scope, "headers": headers}


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ConnectionError("the client went away")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` for the wrapped app: the whole body once, then whatever the client does next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class Ingest:
    """The ASGI layer: POST /v1/traces rewritten, everything else as it came."""

    def __init__(self, app: ASGIApp, redactor: redact.Redactor | None, tally: WorkerTally) -> None:
        self.app = app
        self.redactor = redactor
        self.tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != OTLP_PATH:
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(receive)
        except ConnectionError:
            return
        request = parse(body, header(scope, b"content-type"), header(scope, b"content-encoding"))
        if request is None:
            await self.app(scope, replaying(body, receive), send)
            return
        stamp_user(request, basic_user(header(scope, b"authorization")))
        if self.redactor is not None:
            self.tally.record(redact_request(request, self.redactor))
        body = request.SerializeToString()
        await self.app(with_protobuf_body(scope, len(body)), replaying(body, receive), send)


def wrapped_app() -> ASGIApp:
    """MLflow's app as `mlflow server` would have served it (STACK_WRAPPED_APP, set by scripts/serve.py)."""
    target = os.environ[WRAPPED_APP]
    module, _, name = target.partition(":")
    obj = getattr(importlib.import_module(module), name.removesuffix("()"))
    return obj() if name.endswith("()") else obj


def create_app() -> Ingest:
    """uvicorn's factory in each server worker: the redaction the settings ask for (checked by serve.py)."""
    return Ingest(wrapped_app(), redact.from_settings(dict(os.environ)), WorkerTally(tally_directory()))

