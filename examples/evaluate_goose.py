"""Score the latest goose replies in this stack with MLflow's evaluation framework.

Run after `source .env` (or a person's env file in team mode), which names the
stack (MLFLOW_TRACKING_URI) and goose's experiment (MLFLOW_EXPERIMENT_ID):

    python examples/evaluate_goose.py --last 20
    python examples/evaluate_goose.py --last 20 --judge openai:/gpt-4o-mini

Each goose reply is one trace. Four code scorers read goose's spans; with
--judge, an LLM judge reads the whole trace too, calling the model through the
OpenAI-compatible endpoint of OPENAI_BASE_URL with OPENAI_API_KEY. The scores
land as an evaluation run in goose's experiment and as assessments on each
trace. docs/evaluation.md shows a run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import Any

import mlflow
from mlflow.entities import SpanType, Trace
from mlflow.genai import make_judge, scorer
from mlflow.genai.scorers import Scorer

SCORES_ARTIFACT = "goose_scores.json"
JUDGE_INSTRUCTIONS = (
    "You review one reply of goose, a coding agent: {{ trace }} holds the user's request, every model "
    "call and every tool call. Did the agent do what was asked without needless or failing tool calls? "
    "Answer yes or no, and say why in one sentence."
)


def tool_spans(trace: Trace) -> list[Any]:
    return [span for span in trace.data.spans if span.span_type == SpanType.TOOL]


@scorer
def tool_calls(trace: Trace) -> int:
    """Tool calls in the reply (goose's execute_tool spans)."""
    return len(tool_spans(trace))


@scorer
def tool_errors(trace: Trace) -> int:
    """Tool calls that failed: goose records `error.type` on their spans."""
    return sum(1 for span in tool_spans(trace) if span.get_attribute("error.type"))


@scorer
def tokens(trace: Trace) -> int:
    """Input plus output tokens of every model call in the reply."""
    return int((trace.info.token_usage or {}).get("total_tokens", 0))


@scorer
def latency_seconds(trace: Trace) -> float:
    """Wall time of the reply, from the user's message to goose's answer."""
    return round((trace.info.execution_duration or 0) / 1000, 3)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--last", type=int, default=20, metavar="N", help="how many of the latest replies (default 20)")
    parser.add_argument("--judge", metavar="MODEL_URI",
                        help="also judge each reply with this model, e.g. openai:/gpt-4o-mini "
                             "(endpoint: OPENAI_BASE_URL, key: OPENAI_API_KEY)")
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error(f"--last {args.last}: give a number of replies, 1 or more")
    if args.judge and not os.environ.get("OPENAI_API_KEY"):
        parser.error("--judge needs OPENAI_API_KEY (and OPENAI_BASE_URL for an endpoint other than OpenAI's)")
    return args


def check_environment() -> str:
    """The experiment to evaluate, or exit with what to source first."""
    missing = [name for name in ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID") if not os.environ.get(name)]
    if missing:
        sys.exit(f"evaluate_goose: {' and '.join(missing)} not set: run `source .env` (or your env file) first")
    return os.environ["MLFLOW_EXPERIMENT_ID"]


def latest_replies(experiment_id: str, count: int) -> list[Trace]:
    traces = mlflow.search_traces(locations=[experiment_id], max_results=count, order_by=["timestamp_ms DESC"],
                                  return_type="list")
    if not traces:
        sys.exit(f"evaluate_goose: experiment {experiment_id} holds no traces yet: run a goose session first")
    return traces


def scorers(judge_model: str | None) -> list[Scorer]:
    chosen: list[Scorer] = [tool_calls, tool_errors, tokens, latency_seconds]
    if judge_model:
        chosen.append(make_judge(name="did_what_was_asked", instructions=JUDGE_INSTRUCTIONS, model=judge_model,
                                 feedback_value_type=str))
    return chosen


def shown(value: Any) -> str:
    # The results table holds every number as a float.
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def scores(result: Any, names: list[str]) -> dict[str, dict[str, str]]:
    """Each reply's trace id -> each scorer's value, as shown."""
    return {row["trace_id"]: {name: shown(row.get(f"{name}/value")) for name in names}
            for _, row in result.tables["eval_results"].iterrows()}


def failures(result: Any, names: list[str]) -> list[str]:
    """One line per scorer that failed on some reply (a judge's endpoint refusing, say), with its first error."""
    rows = result.tables["eval_results"]
    lines = []
    for name in names:
        column = f"{name}/error_message"
        # Replies the scorer handled have no message: NaN in the table, not a string.
        errors = [message for message in rows[column] if isinstance(message, str) and message] \
            if column in rows else []
        if errors:
            first = str(errors[0]).strip().splitlines()[0][:300]
            lines.append(f"evaluate_goose: {name} failed on {len(errors)} of {len(rows)} replies: {first}")
    return lines


def report(table: dict[str, dict[str, str]], names: list[str]) -> list[str]:
    """One line per reply: its trace id and each scorer's value."""
    lines = [f"{'trace_id':<36} " + " ".join(f"{name:>18}" for name in names)]
    for trace_id, values in table.items():
        lines.append(f"{trace_id:<36} " + " ".join(f"{values[name]:>18}" for name in names))
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    experiment_id = check_environment()
    traces = latest_replies(experiment_id, args.last)
    print(f"evaluate_goose: scoring {len(traces)} replies of experiment {experiment_id}", file=sys.stderr)
    chosen = scorers(args.judge)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow's own banner is a log line, not the result
        result = mlflow.genai.evaluate(data=traces, scorers=chosen)
    names = [item.name for item in chosen]
    table = scores(result, names)
    # Kept with the run (in the artifact store), so the table can be fetched or compared later.
    mlflow.MlflowClient().log_dict(result.run_id, table, SCORES_ARTIFACT)
    print("\n".join(report(table, names)))
    tracking_uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    print(f"\nEvaluation run {result.run_id}: {tracking_uri}/#/experiments/{experiment_id}/evaluation-runs?"
          f"selectedRunUuid={result.run_id}")
    print(f"Each trace now carries these scores as assessments (open one in the Traces tab); the table is the "
          f"run's artifact {SCORES_ARTIFACT}.")
    failed = failures(result, names)
    for line in failed:
        print(line, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
