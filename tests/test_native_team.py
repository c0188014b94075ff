"""Team mode's accounts, natively: MLflow's basic-auth app with compose.team.yaml's settings.

The server runs through the image's entrypoint with the merged compose files'
environment; accounts are made by the bootstrap exactly as `make user` runs it.
TLS and the proxy are covered by the Docker tests.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from lib import otlp
from harness.commands import run_script, source_and_emit
from lib import stack_config as cfg
from lib.mlflow_api import MlflowApiError, MlflowClient


def user_file(team, tmp_path: Path, name: str, *args: str):
    """`make user NAME=...`: the bootstrap job with --user, writing into tmp_path/users."""
    return team.run_job("bootstrap", "--public-url", team.url, "--user", name,
                        "--users-dir", str(tmp_path / "users"), *args)


def env_values(path: Path) -> dict[str, str]:
    from lib import envfile

    return envfile.parse(path.read_text())


def as_user(team, values: dict[str, str]) -> MlflowClient:
    return MlflowClient(team.url, headers={
        "Authorization": cfg.basic_auth(values["MLFLOW_TRACKING_USERNAME"], values["MLFLOW_TRACKING_PASSWORD"])})


def admin(team) -> MlflowClient:
    return MlflowClient(team.url, headers={"Authorization": cfg.basic_auth("admin", team.admin_password)})


def send(team, headers: dict[str, str]) -> int:
    body = otlp.encode_export_request(otlp.goose_session("team"), {"service.name": "goose"})
    status, _ = otlp.export(team.url + "/v1/traces", body, headers)
    return status


@pytest.fixture(scope="module")
def alice(team_stack, tmp_path_factory):
    directory = tmp_path_factory.mktemp("team")
    result = user_file(team_stack, directory, "alice")
    assert result.returncode == 0, result.stderr
    return directory / "users" / "alice.env", result


def experiment_id(team) -> str:
    return str(admin(team).get_experiment_by_name("goose-traces")["experiment_id"])


def test_team_bootstrap_creates_the_experiment_and_no_env_file(team_stack, tmp_path):
    result = team_stack.run_job("bootstrap", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Experiment: goose-traces" in result.stdout
    assert [path.name for path in tmp_path.rglob("*")] == ["users", ".pinned-experiments.json"]


def test_team_bootstrap_pins_the_experiments_id_in_users(team_stack, tmp_path):
    assert team_stack.run_job("bootstrap", cwd=tmp_path).returncode == 0
    pins = json.loads((tmp_path / "users" / ".pinned-experiments.json").read_text())
    assert pins == {"goose-traces": experiment_id(team_stack)}
    assert (tmp_path / "users" / ".pinned-experiments.json").stat().st_mode & 0o777 == 0o600


def test_make_user_refuses_when_the_name_now_belongs_to_another_experiment(team_stack, tmp_path):
    (tmp_path / "users").mkdir(mode=0o700)
    (tmp_path / "users" / ".pinned-experiments.json").write_text('{"goose-traces": "999999"}')
    refused = user_file(team_stack, tmp_path, "lena")
    assert refused.returncode == 1
    assert (f"experiment 'goose-traces' is now id {experiment_id(team_stack)}, but the stack made it as id 999999"
            in refused.stderr)
    assert not (tmp_path / "users" / "lena.env").exists() and admin(team_stack).get_user("lena") is None


def test_admin_password_is_generated_not_a_default(team_stack):
    assert len(team_stack.admin_password) >= 12
    assert admin(team_stack).get_user("admin")["is_admin"]
    with pytest.raises(MlflowApiError) as refused:
        MlflowClient(team_stack.url, headers={"Authorization": cfg.basic_auth("admin", "password1234")}).current_user()
    assert refused.value.status == 401


def test_otlp_without_credentials_is_refused(team_stack):
    assert send(team_stack, {"x-mlflow-experiment-id": experiment_id(team_stack)}) == 401


def test_otlp_with_a_wrong_password_is_refused(team_stack, alice):
    headers = {"x-mlflow-experiment-id": experiment_id(team_stack),
               "Authorization": cfg.basic_auth("alice", "not-the-password")}
    assert send(team_stack, headers) == 401


def test_user_env_file_is_private_and_holds_the_goose_settings(alice):
    path, _ = alice
    values = env_values(path)
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    assert values["OTEL_EXPORTER_OTLP_HEADERS"].startswith("x-mlflow-experiment-id=")
    assert ",Authorization=Basic%20" in values["OTEL_EXPORTER_OTLP_HEADERS"]
    assert values["MLFLOW_TRACKING_USERNAME"] == "alice" and values["MLFLOW_TRACKING_URI"]


def test_the_password_is_never_printed(alice):
    path, result = alice
    assert env_values(path)["MLFLOW_TRACKING_PASSWORD"] not in result.stdout + result.stderr


def test_user_env_file_sourced_by_the_sdk_lands_a_trace_the_user_can_read(team_stack, alice):
    path, _ = alice
    trace_id = source_and_emit(path, f"team-{uuid.uuid4().hex[:6]}")
    trace = as_user(team_stack, env_values(path)).get_trace(trace_id)
    assert trace["trace_info"]["trace_location"]["mlflow_experiment"]["experiment_id"] == experiment_id(team_stack)


def test_user_cannot_write_to_another_experiment(team_stack, alice):
    other = admin(team_stack).create_experiment(f"private-{uuid.uuid4().hex[:6]}")
    values = env_values(alice[0])
    headers = {"x-mlflow-experiment-id": other, "Authorization": cfg.basic_auth("alice", values["MLFLOW_TRACKING_PASSWORD"])}
    assert send(team_stack, headers) == 403


def test_user_cannot_read_another_experiment(team_stack, alice):
    other = admin(team_stack).create_experiment(f"hidden-{uuid.uuid4().hex[:6]}")
    with pytest.raises(MlflowApiError) as refused:
        as_user(team_stack, env_values(alice[0])).get_experiment(other)
    assert refused.value.status == 403


def test_user_cannot_call_an_admin_endpoint(team_stack, alice):
    with pytest.raises(MlflowApiError) as refused:
        as_user(team_stack, env_values(alice[0])).create_user("mallory", "x" * 16)
    assert refused.value.status == 403


def test_rerun_keeps_the_account_and_the_file(team_stack, tmp_path):
    first = user_file(team_stack, tmp_path, "bob")
    assert first.returncode == 0, first.stderr
    path = tmp_path / "users" / "bob.env"
    before = path.read_bytes()
    again = user_file(team_stack, tmp_path, "bob")
    assert again.returncode == 0, again.stderr
    assert "(kept;" in again.stdout and path.read_bytes() == before


def test_rotate_issues_a_new_password_and_the_old_one_fails(team_stack, tmp_path):
    assert user_file(team_stack, tmp_path, "carol").returncode == 0
    path = tmp_path / "users" / "carol.env"
    old = env_values(path)
    rotated = user_file(team_stack, tmp_path, "carol", "--rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = env_values(path)
    assert new["MLFLOW_TRACKING_PASSWORD"] != old["MLFLOW_TRACKING_PASSWORD"]
    with pytest.raises(MlflowApiError) as refused:
        as_user(team_stack, old).current_user()
    assert refused.value.status == 401
    assert as_user(team_stack, new).current_user()


def test_remove_user_deletes_the_account_and_the_file(team_stack, tmp_path):
    assert user_file(team_stack, tmp_path, "dave").returncode == 0
    path = tmp_path / "users" / "dave.env"
    values = env_values(path)
    removed = team_stack.run_job("bootstrap", "--remove-user", "dave", "--users-dir", str(tmp_path / "users"))
    assert removed.returncode == 0, removed.stderr
    assert not path.exists()
    with pytest.raises(MlflowApiError) as refused:
        as_user(team_stack, values).current_user()
    assert refused.value.status == 401


def test_existing_account_without_its_file_asks_for_rotate(team_stack, tmp_path):
    assert user_file(team_stack, tmp_path, "erin").returncode == 0
    (tmp_path / "users" / "erin.env").unlink()
    again = user_file(team_stack, tmp_path, "erin")
    assert again.returncode == 1 and "--rotate" in again.stderr
    assert not (tmp_path / "users" / "erin.env").exists()


def test_a_file_whose_password_no_longer_works_asks_for_rotate_and_is_left_alone(team_stack, tmp_path):
    """A rerun keeps the file's password only after logging in with it: a wrong one would be handed on."""
    assert user_file(team_stack, tmp_path, "mona").returncode == 0
    path = tmp_path / "users" / "mona.env"
    path.write_text(path.read_text().replace(env_values(path)["MLFLOW_TRACKING_PASSWORD"], "not-her-password-123"))
    edited = path.read_text()
    again = user_file(team_stack, tmp_path, "mona")
    assert again.returncode == 1 and "holds no working password; rerun with --rotate" in again.stderr
    assert path.read_text() == edited


@pytest.mark.parametrize("name", ["Alice", "../etc", "a b", ""])
def test_invalid_user_name_is_refused_before_anything_changes(team_stack, tmp_path, name):
    result = user_file(team_stack, tmp_path, name)
    assert result.returncode != 0 and "user name" in result.stderr
    assert not (tmp_path / "users").exists()


def test_rotate_without_user_is_a_usage_error(team_stack):
    result = team_stack.run_job("bootstrap", "--rotate")
    assert result.returncode == 2 and "--rotate goes with --user" in result.stderr


def test_bootstrap_without_admin_credentials_is_refused(team_stack, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": ""}
    result = run_script("bootstrap.py", "--tracking-uri", team_stack.url, "--user", "frank",
                              "--users-dir", str(tmp_path / "users"), env=env)
    assert result.returncode == 1 and "401" in result.stderr


def test_rerun_of_make_user_repairs_a_changed_grant(team_stack, tmp_path):
    assert user_file(team_stack, tmp_path, "judy").returncode == 0
    values = env_values(tmp_path / "users" / "judy.env")
    client = admin(team_stack)
    client.revoke("judy", "experiment", experiment_id(team_stack))
    client.grant("judy", "experiment", experiment_id(team_stack), "READ")
    headers = {"x-mlflow-experiment-id": experiment_id(team_stack),
               "Authorization": cfg.basic_auth("judy", values["MLFLOW_TRACKING_PASSWORD"])}
    assert send(team_stack, headers) == 403
    assert user_file(team_stack, tmp_path, "judy").returncode == 0
    assert client.permission("judy", "experiment", experiment_id(team_stack)) == "EDIT"
    assert send(team_stack, headers) == 200


def test_granting_to_a_missing_user_is_an_error_not_ignored(team_stack):
    with pytest.raises(MlflowApiError) as missing:
        admin(team_stack).grant(f"nobody-{uuid.uuid4().hex[:6]}", "experiment", experiment_id(team_stack), "EDIT")
    assert missing.value.status == 404


def test_remove_user_by_a_non_admin_is_refused_and_keeps_the_file(team_stack, alice):
    path, _ = alice
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": "alice",
           "MLFLOW_TRACKING_PASSWORD": env_values(path)["MLFLOW_TRACKING_PASSWORD"]}
    refused = run_script("bootstrap.py", "--tracking-uri", team_stack.url, "--remove-user", "alice",
                         "--env-file", str(path), env=env)
    assert refused.returncode == 1 and "403" in refused.stderr
    assert path.exists() and admin(team_stack).get_user("alice") is not None


def test_remove_user_of_another_account_by_a_non_admin_is_refused_and_keeps_the_file(team_stack, alice, tmp_path):
    """Reading another account answers 403 to a non-admin: that is a refusal, not "no such user" (which would
    delete the env file, exit 0 and leave the account live)."""
    assert user_file(team_stack, tmp_path, "frank").returncode == 0
    franks = tmp_path / "users" / "frank.env"
    env = {**os.environ, "MLFLOW_TRACKING_USERNAME": "alice",
           "MLFLOW_TRACKING_PASSWORD": env_values(alice[0])["MLFLOW_TRACKING_PASSWORD"]}
    refused = run_script("bootstrap.py", "--tracking-uri", team_stack.url, "--remove-user", "frank",
                         "--env-file", str(franks), env=env)
    assert refused.returncode == 1 and "403" in refused.stderr
    assert franks.exists() and admin(team_stack).get_user("frank") is not None


def test_a_user_file_that_is_not_text_is_refused_before_the_account_exists(team_stack, tmp_path):
    (tmp_path / "users").mkdir(mode=0o700)
    (tmp_path / "users" / "gina.env").write_bytes(b"\xff\xfe")
    refused = user_file(team_stack, tmp_path, "gina")
    assert refused.returncode == 1 and "is not UTF-8 text" in refused.stderr
    assert admin(team_stack).get_user("gina") is None


def test_remove_user_deletes_the_file_named_by_env_file_and_no_other(team_stack, tmp_path):
    named = tmp_path / "elsewhere" / "hank.env"
    named.parent.mkdir()
    where = ("--users-dir", str(tmp_path / "users"), "--env-file", str(named))
    assert team_stack.run_job("bootstrap", "--public-url", team_stack.url, "--user", "hank", *where).returncode == 0
    other = tmp_path / "users" / "hank.env"
    other.parent.mkdir(exist_ok=True)
    other.write_text("mine\n")
    assert team_stack.run_job("bootstrap", "--remove-user", "hank", *where).returncode == 0
    assert not named.exists() and other.read_text() == "mine\n"


def test_remove_user_deletes_the_file_of_an_account_already_gone(team_stack, tmp_path):
    assert user_file(team_stack, tmp_path, "ivan").returncode == 0
    admin(team_stack).delete_user("ivan")
    removed = team_stack.run_job("bootstrap", "--remove-user", "ivan", "--users-dir", str(tmp_path / "users"))
    assert removed.returncode == 0 and "no such user" in removed.stdout
    assert not (tmp_path / "users" / "ivan.env").exists()


def test_make_user_refuses_an_experiment_a_teammate_manages(team_stack, alice, tmp_path):
    decoy = f"decoy-{uuid.uuid4().hex[:6]}"
    experiment = as_user(team_stack, env_values(alice[0])).create_experiment(decoy)  # alice now MANAGEs it
    refused = user_file(team_stack, tmp_path, "kate", "--experiment", decoy)
    assert refused.returncode == 1
    assert (f"experiment {decoy!r} (id {experiment}) is managed by alice, not by the stack"
            in refused.stderr)
    assert not (tmp_path / "users" / "kate.env").exists() and admin(team_stack).get_user("kate") is None


# Prompts: what make user grants (docs/evaluation.md).

def register_prompt(team, values: dict[str, str], name: str, template: str) -> tuple[int, str]:
    """POST the registry call mlflow.genai.register_prompt makes first; (status, reply)."""
    client = as_user(team, values)
    try:
        client.request("POST", "/api/2.0/mlflow/registered-models/create", {
            "name": name, "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]})
    except MlflowApiError as exc:
        return exc.status, str(exc)
    client.request("POST", "/api/2.0/mlflow/model-versions/create", {
        "name": name, "source": "prompt-template", "tags": [
            {"key": "mlflow.prompt.is_prompt", "value": "true"}, {"key": "mlflow.prompt.text", "value": template}]})
    return 200, ""


def prompt_template(team, values: dict[str, str], name: str) -> tuple[int, str]:
    try:
        reply = as_user(team, values).request("GET", "/api/2.0/mlflow/model-versions/get",
                                              query={"name": name, "version": "1"})
    except MlflowApiError as exc:
        return exc.status, ""
    tags = {tag["key"]: tag["value"] for tag in reply["model_version"].get("tags", [])}
    return 200, tags["mlflow.prompt.text"]


@pytest.fixture(scope="module")
def people(team_stack, tmp_path_factory):
    """kim and lee with make user's default grants, ci with PROMPTS=off."""
    directory = tmp_path_factory.mktemp("prompts")
    for name, extra in (("kim", ()), ("lee", ()), ("ci", ("--prompts", "off"))):
        result = user_file(team_stack, directory, name, *extra)
        assert result.returncode == 0, result.stderr
    return {name: env_values(directory / "users" / f"{name}.env") for name in ("kim", "lee", "ci")}


def test_an_account_registers_a_prompt_and_a_teammate_loads_it(team_stack, people):
    name = f"summarise-{uuid.uuid4().hex[:6]}"
    assert register_prompt(team_stack, people["kim"], name, "Summarise {{diff}}")[0] == 200
    assert prompt_template(team_stack, people["lee"], name) == (200, "Summarise {{diff}}")


def test_a_teammate_cannot_add_a_version_to_anothers_prompt(team_stack, people):
    name = f"review-{uuid.uuid4().hex[:6]}"
    assert register_prompt(team_stack, people["kim"], name, "Review {{diff}}")[0] == 200
    with pytest.raises(MlflowApiError) as refused:
        as_user(team_stack, people["lee"]).request("POST", "/api/2.0/mlflow/model-versions/create", {
            "name": name, "source": "prompt-template", "tags": [
                {"key": "mlflow.prompt.is_prompt", "value": "true"}, {"key": "mlflow.prompt.text", "value": "pwned"}]})
    assert refused.value.status == 403
    assert prompt_template(team_stack, people["kim"], name) == (200, "Review {{diff}}")


def test_an_account_made_with_prompts_off_cannot_register_a_prompt(team_stack, people):
    name = f"ci-{uuid.uuid4().hex[:6]}"
    status, _ = register_prompt(team_stack, people["ci"], name, "x")
    assert status == 403
    assert admin(team_stack).request("GET", "/api/2.0/mlflow/registered-models/search",
                                     query={"filter": f"name = '{name}'"}).get("registered_models") is None


def test_an_account_made_with_prompts_off_cannot_read_the_teams_prompts(team_stack, people):
    name = f"shared-{uuid.uuid4().hex[:6]}"
    assert register_prompt(team_stack, people["kim"], name, "Shared {{x}}")[0] == 200
    assert prompt_template(team_stack, people["ci"], name)[0] == 403


def test_an_account_made_with_prompts_off_still_sends_traces(team_stack, people):
    headers = {"x-mlflow-experiment-id": experiment_id(team_stack),
               "Authorization": cfg.basic_auth("ci", people["ci"]["MLFLOW_TRACKING_PASSWORD"])}
    assert send(team_stack, headers) == 200


def test_rerunning_make_user_with_prompts_on_gives_them_back(team_stack, tmp_path):
    assert user_file(team_stack, tmp_path, "moe", "--prompts", "off").returncode == 0
    result = user_file(team_stack, tmp_path, "moe", "--prompts", "on")
    assert result.returncode == 0 and "register prompts and read the team's" in result.stdout
    values = env_values(tmp_path / "users" / "moe.env")
    assert register_prompt(team_stack, values, f"moe-{uuid.uuid4().hex[:6]}", "x")[0] == 200


def test_make_user_says_when_an_account_has_no_prompts(team_stack, tmp_path):
    result = user_file(team_stack, tmp_path, "nat", "--prompts", "off")
    assert result.returncode == 0 and "(created; may write to goose-traces only, no prompts)" in result.stdout


def test_prompts_without_user_is_a_usage_error(team_stack):
    result = team_stack.run_job("bootstrap", "--prompts", "off")
    assert result.returncode == 2 and "--prompts goes with --user" in result.stderr


def test_a_password_rotation_keeps_an_account_without_prompts_so(team_stack, tmp_path):
    assert user_file(team_stack, tmp_path, "ola", "--prompts", "off").returncode == 0
    result = user_file(team_stack, tmp_path, "ola", "--rotate")
    assert result.returncode == 0 and "(password rotated; may write to goose-traces only, no prompts)" in result.stdout
    values = env_values(tmp_path / "users" / "ola.env")
    assert register_prompt(team_stack, values, f"ola-{uuid.uuid4().hex[:6]}", "x")[0] == 403


def test_every_account_is_denied_the_gateways_provider_keys(team_stack, tmp_path):
    """Inside the network too (the proxy refuses the route as well): make user's DENY on every key."""
    assert user_file(team_stack, tmp_path, "pia").returncode == 0
    values = env_values(tmp_path / "users" / "pia.env")
    with pytest.raises(MlflowApiError) as refused:
        as_user(team_stack, values).create_gateway_secret("pias-key", "openai", "sk-pia", {})
    assert refused.value.status == 403
    assert [s for s in admin(team_stack).gateway_secrets() if s["secret_name"] == "pias-key"] == []
