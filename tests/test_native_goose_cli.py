"""goose 1.37.0, the build npm publishes, against the real MLflow: the trap the doctor names.

Its exporter thread panics at the first batch (aaif-goose/goose issue #9494),
so a session that reached its model leaves no trace, with the stack and
`.env` in order. The model is the OpenAI-compatible stand-in of the tests
(harness/llm_provider.py).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import doctor
from harness.commands import experiment_id_in, run_sourced
from harness.compose_file import REPO
from harness.llm_provider import LlmProvider
from lib.mlflow_api import MlflowClient


def shell_with(directory: Path) -> doctor.Doctor:
    """The doctor as run from a shell whose PATH is only `directory`."""
    return doctor.Doctor(Path("."), {"PATH": str(directory)}, None)


def test_the_pinned_build_is_goose_1_37_0(goose):
    result = subprocess.run([str(goose), "--version"], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "1.37.0"


def test_goose_1_37_reaches_its_model_and_leaves_no_trace(goose, native_stack, bootstrapped, tmp_path):
    client = MlflowClient(native_stack.mlflow_url)
    experiment = experiment_id_in(bootstrapped)
    before = client.trace_ids(experiment)
    provider = LlmProvider()
    try:
        result = run_sourced(bootstrapped, str(goose), "run", "--no-session", "--text", "say hi", shell={
            "HOME": str(tmp_path), "GOOSE_DISABLE_KEYRING": "1", "GOOSE_PROVIDER": "openai",
            "GOOSE_MODEL": "gpt-4o-mini", "OPENAI_API_KEY": provider.api_key,
            "OPENAI_HOST": provider.url.removesuffix("/v1")})
    finally:
        provider.close()
    assert len(provider.requests) >= 1, result.stdout + result.stderr
    assert (tmp_path / ".local" / "state" / "goose" / "logs").is_dir()  # its state went to the test's HOME
    assert "thread 'OpenTelemetry.Traces.BatchProcessor'" in result.stderr
    assert "there is no reactor running, must be called from the context of a Tokio 1.x runtime" in result.stderr
    assert client.trace_ids(experiment) == before


def test_the_doctor_names_goose_1_37_with_the_upgrade(goose):
    with pytest.raises(doctor.Failed) as failed:
        doctor.check_goose_cli(shell_with(goose.parent))
    assert str(failed.value) == (f"goose 1.37.0 ({goose}) sends no traces: its exporter thread panics "
                                 "(aaif-goose/goose issue #9494); upgrade goose: goose update")
    # The line docs/troubleshooting.md's table quotes, for a goose in /usr/local/bin.
    quoted = f"FAIL {'goose-cli':<10} " + str(failed.value).replace(str(goose), "/usr/local/bin/goose")
    assert quoted in (REPO / "docs" / "troubleshooting.md").read_text()


def test_the_doctor_passes_a_shell_without_goose(tmp_path):
    assert doctor.check_goose_cli(shell_with(tmp_path)) == "no goose on this shell's PATH: nothing to check on this machine"


def a_goose_printing(directory: Path, version_output: str) -> Path:
    """A `goose` whose --version prints `version_output`: the doctor's rule for releases it has no binary of."""
    script = directory / "goose"
    script.write_text(f"#!/bin/sh\necho '{version_output}'\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("printed", [" 1.50.0", "goose 1.38.1", " 1.35.2", " 2.37.0"])
def test_the_doctor_passes_releases_outside_the_panicking_ones(tmp_path, printed):
    script = a_goose_printing(tmp_path, printed)
    assert doctor.check_goose_cli(shell_with(tmp_path)) == f"goose {printed.split()[-1]} ({script})"


def test_the_doctor_names_goose_1_36_too(tmp_path):
    script = a_goose_printing(tmp_path, " 1.36.0")
    with pytest.raises(doctor.Failed, match=rf"^goose 1\.36\.0 \({script}\) sends no traces: its exporter"):
        doctor.check_goose_cli(shell_with(tmp_path))


def test_the_doctor_names_a_goose_that_prints_no_version(tmp_path):
    script = a_goose_printing(tmp_path, "usage: goose [COMMAND]")
    with pytest.raises(doctor.Failed, match=f"^{script} --version printed no version: reinstall goose$"):
        doctor.check_goose_cli(shell_with(tmp_path))
