"""Settings shared by the stack's scripts: names, defaults and their checks."""

from __future__ import annotations

import base64
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from lib.errors import StackError

REPO_ROOT = Path(__file__).resolve().parents[2]  # scripts/lib/stack_config.py
DEFAULT_ENV_FILE = REPO_ROOT / ".env"
DEFAULT_USERS_DIR = REPO_ROOT / "users"
DEFAULT_EXPERIMENT = "goose-traces"
DEFAULT_PORT = 5000
DEFAULT_TIMEOUT_S = 90.0
SERVICE_NAME = "goose"
# MLflow stores experiment names in a 256-character column.
MAX_EXPERIMENT_NAME = 256
# A name the admin gives a gateway endpoint or a judge: it travels in URLs,
# make arguments and model URIs (gateway:/NAME) unquoted.
_ITEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# Keys the bootstrap removes from goose's env file: goose's OTLP exporter is
# built without compression (opentelemetry-otlp without gzip-http/zstd-http), so
# any value, even an empty one, makes the build fail and goose drop every span
# without a word (aaif-goose/goose crates/goose/src/otel/otlp.rs discards the error).
OWNED_REMOVED_KEYS = ("OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
HTTP_PROTOBUF = "http/protobuf"


def check_url(url: str, what: str) -> str:
    """`url` without a trailing slash, or a StackError naming what is wrong."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise StackError(f"{what} {url!r} is not an http(s) URL; write it like http://localhost:{DEFAULT_PORT}")
    try:
        port = parsed.port
    except ValueError:
        port = -1
    if port is not None and not 0 < port < 65536:
        raise StackError(f"{what} {url!r} has an invalid port; use a number from 1 to 65535")
    if parsed.query or parsed.fragment:
        raise StackError(f"{what} {url!r} must not carry a query or fragment")
    return url.rstrip("/")


def default_public_url(environ: Mapping[str, str] = os.environ) -> str:
    """MLFLOW_PUBLIC_URL, else the loopback address compose publishes MLflow on."""
    if environ.get("MLFLOW_PUBLIC_URL"):
        return environ["MLFLOW_PUBLIC_URL"]
    port = environ.get("MLFLOW_PORT") or str(DEFAULT_PORT)
    return f"http://localhost:{port}"


def check_name(name: str, what: str) -> str:
    if not _ITEM_NAME.match(name):
        raise StackError(f"invalid {what} {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


def check_experiment_name(name: str) -> str:
    if not name or name != name.strip():
        raise StackError(f"invalid experiment name {name!r}: it must be non-empty without surrounding spaces")
    if len(name) > MAX_EXPERIMENT_NAME:
        raise StackError(f"invalid experiment name: {len(name)} characters, MLflow allows {MAX_EXPERIMENT_NAME}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise StackError(f"invalid experiment name {name!r}: it holds control characters")
    return name


def basic_auth(username: str, password: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def goose_env(public_url: str, experiment_id: str, auth: tuple[str, str] | None = None,
              ca_file: str | None = None) -> dict[str, str]:
    """What goose (and any OTel SDK) needs to send its traces to this stack.

    With `auth` (team mode), the OTLP headers carry the person's Basic
    credentials, percent-encoded because goose and the OTel SDKs URL-decode
    header values, and MLflow's own client gets the same account.
    """
    headers = f"x-mlflow-experiment-id={experiment_id}"
    if auth:
        headers += ",Authorization=" + urllib.parse.quote(basic_auth(*auth), safe="")
    # Every line also pins what goose would otherwise take from the user's shell
    # (aaif-goose/goose crates/goose/src/otel/otlp.rs and the opentelemetry-otlp
    # 0.32 crate it builds the exporter with; docs/getting-started.md quotes them).
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": public_url,
        # The traces endpoint wins over the generic one and is used as written.
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{public_url}/v1/traces",
        "OTEL_EXPORTER_OTLP_HEADERS": headers,
        # Set at all (even empty), the traces headers hide the generic ones.
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": headers,
        # goose has only the HTTP transport: with a gRPC protocol it skips export.
        "OTEL_EXPORTER_OTLP_PROTOCOL": HTTP_PROTOBUF,
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": HTTP_PROTOBUF,
        # `true` turns every signal off.
        "OTEL_SDK_DISABLED": "false",
        # Only traces: MLflow answers /v1/traces and nothing else.
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": SERVICE_NAME,
        # MLflow's own client (evaluation, prompts: docs/evaluation.md): the stack, and
        # goose's experiment as the active one, so runs and searches land beside the traces.
        "MLFLOW_TRACKING_URI": public_url,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
    }
    if auth:
        env.update({"MLFLOW_TRACKING_USERNAME": auth[0], "MLFLOW_TRACKING_PASSWORD": auth[1]})
    if ca_file:
        env.update({"OTEL_EXPORTER_OTLP_CERTIFICATE": ca_file, "MLFLOW_TRACKING_SERVER_CERT_PATH": ca_file})
    return env


def client_headers(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Basic credentials from MLflow's own MLFLOW_TRACKING_USERNAME / _PASSWORD, if set."""
    user, password = environ.get("MLFLOW_TRACKING_USERNAME"), environ.get("MLFLOW_TRACKING_PASSWORD")
    return {"Authorization": basic_auth(user, password)} if user and password else {}


def traces_ui_url(public_url: str, experiment_id: str) -> str:
    return f"{public_url}/#/experiments/{experiment_id}/traces"


DAY_MS = 86_400_000


def retention_days(value: str | None) -> int | None:
    """The number of days to keep, or None to keep everything."""
    if value is None or not value.strip():
        return None
    try:
        days = int(value)
    except ValueError:
        days = 0
    if days < 1:
        raise StackError(f"TRACE_RETENTION_DAYS={value!r} is not a whole number of days (1 or more); "
                         "fix it in .env, or leave it empty to keep every trace")
    return days


def retention_cutoff_ms(days: int, now_ms: int) -> int:
    """Traces that started before this (ms since the epoch) are older than `days` days: retention deletes them."""
    return now_ms - days * DAY_MS
