"""scripts/gateway.py (make gateway-endpoint): a provider key, model and endpoint for judges, natively.

The key comes from stdin only; bad input is refused before MLflow is touched.
"""

from __future__ import annotations

import subprocess

import pytest

from harness.commands import run_script
from lib.mlflow_api import MlflowClient

KEY = "sk-provider-key-for-the-test"


def gateway(native_stack, *args: str, key: str = KEY) -> subprocess.CompletedProcess:
    """The command as make gateway-endpoint runs it, the key piped into stdin."""
    return run_script("gateway.py", "--tracking-uri", native_stack.mlflow_url, *args, stdin=key)


def test_an_endpoint_is_created_with_its_key_model_and_name(native_stack):
    result = gateway(native_stack, "--endpoint", "judge-a", "--model", "openai:/gpt-4o-mini")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "Gateway endpoint 'judge-a' created: openai:/gpt-4o-mini; the key is stored encrypted"
    client = MlflowClient(native_stack.mlflow_url)
    model = client.gateway_endpoint("judge-a")["model_mappings"][0]["model_definition"]
    assert (model["provider"], model["model_name"], model["secret_name"]) == ("openai", "gpt-4o-mini", "judge-a-key")


def test_rerunning_updates_the_model_and_key_of_the_same_endpoint(native_stack):
    assert gateway(native_stack, "--endpoint", "judge-b", "--model", "openai:/gpt-4o-mini").returncode == 0
    result = gateway(native_stack, "--endpoint", "judge-b", "--model", "openai:/gpt-4o", key="sk-rotated-key-0042")
    assert result.returncode == 0 and "'judge-b' updated: openai:/gpt-4o;" in result.stdout
    client = MlflowClient(native_stack.mlflow_url)
    assert client.gateway_endpoint("judge-b")["model_mappings"][0]["model_definition"]["model_name"] == "gpt-4o"
    secrets = [s for s in client.gateway_secrets() if s["secret_name"] == "judge-b-key"]
    assert len(secrets) == 1 and secrets[0]["masked_values"]["api_key"].endswith("0042")


def test_the_key_is_never_printed(native_stack):
    result = gateway(native_stack, "--endpoint", "judge-c", "--model", "openai:/gpt-4o-mini")
    assert KEY not in result.stdout + result.stderr


def test_a_key_of_another_provider_for_the_same_endpoint_is_refused(native_stack):
    assert gateway(native_stack, "--endpoint", "judge-d", "--model", "openai:/gpt-4o-mini").returncode == 0
    result = gateway(native_stack, "--endpoint", "judge-d", "--model", "anthropic:/claude-sonnet-4-5")
    assert (result.returncode, result.stderr.strip()) == (
        1, "gateway: error: endpoint 'judge-d' holds a key for openai; for anthropic, give the endpoint another NAME")
    model = MlflowClient(native_stack.mlflow_url).gateway_endpoint("judge-d")["model_mappings"][0]["model_definition"]
    assert (model["provider"], model["model_name"]) == ("openai", "gpt-4o-mini")


def test_the_key_is_stored_without_the_newline_of_its_file(native_stack):
    assert gateway(native_stack, "--endpoint", "judge-e", "--model", "openai:/m", key="sk-ends-in-9876\n").returncode == 0
    secret = [s for s in MlflowClient(native_stack.mlflow_url).gateway_secrets() if s["secret_name"] == "judge-e-key"]
    assert secret[0]["masked_values"]["api_key"].endswith("9876")


@pytest.mark.parametrize("length, accepted", [(64, True), (65, False)])
def test_endpoint_names_are_at_most_64_characters(native_stack, length, accepted):
    result = gateway(native_stack, "--endpoint", "j" * length, "--model", "openai:/m")
    assert (result.returncode == 0) == accepted, result.stderr


@pytest.mark.parametrize("args, key, message", [
    (("--endpoint", "two words", "--model", "openai:/m"), KEY,
     "gateway: error: invalid endpoint name 'two words': use 1-64 letters, digits, '.', '_' or '-'"),
    (("--endpoint", "judge", "--model", "gpt-4o"), KEY,
     "gateway: error: invalid model 'gpt-4o': write it as PROVIDER:/MODEL, e.g. openai:/gpt-4o-mini"),
    (("--endpoint", "judge", "--model", "openai:/m"), "",
     "gateway: error: no provider key on stdin: type it when asked, or pipe it in (make gateway-endpoint ... < keyfile)"),
    (("--endpoint", "judge", "--model", "openai:/m", "--api-base", "ftp://x"), KEY,
     "gateway: error: --api-base 'ftp://x' is not an http(s) URL; write it like http://localhost:5000"),
])
def test_bad_input_is_one_line_and_creates_nothing(native_stack, args, key, message):
    before = MlflowClient(native_stack.mlflow_url).gateway_secrets()
    result = gateway(native_stack, *args, key=key)
    assert (result.returncode, result.stderr.strip()) == (1, message)
    assert MlflowClient(native_stack.mlflow_url).gateway_secrets() == before
