#!/usr/bin/env python3
"""Move the stack to another MLflow release: the pin, the image's tag, the overrides and both locks.

`make bump-mlflow VERSION=3.18.1` rewrites the one pin (mlflow/requirements.txt)
and the image tag compose.yaml gives the stack's MLflow image, then re-locks
mlflow/constraints.txt and constraints-dev.txt with `make lock-image`. The
override that drops `mlflow-tracing` (mlflow/overrides.txt) is kept only while
the package index lacks the matching mlflow-tracing: the resolver is asked
without it first. When anything fails, every file is put back as it was.
Pages that name the old version are listed, not rewritten: each names it
for a claim checked against that release (test_docs fails until they agree).
Stdlib only.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

from lib import stack_config as cfg
from lib.errors import StackError, run_command

REQUIREMENTS = "mlflow/requirements.txt"
COMPOSE = "compose.yaml"
OVERRIDES = "mlflow/overrides.txt"
LOCKS = ("mlflow/constraints.txt", "constraints-dev.txt")
PAGES = ("README.md", "docs", "tests/README.md")

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
_PIN = re.compile(r"^mlflow\[auth\]==(\S+)$", re.M)
_IMAGE = re.compile(r"(&mlflow-image goose-mlflow/mlflow:)(\S+)")

OVERRIDES_HEADER = """\
# Requirements of the pinned packages that the locks drop (uv's --override;
# make lock-image). Read with mlflow/requirements.txt and requirements-dev.txt.
# make bump-mlflow writes this file.
"""
TRACING_OVERRIDE = """\
#
# mlflow {version} requires mlflow-tracing=={version}, which the package index
# does not offer. Every file of mlflow-tracing is inside the mlflow {version}
# wheel, so the locks hold no mlflow-tracing at all: never one of another
# version beside {version}'s files (uninstalling it would delete shared files).
# The day mlflow-tracing {version} is on the index, run make bump-mlflow
# VERSION={version} again: it drops this line.
mlflow-tracing ; sys_platform == "never"
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("version", metavar="VERSION", help="the MLflow release, x.y.z")
    parser.add_argument("--repo", type=Path, default=cfg.REPO_ROOT, help="the checkout (default: this one)")
    parser.add_argument("--uv", default="", help="the uv make lock-image runs (default: the Makefile's)")
    return parser.parse_args(argv)


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise StackError(f"invalid VERSION {version!r}: name an MLflow release as x.y.z, e.g. 3.18.1")
    return version


def pinned_version(requirements: str) -> str:
    found = _PIN.findall(requirements)
    if len(found) != 1:
        raise StackError(f"{REQUIREMENTS} holds {len(found)} mlflow[auth]== pins, expected 1")
    return found[0]


def repin(requirements: str, version: str) -> str:
    return _PIN.sub(f"mlflow[auth]=={version}", requirements)


def retag(compose: str, version: str) -> str:
    if len(_IMAGE.findall(compose)) != 1:
        raise StackError(f"{COMPOSE} holds no single x-mlflow-image anchor (goose-mlflow/mlflow:VERSION)")
    return _IMAGE.sub(rf"\g<1>{version}", compose)


def overrides(version: str, tracing_missing: bool) -> str:
    """mlflow/overrides.txt for `version`: the mlflow-tracing override only while the index lacks its release."""
    return OVERRIDES_HEADER + (TRACING_OVERRIDE.format(version=version) if tracing_missing else "")


def lock(repo: Path, uv: str) -> subprocess.CompletedProcess:
    command = ["make", "--no-print-directory", "lock-image", *([f"UV={uv}"] if uv else [])]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True)


def locked_versions(repo: Path, version: str) -> list[str]:
    """The locks that do not pin mlflow and mlflow-skinny at `version`."""
    wrong = []
    for name in LOCKS:
        text = (repo / name).read_text()
        if not all(re.search(rf"^{package}=={re.escape(version)}$", text, re.M) for package in ("mlflow", "mlflow-skinny")):
            wrong.append(name)
    return wrong


def pages_naming(repo: Path, version: str) -> list[str]:
    """The pages that name MLflow `version` (checked claims to re-read against the new release)."""
    files = []
    for entry in PAGES:
        path = repo / entry
        files += sorted(path.rglob("*.md")) if path.is_dir() else [path] if path.exists() else []
    pattern = re.compile(rf"(?<![\d.]){re.escape(version)}(?![\d])")
    return [str(path.relative_to(repo)) for path in files if pattern.search(path.read_text())]


def relock(repo: Path, version: str, uv: str) -> bool:
    """Lock without the mlflow-tracing override, else with it; whether the override was needed."""
    for needed in (False, True):
        (repo / OVERRIDES).write_text(overrides(version, tracing_missing=needed))
        result = lock(repo, uv)
        if result.returncode == 0:
            return needed
        if needed or "mlflow-tracing" not in result.stderr:
            reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
            raise StackError(f"make lock-image could not resolve MLflow {version}: {reason}")
    raise AssertionError("unreachable")


def bump(repo: Path, version: str, uv: str) -> str:
    kept = {name: (repo / name).read_text() for name in (REQUIREMENTS, COMPOSE, OVERRIDES, *LOCKS)}
    old = pinned_version(kept[REQUIREMENTS])
    new_compose = retag(kept[COMPOSE], version)  # before anything is written: a bad file changes nothing
    print(f"bump-mlflow: {old} -> {version}: re-locking with make lock-image", file=sys.stderr)
    try:
        (repo / REQUIREMENTS).write_text(repin(kept[REQUIREMENTS], version))
        (repo / COMPOSE).write_text(new_compose)
        tracing_missing = relock(repo, version, uv)
        wrong = locked_versions(repo, version)
        if wrong:
            raise StackError(f"{', '.join(wrong)} do not pin mlflow and mlflow-skinny {version} after make lock-image")
    except BaseException:
        for name, text in kept.items():
            (repo / name).write_text(text)
        raise
    pages = pages_naming(repo, old) if old != version else []
    return "\n".join([
        f"MLflow {old} -> {version}: {REQUIREMENTS}, {COMPOSE} (image tag), {', '.join(LOCKS)}"
        + (f"; {OVERRIDES} drops mlflow-tracing (the index lacks {version})" if tracing_missing
           else f"; {OVERRIDES} without an override"),
        *([f"Pages naming {old}: {', '.join(pages)}; re-check each claim against {version}."] if pages else []),
        "",
        "Next: review git diff, then make test (the upgrade test starts from the previous minor's release).",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("bump-mlflow", lambda: bump(args.repo.resolve(), check_version(args.version), args.uv))


if __name__ == "__main__":
    sys.exit(main())
