"""The pages agree with each other where they show the same commands (the tests run one copy as written)."""

from __future__ import annotations

import re

import doctor
from lib import envfile
from lib import stack_config as cfg
from harness import guide


def without_comments(block: str) -> str:
    return "\n".join(line.split("  #")[0].rstrip() for line in block.splitlines()) + "\n"


def test_the_team_guides_first_steps_are_the_readmes_which_the_team_suite_runs():
    marker = 'echo "MLFLOW_PUBLIC_URL='
    assert without_comments(guide.block("docs/team.md", "sh", marker)) == without_comments(
        guide.block("README.md", "sh", marker))


def test_the_getting_started_env_file_is_what_the_bootstrap_writes():
    written = envfile.merge("", cfg.goose_env("http://localhost:5000", "1"))
    assert guide.block("docs/getting-started.md", "sh", "export OTEL_EXPORTER_OTLP_ENDPOINT=") == written


def test_the_team_guides_env_file_is_what_make_user_writes_but_for_the_secrets():
    ca = "/home/alice/.config/goose-mlflow/ca.crt"
    written = envfile.merge("", cfg.goose_env("https://mlflow.internal.example", "1", auth=("alice", "pw"),
                                              ca_file=ca)).splitlines()[1:]
    shown = guide.block("docs/team.md", "sh", "export MLFLOW_TRACKING_USERNAME=alice").splitlines()
    elided = [re.sub(r"(Basic%20YWxpY2U6)\S*", r"\1...", re.sub(r"(PASSWORD=)\S+", r"\1...", line))
              for line in written]
    assert shown == elided


def test_the_troubleshooting_pages_doctor_runs_show_every_check_in_order():
    page = (guide.REPO / "docs" / "troubleshooting.md").read_text()
    runs = [block for block in re.findall(r"```console\n(.*?)```", page, re.DOTALL) if block.startswith("$ make doctor\n")]
    assert len(runs) == 2  # a healthy stack, and a broken one
    names = [name for name, _, _ in doctor.CHECKS]
    for run in runs:
        shown = [line.split()[1] for line in run.splitlines() if line.split()[:1] in (["ok"], ["FAIL"], ["--"])]
        assert list(dict.fromkeys(shown)) == names


def test_every_doctor_line_the_pages_quote_names_a_check_of_the_doctor():
    checks = {name for name, _, _ in doctor.CHECKS}
    pages = ("README.md", "docs/troubleshooting.md", "docs/team.md", "docs/evaluation.md", "docs/external.md")
    quoted = {name for page in pages
              for name in re.findall(r"(?:^|`)(?:FAIL|ok) +([a-z-]+) ", (guide.REPO / page).read_text(), re.MULTILINE)}
    assert quoted and quoted <= checks


PAGES = sorted([guide.REPO / "README.md", guide.REPO / "tests" / "README.md", *(guide.REPO / "docs").glob("*.md")])


def test_every_compose_minimum_a_page_names_is_the_doctors():
    named = {(page.name, version) for page in PAGES
             for version in re.findall(r"Compose (\d+\.\d+\.\d+)(?:\+| or newer)", page.read_text())}
    assert named and {version for _, version in named} == {doctor.dotted(doctor.MIN_COMPOSE)}, named


def defined_tests() -> set[str]:
    return {name for path in (guide.REPO / "tests").glob("test_*.py")
            for name in re.findall(r"^def (test_\w+)\(", path.read_text(), re.M)}


def test_every_test_a_page_cites_exists():
    cited = {(page.relative_to(guide.REPO).as_posix(), name) for page in PAGES
             for name in re.findall(r"`(test_\w+)`", page.read_text()) if not name.endswith("_")}
    assert {(page, name) for page, name in cited if name not in defined_tests()} == set()


def test_the_number_of_generated_secrets_the_pages_name_is_the_stacks():
    import credentials

    words = ("one two three four five six seven eight nine ten").split()
    named = {word for page in PAGES for word in re.findall(r"all (\w+) generated secrets", page.read_text())}
    assert named == {words[len(credentials.SECRETS) - 1]}


# Words that date a version: a page may name another MLflow than the pin only as history (a run of a day,
# the release before, what an older one did).
DATING = re.compile(r"\d{4}-\d{2}-\d{2}|previous|older|earlier|before|until|since|was |were |did |checked|read in|run of",
                    re.IGNORECASE)


def test_every_mlflow_version_a_page_names_is_the_pin_or_dated():
    from test_compose_policy import MLFLOW_VERSION

    undated = []
    for page in PAGES:
        # Fenced blocks are real output of dated runs, or commands.
        prose = re.sub(r"```[a-z]*\n.*?```", "", page.read_text(), flags=re.DOTALL)
        for paragraph in re.split(r"\n\s*\n", prose):
            for version in re.findall(r"MLflow (\d+\.\d+\.\d+)", paragraph):
                if version != MLFLOW_VERSION and not DATING.search(paragraph):
                    undated.append((page.name, version, paragraph.strip()[:100]))
    assert undated == []
