#!/usr/bin/env python3
"""Delete traces older than TRACE_RETENTION_DAYS, in every experiment of the stack.

MLflow keeps traces forever (it has no trace TTL). This applies the stack's
retention with MLflow's own delete_traces(max_timestamp_millis=...), so each
trace goes with its spans, tags, metadata and assessments. Runs as the
long-running `retention` service (--every 3600: once an hour) and, through
`make prune`, once, now. With TRACE_RETENTION_DAYS unset or empty every trace
is kept. Talks to MLflow as $MLFLOW_TRACKING_USERNAME when set (the admin, in
team mode). Stdlib only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from lib import stack_config as cfg
from lib.errors import StackError, run_command
from lib.mlflow_api import MlflowClient

BATCH = 1000  # traces per delete, by default: short transactions while goose keeps sending
HEARTBEAT = Path("/tmp/retention-heartbeat")  # touched after every pass; the service's health check reads it


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Delete traces older than TRACE_RETENTION_DAYS in every experiment.")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
                        help="where MLflow is (default: $MLFLOW_TRACKING_URI, else http://mlflow:5000)")
    parser.add_argument("--days", default=os.environ.get("TRACE_RETENTION_DAYS"),
                        help="keep this many days of traces (default: $TRACE_RETENTION_DAYS; empty keeps everything)")
    parser.add_argument("--batch", type=int, default=BATCH,
                        help="traces deleted per request, oldest first (default: %(default)s)")
    parser.add_argument("--every", type=float, default=0,
                        help="repeat every this many seconds, as a service (default: once)")
    parser.add_argument("--timeout", type=float, default=cfg.DEFAULT_TIMEOUT_S,
                        help="seconds to wait for MLflow to become healthy (default: %(default)s)")
    parser.add_argument("--configured", metavar="DAYS",
                        help="TRACE_RETENTION_DAYS as .env and the shell set it now (make prune): refused when the "
                             "running stack was started with another value")
    return parser.parse_args(argv)


def prune_experiment(client: MlflowClient, experiment_id: str, cutoff_ms: int, batch: int) -> int:
    """Delete the experiment's traces started at or before `cutoff_ms`, oldest first, `batch` at a time."""
    removed = 0
    while True:
        deleted = client.delete_traces_before(experiment_id, cutoff_ms, batch)
        removed += deleted
        if deleted < batch:
            return removed


def prune(client: MlflowClient, days: int, now_ms: int, batch: int) -> list[str]:
    """One pass over every experiment (deleted ones too: their traces still take space); a line each."""
    cutoff_ms = cfg.retention_cutoff_ms(days, now_ms)
    cutoff = datetime.fromtimestamp(cutoff_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = []
    for experiment in client.all_experiments():
        removed = prune_experiment(client, str(experiment["experiment_id"]), cutoff_ms, batch)
        lines.append(f"{experiment['name']} (id {experiment['experiment_id']}): {removed} traces from before "
                     f"{cutoff} removed")
    return lines


def run_once(client: MlflowClient, days: int | None, batch: int) -> str:
    if days is None:
        return ("TRACE_RETENTION_DAYS is not set: every trace is kept.\n"
                "Next: put TRACE_RETENTION_DAYS=30 (say) in .env, then make up")
    lines = prune(client, days, int(time.time() * 1000), batch)
    return "\n".join([f"Retention: {days} days", *lines, "", "Next: docker compose logs retention shows the hourly passes"])


def run_every(client: MlflowClient, days: int | None, batch: int, seconds: float) -> None:
    """The service: a pass at start and then every `seconds`; a failed pass is logged and retried next time.

    The heartbeat is touched when the loop starts and after every pass: the
    health check sees a live loop even while a long first pass runs.
    """
    HEARTBEAT.touch()
    while True:
        try:
            print(run_once(client, days, batch), file=sys.stderr, flush=True)
        except StackError as exc:
            print(f"retention: error: {exc}; trying again in {seconds:g} s", file=sys.stderr, flush=True)
        HEARTBEAT.touch()
        time.sleep(seconds)


def check_applied(running: str | None, configured: str | None) -> None:
    """`make prune` acts with the running stack's limit: refuse when .env now says otherwise."""
    if configured is None or (running or "").strip() == configured.strip():
        return
    now = f"TRACE_RETENTION_DAYS={configured}" if configured.strip() else "no TRACE_RETENTION_DAYS"
    before = f"with TRACE_RETENTION_DAYS={running}" if (running or "").strip() else "without TRACE_RETENTION_DAYS"
    raise StackError(f".env (or your shell) sets {now}, but the running stack was started {before}: "
                     "run make up to apply it (its hourly pass then uses it), then make prune; nothing was deleted")


def run(args: argparse.Namespace) -> str | None:
    check_applied(args.days, args.configured)
    days = cfg.retention_days(args.days)
    if args.batch < 1:
        raise StackError(f"--batch {args.batch}: give 1 or more traces per delete")
    client = MlflowClient(cfg.check_url(args.tracking_uri, "tracking URI"), headers=cfg.client_headers())
    client.wait_until_healthy(args.timeout)
    if args.every > 0:
        run_every(client, days, args.batch, args.every)
    return run_once(client, days, args.batch)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("retention", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
