#!/usr/bin/env python3
"""Score every new goose reply with an LLM judge: register it on goose's experiment and start it.

`make judge NAME=did_what_was_asked < instructions.txt` runs this in the
bootstrap container (team mode: as the admin, inside the network). Judges on
the team's experiment are written only here: the proxy refuses every judge
write to everyone (a teammate's registration under another's judge name
became its next version in MLflow 3.18.0, docs/security.md). The
instructions come from stdin and must name the reply as `{{ trace }}`; the
model is a gateway endpoint (`make gateway-endpoint`), which MLflow's
scheduler calls with the team's key, every minute, for the replies that came
in (EVALUATION=on). Run again to change the instructions (a new version), the
model or the sample rate; SAMPLE=0 stops the judge and keeps it;
`make remove-judge` deletes it. Runs in the image: MLflow's own client.
"""

from __future__ import annotations

import argparse
import os
import sys

import mlflow
from mlflow.exceptions import MlflowException

from lib.errors import StackError, run_command
from lib.mlflow_api import MlflowClient
from lib import stack_config as cfg

GATEWAY_PREFIX = "gateway:/"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
                        help="where MLflow is (default: $MLFLOW_TRACKING_URI, else http://mlflow:5000)")
    parser.add_argument("--experiment", default=os.environ.get("GOOSE_EXPERIMENT", cfg.DEFAULT_EXPERIMENT),
                        help="goose's experiment (default: $GOOSE_EXPERIMENT, else %(default)s)")
    parser.add_argument("--name", required=True, help="the judge's name: its assessments carry it")
    parser.add_argument("--model", default=f"{GATEWAY_PREFIX}judge",
                        help="the gateway endpoint it calls (default: %(default)s, made by make gateway-endpoint)")
    parser.add_argument("--sample", default="1.0",
                        help="the share of new replies it scores, from 0 (stopped) to 1 (every one; the default)")
    parser.add_argument("--remove", action="store_true", help="delete the judge, every version of it")
    parser.add_argument("--timeout", type=float, default=cfg.DEFAULT_TIMEOUT_S,
                        help="seconds to wait for MLflow to become healthy (default: %(default)s)")
    return parser.parse_args(argv)


def check_sample(value: str) -> float:
    try:
        sample = float(value)
    except ValueError:
        sample = -1.0
    if not 0.0 <= sample <= 1.0:
        raise StackError(f"invalid SAMPLE {value!r}: give the share of replies to score, from 0 (stop) to 1 (all)")
    return sample


def endpoint_of(model: str) -> str:
    endpoint = model.removeprefix(GATEWAY_PREFIX)
    if not model.startswith(GATEWAY_PREFIX) or not endpoint:
        raise StackError(f"invalid MODEL {model!r}: the server's judges call a gateway endpoint, "
                         f"{GATEWAY_PREFIX}NAME (make gateway-endpoint NAME=judge MODEL=openai:/gpt-4o-mini)")
    return endpoint


def read_instructions() -> str:
    """The instructions from piped stdin, or typed up to Ctrl-D."""
    if sys.stdin.isatty():
        print("The judge's instructions, naming the reply as {{ trace }}; end with Ctrl-D:", file=sys.stderr)
    instructions = sys.stdin.read().strip()
    if not instructions:
        raise StackError("no instructions on stdin: pipe them in (make judge NAME=... < instructions.txt), "
                         "naming the reply as {{ trace }}")
    return instructions


def goose_experiment(client: MlflowClient, name: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        raise StackError(f"no experiment {name!r} in MLflow: make up creates it")
    return str(experiment["experiment_id"])


def check_endpoint(client: MlflowClient, endpoint: str) -> None:
    if client.gateway_endpoint(endpoint) is None:
        raise StackError(f"no gateway endpoint {endpoint!r}: make gateway-endpoint NAME={endpoint} "
                         f"MODEL=openai:/gpt-4o-mini < keyfile gives judges one")


def start_judge(experiment_id: str, name: str, model: str, instructions: str, sample: float) -> None:
    """Register the judge (a new version when the name exists) and start it."""
    from mlflow.genai import make_judge
    from mlflow.genai.scorers import ScorerSamplingConfig

    judge = make_judge(name=name, model=model, feedback_value_type=str, instructions=instructions)
    judge.register(experiment_id=experiment_id).start(
        experiment_id=experiment_id, sampling_config=ScorerSamplingConfig(sample_rate=sample))


def stop_judge(experiment_id: str, name: str) -> None:
    from mlflow.genai.scorers import get_scorer

    get_scorer(name=name, experiment_id=experiment_id).stop(experiment_id=experiment_id)


def remove_judge(experiment_id: str, name: str) -> None:
    from mlflow.genai.scorers import delete_scorer

    delete_scorer(name=name, experiment_id=experiment_id, version="all")


def mlflow_says(error: MlflowException) -> str:
    """MLflow's reason, without the REST wrapper's 'INVALID_PARAMETER_VALUE: ' code."""
    message = error.message.strip().splitlines()[0]
    return message.split(": ", 1)[1] if message.split(": ", 1)[0].isupper() else message


def run(args: argparse.Namespace) -> str:
    name = cfg.check_name(args.name, "judge name")
    sample = check_sample(args.sample)
    endpoint = endpoint_of(args.model)
    starting = not args.remove and sample > 0
    instructions = read_instructions() if starting else ""  # before MLflow is touched: bad input changes nothing
    client = MlflowClient(args.tracking_uri, headers=cfg.client_headers())
    client.wait_until_healthy(args.timeout)
    experiment_id = goose_experiment(client, args.experiment)
    mlflow.set_tracking_uri(args.tracking_uri)
    where = f"on {args.experiment} (experiment {experiment_id})"
    try:
        if args.remove:
            remove_judge(experiment_id, name)
            return f"Judge {name!r} deleted {where}, every version; its assessments stay on the traces."
        if not starting:
            stop_judge(experiment_id, name)
            return (f"Judge {name!r} stopped {where}: it scores no new reply.\n\n"
                    f"Next: make judge NAME={name} SAMPLE=1.0 < instructions.txt starts it again.")
        check_endpoint(client, endpoint)
        start_judge(experiment_id, name, args.model, instructions, sample)
    except MlflowException as error:
        raise StackError(f"MLflow refused judge {name!r}: {mlflow_says(error)}") from None
    share = "every new goose reply" if sample == 1.0 else f"{sample:g} of the new goose replies"
    return "\n".join([
        f"Judge {name!r} started {where}: it scores {share} with {args.model}.",
        "",
        f"Next: with EVALUATION=on in .env, each reply gets a {name!r} assessment a minute or so after "
        f"EVALUATION_DELAY_SECONDS; make doctor says whether it runs; make judge NAME={name} SAMPLE=0 stops it.",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("judge", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
