"""Retention (scripts/retention.py): traces older than TRACE_RETENTION_DAYS go, in every experiment, with
their spans; newer ones stay. Natively: real PostgreSQL, real MLflow."""

from __future__ import annotations

import time
import uuid

import psycopg2
import pytest

import otlp
from harness.commands import run_script
from mlflow_api import MlflowClient

DAY_NS = 86_400 * 10**9


def send(url: str, experiment_id: str, days_ago: float) -> str:
    spans = otlp.goose_session(f"retention-{uuid.uuid4().hex[:6]}", now_ns=time.time_ns() - int(days_ago * DAY_NS))
    status, _ = otlp.export(url + "/v1/traces", otlp.encode_export_request(spans, {"service.name": "goose"}),
                            {"x-mlflow-experiment-id": experiment_id})
    assert status == 200
    return "tr-" + spans[0].trace_id.hex()


@pytest.fixture(scope="module")
def aged(native_stack):
    """Two experiments, each with a trace from 40 days ago and one from 2 days ago."""
    client = MlflowClient(native_stack.mlflow_url)
    experiments = [client.create_experiment(f"retention-{name}-{uuid.uuid4().hex[:6]}") for name in ("a", "b")]
    traces = {experiment: {"old": send(native_stack.mlflow_url, experiment, 40),
                           "new": send(native_stack.mlflow_url, experiment, 2)} for experiment in experiments}
    result = run_script("retention.py", "--tracking-uri", native_stack.mlflow_url, "--days", "30")
    return client, traces, result


def test_prune_removes_traces_older_than_the_limit_in_every_experiment(aged):
    client, traces, result = aged
    assert result.returncode == 0, result.stderr
    for experiment, sent in traces.items():
        assert sent["old"] not in client.trace_ids(experiment)


def test_prune_keeps_traces_within_the_limit(aged):
    client, traces, _ = aged
    for experiment, sent in traces.items():
        assert sent["new"] in client.trace_ids(experiment)


def test_prune_removes_the_spans_with_their_trace(native_stack, aged):
    _, traces, _ = aged
    old = [sent["old"] for sent in traces.values()]
    connection = psycopg2.connect(native_stack.database_uri("mlflow", native_stack.secret("mlflow-db-password"),
                                                            "mlflow"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM spans WHERE trace_id = ANY(%s)", (old,))
        assert cursor.fetchone() == (0,)
    connection.close()


def test_prune_says_what_it_removed_per_experiment(aged):
    client, traces, result = aged
    assert result.stdout.startswith("Retention: 30 days\n")
    for experiment in traces:
        name = client.get_experiment(experiment)["name"]
        assert f"{name} (id {experiment}): 1 traces from before " in result.stdout


def test_prune_deletes_in_batches_until_nothing_old_is_left(native_stack):
    client = MlflowClient(native_stack.mlflow_url)
    experiment = client.create_experiment(f"batches-{uuid.uuid4().hex[:6]}")
    old = {send(native_stack.mlflow_url, experiment, 40 + day) for day in range(5)}
    result = run_script("retention.py", "--tracking-uri", native_stack.mlflow_url, "--days", "30", "--batch", "2")
    assert result.returncode == 0, result.stderr
    assert not old & client.trace_ids(experiment)
    assert f"(id {experiment}): 5 traces from before " in result.stdout


def test_without_a_limit_every_trace_is_kept(native_stack):
    experiment = MlflowClient(native_stack.mlflow_url).create_experiment(f"keep-{uuid.uuid4().hex[:6]}")
    trace = send(native_stack.mlflow_url, experiment, 400)
    result = run_script("retention.py", "--tracking-uri", native_stack.mlflow_url, env={"TRACE_RETENTION_DAYS": ""})
    assert result.returncode == 0 and "every trace is kept" in result.stdout
    assert trace in MlflowClient(native_stack.mlflow_url).trace_ids(experiment)


@pytest.mark.parametrize("value", ["0", "-3", "30d", "1.5"])
def test_a_limit_that_is_not_a_whole_number_of_days_is_refused(value):
    result = run_script("retention.py", "--tracking-uri", "http://127.0.0.1:9", "--days", value)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"retention: error: TRACE_RETENTION_DAYS={value!r} is not a whole number of days "
                                     "(1 or more); fix it in .env, or leave it empty to keep every trace")
