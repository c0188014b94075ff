"""scripts/judge.py (make judge, make remove-judge): an LLM judge on goose's experiment, natively.

The instructions come from stdin; bad input is refused before MLflow is touched.
What the judge scores is shown end to end by the EVALUATION=on suite
(test_docker_evaluation.py); here, what MLflow stores.
"""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from harness.commands import run_script
from lib.mlflow_api import MlflowClient

INSTRUCTIONS = "Did goose do what was asked in {{ trace }}? Answer yes or no."


def judge(native_stack, *args: str, stdin: str = INSTRUCTIONS) -> subprocess.CompletedProcess:
    """The command as make judge runs it, the instructions piped into stdin."""
    return run_script("judge.py", "--tracking-uri", native_stack.mlflow_url, *args, stdin=stdin)


@pytest.fixture(scope="module")
def endpoint(native_stack, bootstrapped) -> str:
    """goose-traces (made by the bootstrap) and a gateway endpoint for the judges."""
    result = run_script("gateway.py", "--tracking-uri", native_stack.mlflow_url, "--endpoint", "judge",
                        "--model", "openai:/gpt-4o-mini", stdin="sk-never-called")
    assert result.returncode == 0, result.stderr
    return "judge"


def stored(native_stack, name: str) -> list[tuple[int, dict, float | None]]:
    """Each version of the judge on goose-traces: (version, definition, the judge's sample rate)."""
    rows = native_stack.query(
        "SELECT v.scorer_version, v.serialized_scorer, c.sample_rate FROM scorers s "
        "JOIN scorer_versions v ON v.scorer_id = s.scorer_id "
        "JOIN experiments e ON e.experiment_id = s.experiment_id "
        "LEFT JOIN online_scoring_configs c ON c.scorer_id = s.scorer_id "
        "WHERE s.scorer_name = %s AND e.name = 'goose-traces' ORDER BY v.scorer_version", (name,))
    return [(version, json.loads(definition), rate) for version, definition, rate in rows]


def instructions_of(definition: dict) -> str:
    return definition["instructions_judge_pydantic_data"]["instructions"]


def goose_traces_id(native_stack) -> str:
    """Other native suites recreate goose-traces, so its id is whatever MLflow says now."""
    return MlflowClient(native_stack.mlflow_url).get_experiment_by_name("goose-traces")["experiment_id"]


def fresh_name() -> str:
    return f"judge_{uuid.uuid4().hex[:8]}"


def test_a_judge_is_registered_on_goose_traces_and_started_for_every_reply(native_stack, endpoint):
    name = fresh_name()
    result = judge(native_stack, "--name", name)
    assert result.returncode == 0, result.stderr
    [(version, definition, rate)] = stored(native_stack, name)
    assert (version, instructions_of(definition), rate) == (1, INSTRUCTIONS, 1.0)
    # MLflow stores the endpoint by its id, so renaming the endpoint keeps the judge's model.
    endpoint_id = MlflowClient(native_stack.mlflow_url).gateway_endpoint("judge")["endpoint_id"]
    assert definition["instructions_judge_pydantic_data"]["model"] == f"gateway:/{endpoint_id}"


def test_the_output_says_what_runs_and_ends_with_what_to_do_next(native_stack, endpoint):
    name = fresh_name()
    lines = judge(native_stack, "--name", name).stdout.splitlines()
    assert lines[0] == (f"Judge {name!r} started on goose-traces (experiment {goose_traces_id(native_stack)}): it scores every new goose reply "
                        "with gateway:/judge.")
    assert lines[-1].startswith("Next: with EVALUATION=on in .env") and f"make judge NAME={name} SAMPLE=0" in lines[-1]


def test_rerunning_with_new_instructions_makes_a_version_and_keeps_it_started_at_the_new_rate(native_stack, endpoint):
    name = fresh_name()
    assert judge(native_stack, "--name", name).returncode == 0
    result = judge(native_stack, "--name", name, "--sample", "0.25", stdin="Was {{ trace }} polite?")
    assert result.returncode == 0, result.stderr
    assert "it scores 0.25 of the new goose replies" in result.stdout
    versions = stored(native_stack, name)
    assert [(version, instructions_of(definition), rate) for version, definition, rate in versions] == [
        (1, INSTRUCTIONS, 0.25), (2, "Was {{ trace }} polite?", 0.25)]


def test_sample_zero_stops_the_judge_without_instructions_and_keeps_it(native_stack, endpoint):
    name = fresh_name()
    assert judge(native_stack, "--name", name).returncode == 0
    result = judge(native_stack, "--name", name, "--sample", "0", stdin="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == (
        f"Judge {name!r} stopped on goose-traces (experiment {goose_traces_id(native_stack)}): it scores no new reply.")
    assert [(version, rate) for version, _, rate in stored(native_stack, name)] == [(1, 0.0)]


def test_remove_deletes_every_version(native_stack, endpoint):
    name = fresh_name()
    assert judge(native_stack, "--name", name).returncode == 0
    assert judge(native_stack, "--name", name, stdin="Is {{ trace }} short?").returncode == 0
    result = judge(native_stack, "--name", name, "--remove", stdin="")
    assert result.returncode == 0, result.stderr
    assert stored(native_stack, name) == []


# 0 stops a judge (test_sample_zero_stops_the_judge_without_instructions_and_keeps_it).
@pytest.mark.parametrize("sample, accepted", [("0.001", True), ("1", True), ("1.0001", False), ("-0.1", False),
                                              ("half", False), ("nan", False)])
def test_the_sample_rate_is_a_share_from_0_to_1(native_stack, endpoint, sample, accepted):
    result = judge(native_stack, "--name", fresh_name(), "--sample", sample)
    assert (result.returncode == 0) == accepted, result.stderr
    if not accepted:
        assert result.stderr.strip() == (f"judge: error: invalid SAMPLE {sample!r}: give the share of replies to "
                                         "score, from 0 (stop) to 1 (all)")


@pytest.mark.parametrize("args, stdin, message", [
    (("--name", "two words"), INSTRUCTIONS,
     "judge: error: invalid judge name 'two words': use 1-64 letters, digits, '.', '_' or '-'"),
    (("--name", "j" * 65), INSTRUCTIONS,
     f"judge: error: invalid judge name {'j' * 65!r}: use 1-64 letters, digits, '.', '_' or '-'"),
    (("--name", "bad_model", "--model", "openai:/gpt-4o-mini"), INSTRUCTIONS,
     "judge: error: invalid MODEL 'openai:/gpt-4o-mini': the server's judges call a gateway endpoint, gateway:/NAME "
     "(make gateway-endpoint NAME=judge MODEL=openai:/gpt-4o-mini)"),
    (("--name", "no_words"), "  \n",
     "judge: error: no instructions on stdin: pipe them in (make judge NAME=... < instructions.txt), naming the "
     "reply as {{ trace }}"),
    (("--name", "no_endpoint", "--model", "gateway:/nowhere"), INSTRUCTIONS,
     "judge: error: no gateway endpoint 'nowhere': make gateway-endpoint NAME=nowhere MODEL=openai:/gpt-4o-mini "
     "< keyfile gives judges one"),
    (("--name", "no_experiment", "--experiment", "no-such-experiment"), INSTRUCTIONS,
     "judge: error: no experiment 'no-such-experiment' in MLflow: make up creates it"),
])
def test_bad_input_is_one_line_and_registers_nothing(native_stack, endpoint, args, stdin, message):
    result = judge(native_stack, *args, stdin=stdin)
    assert (result.returncode, result.stderr.strip()) == (1, message)
    assert stored(native_stack, args[1]) == []


def test_instructions_that_do_not_name_the_reply_are_refused_with_mlflows_reason(native_stack, endpoint):
    result = judge(native_stack, "--name", "no_variable", stdin="Was it good?")
    assert result.returncode == 1
    assert result.stderr.startswith("judge: error: MLflow refused judge 'no_variable': ") and "{{ trace }}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert stored(native_stack, "no_variable") == []


def test_stopping_a_judge_that_does_not_exist_is_one_line(native_stack, endpoint):
    result = judge(native_stack, "--name", "never_registered", "--sample", "0", stdin="")
    assert result.returncode == 1
    assert result.stderr.startswith("judge: error: MLflow refused judge 'never_registered': ")
    assert len(result.stderr.strip().splitlines()) == 1
