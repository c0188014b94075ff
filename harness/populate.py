"""Put into a stack what a team keeps in it besides traces, with MLflow's own client.

Run as a program with MLflow's client settings in the environment (a
person's env file sourced, or MLFLOW_TRACKING_URI): on the experiment's
first trace, a feedback assessment; a run with a parameter, a metric and two
artifacts (text and binary); a prompt with two versions and an alias.
Prints one JSON line of what it made.
"""

from __future__ import annotations

import json
import os
import sys
import uuid


def main(experiment_name: str) -> int:
    import mlflow

    experiment = mlflow.set_experiment(experiment_name)
    [trace] = mlflow.search_traces(locations=[experiment.experiment_id], max_results=1, return_type="list")
    mlflow.log_feedback(trace_id=trace.info.trace_id, name="helpful", value=True, rationale="answered the question")
    with mlflow.start_run(run_name=f"populate-{uuid.uuid4().hex[:6]}") as run:
        mlflow.log_param("model", "gpt-4o-mini")
        mlflow.log_metric("tool_calls_per_reply", 1.5)
        mlflow.log_text("tool calls per reply: 1.5 ✓", "report/summary.txt")
        mlflow.log_dict({"bytes": list(os.urandom(64))}, "report/random.json")
    prompt = f"goose-system-{uuid.uuid4().hex[:6]}"
    mlflow.genai.register_prompt(name=prompt, template="You are goose. {{task}}")
    mlflow.genai.register_prompt(name=prompt, template="You are goose, be brief. {{task}}")
    mlflow.genai.set_prompt_alias(prompt, alias="production", version=2)
    print(json.dumps({"trace": trace.info.trace_id, "run": run.info.run_id, "prompt": prompt}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "goose-traces"))
