"""The benchmark's own counting (bench/load.py, bench/report.py): percentiles, loss, batches, the report. No timings."""

from __future__ import annotations

import random
import uuid

import numpy
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import load
from lib import otlp
import report
from servers import VARIANTS
from lib.mlflow_api import MlflowClient


def test_percentiles_of_a_known_sample():
    sample = list(range(1, 101))
    assert (load.percentile(sample, 50), load.percentile(sample, 95), load.percentile(sample, 99)) == (
        pytest.approx(50.5), pytest.approx(95.05), pytest.approx(99.01))


def test_percentiles_match_numpy_on_a_random_sample():
    sample = [random.Random(7).expovariate(1 / 40) for _ in range(997)]
    for q in (0, 50, 95, 99, 100):
        assert load.percentile(sample, q) == pytest.approx(numpy.percentile(sample, q))


def test_percentile_of_one_value_is_that_value_and_of_none_an_error():
    assert load.percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        load.percentile([], 50)


def test_loss_is_what_was_acknowledged_but_not_stored():
    assert load.lost_traces(["a", "b", "c"], ["a", "c", "x"]) == {"b"}


def test_batch_holds_distinct_goose_traces_of_three_spans_with_the_prompt():
    body, trace_ids = load.goose_batch("s", 10, "p" * load.PROMPT_BYTES)
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = request.resource_spans[0].scope_spans[0].spans
    assert len(trace_ids) == 10 and len(spans) == 30
    assert {"tr-" + span.trace_id.hex() for span in spans} == set(trace_ids)
    roots = [span for span in spans if not span.parent_span_id]
    assert all(any(kv.key == "goose.prompt" and len(kv.value.string_value) == load.PROMPT_BYTES
                   for kv in root.attributes) for root in roots)


def test_loss_detection_catches_a_trace_the_server_dropped(native_stack):
    client = MlflowClient(native_stack.mlflow_url)
    experiment_id = client.create_experiment(f"bench-loss-{uuid.uuid4().hex[:6]}")
    acked = []
    for _ in range(3):
        body, trace_ids = load.goose_batch("loss", 4, "x")
        status, _ = otlp.export(native_stack.mlflow_url + "/v1/traces", body, {"x-mlflow-experiment-id": experiment_id})
        assert status == 200
        acked += trace_ids
    client.delete_traces(experiment_id, [acked[5]])  # the server "drops" one
    stored = client.trace_ids(experiment_id, page_size=5)  # several pages
    assert len(stored) == 11
    assert load.lost_traces(acked, stored) == {acked[5]}


def test_report_gives_absolute_figures_and_ratios_to_the_baseline():
    row = dict(seconds=30, batches=1, errors=0, lost=0, p50_ms=1, p95_ms=2, p99_ms=3, peak_pss_mb=1, statuses={"200": 1})
    results = {"date": "d", "machine": "m", "mlflow": "3.17.2", "seconds": 30, "up_seconds": 20.5,
               "ingest": [{**row, "server": "baseline", "concurrency": 8, "traces_per_s": 200.0},
                          {**row, "server": "stack", "concurrency": 8, "traces_per_s": 500.0,
                           "statuses": {"200": 5, "500": 2}}],
               "queries": [], "idle_pss_mb": {"baseline": 2000.0, "stack": 500.0}}
    table = report.report(results)
    assert "| 8 | stack | 500.0 | 2.50× |" in table
    assert "{'500': 2}" in table
    assert "| idle PSS, MB (all processes) | stack | 500.0 | 0.25× |" in table
    assert "| `make up` to bootstrap summary, s | stack | 20.5 | |" in table


def test_tuning_table_compares_each_variant_with_the_tuned_stack():
    row = dict(seconds=30, batches=1, errors=0, lost=0, p50_ms=1, p95_ms=2, peak_pss_mb=1, statuses={"200": 1})
    ingest = [{**row, "server": server, "concurrency": concurrency, "traces_per_s": rate, "p99_ms": p99}
              for server, rate, p99 in (("stack", 150.0, 800.0), ("workers-4", 100.0, 1600.0))
              for concurrency in (1, 8, 32)]
    results = {"date": "d", "machine": "m", "mlflow": "3.17.2", "seconds": 30, "ingest": ingest, "queries": [],
               "idle_pss_mb": {"stack": 700.0, "workers-4": 1400.0}}
    table = report.report(results)
    assert "| stack | tuned defaults | 700.0 | 150.0 | 150.0 | 800.0 | 150.0 | 0 | 0 |" in table
    assert (f"| workers-4 | {VARIANTS['workers-4'][0]} | 1400.0 (0.50×) | 100.0 (1.50×) | 100.0 (1.50×) | "
            "1600.0 (0.50×) | 100.0 (1.50×) | 0 | 0 |") in table
