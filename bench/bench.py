#!/usr/bin/env python3
"""make bench: the stack against plain `mlflow server`, measured in one run.

Each server (servers.py) is started fresh and measured the same way:
  - footprint: proportional set size (PSS) of every process, idle and under
    load; for the stack also the time from `make up` to the bootstrap summary;
  - ingest (load.py): goose-shaped OTLP/HTTP protobuf batches from N
    closed-loop exporters at each concurrency: traces/s, latency percentiles,
    non-200 answers by code, and loss;
  - query: the trace list a user opens and a search by session id, at 10k and
    100k stored traces (not for variants).
Results go to build/bench/results.json, docs/benchmarks.md (the table between
its markers) and docs/benchmarks.png (report.py). Needs the test virtualenv:
run it as `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict

import load
import report
import servers
from lib.errors import run_command
from harness.compose_file import REPO

QUERY_LEVELS = (10_000, 100_000)
SETTLE_SECONDS = 10  # after start-up, before the idle reading
RESULTS = REPO / "build" / "bench" / "results.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark the stack against plain `mlflow server` (docs/benchmarks.md).")
    parser.add_argument("--seconds", type=float, default=30.0, help="duration of each ingest level (default: %(default)s)")
    parser.add_argument("--no-queries", action="store_true", help="skip the 10k/100k query part (it fills 100k traces)")
    parser.add_argument("--servers", default="baseline,stack",
                        help="which to run, comma-separated: baseline, stack (Docker), baseline-native, native "
                             "(the same without Docker) (default: %(default)s)")
    parser.add_argument("--variants", default=",".join(servers.VARIANTS),
                        help="stack variants for the tuning table, ingest only, comma-separated; '' for none "
                             "(default: %(default)s)")
    parser.add_argument("--from-results", action="store_true",
                        help=f"measure nothing: rewrite the doc and plot from {RESULTS.relative_to(REPO)}")
    args = parser.parse_args(argv)
    args.servers = [name for name in args.servers.split(",") if name]
    args.variants = [name for name in args.variants.split(",") if name]
    unknown = sorted(set(args.servers) - set(report.SERVERS)) + sorted(set(args.variants) - set(servers.VARIANTS))
    if unknown:
        parser.error(f"unknown server or variant {', '.join(unknown)}; servers: {', '.join(report.SERVERS)}; "
                     f"variants: {', '.join(servers.VARIANTS)}")
    return args


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    return f"{os.cpu_count()} cores, {memory_gib} GiB, {platform.platform()}"


def measure(server: servers.Server, seconds: float, with_queries: bool, results: dict) -> None:
    time.sleep(SETTLE_SECONDS)
    idle = server.pss_mb()
    load.log(f"{server.name}: idle PSS {idle} MB")
    results["idle_pss_mb"][server.name] = idle
    for concurrency in report.CONCURRENCY:
        results["ingest"].append(asdict(load.ingest(server.name, server.url, concurrency, seconds, server.pss_mb)))
    if with_queries:
        results["queries"] += [asdict(row) for row in load.queries(server.name, server.url, QUERY_LEVELS)]


def run(args: argparse.Namespace) -> dict:
    import mlflow

    results: dict = {"date": time.strftime("%Y-%m-%d"), "mlflow": mlflow.__version__, "seconds": args.seconds,
                     "machine": machine(), "ingest": [], "queries": [], "idle_pss_mb": {}}
    for name in [*args.servers, *args.variants]:
        load.log(f"{name}: starting")
        server = servers.start(name)
        try:
            measure(server, args.seconds, not args.no_queries and name not in servers.VARIANTS, results)
        finally:
            server.stop()
        if name == "stack" and isinstance(server, servers.ComposeServer):
            results["up_seconds"] = server.up_seconds
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    return results


def publish(results: dict) -> str:
    table = report.report(results)
    report.write_doc(table)
    report.write_plot(results)
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> str:
        table = publish(json.loads(RESULTS.read_text()) if args.from_results else run(args))
        return (f"{table}\n\nWritten: {report.DOC.relative_to(REPO)} and {report.PLOT.relative_to(REPO)}; "
                "review the prose around the table, then commit both.")

    return run_command("bench", work)


if __name__ == "__main__":
    sys.exit(main())
