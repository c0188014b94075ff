"""mlflow/docker-entrypoint.sh: secrets from files, Host allow-list and CORS from the public URL."""

from __future__ import annotations

import os
import subprocess

import pytest
from harness.compose_file import load_compose
from harness.native import ENTRYPOINT


@pytest.fixture(autouse=True)
def fake_mlflow(tmp_path, monkeypatch):
    """An `mlflow` on PATH that prints the environment it was started with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mlflow").write_text("#!/bin/sh\nenv\n")
    (bin_dir / "mlflow").chmod(0o755)
    monkeypatch.setenv("FAKE_BIN", str(bin_dir))


def run_entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    command = command or ("mlflow", "server")
    return subprocess.run(["sh", str(ENTRYPOINT), *command], capture_output=True, text=True,
                          env={"PATH": f"{os.environ['FAKE_BIN']}:/usr/bin:/bin", **env}, timeout=30)


def exported(result: subprocess.CompletedProcess) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def test_secret_is_read_from_its_file_and_the_file_variable_is_unset(tmp_path):
    (tmp_path / "pw").write_text("s3cret-value")
    env = exported(run_entrypoint({"PGPASSWORD_FILE": str(tmp_path / "pw")}))
    assert env["PGPASSWORD"] == "s3cret-value" and "PGPASSWORD_FILE" not in env


def test_secret_value_is_not_printed(tmp_path):
    (tmp_path / "pw").write_text("s3cret-value")
    result = run_entrypoint({"AWS_SECRET_ACCESS_KEY_FILE": str(tmp_path / "pw"),
                             "MLFLOW_PUBLIC_URL": "http://localhost:5000"}, "true")
    assert "s3cret-value" not in result.stdout + result.stderr


def test_variable_and_its_file_together_are_refused(tmp_path):
    (tmp_path / "pw").write_text("x")
    result = run_entrypoint({"PGPASSWORD": "y", "PGPASSWORD_FILE": str(tmp_path / "pw")}, "true")
    assert result.returncode == 1 and "both PGPASSWORD and PGPASSWORD_FILE" in result.stderr


def test_missing_secret_file_is_a_clear_error(tmp_path):
    result = run_entrypoint({"PGPASSWORD_FILE": str(tmp_path / "absent")}, "true")
    assert result.returncode == 1 and "not readable" in result.stderr


def test_allowed_hosts_cover_loopback_service_name_and_public_host():
    env = exported(run_entrypoint({"MLFLOW_PUBLIC_URL": "https://mlflow.example.com/"}))
    hosts = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert {"localhost:*", "127.0.0.1:*", "mlflow", "mlflow:*", "mlflow.example.com", "mlflow.example.com:*"} <= set(hosts)
    assert env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] == "https://mlflow.example.com"


def test_public_url_with_port_keeps_the_port_in_the_origin():
    env = exported(run_entrypoint({"MLFLOW_PUBLIC_URL": "http://10.0.0.5:8080"}))
    assert "10.0.0.5:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] == "http://10.0.0.5:8080"


def test_ipv6_public_host_is_escaped_for_mlflow_pattern_matching():
    env = exported(run_entrypoint({"MLFLOW_PUBLIC_URL": "http://[fd00::5]:5000"}))
    hosts = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert "[fd00::5]" in hosts and "[[]fd00::5]:*" in hosts


@pytest.mark.parametrize("name", ["MLFLOW_SERVER_ALLOWED_HOSTS", "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"])
def test_explicit_settings_win_over_derived_ones(name):
    env = exported(run_entrypoint({name: "custom", "MLFLOW_PUBLIC_URL": "http://localhost:5000"}))
    assert env[name] == "custom"


def test_public_host_already_listed_is_not_repeated():
    env = exported(run_entrypoint({"MLFLOW_PUBLIC_URL": "http://localhost:5000"}))
    hosts = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert len(hosts) == len(set(hosts))


def test_jobs_get_secrets_but_no_server_settings(tmp_path):
    (tmp_path / "key").write_text("AKIAEXAMPLE")
    result = run_entrypoint({"AWS_ACCESS_KEY_ID_FILE": str(tmp_path / "key"),
                             "MLFLOW_PUBLIC_URL": "http://localhost:5000"}, "env")
    env = exported(result)
    assert env["AWS_ACCESS_KEY_ID"] == "AKIAEXAMPLE"
    assert "MLFLOW_SERVER_ALLOWED_HOSTS" not in env and result.stderr == ""


def test_team_mode_without_an_auth_database_refuses_to_start():
    result = run_entrypoint({"MLFLOW_REQUIRE_AUTH": "true", "MLFLOW_AUTH_DATABASE_URI": ""})
    assert result.returncode == 1 and "team mode needs accounts" in result.stderr


def test_auth_database_turns_the_basic_auth_app_on_with_no_default_access(tmp_path):
    (tmp_path / "probe").mkdir()
    probe = tmp_path / "probe" / "mlflow"
    probe.write_text('#!/bin/sh\necho "args: $*"\ncat "$MLFLOW_AUTH_CONFIG_PATH"\n')
    probe.chmod(0o755)
    result = subprocess.run(["sh", str(ENTRYPOINT), "mlflow", "server"], capture_output=True, text=True, env={
        "PATH": f"{tmp_path / 'probe'}:/usr/bin:/bin", "MLFLOW_REQUIRE_AUTH": "true",
        "MLFLOW_AUTH_DATABASE_URI": "postgresql+psycopg2://mlflow@db:5432/mlflow_auth"}, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "args: server --app-name=basic-auth" in result.stdout
    assert "default_permission = NO_PERMISSIONS" in result.stdout
    assert "database_uri = postgresql+psycopg2://mlflow@db:5432/mlflow_auth" in result.stdout


def test_empty_s3_endpoint_is_dropped_so_boto3_uses_aws():
    env = exported(run_entrypoint({"MLFLOW_S3_ENDPOINT_URL": ""}))
    assert "MLFLOW_S3_ENDPOINT_URL" not in env


def allowed_hosts(env: dict[str, str]) -> list[str]:
    return exported(run_entrypoint(env))["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


def auth_probe(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The entrypoint starting an `mlflow` that prints its arguments and the auth ini it was given."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir(exist_ok=True)
    (probe_dir / "mlflow").write_text('#!/bin/sh\necho "args: $*"\n'
                                      '[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ] || cat "$MLFLOW_AUTH_CONFIG_PATH"\n')
    (probe_dir / "mlflow").chmod(0o755)
    return subprocess.run(["sh", str(ENTRYPOINT), "mlflow", "server"], capture_output=True, text=True,
                          env={"PATH": f"{probe_dir}:/usr/bin:/bin", **env}, timeout=30)


AUTH_DB = {"MLFLOW_AUTH_DATABASE_URI": "postgresql+psycopg2://mlflow@db:5432/mlflow_auth"}


def test_ipv6_loopback_is_allowed_bare_and_with_any_port():
    hosts = allowed_hosts({})
    assert "[::1]" in hosts and "[[]::1]:*" in hosts


def test_derived_host_list_without_a_public_url_is_loopback_and_the_service_name():
    assert allowed_hosts({}) == ["localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", "[::1]", "[[]::1]:*",
                                 "mlflow", "mlflow:*"]


def test_ipv6_public_host_equal_to_loopback_is_not_repeated():
    hosts = allowed_hosts({"MLFLOW_PUBLIC_URL": "http://[::1]:5000"})
    assert hosts.count("[::1]") == 1 and hosts.count("[[]::1]:*") == 1


def test_empty_secret_file_is_refused_naming_the_file(tmp_path):
    (tmp_path / "pw").write_text("")
    result = run_entrypoint({"MLFLOW_AUTH_ADMIN_PASSWORD_FILE": str(tmp_path / "pw")}, "true")
    assert result.returncode == 1
    assert result.stderr == (f"docker-entrypoint: error: {tmp_path / 'pw'} (MLFLOW_AUTH_ADMIN_PASSWORD_FILE) "
                             "is empty\n")


def test_public_url_with_a_path_gives_the_bare_host_and_the_origin_without_the_path():
    env = exported(run_entrypoint({"MLFLOW_PUBLIC_URL": "https://h.example/mlflow/"}))
    hosts = env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert hosts[-2:] == ["h.example", "h.example:*"]
    assert env["MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"] == "https://h.example"


def test_admin_username_defaults_to_admin_in_the_auth_ini(tmp_path):
    result = auth_probe(tmp_path, AUTH_DB)
    assert result.returncode == 0, result.stderr
    assert "admin_username = admin" in result.stdout.splitlines()


def test_admin_username_can_be_overridden(tmp_path):
    result = auth_probe(tmp_path, {**AUTH_DB, "MLFLOW_AUTH_ADMIN_USERNAME": "root-admin"})
    assert result.returncode == 0, result.stderr
    assert "admin_username = root-admin" in result.stdout.splitlines()


def test_default_permission_can_be_overridden(tmp_path):
    result = auth_probe(tmp_path, {**AUTH_DB, "MLFLOW_AUTH_DEFAULT_PERMISSION": "READ"})
    assert result.returncode == 0, result.stderr
    assert "default_permission = READ" in result.stdout.splitlines()


def test_auth_ini_is_an_mlflow_section(tmp_path):
    result = auth_probe(tmp_path, AUTH_DB)
    assert result.stdout.splitlines()[1:] == [
        "[mlflow]", "default_permission = NO_PERMISSIONS",
        "database_uri = postgresql+psycopg2://mlflow@db:5432/mlflow_auth", "admin_username = admin"]


def test_empty_auth_database_uri_is_dropped_and_no_accounts_are_switched_on(tmp_path):
    result = auth_probe(tmp_path, {"MLFLOW_AUTH_DATABASE_URI": ""})
    assert (result.returncode, result.stdout) == (0, "args: server\n")
    env = exported(run_entrypoint({"MLFLOW_AUTH_DATABASE_URI": ""}))
    assert "MLFLOW_AUTH_DATABASE_URI" not in env and "MLFLOW_AUTH_CONFIG_PATH" not in env


def file_variables_of_the_mlflow_image() -> list[str]:
    """Every X of an X_FILE that a compose file gives a container of the MLflow image (whose entrypoint reads it)."""
    settings = {"MLFLOW_PUBLIC_URL": "https://m.example", "EXTERNAL_DATABASE_URI": "postgresql+psycopg2://r@h/d",
                "EXTERNAL_ARTIFACTS_DESTINATION": "s3://b/p"}
    image = load_compose()["services"]["mlflow"]["image"]
    names = set()
    for team, external in ((False, False), (True, False), (False, True), (True, True)):
        for service in load_compose(settings, team, external)["services"].values():
            if service["image"] == image:
                names |= {key.removesuffix("_FILE") for key in service.get("environment") or {} if key.endswith("_FILE")}
    return sorted(names)


@pytest.mark.parametrize("name", file_variables_of_the_mlflow_image())
def test_every_secret_variable_is_read_from_its_file(tmp_path, name):
    (tmp_path / "secret").write_text(f"value-of-{name}")
    env = exported(run_entrypoint({f"{name}_FILE": str(tmp_path / "secret")}))
    assert env[name] == f"value-of-{name}" and f"{name}_FILE" not in env


def test_service_name_can_be_overridden_in_the_host_list():
    hosts = allowed_hosts({"MLFLOW_SERVICE_NAME": "tracking"})
    assert hosts[-2:] == ["tracking", "tracking:*"] and "mlflow" not in hosts


# EVALUATION: MLflow's job runner for online judges (docs/evaluation.md).

@pytest.mark.parametrize("value", [None, "off"])
def test_evaluation_off_runs_no_job_runner(value):
    env = exported(run_entrypoint({"EVALUATION": value} if value else {}))
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert "MLFLOW_SERVER_JOB_EXECUTION_ENGINE" not in env


def test_evaluation_on_runs_the_executor_engine_with_one_worker_per_job():
    env = exported(run_entrypoint({"EVALUATION": "on"}))
    assert (env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"], env["MLFLOW_SERVER_JOB_EXECUTION_ENGINE"]) == ("true", "executor")
    assert (env["MLFLOW_SERVER_ONLINE_SCORING_MAX_WORKERS"], env["MLFLOW_SERVER_JUDGE_INVOKE_MAX_WORKERS"]) == ("1", "1")


def test_evaluation_on_keeps_worker_counts_set_by_hand():
    env = exported(run_entrypoint({"EVALUATION": "on", "MLFLOW_SERVER_ONLINE_SCORING_MAX_WORKERS": "3"}))
    assert env["MLFLOW_SERVER_ONLINE_SCORING_MAX_WORKERS"] == "3"


@pytest.mark.parametrize("value", ["true", "yes", "ON"])
def test_evaluation_other_than_on_or_off_is_refused_naming_the_fix(value):
    result = run_entrypoint({"EVALUATION": value})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"docker-entrypoint: error: EVALUATION={value}: use on or off (docs/evaluation.md)"


def test_evaluation_empty_means_off():
    assert exported(run_entrypoint({"EVALUATION": ""}))["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_jobs_do_not_get_the_job_runner_settings():
    env = exported(run_entrypoint({"EVALUATION": "on"}, "mlflow", "gc"))
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" not in env


TEAM = {"MLFLOW_AUTH_DATABASE_URI": "postgresql+psycopg2://mlflow@db:5432/mlflow_auth",
        "MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": "the-admins-password"}


def test_team_mode_with_evaluation_gives_the_judges_job_the_admins_account():
    env = exported(run_entrypoint({**TEAM, "EVALUATION": "on"}))
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("admin", "the-admins-password")


@pytest.mark.parametrize("settings", [{**TEAM, "EVALUATION": "off"}, {"EVALUATION": "on"}])
def test_no_client_account_without_both_accounts_and_evaluation(settings):
    env = exported(run_entrypoint(settings))
    assert "MLFLOW_TRACKING_USERNAME" not in env and "MLFLOW_TRACKING_PASSWORD" not in env


def test_judges_call_the_gateway_at_a_host_the_allow_list_accepts():
    env = exported(run_entrypoint({**TEAM, "EVALUATION": "on"}))
    assert env["MLFLOW_GATEWAY_URI"] == "http://127.0.0.1:5000"
    assert "127.0.0.1:*" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


def test_a_gateway_uri_set_by_hand_is_kept():
    env = exported(run_entrypoint({"EVALUATION": "on", "MLFLOW_GATEWAY_URI": "http://mlflow:5000"}))
    assert env["MLFLOW_GATEWAY_URI"] == "http://mlflow:5000"
