"""Retention (scripts/retention.py): traces older than TRACE_RETENTION_DAYS go, in every experiment, with
their spans; newer ones stay. Natively: real PostgreSQL, real MLflow."""

from __future__ import annotations

import time
import uuid

import psycopg2
import pytest

from lib import otlp
from harness.commands import run_script
from lib.mlflow_api import MlflowClient

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


def test_the_cutoff_is_exactly_the_limit_in_days(native_stack):
    """Either side of the cutoff by an hour: a day early or late in the arithmetic fails one of them."""
    client = MlflowClient(native_stack.mlflow_url)
    experiment = client.create_experiment(f"cutoff-{uuid.uuid4().hex[:6]}")
    inside, outside = (send(native_stack.mlflow_url, experiment, days) for days in (30 - 1 / 24, 30 + 1 / 24))
    result = run_script("retention.py", "--tracking-uri", native_stack.mlflow_url, "--days", "30")
    assert result.returncode == 0, result.stderr
    assert (inside in client.trace_ids(experiment), outside in client.trace_ids(experiment)) == (True, False)


def test_the_traces_of_a_deleted_experiment_are_pruned_too(native_stack):
    client = MlflowClient(native_stack.mlflow_url)
    experiment = client.create_experiment(f"deleted-{uuid.uuid4().hex[:6]}")
    old = send(native_stack.mlflow_url, experiment, 40)
    client.delete_experiment(experiment)
    result = run_script("retention.py", "--tracking-uri", native_stack.mlflow_url, "--days", "30")
    assert result.returncode == 0, result.stderr
    connection = psycopg2.connect(native_stack.database_uri("mlflow", native_stack.secret("mlflow-db-password"),
                                                            "mlflow"))
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM trace_info WHERE request_id = %s", (old,))
        assert cursor.fetchone() == (0,)
    connection.close()


@pytest.mark.parametrize("running, configured, said", [
    (None, "30", ".env (or your shell) sets TRACE_RETENTION_DAYS=30, but the running stack was started without "
                 "TRACE_RETENTION_DAYS"),
    ("60", "30", ".env (or your shell) sets TRACE_RETENTION_DAYS=30, but the running stack was started with "
                 "TRACE_RETENTION_DAYS=60"),
    ("30", "", ".env (or your shell) sets no TRACE_RETENTION_DAYS, but the running stack was started with "
               "TRACE_RETENTION_DAYS=30")])
def test_make_prune_refuses_a_limit_the_running_stack_was_not_started_with(running, configured, said):
    result = run_script("retention.py", "--tracking-uri", "http://127.0.0.1:9", "--configured", configured,
                        *(["--days", running] if running else []), env={"TRACE_RETENTION_DAYS": ""})
    assert result.returncode == 1
    assert result.stderr.strip() == (f"retention: error: {said}: run make up to apply it (its hourly pass then uses "
                                     "it), then make prune; nothing was deleted")


def test_make_prune_with_the_limit_the_stack_runs_with_goes_ahead(native_stack):
    result = run_script("retention.py", "--tracking-uri", native_stack.mlflow_url, "--days", "30",
                        "--configured", "30")
    assert result.returncode == 0 and result.stdout.startswith("Retention: 30 days\n"), result.stderr
