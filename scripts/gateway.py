#!/usr/bin/env python3
"""Give MLflow's AI Gateway a model for judges: a provider key, a model, an endpoint name.

`make gateway-endpoint NAME=judge MODEL=openai:/gpt-4o-mini` runs this in the
bootstrap container (team mode: as the admin, inside the network) and reads
the provider key from stdin, so it never appears in a command line, the shell's
history or a log. The key is stored encrypted with the stack's generated
passphrase (mlflow-kek-passphrase). An online judge then names the model
`gateway:/judge` (docs/evaluation.md). Run again to change the key or model.
Stdlib only.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from collections.abc import Mapping

from lib.errors import StackError, run_command
from lib.mlflow_api import MlflowClient
from lib import stack_config as cfg

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
                        help="where MLflow is (default: $MLFLOW_TRACKING_URI, else http://mlflow:5000)")
    parser.add_argument("--endpoint", required=True, help="the endpoint's name: judges call gateway:/NAME")
    parser.add_argument("--model", required=True, metavar="PROVIDER:/MODEL",
                        help="the provider and its model, e.g. openai:/gpt-4o-mini, anthropic:/claude-sonnet-4-5")
    parser.add_argument("--api-base", default="",
                        help="the provider's base URL when not its public one (an OpenAI-compatible server: "
                             "https://host/v1); http or a private address needs MLFLOW_GATEWAY_API_BASE_* in .env")
    parser.add_argument("--timeout", type=float, default=cfg.DEFAULT_TIMEOUT_S,
                        help="seconds to wait for MLflow to become healthy (default: %(default)s)")
    return parser.parse_args(argv)


def split_model(model: str) -> tuple[str, str]:
    provider, sep, name = model.partition(":/")
    if not sep or not provider or not name:
        raise StackError(f"invalid model {model!r}: write it as PROVIDER:/MODEL, e.g. openai:/gpt-4o-mini")
    return provider, name


def read_key() -> str:
    """The provider key from the terminal (not echoed) or from piped stdin."""
    key = getpass.getpass("Provider API key: ") if sys.stdin.isatty() else sys.stdin.read()
    key = key.strip()
    if not key:
        raise StackError("no provider key on stdin: type it when asked, or pipe it in "
                         "(make gateway-endpoint ... < keyfile)")
    return key


def by_name(items: list[dict], field: str, name: str) -> dict | None:
    return next((item for item in items if item.get(field) == name), None)


def ensure_endpoint(client: MlflowClient, endpoint: str, provider: str, model: str, key: str,
                    auth_config: Mapping[str, str]) -> str:
    """Create the key, model and endpoint named after `endpoint`, or update the ones there; what was done."""
    secret_name, model_name = f"{endpoint}-key", f"{endpoint}-model"
    secret = by_name(client.gateway_secrets(), "secret_name", secret_name)
    if secret is None:
        secret_id = client.create_gateway_secret(secret_name, provider, key, auth_config)
    else:
        if secret.get("provider") != provider:
            # MLflow keeps a key's provider when the key is updated.
            raise StackError(f"endpoint {endpoint!r} holds a key for {secret.get('provider')}; for {provider}, "
                             f"give the endpoint another NAME")
        secret_id = secret["secret_id"]
        client.update_gateway_secret(secret_id, key, auth_config)
    definition = by_name(client.gateway_models(), "name", model_name)
    if definition is None:
        definition_id = client.create_gateway_model(model_name, secret_id, provider, model)
    else:
        definition_id = definition["model_definition_id"]
        client.update_gateway_model(definition_id, secret_id, provider, model)
    if client.gateway_endpoint(endpoint) is None:
        client.create_gateway_endpoint(endpoint, definition_id)
        return "created"
    return "updated"


def run(args: argparse.Namespace) -> str:
    endpoint = cfg.check_name(args.endpoint, "endpoint name")
    provider, model = split_model(args.model)
    auth_config = {"api_base": cfg.check_url(args.api_base, "--api-base")} if args.api_base else {}
    key = read_key()  # before MLflow is touched: bad input changes nothing
    client = MlflowClient(args.tracking_uri, headers=cfg.client_headers())
    client.wait_until_healthy(args.timeout)
    action = ensure_endpoint(client, endpoint, provider, model, key, auth_config)
    return "\n".join([
        f"Gateway endpoint {endpoint!r} {action}: {provider}:/{model}"
        + (f" at {auth_config['api_base']}" if auth_config else "") + "; the key is stored encrypted",
        "",
        f'Next: a judge with model="gateway:/{endpoint}", registered and started on goose\'s experiment '
        '(docs/evaluation.md, "Automatic evaluation"); EVALUATION=on in .env runs it.',
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("gateway", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
