"""OTLP ingest as the stack stores it: every span names the account that sent it.

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

The body is read as MLflow reads it (its own decompression and JSON
mapping), and handed on as protobuf; one MLflow cannot parse is handed on
as it came, for MLflow to refuse. Every other request passes untouched.
"""

from __future__ import annotations

import base64
import importlib
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

WRAPPED_APP = "STACK_WRAPPED_APP"  # the app this layer wraps, as uvicorn names it ("module:attr", "()" for a factory)
OTLP_PATH = "/v1/traces"
USER_KEY = "user.id"
PROTOBUF = "application/x-protobuf"

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

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        body = request.SerializeToString()
        await self.app(with_protobuf_body(scope, len(body)), replaying(body, receive), send)


def wrapped_app() -> ASGIApp:
    """MLflow's app as `mlflow server` would have served it (STACK_WRAPPED_APP, set by scripts/serve.py)."""
    target = os.environ[WRAPPED_APP]
    module, _, name = target.partition(":")
    obj = getattr(importlib.import_module(module), name.removesuffix("()"))
    return obj() if name.endswith("()") else obj


def create_app() -> Ingest:
    """uvicorn's factory in each server worker."""
    return Ingest(wrapped_app())

