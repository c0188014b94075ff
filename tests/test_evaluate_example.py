"""examples/evaluate_goose.py's own reading of MLflow's results table (the run itself: test_docker_evaluation.py)."""

from __future__ import annotations

import importlib.util
import math
from types import SimpleNamespace

import pandas as pd

from harness.compose_file import REPO

spec = importlib.util.spec_from_file_location("evaluate_goose", REPO / "examples" / "evaluate_goose.py")
evaluate_goose = importlib.util.module_from_spec(spec)
spec.loader.exec_module(evaluate_goose)


def result(rows: list[dict]) -> SimpleNamespace:
    """What mlflow.genai.evaluate returns, as far as the example reads it: the eval_results table."""
    return SimpleNamespace(tables={"eval_results": pd.DataFrame(rows)})


def test_a_scorer_failing_on_some_replies_counts_only_those():
    table = result([{"trace_id": "tr-1", "judge/value": "yes", "judge/error_message": math.nan},
                    {"trace_id": "tr-2", "judge/value": None, "judge/error_message": "Incorrect API key provided"},
                    {"trace_id": "tr-3", "judge/value": "no", "judge/error_message": None}])
    assert evaluate_goose.failures(table, ["judge"]) == [
        "evaluate_goose: judge failed on 1 of 3 replies: Incorrect API key provided"]


def test_no_error_column_is_no_failure():
    assert evaluate_goose.failures(result([{"trace_id": "tr-1", "tokens/value": 3.0}]), ["tokens"]) == []


def test_whole_numbers_show_without_a_decimal_point_and_others_as_they_are():
    assert [evaluate_goose.shown(value) for value in (366.0, 0.052, "yes", None)] == ["366", "0.052", "yes", "None"]
