"""scripts/host/bump_mlflow.py (make bump-mlflow VERSION=x.y.z): one command moves MLflow's pin everywhere.

What a real bump to the previous release writes is shown by the upgrade suite, which builds that release's
image from it (test_docker_upgrade.py); here, the rewriting and bad input, fast, and a failed resolution.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bump_mlflow
from harness.compose_file import REPO

MLFLOW_VERSION = bump_mlflow.pinned_version((REPO / bump_mlflow.REQUIREMENTS).read_text())
# What make lock-image reads and bump-mlflow writes.
LOCKING = ("Makefile", "requirements-dev.txt", "mlflow/Dockerfile", bump_mlflow.REQUIREMENTS, bump_mlflow.COMPOSE,
           bump_mlflow.OVERRIDES, *bump_mlflow.LOCKS)


def checkout(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "scripts", tmp_path / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    for name in LOCKING:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, tmp_path / name)
    return tmp_path


def contents(repo: Path) -> dict[str, bytes]:
    return {name: (repo / name).read_bytes() for name in LOCKING}


def bump(repo: Path, version: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "bump-mlflow", f"VERSION={version}",
                           f"UV={Path(sys.executable).with_name('uv')}", f"PYTHON={sys.executable}"],
                          cwd=repo, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})


def test_the_overrides_file_is_what_bump_mlflow_writes_for_the_pin():
    """The pin's mlflow-tracing is not on the index (mlflow/overrides.txt), so the override is written."""
    assert (REPO / bump_mlflow.OVERRIDES).read_text() == bump_mlflow.overrides(MLFLOW_VERSION, tracing_missing=True)


def test_the_override_is_left_out_when_the_index_has_the_matching_mlflow_tracing():
    assert "mlflow-tracing" not in bump_mlflow.overrides("3.17.2", tracing_missing=False)


def test_the_pin_is_the_one_line_rewritten_in_the_requirements():
    requirements = (REPO / bump_mlflow.REQUIREMENTS).read_text()
    moved = bump_mlflow.repin(requirements, "9.8.7")
    assert bump_mlflow.pinned_version(moved) == "9.8.7"
    assert [line for line in moved.splitlines() if line not in requirements.splitlines()] == ["mlflow[auth]==9.8.7"]


def test_the_image_tag_is_the_one_line_rewritten_in_compose():
    compose = (REPO / bump_mlflow.COMPOSE).read_text()
    moved = bump_mlflow.retag(compose, "9.8.7")
    assert [line for line in moved.splitlines() if line not in compose.splitlines()] == [
        "x-mlflow-image: &mlflow-image goose-mlflow/mlflow:9.8.7"]


def test_pages_naming_a_version_are_found_and_a_longer_version_is_not_it(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("MLflow 3.18.0 does it.\n")
    (tmp_path / "docs" / "a.md").write_text("Since 3.18.01 and 13.18.0 only.\n")
    (tmp_path / "docs" / "b.md").write_text("(3.18.0)\n")
    assert bump_mlflow.pages_naming(tmp_path, "3.18.0") == ["README.md", "docs/b.md"]


@pytest.mark.parametrize("version", ["3.18", "v3.18.1", "3.18.1rc1", "", "3.18.1 "])
def test_an_invalid_version_is_one_line_and_changes_nothing(tmp_path, version):
    repo = checkout(tmp_path)
    before = contents(repo)
    result = bump(repo, version)
    assert result.returncode != 0
    line = next(line for line in result.stderr.splitlines() if "bump-mlflow" in line)
    assert line in (f"bump-mlflow: error: invalid VERSION {version!r}: name an MLflow release as x.y.z, e.g. 3.18.1",
                    "make bump-mlflow: say which release: make bump-mlflow VERSION=3.18.1")
    assert contents(repo) == before


@pytest.mark.native
def test_a_release_the_index_cannot_lock_puts_every_file_back(tmp_path):
    """Asks the package index (uv): no mlflow 0.0.1 with mlflow-skinny 0.0.1 resolves."""
    repo = checkout(tmp_path)
    before = contents(repo)
    result = bump(repo, "0.0.1")
    assert result.returncode != 0 and "bump-mlflow: error: " in result.stderr, result.stderr
    assert contents(repo) == before


def test_the_locks_of_this_checkout_pin_mlflow_and_its_skinny_twin_at_the_pin():
    assert bump_mlflow.locked_versions(REPO, MLFLOW_VERSION) == []


@pytest.mark.parametrize("line", ["mlflow==9.8.7", "mlflow-skinny==9.8.7", "mlflow==9.8.70", " mlflow==9.8.7"])
def test_a_lock_missing_either_package_at_exactly_the_version_is_named(tmp_path, line):
    for name in bump_mlflow.LOCKS:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("alembic==1.0\nmlflow==9.8.7\nmlflow-skinny==9.8.7\n")
    (tmp_path / bump_mlflow.LOCKS[1]).write_text(f"alembic==1.0\n{line}\n")
    assert bump_mlflow.locked_versions(tmp_path, "9.8.7") == [bump_mlflow.LOCKS[1]]


@pytest.mark.parametrize("version", ["3.18.1", "10.0.0"])
def test_a_release_as_x_y_z_is_taken(version):
    assert bump_mlflow.check_version(version) == version


@pytest.mark.parametrize("version", ["3.18", "v3.18.1", "3.18.1rc1", "", "3.18.1 "])
def test_anything_else_is_refused_naming_the_form(version):
    with pytest.raises(bump_mlflow.StackError, match=r"name an MLflow release as x\.y\.z, e\.g\. 3\.18\.1$"):
        bump_mlflow.check_version(version)
