"""The load `make bench` and `make profile` put on a server: goose-shaped OTLP, trace queries.

Exporters are closed loops (send a batch, wait for the answer, send again);
what they count is what the report shows: traces acknowledged, latencies,
answers by status, and loss, the traces acknowledged with 200 that MLflow's
API does not return.
"""

from __future__ import annotations

import http.client
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from lib import otlp
from lib.mlflow_api import MlflowClient

TRACES_PER_BATCH = 10
PROMPT_BYTES = 2048
FILL_TRACES_PER_BATCH = 50
FILL_CONCURRENCY = 8
QUERY_SAMPLES = 50
FIRST_PAGE = 100  # traces per page in the trace list


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def lost_traces(acknowledged: Iterable[str], stored: Iterable[str]) -> set[str]:
    """Trace ids acknowledged with 200 that the server does not return."""
    return set(acknowledged) - set(stored)


def goose_batch(session_id: str, traces: int, prompt: str) -> tuple[bytes, list[str]]:
    """`traces` goose replies of 3 spans (invoke_agent, chat, execute_tool) as one OTLP request."""
    spans: list[otlp.Span] = []
    for _ in range(traces):
        spans.extend(otlp.goose_session(session_id, prompt=prompt, tokens=((1200, 80),), tools=("developer__shell",))[:3])
    trace_ids = sorted({"tr-" + span.trace_id.hex() for span in spans})
    return otlp.encode_export_request(spans, {"service.name": "goose"}), trace_ids


class Exporter(threading.Thread):
    """One closed-loop exporter: send a batch, wait for the answer, repeat until the deadline."""

    def __init__(self, url: str, experiment_id: str, deadline: float, traces: int, prompt: str) -> None:
        super().__init__(daemon=True)
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.headers = {"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": experiment_id}
        self.deadline, self.traces, self.prompt = deadline, traces, prompt
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.acked: list[str] = []
        self.errors = 0

    def run(self) -> None:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        session = uuid.uuid4().hex
        while time.monotonic() < self.deadline:
            body, trace_ids = goose_batch(session, self.traces, self.prompt)
            start = time.perf_counter()
            try:
                connection.request("POST", "/v1/traces", body=body, headers=self.headers)
                response = connection.getresponse()
                response.read()
            except OSError:
                self.errors += 1
                connection.close()
                connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
                continue
            self.latencies.append(time.perf_counter() - start)
            self.statuses[str(response.status)] += 1
            if response.status == 200:
                self.acked.extend(trace_ids)
        connection.close()


def run_exporters(url: str, experiment_id: str, concurrency: int, seconds: float,
                  traces: int = TRACES_PER_BATCH, prompt: str = "x" * PROMPT_BYTES,
                  during: Callable[[], None] | None = None) -> list[Exporter]:
    """`concurrency` exporters for `seconds`; `during` runs in this thread meanwhile."""
    deadline = time.monotonic() + seconds
    exporters = [Exporter(url, experiment_id, deadline, traces, prompt) for _ in range(concurrency)]
    for exporter in exporters:
        exporter.start()
    if during is not None:
        during()
    for exporter in exporters:
        exporter.join()
    return exporters


@dataclass
class IngestResult:
    server: str
    concurrency: int
    seconds: float
    batches: int = 0
    traces_acked: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    lost: int = 0
    traces_per_s: float = 0.0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    peak_pss_mb: float = 0.0


def ingest(name: str, url: str, concurrency: int, seconds: float, memory: Callable[[], float]) -> IngestResult:
    """Ingest at one concurrency into a fresh experiment, sampling `memory` (MB) meanwhile, then count loss."""
    client = MlflowClient(url)
    experiment_id = client.create_experiment(f"bench-ingest-{concurrency}-{uuid.uuid4().hex[:8]}")
    peak: list[float] = []

    def sample_memory() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak.append(memory())
            time.sleep(min(2.0, max(0.1, end - time.monotonic())))

    started = time.monotonic()
    exporters = run_exporters(url, experiment_id, concurrency, seconds, during=sample_memory)
    elapsed = time.monotonic() - started
    latencies = [value for exporter in exporters for value in exporter.latencies]
    statuses: Counter[str] = Counter()
    for exporter in exporters:
        statuses.update(exporter.statuses)
    acked = [trace_id for exporter in exporters for trace_id in exporter.acked]
    result = IngestResult(name, concurrency, round(elapsed, 2), batches=len(latencies),
                          traces_acked=len(acked), statuses=dict(statuses),
                          errors=sum(exporter.errors for exporter in exporters),
                          lost=len(lost_traces(acked, client.trace_ids(experiment_id))),
                          traces_per_s=round(len(acked) / elapsed, 1),
                          peak_pss_mb=round(max(peak, default=0.0), 1))
    if latencies:
        result.p50_ms, result.p95_ms, result.p99_ms = (round(percentile(latencies, q) * 1000, 1) for q in (50, 95, 99))
    log(f"{name}: ingest x{concurrency}: {result.traces_per_s} traces/s, p99 {result.p99_ms} ms, "
        f"statuses {result.statuses}, lost {result.lost}")
    return result


@dataclass
class QueryResult:
    server: str
    stored: int
    list_p50_ms: float
    list_p95_ms: float
    session_p50_ms: float
    session_p95_ms: float


def fill(name: str, url: str, experiment_id: str, target: int, have: int) -> int:
    """Add traces until the experiment holds about `target`; returns the count acknowledged."""
    while have < target:
        batches_needed = (target - have) // FILL_TRACES_PER_BATCH + 1
        seconds = max(5.0, batches_needed / 40)
        exporters = run_exporters(url, experiment_id, FILL_CONCURRENCY, seconds, FILL_TRACES_PER_BATCH)
        have += sum(len(exporter.acked) for exporter in exporters)
        log(f"{name}: filled to {have} traces")
    return have


def timed(call: Callable[[], object], samples: int) -> list[float]:
    durations = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


def queries(name: str, url: str, levels: Sequence[int]) -> list[QueryResult]:
    """At each level of stored traces: the trace list a user opens (first page, newest first) and a session search."""
    client = MlflowClient(url, timeout=120)
    experiment_id = client.create_experiment(f"bench-query-{uuid.uuid4().hex[:8]}")
    have, results = 0, []
    for level in levels:
        have = fill(name, url, experiment_id, level, have)
        [newest], _ = client.search_traces(experiment_id, max_results=1)
        session = newest["trace_metadata"].get("mlflow.trace.session", "")
        first_page = timed(lambda: client.search_traces(experiment_id, max_results=FIRST_PAGE), QUERY_SAMPLES)
        by_session = timed(lambda: client.search_traces(
            experiment_id, filter_string=f"metadata.`mlflow.trace.session` = '{session}'", max_results=FIRST_PAGE,
            order_by=()), QUERY_SAMPLES)
        result = QueryResult(name, have, *(round(percentile(samples, q) * 1000, 1)
                                           for samples in (first_page, by_session) for q in (50, 95)))
        log(f"{name}: queries at {have}: list p95 {result.list_p95_ms} ms, session p95 {result.session_p95_ms} ms")
        results.append(result)
    return results
