#!/usr/bin/env python3
"""make bench: the stack against plain `mlflow server`, measured in one run.

Servers, each started fresh and measured the same way:
  - baseline: `mlflow server` with every default (SQLite, 4 workers, job
    runner), same MLflow, in the stack's own MLflow image;
  - stack: the real compose.yaml under its own project name;
  - variants: the stack with one tuned setting put back to MLflow's default;
  - baseline-native / native: the same two without Docker (this virtualenv's
    MLflow; the stack's PostgreSQL and MLflow settings from compose.yaml).
Each is measured for:
  - footprint: proportional set size (PSS) of every process, idle and under
    load; for the stack also the time from `make up` to the bootstrap summary;
  - ingest: goose-shaped OTLP/HTTP protobuf batches from N closed-loop
    exporters (each sends, waits for the answer, sends again), at each
    concurrency: traces/s, latency percentiles, non-200 answers by code, and
    loss, the traces acknowledged with 200 that MLflow's API does not return;
  - query: the trace list a user opens (first page, newest first) and a search
    by session id, at 10k and 100k stored traces (not for variants).
Results go to build/bench/results.json, docs/benchmarks.md (the table between
its markers) and docs/benchmarks.png. Needs the test virtualenv (make bench).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import native_stack
import otlp
import stack_config as cfg
from mlflow_api import MlflowClient

CONCURRENCY = (1, 8, 32)
TRACES_PER_BATCH = 10
PROMPT_BYTES = 2048
FILL_TRACES_PER_BATCH = 50
FILL_CONCURRENCY = 8
QUERY_LEVELS = (10_000, 100_000)
QUERY_SAMPLES = 50
FIRST_PAGE = 100  # traces per page in the trace list
SEARCH_PAGE = 500  # the API's maximum page size, for counting
# The order of the report's rows. Under Docker: baseline and stack; without
# Docker: baseline-native and native (same settings, this virtualenv's Python).
SERVERS = ("baseline", "stack", "baseline-native", "native")
BASELINE_OF = {"stack": "baseline", "native": "baseline-native"}  # what each server's ratios divide by
# The tuning table: the stack with one of its defaults put back to MLflow's,
# measured in the same run, so each tuned setting shows what it buys.
# Each: what differs, and the compose override of the mlflow service, made
# from compose.yaml's mlflow service (so it follows changes there).
VARIANTS: dict[str, tuple[str, Callable[[dict], dict]]] = {
    "catalog-fetch": ("token prices fetched from GitHub (MLflow's default catalog URI), telemetry on",
                      lambda mlflow: {"environment": {"MLFLOW_MODEL_CATALOG_URI": _mlflow_default("MLFLOW_MODEL_CATALOG_URI"),
                                                      "MLFLOW_DISABLE_TELEMETRY": "false"}}),
    "workers-4": ("4 workers (MLflow's default) instead of 2",
                  lambda mlflow: {"command": [re.sub(r"^--workers=\d+$", "--workers=4", arg)
                                              for arg in mlflow["command"]]}),
    "jobs-on": ("job runner on (MLflow's default)",
                lambda mlflow: {"environment": {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true"}}),
}
RESULTS = cfg.REPO_ROOT / "build" / "bench" / "results.json"
DOC = cfg.REPO_ROOT / "docs" / "benchmarks.md"
PLOT = cfg.REPO_ROOT / "docs" / "benchmarks.png"
TABLE_BEGIN, TABLE_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _mlflow_default(variable: str) -> str:
    import mlflow.environment_variables

    return getattr(mlflow.environment_variables, variable).default


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


# Counting -------------------------------------------------------------------

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


def stored_trace_ids(client: MlflowClient, experiment_id: str, page_size: int = SEARCH_PAGE) -> set[str]:
    """Every trace id in the experiment, page by page through the search API."""
    ids: set[str] = set()
    token = None
    while True:
        body = {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
                "max_results": page_size}
        if token:
            body["page_token"] = token
        reply = client.request("POST", "/api/3.0/mlflow/traces/search", body)
        ids.update(trace["trace_id"] for trace in reply.get("traces", []))
        token = reply.get("next_page_token")
        if not token:
            return ids


# Load -----------------------------------------------------------------------

def goose_batch(session_id: str, traces: int, prompt: str) -> tuple[bytes, list[str]]:
    """`traces` goose replies of 3 spans (invoke_agent, chat, execute_tool) as one OTLP request."""
    spans: list[otlp.Span] = []
    for _ in range(traces):
        spans.extend(otlp.goose_session(session_id, prompt=prompt, tokens=((1200, 80),), tools=("developer__shell",))[:3])
    trace_ids = sorted({"tr-" + span.trace_id.hex() for span in spans})
    return otlp.encode_export_request(spans, {"service.name": "goose"}), trace_ids


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
                  traces: int, prompt: str, during: Callable[[], None] | None = None) -> list[Exporter]:
    deadline = time.monotonic() + seconds
    exporters = [Exporter(url, experiment_id, deadline, traces, prompt) for _ in range(concurrency)]
    for exporter in exporters:
        exporter.start()
    if during is not None:
        during()
    for exporter in exporters:
        exporter.join()
    return exporters


def ingest(server: "Server", concurrency: int, seconds: float) -> IngestResult:
    client = MlflowClient(server.url)
    experiment_id = client.create_experiment(f"bench-ingest-{concurrency}-{uuid.uuid4().hex[:8]}")
    prompt = "x" * PROMPT_BYTES
    peak: list[float] = []

    def sample_memory() -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak.append(server.pss_mb())
            time.sleep(min(2.0, max(0.1, end - time.monotonic())))

    started = time.monotonic()
    exporters = run_exporters(server.url, experiment_id, concurrency, seconds, TRACES_PER_BATCH, prompt, sample_memory)
    elapsed = time.monotonic() - started
    latencies = [value for exporter in exporters for value in exporter.latencies]
    statuses: Counter[str] = Counter()
    for exporter in exporters:
        statuses.update(exporter.statuses)
    acked = [trace_id for exporter in exporters for trace_id in exporter.acked]
    stored = stored_trace_ids(client, experiment_id)
    result = IngestResult(server.name, concurrency, round(elapsed, 2), batches=len(latencies),
                          traces_acked=len(acked), statuses=dict(statuses),
                          errors=sum(exporter.errors for exporter in exporters),
                          lost=len(lost_traces(acked, stored)), traces_per_s=round(len(acked) / elapsed, 1),
                          peak_pss_mb=round(max(peak, default=0.0), 1))
    if latencies:
        result.p50_ms, result.p95_ms, result.p99_ms = (round(percentile(latencies, q) * 1000, 1) for q in (50, 95, 99))
    log(f"{server.name}: ingest x{concurrency}: {result.traces_per_s} traces/s, p99 {result.p99_ms} ms, "
        f"statuses {result.statuses}, lost {result.lost}")
    return result


# Queries --------------------------------------------------------------------

@dataclass
class QueryResult:
    server: str
    stored: int
    list_p50_ms: float
    list_p95_ms: float
    session_p50_ms: float
    session_p95_ms: float


def fill(server: "Server", experiment_id: str, target: int, have: int) -> int:
    """Add traces until the experiment holds about `target`; returns the count acknowledged."""
    prompt = "x" * PROMPT_BYTES
    while have < target:
        batches_needed = (target - have) // FILL_TRACES_PER_BATCH + 1
        seconds = max(5.0, batches_needed / 40)
        exporters = run_exporters(server.url, experiment_id, FILL_CONCURRENCY, seconds, FILL_TRACES_PER_BATCH, prompt)
        have += sum(len(exporter.acked) for exporter in exporters)
        log(f"{server.name}: filled to {have} traces")
    return have


def timed(call: Callable[[], object], samples: int) -> list[float]:
    durations = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        durations.append(time.perf_counter() - start)
    return durations


def queries(server: "Server") -> list[QueryResult]:
    client = MlflowClient(server.url, timeout=120)
    experiment_id = client.create_experiment(f"bench-query-{uuid.uuid4().hex[:8]}")
    location = [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}]
    have, results = 0, []
    for level in QUERY_LEVELS:
        have = fill(server, experiment_id, level, have)
        newest = client.request("POST", "/api/3.0/mlflow/traces/search", {
            "locations": location, "max_results": 1, "order_by": ["timestamp_ms DESC"]})["traces"][0]
        session = newest["trace_metadata"].get("mlflow.trace.session", "")
        first_page = timed(lambda: client.request("POST", "/api/3.0/mlflow/traces/search", {
            "locations": location, "max_results": FIRST_PAGE, "order_by": ["timestamp_ms DESC"]}), QUERY_SAMPLES)
        by_session = timed(lambda: client.request("POST", "/api/3.0/mlflow/traces/search", {
            "locations": location, "max_results": FIRST_PAGE,
            "filter": f"metadata.`mlflow.trace.session` = '{session}'"}), QUERY_SAMPLES)
        result = QueryResult(server.name, have, *(round(percentile(samples, q) * 1000, 1)
                                                  for samples in (first_page, by_session) for q in (50, 95)))
        log(f"{server.name}: queries at {have}: list p95 {result.list_p95_ms} ms, session p95 {result.session_p95_ms} ms")
        results.append(result)
    return results


# Servers --------------------------------------------------------------------

def pss_mb(pids: Iterable[int]) -> float:
    """Proportional set size of these processes, in MB (shared pages split among sharers)."""
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as handle:
                total_kb += sum(int(line.split()[1]) for line in handle if line.startswith("Pss:"))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return round(total_kb / 1024, 1)


def descendants(pid: int) -> list[int]:
    """pid and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(children.get(current, []))
    return found


def container_pids(container: str) -> list[int]:
    """Host pids of every process in a running container."""
    pid = int(subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", container],
                             check=True, capture_output=True, text=True).stdout.strip() or 0)
    return descendants(pid) if pid else []


class Server:
    name: str
    url: str

    def pss_mb(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class BaselineServer(Server):
    """`mlflow server` with every default (SQLite, 4 workers, job runner), in the stack's own MLflow image.

    Same MLflow, Python build and container overheads as the stack, so the
    ratios measure the stack's configuration alone. The one flag, --host
    0.0.0.0, is what any container needs to be reachable through a published port.
    """

    name = "baseline"

    def __init__(self, port: int) -> None:
        # On the host's disk, as the stack's volumes are; the image's user must write its SQLite file there.
        self.workdir = Path(tempfile.mkdtemp(prefix="goose-mlflow-bench-baseline-"))
        self.workdir.chmod(0o777)
        self.url = f"http://127.0.0.1:{port}"
        subprocess.run(["docker", "compose", "build", "mlflow"], cwd=cfg.REPO_ROOT, check=True, capture_output=True)
        image = json.loads(subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=cfg.REPO_ROOT,
                                          check=True, capture_output=True, text=True).stdout)["services"]["mlflow"]["image"]
        self.container = subprocess.run(
            ["docker", "run", "--detach", "--workdir", "/data", "--volume", f"{self.workdir}:/data",
             "--publish", f"127.0.0.1:{port}:5000", "--entrypoint", "mlflow", image, "server", "--host", "0.0.0.0"],
            check=True, capture_output=True, text=True).stdout.strip()
        MlflowClient(self.url).wait_until_healthy(300)

    def pss_mb(self) -> float:
        return pss_mb(container_pids(self.container))

    def stop(self) -> None:
        subprocess.run(["docker", "rm", "--force", "--volumes", self.container], check=True, capture_output=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


class NativeBaseline(Server):
    """`mlflow server` with every default, from this virtualenv, in a fresh folder: the baseline without Docker."""

    name = "baseline-native"

    def __init__(self, port: int) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="goose-mlflow-bench-baseline-"))
        self.url = f"http://127.0.0.1:{port}"
        mlflow = Path(sys.executable).parent / "mlflow"
        self.process = subprocess.Popen([str(mlflow), "server", "--port", str(port)], cwd=self.workdir,
                                        stdout=open(self.workdir / "server.log", "w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        MlflowClient(self.url).wait_until_healthy(300)

    def pss_mb(self) -> float:
        return pss_mb(descendants(self.process.pid))

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)
        shutil.rmtree(self.workdir, ignore_errors=True)


class NativeStack(Server):
    """The stack's PostgreSQL and MLflow from this machine's binaries, with compose.yaml's settings.

    What the Docker stack runs, minus Docker: the same MLflow command,
    environment and entrypoint, the same PostgreSQL init scripts. Artifacts go
    to a local folder (ingest and queries do not touch them), so no S3.
    """

    name = "native"

    def __init__(self, port: int) -> None:
        self.root, secrets = native_stack.new_root("goose-mlflow-bench-native-")
        compose = native_stack.load_compose({"MLFLOW_PORT": str(port)})
        bucket = compose["services"]["bucket"]["environment"]["MLFLOW_BUCKET"]
        replacements = {native_stack.SECRETS_IN_CONTAINER: str(secrets),
                        f"s3://{bucket}": (self.root / "artifacts").as_uri()}
        self.postgres = native_stack.start_postgres(self.root, secrets, compose, replacements)
        replacements["@postgres:5432/"] = f"@127.0.0.1:{self.postgres.port}/"
        self.server, self.url = native_stack.start_mlflow(self.root / "mlflow.log", compose, replacements, port)

    def pss_mb(self) -> float:
        postmaster = int((self.postgres.data / "postmaster.pid").read_text().split()[0])
        return pss_mb(descendants(self.server.pid) + descendants(postmaster))

    def stop(self) -> None:
        native_stack.stop_processes([self.server])
        self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class ComposeStack(Server):
    """The real compose.yaml, from a copy of this checkout, under its own project name and port.

    The copy keeps the bootstrap's .env away from the developer's; everything,
    volumes included, is removed at the end.
    """

    def __init__(self, port: int, name: str = "stack", overrides: dict | None = None) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.workdir = Path(tempfile.mkdtemp(prefix="goose-mlflow-bench-stack-"))
        cfg.copy_checkout(self.workdir)
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": "goose-mlflow-bench", "MLFLOW_PORT": str(port)}
        if overrides:
            # Service name -> settings. JSON is YAML: compose merges it over
            # compose.yaml, for make up and every later call.
            (self.workdir / "compose.bench.json").write_text(json.dumps({"services": overrides}))
            self.env["COMPOSE_FILE"] = "compose.yaml:compose.bench.json"
        self.compose("down", "--volumes")
        start = time.monotonic()
        subprocess.run(["make", "up"], cwd=self.workdir, env=self.env, check=True, capture_output=True)
        self.up_seconds = round(time.monotonic() - start, 1)
        log(f"{self.name}: make up took {self.up_seconds} s")

    def compose(self, *args: str) -> str:
        return subprocess.run(["docker", "compose", *args], cwd=self.workdir, env=self.env,
                              check=True, capture_output=True, text=True).stdout

    def pids(self, *services: str) -> list[int]:
        """Host pids of every process in the running containers (of these services, or all)."""
        return [pid for container in self.compose("ps", "--quiet", *services).split()
                for pid in container_pids(container)]

    def pss_mb(self) -> float:
        return pss_mb(self.pids())

    def stop(self) -> None:
        self.compose("down", "--volumes")
        shutil.rmtree(self.workdir, ignore_errors=True)


# Report ---------------------------------------------------------------------

def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}×" if base else "n/a"


def report(results: dict) -> str:
    """The markdown tables for docs/benchmarks.md."""
    ingest_rows = {(r["server"], r["concurrency"]): r for r in results["ingest"]}
    lines = [f"Run {results['date']} on {results['machine']}; MLflow {results['mlflow']}; "
             f"{results['seconds']} s per ingest level. Ratios: stack ÷ baseline, native ÷ baseline-native.", "",
             "| exporters | server | traces/s | ratio | p50 ms | p95 ms | p99 ms | non-200 | lost | peak PSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    servers = [name for name in SERVERS if name in results["idle_pss_mb"]]
    for concurrency in CONCURRENCY:
        for server in servers:
            base = ingest_rows.get((BASELINE_OF.get(server, server), concurrency))
            row = ingest_rows.get((server, concurrency))
            if row is None:
                continue
            non_200 = {code: n for code, n in row["statuses"].items() if code != "200"}
            lines.append(f"| {concurrency} | {server} | {row['traces_per_s']} | "
                         f"{ratio(row['traces_per_s'], base['traces_per_s']) if base else 'n/a'} | "
                         f"{row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
                         f"{non_200 or 0}{' + ' + str(row['errors']) + ' errors' if row['errors'] else ''} | "
                         f"{row['lost']} | {row['peak_pss_mb']} |")
    lines += ["", "| stored traces | server | list p50 ms | list p95 ms | session p50 ms | session p95 ms |",
              "|---|---|---|---|---|---|"]
    for row in results["queries"]:
        lines.append(f"| {row['stored']} | {row['server']} | {row['list_p50_ms']} | {row['list_p95_ms']} | "
                     f"{row['session_p50_ms']} | {row['session_p95_ms']} |")
    idle = results["idle_pss_mb"]
    lines += ["", "| footprint | server | value | ratio |", "|---|---|---|---|"]
    for server in servers:
        base = BASELINE_OF.get(server, server)
        lines.append(f"| idle PSS, MB (all processes) | {server} | {idle[server]} | "
                     f"{ratio(idle[server], idle[base]) if base in idle else 'n/a'} |")
    if "up_seconds" in results:
        lines.append(f"| `make up` to bootstrap summary, s | stack | {results['up_seconds']} | |")
    variants = [name for name in VARIANTS if name in idle]
    if variants:
        lines += ["", "Tuning: the stack against itself with one setting put back to MLflow's default "
                  "(same run; ratios are the tuned stack ÷ the variant).", "",
                  "| server | what differs | idle PSS MB | traces/s x1 | traces/s x8 | p99 ms x8 | traces/s x32 | "
                  "non-200 | lost |", "|---|---|---|---|---|---|---|---|---|"]
        for name in ["stack", *variants]:
            rows = {r["concurrency"]: r for r in results["ingest"] if r["server"] == name}
            if not rows:
                continue
            what = "tuned defaults" if name == "stack" else VARIANTS[name][0]
            non_200 = sum(n for row in rows.values() for code, n in row["statuses"].items() if code != "200")
            cells = []
            for concurrency, key in ((1, "traces_per_s"), (8, "traces_per_s"), (8, "p99_ms"), (32, "traces_per_s")):
                value = rows.get(concurrency, {}).get(key, 0.0)
                tuned = ingest_rows.get(("stack", concurrency), {}).get(key, 0.0)
                cells.append(f"{value}" if name == "stack" else f"{value} ({ratio(tuned, value)})")
            idle_cell = f"{idle[name]}" if name == "stack" else f"{idle[name]} ({ratio(idle['stack'], idle[name])})"
            lines.append(f"| {name} | {what} | {idle_cell} | {' | '.join(cells)} | {non_200} | "
                         f"{sum(row['lost'] for row in rows.values())} |")
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{TABLE_BEGIN}\n{TABLE_END}\n"
    if TABLE_BEGIN not in text or TABLE_END not in text:
        raise SystemExit(f"bench: error: {DOC} lacks the {TABLE_BEGIN} / {TABLE_END} markers; restore them")
    head, rest = text.split(TABLE_BEGIN, 1)
    _, tail = rest.split(TABLE_END, 1)
    DOC.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}")


def write_plot(results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (throughput, p99) = plt.subplots(1, 2, figsize=(10, 4))
    for server in SERVERS:
        rows = sorted((r for r in results["ingest"] if r["server"] == server), key=lambda r: r["concurrency"])
        if not rows:
            continue
        x = [r["concurrency"] for r in rows]
        throughput.plot(x, [r["traces_per_s"] for r in rows], marker="o", label=server)
        p99.plot(x, [r["p99_ms"] for r in rows], marker="o", label=server)
    for axis, title in ((throughput, "traces/s"), (p99, "p99 latency, ms")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(CONCURRENCY), [str(c) for c in CONCURRENCY])
        axis.set_xlabel("concurrent exporters")
        axis.set_title(title)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(PLOT, dpi=100)


# Command --------------------------------------------------------------------

def measure(server: Server, seconds: float, with_queries: bool) -> tuple[list[IngestResult], list[QueryResult], float]:
    time.sleep(10)  # let start-up settle before the idle reading
    idle = server.pss_mb()
    log(f"{server.name}: idle PSS {idle} MB")
    results = [ingest(server, concurrency, seconds) for concurrency in CONCURRENCY]
    return results, (queries(server) if with_queries else []), idle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the stack against plain `mlflow server` (docs/benchmarks.md).")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each ingest level (default: %(default)s)")
    parser.add_argument("--no-queries", action="store_true", help="skip the 10k/100k query part (it fills 100k traces)")
    parser.add_argument("--servers", default="baseline,stack",
                        help="which to run, comma-separated: baseline, stack (Docker), native (the stack's "
                             "settings without Docker) (default: %(default)s)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="stack variants for the tuning table, ingest only, comma-separated; '' for none "
                             "(default: %(default)s)")
    parser.add_argument("--from-results", action="store_true",
                        help=f"measure nothing: rewrite the doc and plot from {RESULTS.relative_to(cfg.REPO_ROOT)}")
    args = parser.parse_args(argv)
    if args.from_results:
        return publish(json.loads(RESULTS.read_text()))
    servers = [name for name in args.servers.split(",") if name]
    variants = [name for name in args.variants.split(",") if name]
    unknown = sorted(set(servers) - set(SERVERS)) + sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown server or variant {', '.join(unknown)}; servers: {', '.join(SERVERS)}; "
                     f"variants: {', '.join(VARIANTS)}")
    import mlflow

    results: dict = {"date": time.strftime("%Y-%m-%d"), "mlflow": mlflow.__version__, "seconds": args.seconds,
                     "machine": f"{os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB, "
                                f"{platform.platform()}",
                     "ingest": [], "queries": [], "idle_pss_mb": {}}
    for name in [*servers, *variants]:
        port = native_stack.free_port()
        log(f"{name}: starting on port {port}")
        if name == "baseline":
            server: Server = BaselineServer(port)
        elif name == "baseline-native":
            server = NativeBaseline(port)
        elif name == "native":
            server = NativeStack(port)
        else:
            overrides = ({"mlflow": VARIANTS[name][1](native_stack.load_compose()["services"]["mlflow"])}
                         if name in VARIANTS else None)
            server = ComposeStack(port, name, overrides)
        try:
            ingested, queried, idle = measure(server, args.seconds, not args.no_queries and name not in VARIANTS)
        finally:
            server.stop()
        results["ingest"] += [asdict(r) for r in ingested]
        results["queries"] += [asdict(r) for r in queried]
        results["idle_pss_mb"][name] = idle
        if isinstance(server, ComposeStack) and name == "stack":
            results["up_seconds"] = server.up_seconds
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    return publish(results)


def publish(results: dict) -> int:
    table = report(results)
    write_doc(table)
    write_plot(results)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
