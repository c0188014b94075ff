#!/usr/bin/env python3
"""make profile: where the stack's ingest time goes, as evidence for docs/benchmarks.md.

Starts the real compose.yaml (as `make bench` does, PostgreSQL with
pg_stat_statements loaded), drives goose-shaped OTLP load from closed-loop
exporters and, during a measured window, records:
  - CPU seconds of every process on the machine, grouped (MLflow workers,
    PostgreSQL, the load generator, the rest);
  - py-spy samples of each MLflow worker taken only while it holds the GIL,
    i.e. where its Python CPU goes;
  - pg_stat_statements: the statements one OTLP request costs PostgreSQL.
Writes docs/profiles/ingest.md (the tables); py-spy's raw stacks go to build/profile/.
Needs the test virtualenv (py-spy) and root (py-spy reads other processes).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import load
import procfs
from harness.compose_file import REPO
from lib.mlflow_api import MlflowClient
from servers import ComposeServer

OUT = REPO / "docs" / "profiles"
RAW = REPO / "build" / "profile"  # py-spy's stacks, a few MB: not committed
WARMUP_SECONDS = 10.0
SAMPLE_RATE = 100  # py-spy samples per second
POSTGRES_OVERRIDE = {"postgres": {"command": ["postgres", "-c", "shared_preload_libraries=pg_stat_statements"]}}
STATEMENTS_SQL = """
SELECT calls, round(total_exec_time::numeric, 1), regexp_replace(left(query, 90), '\\s+', ' ', 'g')
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'mlflow')
ORDER BY calls DESC LIMIT 15"""


def log(message: str) -> None:
    print(f"profile: {message}", file=sys.stderr, flush=True)


def cpu_group(pid: int, command: str) -> str:
    if command.startswith("/opt/venv/bin/python3") and "spawn_main" in command:
        return "MLflow workers (uvicorn)"
    if command.startswith("postgres"):
        return "PostgreSQL"
    if pid == os.getpid():
        return "load generator (this script)"
    return "everything else (py-spy, uvicorn parent, Docker, kernel threads, ...)"


def cpu_shares(before: dict[int, tuple[str, int]], after: dict[int, tuple[str, int]], seconds: float) -> Counter[str]:
    """Cores used per group over the window (1.0 = one core busy all the time)."""
    shares: Counter[str] = Counter()
    hz = procfs.clock_ticks_per_second()
    for pid, (command, ticks) in after.items():
        used = ticks - before.get(pid, (command, 0))[1]
        if used > 0:
            shares[cpu_group(pid, command)] += used / hz / seconds
    return shares


def frame_name(frame: str) -> str:
    """'SqlAlchemyStore.log_spans (mlflow/store/tracking/sqlalchemy_store.py:5698)' -> the function and file."""
    return re.sub(r":\d+\)$", ")", frame)


def gil_profile(raw_files: list[Path]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, inclusive samples per MLflow function, and self samples per library (top frame's package)."""
    total, inclusive, by_package = 0, Counter(), Counter()
    for path in raw_files:
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = [frame_name(frame) for frame in stack.split(";")]
            for frame in set(frames):
                if "(mlflow/" in frame:
                    inclusive[frame] += samples
            top = re.search(r"\(([^/)]+)", frames[-1])
            by_package[top.group(1).removesuffix(".py") if top else "?"] += samples
    return total, inclusive, by_package


def psql(stack: ComposeServer, *args: str) -> str:
    """psql as the superuser on MLflow's database, inside the postgres container."""
    return stack.project.exec("postgres", "psql", "-U", "postgres", "-d", "mlflow", *args)


def statements(stack: ComposeServer) -> list[tuple[int, float, str]]:
    out = psql(stack, "-At", "-F", "\t", "-c", STATEMENTS_SQL)
    rows = []
    for line in out.splitlines():
        calls, total_ms, query = line.split("\t", 2)
        rows.append((int(calls), float(total_ms), query))
    return rows


def database_bytes(stack: ComposeServer) -> int:
    return int(psql(stack, "-At", "-c", "CHECKPOINT; SELECT pg_database_size('mlflow')").strip().splitlines()[-1])


def reset_statements(stack: ComposeServer) -> None:
    psql(stack, "-q", "-c", "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset();")


def report(concurrency: int, seconds: float, traces_per_s: float, p99_ms: float, batches: int,
           shares: Counter[str], profile: tuple[int, Counter[str], Counter[str]],
           rows: list[tuple[int, float, str]], bytes_per_trace: float) -> str:
    total, inclusive, by_package = profile
    lines = [f"# Ingest profile, {concurrency} exporters, {seconds:.0f} s",
             "", f"Written by `make profile` (bench/profile_ingest.py) on {time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} cores. During the window: {traces_per_s:.1f} traces/s, p99 {p99_ms:.0f} ms, "
             f"{batches} OTLP requests of {load.TRACES_PER_BATCH} traces. py-spy itself runs during the "
             "window (in \"everything else\"), so throughput is below `make bench`'s.",
             "", "## CPU, cores used (the machine has " + str(os.cpu_count()) + ")", "",
             "| process group | cores | CPU ms per trace |", "|---|---|---|"]
    for group, cores in shares.most_common():
        lines.append(f"| {group} | {cores:.2f} | {cores * 1000 / traces_per_s:.2f} |")
    lines += ["", "## MLflow workers: where the Python CPU goes",
              "", f"py-spy, {SAMPLE_RATE} samples/s per worker, only samples where the worker holds the GIL "
              f"({total} samples). Inclusive share per MLflow function:", "",
              "| share | function |", "|---|---|"]
    for frame, samples in inclusive.most_common(12):
        lines.append(f"| {100 * samples / total:.1f}% | `{frame}` |")
    lines += ["", "Self time by the package of the innermost frame:", "", "| share | package |", "|---|---|"]
    for package, samples in by_package.most_common(8):
        lines.append(f"| {100 * samples / total:.1f}% | {package} |")
    lines += ["", "## PostgreSQL: statements per OTLP request", "",
              f"pg_stat_statements over the window, the 15 most frequent statements, per request "
              f"({batches} requests):", "",
              "| per request | exec ms per request | statement |", "|---|---|---|"]
    for calls, total_ms, query in rows:
        lines.append(f"| {calls / batches:.1f} | {total_ms / batches:.2f} | `{query}` |")
    lines.append(f"| **{sum(r[0] for r in rows) / batches:.1f}** | **{sum(r[1] for r in rows) / batches:.2f}** "
                 "| all of the above |")
    lines += ["", "## Storage", "", f"PostgreSQL database growth over the window: {bytes_per_trace / 1024:.1f} KiB "
              f"per goose trace of 3 spans with a {load.PROMPT_BYTES // 1024} KB prompt (tables, indexes, TOAST; "
              "WAL not counted)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Profile the stack's OTLP ingest (docs/profiles/ingest.md).")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured window (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop exporters (default: %(default)s)")
    args = parser.parse_args(argv)
    py_spy = Path(sys.executable).parent / "py-spy"
    if not py_spy.exists():
        parser.error(f"{py_spy} is missing; run make profile, which installs the test virtualenv")
    OUT.mkdir(parents=True, exist_ok=True)
    RAW.mkdir(parents=True, exist_ok=True)
    stack = ComposeServer("stack", POSTGRES_OVERRIDE)
    try:
        client = MlflowClient(stack.url)
        experiment_id = client.create_experiment(f"profile-{uuid.uuid4().hex[:8]}")
        log(f"warming up every worker for {WARMUP_SECONDS:.0f} s")
        load.run_exporters(stack.url, experiment_id, args.concurrency, WARMUP_SECONDS)
        workers = {pid for pid in stack.project.pids("mlflow") if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        reset_statements(stack)
        size_before = database_bytes(stack)
        raw_files = [RAW / f"ingest-worker-{n}.txt" for n in range(len(workers))]
        spies = [subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--gil", "--nonblocking",
                                   "--rate", str(SAMPLE_RATE), "--duration", str(int(args.seconds)),
                                   "--format", "raw", "--output", str(path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for pid, path in zip(sorted(workers), raw_files)]
        log(f"measuring {args.seconds:.0f} s: {args.concurrency} exporters, py-spy on workers {sorted(workers)}")
        before, started = procfs.cpu_ticks(), time.monotonic()
        exporters = load.run_exporters(stack.url, experiment_id, args.concurrency, args.seconds)
        elapsed = time.monotonic() - started
        shares = cpu_shares(before, procfs.cpu_ticks(), elapsed)
        for spy in spies:
            _, errors = spy.communicate(timeout=120)
            if spy.returncode != 0:
                raise SystemExit(f"profile: error: py-spy failed: {errors.decode().strip()}")
        latencies = [value for exporter in exporters for value in exporter.latencies]
        acked = sum(len(exporter.acked) for exporter in exporters)
        text = report(args.concurrency, elapsed, acked / elapsed, load.percentile(latencies, 99) * 1000,
                      len(latencies), shares, gil_profile(raw_files), statements(stack),
                      (database_bytes(stack) - size_before) / max(acked, 1))
    finally:
        stack.stop()
    (OUT / "ingest.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
