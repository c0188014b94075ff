#!/usr/bin/env python3
"""Prove the path goose uses: env file -> OTLP/HTTP -> MLflow -> trace view.

Sources the env file with bash as a developer's shell does, sends one
goose-shaped session as OTLP protobuf, reads the trace back through MLflow's
API, prints its link and token usage, then deletes it so goose-traces keeps
only real sessions. Exits non-zero naming the step that failed. Stdlib only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from lib import envfile
from lib import otlp
from lib import stack_config as cfg
from lib.errors import StackError, run_command
from lib.mlflow_api import MlflowApiError, MlflowClient, tls_context

EXPERIMENT_HEADER = "x-mlflow-experiment-id"


class StepFailed(StackError):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"step '{step}' failed: {detail}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Send one goose-shaped session through the env file and read it back.")
    parser.add_argument("--env-file", type=Path, default=Path(os.environ.get("GOOSE_ENV_FILE", cfg.DEFAULT_ENV_FILE)),
                        help="env file written by the bootstrap (default: .env at the repository root)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for the trace to appear (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="leave the test trace in the experiment")
    return parser.parse_args(argv)


def export_session(environ: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    """Send one session; returns (MLflow trace id, experiment id, request headers)."""
    for key in cfg.OWNED_REMOVED_KEYS:
        if environ.get(key):
            raise StepFailed("check env file", f"{key} is set; goose cannot compress and would export nothing")
    try:
        url = otlp.traces_endpoint(environ)
        headers = otlp.traces_headers(environ)
    except ValueError as exc:
        raise StepFailed("check env file", str(exc)) from None
    experiment_id = headers.get(EXPERIMENT_HEADER)
    if not experiment_id:
        raise StepFailed("check env file", f"OTEL_EXPORTER_OTLP_HEADERS has no {EXPERIMENT_HEADER}; rerun the bootstrap")
    session_id = f"verify-{uuid.uuid4().hex[:12]}"
    spans = otlp.goose_session(session_id, prompt="verify: héllo wörld ✓")
    body = otlp.encode_export_request(spans, {"service.name": environ.get("OTEL_SERVICE_NAME", "goose")})
    try:
        status, reply = otlp.export(url, body, headers, context=tls_context(environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE")))
    except OSError as exc:
        raise StepFailed("send OTLP", f"cannot reach {url}: {getattr(exc, 'reason', exc)}; is the stack up?") from None
    if status != 200:
        raise StepFailed("send OTLP", f"{url} answered {status}: {reply[:200].decode('utf-8', 'replace')}")
    return "tr-" + spans[0].trace_id.hex(), experiment_id, headers


def read_back(client: MlflowClient, trace_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.get_trace(trace_id)
        except MlflowApiError as exc:
            if exc.status != 404 or time.monotonic() >= deadline:
                raise StepFailed("read trace back", str(exc)) from None
        time.sleep(0.5)


def check_stored_in(trace: dict[str, Any], experiment_id: str) -> None:
    """Fail unless MLflow stored the trace in the experiment the env file's header names."""
    stored_in = trace["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"]
    if stored_in != experiment_id:
        raise StepFailed("read trace back", f"trace landed in experiment {stored_in}, expected {experiment_id}")


def span_attribute(span: dict[str, Any], key: str) -> str | None:
    """A span attribute's value from MLflow's OTLP-JSON span, JSON-decoded when MLflow encoded it."""
    for item in span.get("attributes", []):
        if item.get("key") == key:
            value = item.get("value", {}).get("string_value", "")
            return json.loads(value) if value.startswith('"') else value
    return None


def summarize(trace: dict[str, Any]) -> tuple[dict[str, int], list[str]]:
    """Token usage and span types of a trace as MLflow stored them."""
    metadata = trace["trace_info"].get("trace_metadata", {})
    usage = json.loads(metadata.get("mlflow.trace.tokenUsage", "{}"))
    types = [span_attribute(span, "mlflow.spanType") or "UNKNOWN" for span in trace.get("spans", [])]
    return usage, types


def delete_again(client: MlflowClient, experiment_id: str, trace_id: str) -> str:
    """Remove the test trace; a team account (EDIT, no MANAGE) may not, which is said, not failed."""
    try:
        client.delete_traces(experiment_id, [trace_id])
    except MlflowApiError as exc:
        if exc.status == 403:
            return "kept: this account may not delete traces; its session id starts with verify-"
        raise StepFailed("clean up", str(exc)) from None
    try:
        client.get_trace(trace_id)
    except MlflowApiError as exc:
        if exc.status == 404:
            return "deleted again"
        raise StepFailed("clean up", str(exc)) from None
    raise StepFailed("clean up", f"trace {trace_id} still exists after delete")


def run(args: argparse.Namespace) -> str:
    try:
        environ = envfile.source_otel(args.env_file.absolute())
    except StackError as exc:
        raise StepFailed("read env file", str(exc)) from None
    trace_id, experiment_id, headers = export_session(environ)
    base_url = environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/")
    auth = {key: value for key, value in headers.items() if key.lower() == "authorization"}
    client = MlflowClient(base_url, headers=auth, cafile=environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE"))
    trace = read_back(client, trace_id, args.timeout)
    check_stored_in(trace, experiment_id)
    usage, types = summarize(trace)
    for wanted in ("CHAT_MODEL", "TOOL"):
        if wanted not in types:
            raise StepFailed("check span types", f"no {wanted} span among {types}")
    if not usage.get("total_tokens"):
        raise StepFailed("check token usage", f"trace has no token usage: {usage}")
    kept = "kept" if args.keep else delete_again(client, experiment_id, trace_id)
    return "\n".join([
        f"OK: trace {trace_id} reached experiment {experiment_id} ({kept})",
        f"Spans:  {len(types)} ({', '.join(sorted(set(types)))})",
        f"Tokens: input {usage.get('input_tokens')}, output {usage.get('output_tokens')}, "
        f"total {usage.get('total_tokens')}",
        f"Link:   {base_url}/#/experiments/{experiment_id}/traces?selectedEvaluationId={trace_id}",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("verify", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
