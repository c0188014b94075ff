"""make profile's own counting: py-spy's raw stacks and process grouping. No timings here."""

from __future__ import annotations

import os

import profile_ingest

RAW = """\
_worker (concurrent/futures/thread.py:93);SqlAlchemyStore.log_spans (mlflow/store/tracking/sqlalchemy_store.py:5698);Session.flush (sqlalchemy/orm/session.py:4626) 6
_worker (concurrent/futures/thread.py:93);SqlAlchemyStore.log_spans (mlflow/store/tracking/sqlalchemy_store.py:5701);DefaultDialect.do_execute (sqlalchemy/engine/default.py:1192) 2
Handle._run (asyncio/events.py:89);export_traces (mlflow/server/otel_api.py:160);JSONDecoder.decode (json/decoder.py:345) 2
"""


def test_gil_profile_counts_each_mlflow_function_once_per_sample_whatever_the_line(tmp_path):
    raw = tmp_path / "worker.txt"
    raw.write_text(RAW)
    total, inclusive, by_package = profile_ingest.gil_profile([raw])
    assert total == 10
    assert inclusive == {"SqlAlchemyStore.log_spans (mlflow/store/tracking/sqlalchemy_store.py)": 8,
                         "export_traces (mlflow/server/otel_api.py)": 2}
    assert by_package == {"sqlalchemy": 8, "json": 2}


def test_processes_are_grouped_by_what_they_run():
    worker = "/opt/venv/bin/python3 -B -c from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=7)"
    assert profile_ingest.cpu_group(10, worker) == "MLflow workers (uvicorn)"
    assert profile_ingest.cpu_group(11, "postgres: mlflow mlflow 172.18.0.4(51078) idle") == "PostgreSQL"
    assert profile_ingest.cpu_group(os.getpid(), "python load") == "load generator (this script)"
    assert profile_ingest.cpu_group(12, "/usr/sbin/dockerd").startswith("everything else (py-spy")
