"""`make mutation`: run mutmut over scripts/ and print, per module, the share of mutants the tests kill.

mutmut names a mutant after its file's path (scripts/lib/envfile.py would be
`scripts.lib.envfile`), while the tests import the modules through pytest's
`pythonpath = ["scripts", ...]` (`from lib import envfile`: `lib.envfile`). So the run
happens in a staging folder (build/mutation/ by default) where scripts/ is
copied to src/, whose prefix mutmut drops, and mutants/scripts links to the
mutated src/: the tests' own pythonpath, and scripts run as subprocesses,
then use the mutated modules. scripts/host/'s modules and the services' jobs
(postgres/, minio/, mlflow/) are also staged flat into src/, and those are the
mutated ones: a mutant is switched on by its function's __module__, which is `doctor` for the tests (pythonpath scripts
before scripts/host), not `host.doctor`; make's targets run the unmutated
src/host/ files. Settings are in
pyproject.toml's [tool.mutmut].

The table goes to stdout, progress to stderr; the exit status is 1 when a
gated module kills less than --threshold percent of its mutants.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Staged flat into src/, as pytest's pythonpath puts them: the host commands and the services' jobs.
FLAT_FOLDERS = ("scripts/host", "postgres", "minio", "mlflow")
GATED = ("lib.envfile", "lib.stack_config", "credentials", "lib.otlp", "lib.errors", "compose_settings", "bump_mlflow")
# Functions of gated modules whose tests cannot run per mutant: argument parsing and main (run by make as a
# subprocess, which mutmut cannot tie to a function), the running stack's labels (the Docker engine:
# test_docker_operations.py, test_docker_team.py) and the locking (the package index: test_bump_mlflow.py's
# native test, test_docker_upgrade.py). Left out of the counts unless --exclude-function names others.
NOT_PER_MUTANT = (
    "compose_settings.parse_args", "compose_settings.answer", "compose_settings.main",
    "compose_settings._container", "compose_settings._inspect", "compose_settings.running_files",
    "compose_settings.running_retention_days",
    "bump_mlflow.parse_args", "bump_mlflow.main", "bump_mlflow.bump", "bump_mlflow.lock", "bump_mlflow.relock",
)
# mutmut's exit codes per mutant (mutmut/stats.py): a failing test kills it; a
# timeout is a kill too (the tests noticed); 33 means no test reaches the code.
KILLED_CODES = {1, 3, -24, 24, 152, 255}
NO_TESTS_CODES = {33, 5}
SURVIVED_CODES = {0}

log = logging.getLogger("mutation")


@dataclass
class Score:
    module: str
    killed: int = 0
    survived: int = 0
    no_tests: int = 0
    other: int = 0
    excluded: int = 0

    @property
    def total(self) -> int:
        return self.killed + self.survived + self.no_tests + self.other

    @property
    def percent(self) -> float | None:
        return 100.0 * self.killed / self.total if self.total else None


def stage(work: Path) -> None:
    """A fresh copy of scripts/, tests/ and pyproject.toml laid out as mutmut wants it."""
    if work.exists():
        shutil.rmtree(work)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    shutil.copytree(REPO / "scripts", work / "src", ignore=ignore)
    for folder in FLAT_FOLDERS:
        for module in (REPO / folder).glob("*.py"):
            shutil.copy2(module, work / "src" / module.name)
    shutil.copytree(REPO / "tests", work / "tests", ignore=ignore)
    shutil.copy2(REPO / "pyproject.toml", work / "pyproject.toml")
    for name in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mutmut"].get("also_copy", []):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, work / name)
    (work / "mutants").mkdir()
    (work / "mutants" / "scripts").symlink_to("src", target_is_directory=True)


def run_mutmut(work: Path, max_children: int | None) -> int:
    """mutmut run in `work`; its progress output goes to work/mutmut.log."""
    command = [sys.executable, "-m", "mutmut", "run"]
    if max_children:
        command += ["--max-children", str(max_children)]
    log_path = work / "mutmut.log"
    log.info("running %s in %s (log: %s)", " ".join(command[2:]), work, log_path)
    with open(log_path, "w") as out:
        return subprocess.run(command, cwd=work, stdout=out, stderr=subprocess.STDOUT).returncode


def excluded_prefixes(excluded_functions: list[str]) -> list[str]:
    """Mutant-name prefixes of MODULE.FUNCTION names (mutmut calls them MODULE.x_FUNCTION__mutmut_N)."""
    return [f"{module}.x_{function}__mutmut_"
            for module, _, function in (name.rpartition(".") for name in excluded_functions)]


def scores(work: Path, excluded_functions: list[str]) -> dict[str, Score]:
    """Module -> Score from mutmut's per-file results (mutants/src/<module>.py.meta; lib.envfile for
    src/lib/envfile.py; the flat host modules, not their unmutated src/host/ copies)."""
    prefixes = excluded_prefixes(excluded_functions)
    result: dict[str, Score] = {}
    source = work / "mutants" / "src"
    for meta in sorted([*source.glob("*.py.meta"), *source.glob("lib/*.py.meta")]):
        module = ".".join(meta.relative_to(source).with_suffix("").with_suffix("").parts)
        score = Score(module)
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if key.startswith(tuple(prefixes)):
                score.excluded += 1
            elif code in KILLED_CODES:
                score.killed += 1
            elif code in SURVIVED_CODES:
                score.survived += 1
            elif code in NO_TESTS_CODES:
                score.no_tests += 1
            else:
                score.other += 1
        result[module] = score
    return result


def surviving(work: Path, module: str, excluded_functions: list[str]) -> list[str]:
    """Names of the counted mutants of `module` no test killed (`mutmut show NAME` in --work prints each)."""
    meta = work / "mutants" / "src" / f"{module.replace('.', '/')}.py.meta"
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    prefixes = tuple(excluded_prefixes(excluded_functions))
    return sorted(key for key, code in codes.items() if code not in KILLED_CODES and not key.startswith(prefixes))


def table(rows: list[Score], gated: tuple[str, ...], threshold: float) -> str:
    """The per-module table: mutants, killed, survived (of which no test reaches), % killed."""
    lines = [f"{'module':<22} {'mutants':>7} {'killed':>7} {'survived':>8} {'no test':>8} {'% killed':>8}  gate"]
    for row in rows:
        percent = "-" if row.percent is None else f"{row.percent:.1f}"
        gate = ""
        if row.module in gated:
            gate = f">= {threshold:g}: " + ("ok" if row.percent is not None and row.percent >= threshold else "FAIL")
        survived = row.survived + row.other
        lines.append(f"{row.module:<22} {row.total:>7} {row.killed:>7} {survived + row.no_tests:>8} "
                     f"{row.no_tests:>8} {percent:>8}  {gate}".rstrip())
    excluded = [f"{row.excluded} of {row.module}" for row in rows if row.excluded]
    if excluded:
        lines.append(f"(not counted: {', '.join(excluded)} mutants in excluded functions)")
    return "\n".join(lines)


def failures(rows: dict[str, Score], gated: tuple[str, ...], threshold: float) -> list[str]:
    """Gated modules below the threshold, or missing from the results."""
    out = []
    for module in gated:
        row = rows.get(module)
        if row is None or row.percent is None or row.percent < threshold:
            out.append(module)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "build" / "mutation",
                        help="staging folder, wiped first (default: build/mutation)")
    parser.add_argument("--report-only", action="store_true", help="read the results of the last run, run nothing")
    parser.add_argument("--max-children", type=int, help="parallel mutant runs (default: one per core)")
    parser.add_argument("--threshold", type=float, default=85.0, help="least %% killed for a gated module")
    parser.add_argument("--gate", default=",".join(GATED), help="comma-separated modules held to the threshold")
    parser.add_argument("--exclude-function", action="append", default=list(NOT_PER_MUTANT), metavar="MODULE.FUNCTION",
                        help="also leave this function's mutants out of the counts (repeatable; default: "
                             "the CLI, Docker and index functions of compose_settings and bump_mlflow)")
    parser.add_argument("--show-surviving", action="store_true", help="also list the surviving mutants' names")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="mutation: %(message)s", stream=sys.stderr)
    args = parse_args(argv)
    gated = tuple(filter(None, args.gate.split(",")))
    if not args.report_only:
        stage(args.work)
        code = run_mutmut(args.work, args.max_children)
        if code != 0:
            log.error("mutmut run failed (exit %d); see %s", code, args.work / "mutmut.log")
            return 2
    rows = scores(args.work, args.exclude_function)
    if not rows:
        log.error("no results in %s; run without --report-only first", args.work / "mutants")
        return 2
    ordered = [rows[m] for m in gated if m in rows] + [r for m, r in sorted(rows.items()) if m not in gated]
    print(table(ordered, gated, args.threshold))
    if args.show_surviving:
        for row in ordered:
            for name in surviving(args.work, row.module, args.exclude_function):
                print(f"  surviving: {name}")
    below = failures(rows, gated, args.threshold)
    if below:
        log.error("below %g%% killed: %s", args.threshold, ", ".join(below))
    log.info("next: make mutation MUTATION_ARGS=--show-surviving lists the survivors; "
             "cd %s && mutmut show NAME (from .venv) prints one's diff", args.work)
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
