"""docs/evaluation.md as it is run: goose replies scored and prompts managed through the stack, local and team.

The page's blocks run as written (placeholders filled) with MLflow's own
client, the `python` of a virtual environment holding the server's MLflow
version, against goose-shaped replies sent by OTLP; the LLM judge calls the
OpenAI-compatible stand-in of harness/llm_provider.py.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import guide
from harness.commands import experiment_id_in, run_sourced, source_and_emit
from harness.llm_provider import JUDGEMENT, LlmProvider
from harness.project import ComposeProject, bridge_address
from lib.mlflow_api import MlflowApiError

pytestmark = pytest.mark.docker

PAGE = "docs/evaluation.md"
OUTPUTS = guide.REPO / "build" / "evaluation"
SCORERS = ("tool_calls", "tool_errors", "tokens", "latency_seconds", "did_what_was_asked")
# The emitter's reply: one chat span of 321 + 45 tokens, one tool call.
TOKENS = 366


@pytest.fixture(scope="module")
def provider() -> Iterator[LlmProvider]:
    server = LlmProvider()
    yield server
    server.close()


def kept(name: str, result):
    """The block's output, kept as a test artifact beside the screenshots (docs/evaluation.md quotes them)."""
    OUTPUTS.mkdir(parents=True, exist_ok=True)
    (OUTPUTS / f"{name}.txt").write_text(f"{result.stdout}\n--- stderr ---\n{result.stderr}")
    return result


def reader_env() -> dict[str, str]:
    """The reader's shell: `python` is a virtual environment's with the server's MLflow (this one's)."""
    return {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def page_block(project: ComposeProject, containing: str, env_file: str, values: dict[str, str] | None = None,
               check: bool = True):
    """The page's block holding `containing`, run by the reader after `source env_file` (placeholders `values`)."""
    block = guide.filled(guide.block(PAGE, "sh", containing), {"source .env": f"source {env_file}", **(values or {})})
    return guide.run(project, block, check=check, env=reader_env())


def evaluate(project: ComposeProject, env_file: str, provider: LlmProvider, key: str | None = None,
             check: bool = True):
    """The page's evaluation block, as `env_file`'s owner, judged by `provider` (with `key`, else its own)."""
    return page_block(project, "examples/evaluate_goose.py --last", env_file, {
        "https://api.openai.com/v1": provider.url, "sk-your-key": key or provider.api_key, "--last 20": "--last 3"},
        check=check)


def prompts(project: ComposeProject, env_file: str, check: bool = True):
    return page_block(project, "register_prompt", env_file, check=check)


def commands_in(project: ComposeProject, service: str) -> str:
    """The command lines of every process in the service's container."""
    return project.exec(service, "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")


def send_replies(env_file: Path) -> dict[str, bool]:
    """Three goose replies, the last one's tool call failed: trace id -> failed."""
    failed = [False, False, True]
    return {source_and_emit(env_file, f"eval-{uuid.uuid4().hex[:8]}", failed_tool=flag): flag for flag in failed}


def scored_lines(stdout: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in stdout.splitlines() if line.startswith("tr-")}


def run_id_of(stdout: str) -> str:
    return next(line.split()[2].rstrip(":") for line in stdout.splitlines() if line.startswith("Evaluation run "))


def assessments(client, trace_id: str) -> dict[str, object]:
    info = client.get_trace(trace_id)["trace_info"]
    return {item["assessment_name"]: item["feedback"]["value"]
            for item in info.get("assessments", []) if "feedback" in item}


def prompt_templates(client, name: str = "goose-review") -> list[str]:
    """The template of each version of the prompt, oldest first."""
    templates = []
    while True:
        try:
            reply = client.request("GET", "/api/2.0/mlflow/model-versions/get",
                                   query={"name": name, "version": str(len(templates) + 1)})
        except MlflowApiError as exc:
            assert exc.status == 404, exc
            return templates
        tags = {tag["key"]: tag["value"] for tag in reply["model_version"].get("tags", [])}
        templates.append(tags["mlflow.prompt.text"])


# Local mode ------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_run(local_stack, provider):
    replies = send_replies(local_stack.env_file)
    asked_before = len(provider.requests)
    result = kept("local-evaluate", evaluate(local_stack, ".env", provider))
    return replies, result, len(provider.requests) - asked_before


def test_local_the_evaluation_scores_each_reply_on_stdout(local_run):
    replies, result, _ = local_run
    lines = scored_lines(result.stdout)
    assert set(lines) == set(replies)
    for trace_id, failed in replies.items():
        tool_calls, tool_errors, tokens, latency, judged = lines[trace_id]
        assert (tool_calls, tool_errors, tokens, judged) == ("1", "1" if failed else "0", str(TOKENS), "yes")
        assert 0 < float(latency) < 60  # seconds: the emitter's reply takes milliseconds


def test_local_the_judge_called_the_named_endpoint_once_per_reply(local_run):
    assert local_run[2] == 3


def test_local_the_evaluation_run_is_in_goose_traces_with_each_scorers_mean(local_stack, local_run):
    run = local_stack.client().request("GET", "/api/2.0/mlflow/runs/get", query={"run_id": run_id_of(local_run[1].stdout)})
    assert run["run"]["info"]["experiment_id"] == experiment_id_in(local_stack.env_file)
    metrics = {item["key"]: item["value"] for item in run["run"]["data"].get("metrics", [])}
    assert metrics["tool_errors/mean"] == pytest.approx(1 / 3) and metrics["tokens/mean"] == TOKENS


def test_local_each_reply_carries_every_scorers_assessment(local_stack, local_run):
    replies = local_run[0]
    for trace_id, failed in replies.items():
        found = assessments(local_stack.client(), trace_id)
        assert set(SCORERS) <= set(found), found
        assert found["tool_errors"] == (1 if failed else 0) and found["did_what_was_asked"] == JUDGEMENT["result"]


def test_local_the_score_table_is_the_runs_artifact_in_the_bucket(local_stack, local_run):
    run_id = run_id_of(local_run[1].stdout)
    keys = [key for key in local_stack.artifact_digests() if key.endswith(f"/{run_id}/artifacts/goose_scores.json")]
    assert keys == [f"{experiment_id_in(local_stack.env_file)}/{run_id}/artifacts/goose_scores.json"]


def test_local_a_refused_judge_key_is_named_and_fails_the_command(local_stack, provider):
    send_replies(local_stack.env_file)
    result = evaluate(local_stack, ".env", provider, key="sk-revoked", check=False)
    line = result.stderr.splitlines()[-1]
    assert result.returncode == 1
    assert line == ("evaluate_goose: did_what_was_asked failed on 3 of 3 replies: Failed to invoke judge model: "
                    "Incorrect API key provided")
    assert line in (guide.REPO / PAGE).read_text()


def test_local_the_prompt_block_registers_two_versions_and_loads_the_aliased_one(local_stack):
    result = kept("local-prompts", prompts(local_stack, ".env"))
    assert result.stdout.splitlines() == ["Review this diff for bugs only: + x = 1"]
    assert prompt_templates(local_stack.client()) == ["Review this diff: {{diff}}",
                                                      "Review this diff for bugs only: {{diff}}"]


# Team mode: a person's env file, through the proxy ---------------------------

@pytest.fixture(scope="module")
def team_run(team_deployment, provider):
    replies = send_replies(team_deployment.person_env_file("alice"))
    result = kept("team-evaluate", evaluate(team_deployment, "users/alice.env", provider))
    return replies, result


def test_team_a_person_scores_the_replies_with_their_env_file_alone(team_run):
    replies, result = team_run
    lines = scored_lines(result.stdout)
    assert set(lines) == set(replies)
    assert {tuple(lines[trace_id][:3]) for trace_id in replies} == {("1", "0", str(TOKENS)), ("1", "1", str(TOKENS))}


def test_team_the_evaluation_run_belongs_to_the_person_in_goose_traces(team_deployment, team_run):
    run = team_deployment.client("admin").request("GET", "/api/2.0/mlflow/runs/get",
                                                  query={"run_id": run_id_of(team_run[1].stdout)})["run"]
    assert run["info"]["user_id"] == "alice"
    assert run["info"]["experiment_id"] == experiment_id_in(team_deployment.person_env_file("alice"))


def test_team_each_reply_carries_the_assessments_and_the_table_is_in_the_bucket(team_deployment, team_run):
    replies, result = team_run
    for trace_id in replies:
        assert set(SCORERS) <= set(assessments(team_deployment.client("alice"), trace_id))
    run_id = run_id_of(result.stdout)
    assert [key for key in team_deployment.artifact_digests() if key.endswith(f"/{run_id}/artifacts/goose_scores.json")]


def test_team_a_teammate_evaluates_anothers_replies(team_deployment, provider, team_run):
    """The experiment model: scores are the team's shared record (docs/evaluation.md)."""
    result = evaluate(team_deployment, "users/bob.env", provider)
    assert set(team_run[0]) <= set(scored_lines(result.stdout))


@pytest.fixture(scope="module")
def alices_prompt(team_deployment):
    return prompts(team_deployment, "users/alice.env")


def test_team_the_prompt_block_works_with_a_persons_env_file(alices_prompt):
    assert alices_prompt.stdout.splitlines() == ["Review this diff for bugs only: + x = 1"]


def test_team_a_teammate_loads_anothers_prompt_by_its_alias(team_deployment, alices_prompt):
    result = run_sourced(team_deployment.person_env_file("bob"), sys.executable, "-c",
                         "import mlflow; print(mlflow.genai.load_prompt('prompts:/goose-review@production').template)")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "Review this diff for bugs only: {{diff}}"


def test_team_a_teammate_cannot_add_a_version_to_anothers_prompt(team_deployment, alices_prompt):
    result = prompts(team_deployment, "users/bob.env", check=False)
    assert result.returncode == 1 and result.stderr.splitlines()[-1].endswith(
        "/api/2.0/mlflow/model-versions/create failed with error code 403 != 200. Response body: 'Permission denied'")
    assert len(prompt_templates(team_deployment.client("admin"))) == 2


@pytest.fixture(scope="module")
def ci_account(team_deployment) -> str:
    team_deployment.run("make", "user", "NAME=ci", "PROMPTS=off", f"CA_FILE={team_deployment.ca}")
    return "users/ci.env"


def test_team_an_account_made_with_prompts_off_is_refused_the_registry(team_deployment, ci_account):
    result = kept("team-prompts-off", prompts(team_deployment, ci_account, check=False))
    refused = result.stderr.splitlines()[-1]
    assert result.returncode == 1 and "403" in refused, result.stderr[-2000:]
    assert refused in (guide.REPO / PAGE).read_text()


def test_team_an_account_made_with_prompts_off_still_sends_goose_traces(team_deployment, ci_account):
    trace_id = source_and_emit(team_deployment.directory / ci_account, f"ci-{uuid.uuid4().hex[:6]}")
    assert team_deployment.client("admin").get_trace(trace_id)["trace_info"]["trace_id"] == trace_id


# Automatic evaluation (EVALUATION=on): judges run by MLflow's job runner -----

JUDGE = "did_what_was_asked"


def judge_block(project: ComposeProject):
    """The page's `make judge` block, on the server."""
    return guide.run(project, guide.block(PAGE, "sh", f"make judge NAME={JUDGE} <<"))


def gateway_endpoint(project: ComposeProject, key_file: Path, api_base: str | None = None):
    """The page's `make gateway-endpoint` line, the key in `key_file`; `api_base` for a model on this network."""
    line = guide.block(PAGE, "sh", "make gateway-endpoint").splitlines()[-1]
    values = {"~/.config/openai.key": str(key_file)}
    if api_base:
        values["MODEL=openai:/gpt-4o-mini"] = f"MODEL=openai:/gpt-4o-mini API_BASE={api_base}"
    return guide.run(project, guide.filled(line, values))


def judged(client, trace_id: str) -> list[object]:
    info = client.get_trace(trace_id)["trace_info"]
    return [item["feedback"]["value"] for item in info.get("assessments", [])
            if item["assessment_name"] == JUDGE and item["source"]["source_type"] == "LLM_JUDGE"]


@pytest.fixture(scope="module")
def local_judge_without_the_switch(local_stack, tmp_path_factory):
    """A gateway judge started on the local stack, whose EVALUATION is off (the default); stopped after, so the
    shared stack stays healthy for the doctor suite."""
    key = tmp_path_factory.mktemp("key") / "openai.key"
    key.write_text("sk-never-called\n")
    gateway_endpoint(local_stack, key)
    judge_block(local_stack)
    yield
    local_stack.run("make", "remove-judge", f"NAME={JUDGE}")


def test_off_a_started_judge_is_named_by_make_doctor_with_the_pages_line(local_stack, local_judge_without_the_switch):
    result = local_stack.run("make", "doctor", check=False)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed == [line for line in guide.block(PAGE, "console", "FAIL evaluation").splitlines()]


def test_off_a_stopped_judge_is_not_named(local_stack, local_judge_without_the_switch):
    stopped = local_stack.run("make", "judge", f"NAME={JUDGE}", "SAMPLE=0")
    assert stopped.stdout.startswith(f"Judge {JUDGE!r} stopped on goose-traces"), stopped.stdout
    result = local_stack.run("make", "doctor", check=False)
    assert "ok   evaluation EVALUATION=off; no judge started" in result.stdout.splitlines()


def test_a_judge_on_a_model_other_than_a_gateway_endpoint_is_refused_as_the_page_shows(local_stack):
    command, shown = guide.block(PAGE, "console", "invalid MODEL").splitlines()
    (local_stack.directory / "instructions.txt").write_text("Was {{ trace }} useful?\n")
    result = guide.run(local_stack, command.removeprefix("$ "), check=False)
    assert result.returncode != 0 and shown in result.stderr.splitlines(), result.stderr


def test_off_the_server_runs_no_job_process(local_stack):
    commands = commands_in(local_stack, "mlflow")
    assert "mlflow.server.jobs" not in commands


@pytest.fixture(scope="module")
def team_with_evaluation(team_deployment, tmp_path_factory):
    """The page's server block in team mode (make team-up), the provider on this machine's Docker bridge as a
    model server on the LAN would be, and the page's judge started with make judge."""
    provider = LlmProvider(host=bridge_address())
    with team_deployment.env_file.open("a") as settings:
        settings.write("MLFLOW_GATEWAY_API_BASE_ALLOWED_SCHEMES=http,https\n"
                       "MLFLOW_GATEWAY_API_BASE_ALLOW_PRIVATE_IPS=true\nEVALUATION_DELAY_SECONDS=5\n")
    switch = guide.block(PAGE, "sh", 'echo "EVALUATION=on"').splitlines()[0]
    guide.run(team_deployment, guide.filled(switch, {"make up": "make team-up"}))
    key = tmp_path_factory.mktemp("key") / "openai.key"
    key.write_text(provider.api_key + "\n")
    endpoint = gateway_endpoint(team_deployment, key, api_base=provider.url)
    started = judge_block(team_deployment)
    yield provider, endpoint, started
    provider.close()


def test_on_the_gateway_endpoint_is_made_as_the_page_says(team_with_evaluation):
    _, endpoint, _ = team_with_evaluation
    assert endpoint.stdout.splitlines()[0].startswith("Gateway endpoint 'judge' created: openai:/gpt-4o-mini at http://")


def test_on_make_judge_says_what_the_page_shows(team_with_evaluation):
    _, _, started = team_with_evaluation
    assert started.stdout.splitlines() == guide.block(PAGE, "console", f"Judge {JUDGE!r} started").splitlines()


def test_on_a_judge_started_with_make_judge_scores_bobs_next_goose_reply_unasked(team_deployment, team_with_evaluation):
    provider, _, _ = team_with_evaluation
    trace_id = source_and_emit(team_deployment.person_env_file("bob"), f"online-{uuid.uuid4().hex[:6]}")
    deadline = time.monotonic() + 240  # the scheduler runs every minute; the delay is 5 s here
    while not judged(team_deployment.client("alice"), trace_id) and time.monotonic() < deadline:
        time.sleep(5)
    jobs = [line for line in team_deployment.compose("logs", "mlflow").stdout.splitlines()
            if "job" in line.lower() or "scor" in line.lower() or "gateway" in line.lower()]
    assert judged(team_deployment.client("alice"), trace_id) == [JUDGEMENT["result"]], (
        f"provider asked {len(provider.requests)}, refused {provider.refused}; mlflow's job lines:\n"
        + "\n".join(jobs[-40:]))
    assert provider.requests and provider.requests[-1]["model"] == "gpt-4o-mini"


def test_on_the_job_runner_is_the_executor_engine_beside_the_scheduler(team_deployment, team_with_evaluation):
    commands = commands_in(team_deployment, "mlflow")
    assert "mlflow.server.jobs._executor_runner" in commands and "_periodic_tasks_consumer" in commands
    assert "mlflow.server.jobs._huey_consumer" not in commands


def test_on_the_provider_key_is_stored_encrypted_not_in_plain_text(team_deployment, team_with_evaluation):
    provider, _, _ = team_with_evaluation
    assert provider.api_key not in team_deployment.sql("SELECT * FROM secrets")
    assert provider.api_key not in team_deployment.logs()


def test_on_a_person_cannot_add_a_provider_key(team_deployment, team_with_evaluation):
    status, _, reply = team_deployment.request("POST", "/api/3.0/mlflow/gateway/secrets/create", {
        "Content-Type": "application/json", **team_deployment.auth("bob")}, json.dumps({
            "secret_name": "bobs", "secret_value": {"api_key": "sk-x"}, "provider": "openai"}).encode())
    assert (status, reply) == (403, b"refused at the proxy: AI Gateway keys and endpoints are managed on the "
                                    b"server (docs/evaluation.md)")


def test_on_a_person_cannot_add_a_provider_key_even_inside_the_network(team_deployment, team_with_evaluation):
    """Behind the proxy too: make user's DENY on every key (without it MLflow lets any account create one)."""
    assert team_deployment.inside("bob", "create_gateway_secret('bobs-key', 'openai', 'sk-bob', {})") == "403"


def test_on_a_person_cannot_read_the_provider_keys_even_inside_the_network(team_deployment, team_with_evaluation):
    """Past the proxy, as bob: MLflow answers the key listing (403 with make user's DENY, or key names
    only); the key itself is in no answer."""
    provider, _, _ = team_with_evaluation
    listing = team_deployment.inside("bob", "gateway_secrets()")
    assert listing and provider.api_key not in listing


@pytest.mark.parametrize("path", ["/gateway/judge/mlflow/invocations", "/gateway/mlflow/v1/chat/completions"])
def test_on_a_person_cannot_call_the_gateway_model_with_the_teams_key(team_deployment, team_with_evaluation, path):
    provider, _, _ = team_with_evaluation
    asked = len(provider.requests)
    status, _, reply = team_deployment.request("POST", path, {
        "Content-Type": "application/json", **team_deployment.auth("alice")},
        json.dumps({"model": "judge", "messages": [{"role": "user", "content": "free tokens?"}]}).encode())
    assert (status, reply) == (403, b"refused at the proxy: the AI Gateway is called by the server for judges "
                                    b"(docs/evaluation.md)")
    assert len(provider.requests) == asked


@pytest.mark.parametrize("path", ["/ajax-api/3.0/mlflow/gateway/secrets/create",
                                  "/api/3.0/mlflow/gateway/endpoints/update"])
def test_on_gateway_writes_are_refused_on_every_api_prefix(team_deployment, team_with_evaluation, path):
    status, _, _ = team_deployment.request("POST", path, {"Content-Type": "application/json",
                                                          **team_deployment.auth("bob")}, b"{}")
    assert status == 403


@pytest.mark.parametrize("path", ["/ajax-api/3.0/mlflow/scorer/invoke", "/ajax-api/3.0/mlflow/genai/evaluate/invoke",
                                  "/ajax-api/3.0/mlflow/issues/invoke", "/ajax-api/3.0/mlflow/prompt-optimization/jobs",
                                  "/api/3.0/mlflow/Scorer/invoke/"])
def test_on_judges_on_demand_are_refused_at_the_proxy(team_deployment, team_with_evaluation, path):
    status, _, reply = team_deployment.request("POST", path, {"Content-Type": "application/json",
                                                              **team_deployment.auth("alice")}, b"{}")
    assert (status, reply) == (403, b"refused at the proxy: judges run on the server for traces as they arrive "
                                    b"(docs/evaluation.md)")


def test_on_the_gateway_endpoints_stay_listed_for_the_ui(team_deployment, team_with_evaluation):
    status, _, reply = team_deployment.request("GET", "/ajax-api/3.0/mlflow/gateway/endpoints/list",
                                               team_deployment.auth("bob"))
    assert status == 200


def test_on_a_teammate_cannot_schedule_issue_detection_on_the_teams_key(team_deployment, team_with_evaluation):
    """Found reading for other ways into job functions: MLflow 3.18.0's issue-detection dispatcher runs, as
    the job runner's account, for every experiment carrying a schedule tag, with the model the tag names; the
    tag is an ordinary experiment tag (EDIT on goose-traces suffices). Bob schedules hourly detection on the
    team's gateway endpoint, due the minute after a reply; one dispatcher pass (MLflow's scheduler runs it
    every 15 minutes) is run here by hand. The database refuses the tag (store.refuse_experiment_tags)."""
    from mlflow.genai.discovery.schedule import (DetectionCadence, DetectionSchedule, DetectionScheduleState,
                                                 ScheduleModel)
    from mlflow.utils.mlflow_tags import MLFLOW_ISSUE_DETECTION_SCHEDULE, MLFLOW_ISSUE_DETECTION_SCHEDULE_STATE

    provider, _, _ = team_with_evaluation
    source_and_emit(team_deployment.person_env_file("bob"), f"detected-{uuid.uuid4().hex[:6]}")
    started = len(provider.requests)
    time.sleep(61 - time.time() % 60)  # the reply lies before the occurrence's fire time, inside its window
    fired = time.gmtime(time.time() - 1)
    schedule = DetectionSchedule(cadence=DetectionCadence.HOURLY, model=ScheduleModel(endpoint_name="judge"),
                                 fire_time=time.strftime("%H:%M", fired))
    due = DetectionScheduleState(last_fire_time_ms=int(time.time() * 1000) - 3 * 3600 * 1000, timing=schedule.timing)
    goose_traces = team_deployment.client("admin").get_experiment_by_name("goose-traces")["experiment_id"]
    answers = {key: team_deployment.request("POST", "/api/2.0/mlflow/experiments/set-experiment-tag", {
        "Content-Type": "application/json", **team_deployment.auth("bob")}, json.dumps({
            "experiment_id": goose_traces, "key": key, "value": value}).encode())
               for key, value in ((MLFLOW_ISSUE_DETECTION_SCHEDULE, schedule.to_json()),
                                  (MLFLOW_ISSUE_DETECTION_SCHEDULE_STATE, due.to_json()))}
    dispatcher = ("import os; os.environ['_MLFLOW_SERVER_FILE_STORE'] = os.environ['MLFLOW_BACKEND_STORE_URI']\n"
                  "from mlflow.genai.discovery.scheduler import run_issue_detection_scheduler\n"
                  "run_issue_detection_scheduler()")
    team_deployment.exec("mlflow", "env", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true",
                         "MLFLOW_SERVER_JOB_EXECUTION_ENGINE=executor", "docker-entrypoint.sh", "python3", "-c",
                         dispatcher)
    # The pass submits each due schedule's job before it returns (run_issue_detection_scheduler): no job row
    # now means no detection later. (With the guard removed: 1 job here, then 2 calls to the provider.)
    # alice's judge scores the reply above meanwhile: model calls are counted without its own.
    def detections() -> list[dict]:
        return [request for request in provider.requests[started:]
                if "Did it do what was asked" not in json.dumps(request)]

    jobs = team_deployment.sql("SELECT count(*) FROM jobs WHERE job_name = 'scheduled_issue_detection'")
    status, _, reply = answers[MLFLOW_ISSUE_DETECTION_SCHEDULE]
    assert (len(detections()), jobs) == (0, "0"), (status, reply)
    assert status == 400 and b"is refused by this stack" in reply, (status, reply)
