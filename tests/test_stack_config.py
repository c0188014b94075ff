"""scripts/lib/stack_config.py: the checks every command applies to its settings, and what goose is told."""

from __future__ import annotations

import base64
import urllib.parse

import pytest

from lib import otlp
from lib import stack_config as cfg
from lib.errors import StackError


# check_url: the public and tracking URLs the commands accept.

@pytest.mark.parametrize("url", ["http://localhost:5000", "https://mlflow.example.com", "http://10.0.0.5:8080/mlflow",
                                 "http://[::1]:5000", "http://h:1", "http://h:65535", "http://h.example/X"])
def test_check_url_accepts_http_and_https_urls_as_written(url):
    assert cfg.check_url(url, "--tracking-uri") == url


def test_check_url_drops_a_trailing_slash():
    assert cfg.check_url("https://mlflow.example.com/mlflow/", "MLFLOW_PUBLIC_URL") == "https://mlflow.example.com/mlflow"


def test_check_url_drops_every_trailing_slash():
    assert cfg.check_url("http://localhost:5000//", "MLFLOW_PUBLIC_URL") == "http://localhost:5000"


@pytest.mark.parametrize("url", ["ftp://h.example", "localhost:5000", "//h.example", "file:///etc/passwd", ""])
def test_check_url_refuses_other_schemes_naming_the_setting_and_the_fix(url):
    with pytest.raises(StackError) as raised:
        cfg.check_url(url, "MLFLOW_PUBLIC_URL")
    assert str(raised.value) == (f"MLFLOW_PUBLIC_URL {url!r} is not an http(s) URL; "
                                 "write it like http://localhost:5000")


@pytest.mark.parametrize("url", ["http://", "https://:5000", "http:///path"])
def test_check_url_refuses_a_url_without_a_host(url):
    with pytest.raises(StackError, match="is not an http\\(s\\) URL"):
        cfg.check_url(url, "MLFLOW_PUBLIC_URL")


@pytest.mark.parametrize("url", ["http://h:0", "http://h:65536", "http://h:99999", "http://h:abc", "http://h:-1"])
def test_check_url_refuses_a_port_outside_1_to_65535(url):
    with pytest.raises(StackError) as raised:
        cfg.check_url(url, "--tracking-uri")
    assert str(raised.value) == f"--tracking-uri {url!r} has an invalid port; use a number from 1 to 65535"


@pytest.mark.parametrize("url", ["http://h:5000/?x=1", "http://h:5000/#/experiments", "http://h?x", "http://h/#x"])
def test_check_url_refuses_a_query_or_fragment(url):
    with pytest.raises(StackError) as raised:
        cfg.check_url(url, "MLFLOW_PUBLIC_URL")
    assert str(raised.value) == f"MLFLOW_PUBLIC_URL {url!r} must not carry a query or fragment"


# default_public_url: where goose is told to send its traces when nothing says otherwise.

def test_default_public_url_is_loopback_on_the_default_port():
    assert cfg.default_public_url({}) == "http://localhost:5000"


def test_default_public_url_follows_mlflow_port():
    assert cfg.default_public_url({"MLFLOW_PORT": "5001"}) == "http://localhost:5001"


def test_default_public_url_ignores_an_empty_mlflow_port():
    assert cfg.default_public_url({"MLFLOW_PORT": ""}) == "http://localhost:5000"


def test_default_public_url_is_mlflow_public_url_when_set():
    environ = {"MLFLOW_PUBLIC_URL": "https://mlflow.example.com", "MLFLOW_PORT": "5001"}
    assert cfg.default_public_url(environ) == "https://mlflow.example.com"


def test_default_public_url_ignores_an_empty_mlflow_public_url():
    assert cfg.default_public_url({"MLFLOW_PUBLIC_URL": "", "MLFLOW_PORT": "5002"}) == "http://localhost:5002"


def test_default_public_url_reads_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_PUBLIC_URL", "https://from-env.example")
    assert cfg.default_public_url() == "https://from-env.example"


# check_experiment_name: what MLflow would store.

@pytest.mark.parametrize("name", ["goose-traces", "my traces", "a", "équipe ✓", "x" * 256, "~!@#$%^&*()"])
def test_experiment_name_is_returned_as_given_when_valid(name):
    assert cfg.check_experiment_name(name) == name


@pytest.mark.parametrize("name", ["", " padded", "padded ", "\tgoose", " "])
def test_experiment_name_empty_or_with_surrounding_spaces_is_refused(name):
    with pytest.raises(StackError) as raised:
        cfg.check_experiment_name(name)
    assert str(raised.value) == (f"invalid experiment name {name!r}: "
                                 "it must be non-empty without surrounding spaces")


def test_experiment_name_of_257_characters_is_refused_naming_the_limit():
    with pytest.raises(StackError) as raised:
        cfg.check_experiment_name("x" * 257)
    assert str(raised.value) == "invalid experiment name: 257 characters, MLflow allows 256"


@pytest.mark.parametrize("name", ["a\x00b", "a\nb", "a\x1fb", "a\x7fb", "a\x01"])
def test_experiment_name_with_control_characters_or_del_is_refused(name):
    with pytest.raises(StackError) as raised:
        cfg.check_experiment_name(name)
    assert str(raised.value) == f"invalid experiment name {name!r}: it holds control characters"


@pytest.mark.parametrize("name", ["a b", "a~b", "a\x80b"])
def test_experiment_name_with_space_tilde_or_non_ascii_inside_is_accepted(name):
    assert cfg.check_experiment_name(name) == name


# basic_auth and client_headers: MLflow's accounts.

def test_basic_auth_is_base64_of_user_colon_password():
    assert cfg.basic_auth("user", "pw") == "Basic dXNlcjpwdw=="


def test_basic_auth_encodes_non_ascii_as_utf8():
    value = cfg.basic_auth("zoë", "pässword")
    assert base64.b64decode(value.removeprefix("Basic ")).decode("utf-8") == "zoë:pässword"


def test_client_headers_carry_basic_credentials_when_both_are_set():
    environ = {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": "pw"}
    assert cfg.client_headers(environ) == {"Authorization": cfg.basic_auth("alice", "pw")}


@pytest.mark.parametrize("environ", [{}, {"MLFLOW_TRACKING_USERNAME": "alice"}, {"MLFLOW_TRACKING_PASSWORD": "pw"},
                                     {"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": ""},
                                     {"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_PASSWORD": "pw"}])
def test_client_headers_are_empty_without_both_username_and_password(environ):
    assert cfg.client_headers(environ) == {}


def test_client_headers_read_the_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "secret")
    assert cfg.client_headers() == {"Authorization": cfg.basic_auth("bob", "secret")}


# goose_env: the settings written into goose's env file.

def test_goose_env_without_auth_holds_the_otel_settings_and_mlflows_client():
    assert cfg.goose_env("http://localhost:5000", "7") == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:5000",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://localhost:5000/v1/traces",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-mlflow-experiment-id=7",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-mlflow-experiment-id=7",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
        "OTEL_SDK_DISABLED": "false",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "goose",
        "MLFLOW_TRACKING_URI": "http://localhost:5000",
        "MLFLOW_EXPERIMENT_ID": "7",
    }


def test_goose_env_with_auth_percent_encodes_the_basic_header():
    # "a?>:p?>" base64-encodes to "YT8+OnA/Pg==": "+", "/" and "=" must all be encoded, and the space.
    env = cfg.goose_env("https://mlflow.example.com", "3", auth=("a?>", "p?>"))
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == "x-mlflow-experiment-id=3,Authorization=Basic%20YT8%2BOnA%2FPg%3D%3D"


def test_goose_env_auth_header_decodes_back_to_the_basic_credentials_as_goose_reads_it():
    env = cfg.goose_env("https://mlflow.example.com", "3", auth=("alice", "p,w=d/+?"))
    headers = otlp.parse_headers(env["OTEL_EXPORTER_OTLP_HEADERS"])
    assert headers == {"x-mlflow-experiment-id": "3", "Authorization": cfg.basic_auth("alice", "p,w=d/+?")}


def test_goose_env_with_auth_gives_mlflows_client_the_same_account():
    env = cfg.goose_env("https://mlflow.example.com", "3", auth=("alice", "pw"))
    assert {key: env[key] for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")} == {
        "MLFLOW_TRACKING_URI": "https://mlflow.example.com", "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": "pw"}


def test_goose_env_without_auth_sets_no_credentials():
    env = cfg.goose_env("http://localhost:5000", "3", ca_file="/ca.crt")
    assert "MLFLOW_TRACKING_USERNAME" not in env and "MLFLOW_TRACKING_PASSWORD" not in env


@pytest.mark.parametrize("auth", [None, ("alice", "pw")])
def test_goose_env_makes_goose_traces_mlflows_active_experiment(auth):
    env = cfg.goose_env("https://h.example", "3", auth=auth)
    assert (env["MLFLOW_TRACKING_URI"], env["MLFLOW_EXPERIMENT_ID"]) == ("https://h.example", "3")


def test_goose_env_with_a_ca_file_points_both_clients_at_it():
    env = cfg.goose_env("https://mlflow.example.com", "3", auth=("alice", "pw"), ca_file="/etc/ca.crt")
    assert (env["OTEL_EXPORTER_OTLP_CERTIFICATE"], env["MLFLOW_TRACKING_SERVER_CERT_PATH"]) == ("/etc/ca.crt", "/etc/ca.crt")


@pytest.mark.parametrize("ca_file", [None, ""])
def test_goose_env_without_a_ca_file_sets_no_certificate(ca_file):
    env = cfg.goose_env("https://mlflow.example.com", "3", auth=("alice", "pw"), ca_file=ca_file)
    assert "OTEL_EXPORTER_OTLP_CERTIFICATE" not in env and "MLFLOW_TRACKING_SERVER_CERT_PATH" not in env


def test_goose_env_with_auth_keeps_every_otel_setting():
    plain = cfg.goose_env("https://h.example", "3")
    with_auth = cfg.goose_env("https://h.example", "3", auth=("alice", "pw"), ca_file="/ca.crt")
    headers = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS")
    assert {k: v for k, v in with_auth.items() if k in plain and k not in headers} == {
        k: v for k, v in plain.items() if k not in headers}


def test_goose_env_gives_the_traces_headers_the_same_credentials():
    env = cfg.goose_env("https://h.example", "3", auth=("alice", "pw"))
    assert env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] == env["OTEL_EXPORTER_OTLP_HEADERS"]


def test_percent_encoded_header_is_what_urllib_quote_makes_with_nothing_safe():
    # The same rule goose's reader (and every OTel SDK) undoes with percent-decoding.
    env = cfg.goose_env("https://h.example", "1", auth=("u", "p"))
    value = env["OTEL_EXPORTER_OTLP_HEADERS"].split(",Authorization=", 1)[1]
    assert urllib.parse.unquote(value) == cfg.basic_auth("u", "p") and " " not in value


def test_traces_ui_url_opens_the_experiments_traces_tab():
    assert cfg.traces_ui_url("http://localhost:5000", "12") == "http://localhost:5000/#/experiments/12/traces"



@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_retention_limit_keeps_every_trace(value):
    assert cfg.retention_days(value) is None


def test_a_retention_limit_is_a_whole_number_of_days():
    assert cfg.retention_days("30") == 30


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "thirty"])
def test_a_retention_limit_below_one_day_or_not_a_number_is_refused_naming_the_fix(value):
    with pytest.raises(StackError, match=rf"^TRACE_RETENTION_DAYS={value!r} is not a whole number of days \(1 or more\); "
                                         "fix it in .env, or leave it empty to keep every trace$"):
        cfg.retention_days(value)


def test_the_retention_cutoff_is_exactly_the_limit_in_days_before_now():
    assert cfg.retention_cutoff_ms(30, 10_000_000_000_000) == 10_000_000_000_000 - 30 * 24 * 3600 * 1000


def test_the_default_env_file_is_dot_env_at_the_checkouts_root():
    """make verify and the bootstrap run by hand read and write the .env make up wrote, wherever the module lives."""
    from harness.compose_file import REPO

    assert (cfg.DEFAULT_ENV_FILE, cfg.DEFAULT_USERS_DIR) == (REPO / ".env", REPO / "users")


def test_a_retention_limit_of_one_day_is_accepted():
    assert cfg.retention_days("1") == 1


@pytest.mark.parametrize("name", ["judge", "did_what_was_asked", "a.b-c_1", "x" * 64])
def test_a_judge_or_endpoint_name_of_letters_digits_and_dot_dash_underscore_is_accepted(name):
    assert cfg.check_name(name, "NAME") == name


@pytest.mark.parametrize("name", ["", "x" * 65, "-lead", "has space", "semi;colon", "ü"])
def test_any_other_name_is_refused_naming_what_is_allowed(name):
    with pytest.raises(StackError, match=r"^invalid NAME .*: use 1-64 letters, digits, '\.', '_' or '-'$"):
        cfg.check_name(name, "NAME")
