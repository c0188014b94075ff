"""make usage (scripts/usage.py): sessions, replies, tokens and cost per person per day, from what MLflow stored.

The traces go through the native team server (its ingest layer names each
sender), and the report runs in the migrate service's environment, as make
usage runs it. Through Docker and the proxy: test_docker_team.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import uuid

import pytest

from harness.commands import run_script
from lib import envfile, otlp
from lib import stack_config as cfg
from lib.mlflow_api import MlflowClient

TODAY = dt.datetime.now(dt.timezone.utc).date().isoformat()


def usage_rows(stack, *args: str) -> list[dict[str, str]]:
    result = stack.run_job("migrate", command=["python3", "scripts/usage.py", "--csv", *args])
    assert result.returncode == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def stored_cost(admin: MlflowClient, trace_ids: list[str]) -> float:
    """The total cost MLflow stored on these traces."""
    return sum(json.loads(admin.get_trace(trace_id)["trace_info"]["trace_metadata"]["mlflow.trace.cost"])["total_cost"]
               for trace_id in trace_ids)


@pytest.fixture(scope="module")
def sent(team_stack, bootstrapped, tmp_path_factory) -> dict[str, list[str]]:
    """Two people with fresh accounts: the first sends two sessions (three replies), the second one reply."""
    directory = tmp_path_factory.mktemp("usage")
    # Names no other native test gives an account: the database lives as long as the test session.
    people = ["mia", "sam"]
    admin = MlflowClient(team_stack.url, headers={"Authorization": cfg.basic_auth("admin", team_stack.admin_password)})
    experiment_id = str(admin.get_experiment_by_name("goose-traces")["experiment_id"])
    traces: dict[str, list[str]] = {}
    for person, sessions in zip(people, ([2, 1], [1])):
        result = team_stack.run_job("bootstrap", "--public-url", team_stack.url, "--user", person,
                                    "--users-dir", str(directory / "users"))
        assert result.returncode == 0, result.stderr
        password = envfile.parse((directory / "users" / f"{person}.env").read_text())["MLFLOW_TRACKING_PASSWORD"]
        headers = {"x-mlflow-experiment-id": experiment_id, "Authorization": cfg.basic_auth(person, password)}
        traces[person] = []
        for replies in sessions:
            session_id = f"usage-{uuid.uuid4().hex[:8]}"
            for _ in range(replies):
                spans = otlp.goose_session(session_id)
                status, _ = otlp.export(team_stack.url + "/v1/traces", otlp.encode_export_request(
                    spans, {"service.name": "goose"}), headers)
                assert status == 200
                traces[person].append("tr-" + spans[0].trace_id.hex())
    return traces


def test_each_persons_day_counts_their_sessions_replies_tokens_and_cost(team_stack, sent):
    admin = MlflowClient(team_stack.url, headers={"Authorization": cfg.basic_auth("admin", team_stack.admin_password)})
    rows = {(row["day"], row["person"]): row for row in usage_rows(team_stack)}
    first, second = sent
    # goose_session's two model calls: 1200 + 1450 tokens in, 80 + 35 out.
    for person, sessions, replies in ((first, 2, 3), (second, 1, 1)):
        row = rows[(TODAY, person)]
        assert (row["sessions"], row["replies"], row["input tokens"], row["output tokens"]) == (
            str(sessions), str(replies), str(2650 * replies), str(115 * replies))
        assert float(row["cost (USD)"]) == pytest.approx(stored_cost(admin, sent[person]))
        assert float(row["cost (USD)"]) > 0


def test_each_persons_total_counts_a_session_once(team_stack, sent):
    first, _ = sent
    total = {(row["day"], row["person"]): row for row in usage_rows(team_stack)}[("total", first)]
    assert (total["sessions"], total["replies"]) == ("2", "3")


def test_a_period_before_the_traces_shows_none_of_them(team_stack, sent):
    yesterday = (dt.date.fromisoformat(TODAY) - dt.timedelta(days=1)).isoformat()
    people = {row["person"] for row in usage_rows(team_stack, "--since", "2026-01-01", "--until", yesterday)}
    assert not people & set(sent)


def test_another_experiment_shows_none_of_them(team_stack, sent):
    people = {row["person"] for row in usage_rows(team_stack, "--experiment", "Default")}
    assert not people & set(sent)


def test_the_table_names_the_period_and_how_to_ask_for_another(team_stack, sent):
    result = team_stack.run_job("migrate", command=["python3", "scripts/usage.py", "--since", TODAY])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"Usage {TODAY} to {TODAY} (UTC)"
    assert lines[1].split() == ["day", "person", "sessions", "replies", "input", "tokens", "output", "tokens", "cost",
                                "(USD)"]
    assert any(line.split()[:4] == [TODAY, sent_person, "2", "3"] for line in lines for sent_person in [list(sent)[0]])
    assert lines[-1] == "Another period: make usage SINCE=YYYY-MM-DD UNTIL=YYYY-MM-DD"


def test_in_local_mode_usage_names_no_one(native_stack, bootstrapped):
    experiment_id = str(MlflowClient(native_stack.mlflow_url).get_experiment_by_name("goose-traces")["experiment_id"])
    spans = otlp.goose_session(f"usage-local-{uuid.uuid4().hex[:6]}")
    status, _ = otlp.export(native_stack.mlflow_url + "/v1/traces", otlp.encode_export_request(
        spans, {"service.name": "goose"}), {"x-mlflow-experiment-id": experiment_id})
    assert status == 200
    result = native_stack.run_job("migrate", command=["python3", "scripts/usage.py", "--csv"])
    assert result.returncode == 0, result.stderr
    assert (TODAY, "-") in {(row["day"], row["person"]) for row in csv.DictReader(io.StringIO(result.stdout))}


def test_a_period_that_ends_before_it_starts_is_refused():
    result = run_script("usage.py", "--since", "2026-12-07", "--until", "2026-12-01")
    assert result.returncode == 1
    assert result.stderr == ("usage: error: the period starts (2026-12-07) after it ends (2026-12-01); "
                             "give SINCE before UNTIL\n")
