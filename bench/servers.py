"""The servers `make bench` measures, each started fresh and stopped with everything it made.

  baseline         `mlflow server` with every default (SQLite, 4 workers, job
                   runner), same MLflow, in the stack's own MLflow image;
  stack            the real compose.yaml under its own project name;
  variants         the stack with one tuned setting put back to MLflow's default;
  baseline-native  the baseline without Docker (this virtualenv's MLflow);
  native           the stack's services without Docker, from compose.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker

import procfs
from harness.compose_file import REPO, load_compose
from harness.native import NativeStack, free_port
from harness.project import ComposeProject, copy_checkout
from load import log
from lib.mlflow_api import MlflowClient

START_TIMEOUT_S = 300


def _mlflow_default(variable: str) -> str:
    import mlflow.environment_variables

    return getattr(mlflow.environment_variables, variable).default


# The tuning table: the stack with one of its defaults put back to MLflow's,
# measured in the same run, so each tuned setting shows what it buys. Each:
# what differs, and the compose override of the mlflow service, made from
# compose.yaml's mlflow service (so it follows changes there).
VARIANTS: dict[str, tuple[str, Callable[[dict], dict]]] = {
    "catalog-fetch": ("token prices fetched from GitHub (MLflow's default catalog URI), telemetry on",
                      lambda mlflow: {"environment": {"MLFLOW_MODEL_CATALOG_URI": _mlflow_default("MLFLOW_MODEL_CATALOG_URI"),
                                                      "MLFLOW_DISABLE_TELEMETRY": "false"}}),
    "workers-4": ("4 workers (MLflow's default) instead of 2",
                  lambda mlflow: {"command": [re.sub(r"^--workers=\d+$", "--workers=4", arg)
                                              for arg in mlflow["command"]]}),
    "evaluation-on": ("EVALUATION=on: MLflow's job runner for online judges (executor engine, one worker per job)",
                      lambda mlflow: {"environment": {"EVALUATION": "on"}}),
    "metrics-off": ("no Prometheus metrics (MLflow's default; the stack exposes them inside the network)",
                    lambda mlflow: {"command": [arg for arg in mlflow["command"]
                                                if not arg.startswith("--expose-prometheus")]}),
}


class Server:
    name: str
    url: str

    def pss_mb(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class BaselineServer(Server):
    """`mlflow server` with every default in the stack's own MLflow image.

    Same MLflow, Python build and container overheads as the stack, so the
    ratios measure the stack's configuration alone. The one flag, --host
    0.0.0.0, is what any container needs to be reachable through a published port.
    """

    name = "baseline"

    def __init__(self) -> None:
        port = free_port()
        # On the host's disk, as the stack's volumes are; the image's user must write its SQLite file there.
        self.workdir = Path(tempfile.mkdtemp(prefix="goose-mlflow-bench-baseline-"))
        self.workdir.chmod(0o777)
        self.url = f"http://127.0.0.1:{port}"
        subprocess.run(["docker", "compose", "build", "mlflow"], cwd=REPO, check=True, capture_output=True)
        self.container = docker.from_env().containers.run(
            load_compose()["services"]["mlflow"]["image"], ["server", "--host", "0.0.0.0"], entrypoint=["mlflow"],
            working_dir="/data", volumes={str(self.workdir): {"bind": "/data", "mode": "rw"}},
            ports={"5000/tcp": ("127.0.0.1", port)}, detach=True)
        MlflowClient(self.url).wait_until_healthy(START_TIMEOUT_S)

    def pss_mb(self) -> float:
        self.container.reload()
        return procfs.pss_mb(procfs.descendants(self.container.attrs["State"]["Pid"]))

    def stop(self) -> None:
        self.container.remove(force=True, v=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


class NativeBaseline(Server):
    """`mlflow server` with every default, from this virtualenv, in a fresh folder: the baseline without Docker."""

    name = "baseline-native"

    def __init__(self) -> None:
        port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="goose-mlflow-bench-baseline-"))
        self.url = f"http://127.0.0.1:{port}"
        mlflow = Path(sys.executable).parent / "mlflow"
        self.process = subprocess.Popen([str(mlflow), "server", "--port", str(port)], cwd=self.workdir,
                                        stdout=open(self.workdir / "server.log", "w"), stderr=subprocess.STDOUT,
                                        start_new_session=True)
        MlflowClient(self.url).wait_until_healthy(START_TIMEOUT_S)

    def pss_mb(self) -> float:
        return procfs.pss_mb(procfs.descendants(self.process.pid))

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=60)
        shutil.rmtree(self.workdir, ignore_errors=True)


class NativeServer(Server):
    """The stack's services without Docker (harness.native), as the native tests start them.

    Memory counts MLflow and PostgreSQL, the stack's own processes; the S3
    stand-in is left out.
    """

    name = "native"

    def __init__(self) -> None:
        self.stack = NativeStack.start("goose-mlflow-bench-native-")
        self.url = self.stack.mlflow_url
        self.mlflow = self.stack.processes[-1]

    def pss_mb(self) -> float:
        assert self.stack.postgres is not None
        return procfs.pss_mb(procfs.descendants(self.mlflow.pid) + procfs.descendants(self.stack.postgres.postmaster_pid()))

    def stop(self) -> None:
        self.stack.stop()


class ComposeServer(Server):
    """The real compose.yaml (with a variant's override) as a throwaway Compose project, started by `make up`."""

    def __init__(self, name: str = "stack", overrides: dict | None = None) -> None:
        self.name = name
        workdir = copy_checkout(Path(tempfile.mkdtemp(prefix="goose-mlflow-bench-stack-")))
        settings = {}
        if overrides:
            # Service name -> settings. JSON is YAML: compose merges it over
            # compose.yaml, for make up and every later call.
            (workdir / "compose.bench.json").write_text(json.dumps({"services": overrides}))
            settings["COMPOSE_FILE"] = "compose.yaml:compose.bench.json"
        self.project = ComposeProject(workdir, settings, name_prefix="goose-mlflow-bench")
        self.url = f"http://127.0.0.1:{self.project.port}"
        self.project.up()
        self.up_seconds = self.project.up_seconds
        log(f"{self.name}: make up took {self.up_seconds} s")

    def pss_mb(self) -> float:
        return procfs.pss_mb(self.project.pids())

    def stop(self) -> None:
        self.project.down()
        shutil.rmtree(self.project.directory, ignore_errors=True)


def start(name: str) -> Server:
    """The server or variant called `name`, started and healthy."""
    if name == "baseline":
        return BaselineServer()
    if name == "baseline-native":
        return NativeBaseline()
    if name == "native":
        return NativeServer()
    overrides = {"mlflow": VARIANTS[name][1](load_compose()["services"]["mlflow"])} if name in VARIANTS else None
    return ComposeServer(name, overrides)
