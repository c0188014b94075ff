"""proxy/Caddyfile's rules, fast: the real file run by the machine's Caddy (harness/proxy.py) in front of the
native team MLflow (accounts on). What the proxy refuses answers with its own body; what it lets through
gets MLflow's own answer. The same rules through Docker: test_docker_team.py, test_docker_security.py."""

from __future__ import annotations

import gzip
import json

import pytest

from lib import otlp
from lib import stack_config as cfg
from harness.proxy import otlp_batch_of

JOBS = (403, b"refused at the proxy: server jobs are started on the server (docs/security.md)")
JUDGES = (403, b"refused at the proxy: judges run on the server for traces as they arrive (docs/evaluation.md)")
JUDGE_WRITE = (403, b"refused at the proxy: judges are registered on the server with make judge (docs/evaluation.md)")
MANAGED = (403, b"refused at the proxy: this is managed on the server (docs/security.md)")
GATEWAY_WRITE = (403, b"refused at the proxy: AI Gateway keys and endpoints are managed on the server "
                      b"(docs/evaluation.md)")
GATEWAY_CALL = (403, b"refused at the proxy: the AI Gateway is called by the server for judges (docs/evaluation.md)")


@pytest.fixture(scope="module")
def admin(team_stack) -> dict[str, str]:
    return {"Authorization": cfg.basic_auth("admin", team_stack.admin_password)}


def ask(proxy, admin, method: str, path: str, body: dict | None = None, **headers: str) -> tuple[int, bytes]:
    status, _, reply = proxy.request(method, path, {**admin, "Content-Type": "application/json", **headers},
                                     json.dumps(body).encode() if body is not None else None)
    return status, reply


@pytest.mark.parametrize("path", ["/ajax-api/3.0/jobs/", "/ajax-api/3.0/jobs", "/AJAX-API/3.0/Jobs/",
                                  "/ajax-api/3.0/job%73/", "//ajax-api/3.0/jobs/", "/ajax-api//3.0//jobs/",
                                  "/ajax-api/3.0/jobs/search", "/api/3.0/jobs/", "/ajax-api/3.0/mlflow/jobs/1",
                                  "/ajax-api/3.0/jobs/cancel/1", "/ajax-api/3.0/%6aobs/"])
def test_the_jobs_api_is_refused_on_every_spelling_even_to_the_admin(native_proxy, admin, path):
    assert ask(native_proxy, admin, "POST", path, {"job_name": "invoke_scorer", "params": {}}) == JOBS


@pytest.mark.parametrize("path", ["/ajax-api/3.0/mlflow/scorer/invoke", "/ajax-api/3.0/mlflow/genai/evaluate/invoke",
                                  "/ajax-api/3.0/mlflow/issues/invoke", "/ajax-api/3.0/mlflow/prompt-optimization/jobs",
                                  "/api/3.0/mlflow/Scorer/invoke/", "/ajax-api/3.0/mlflow//issues/invoke"])
def test_judges_on_demand_are_refused(native_proxy, admin, path):
    assert ask(native_proxy, admin, "POST", path, {}) == JUDGES


def test_the_prompt_optimisation_jobs_are_still_listed(native_proxy, admin):
    assert ask(native_proxy, admin, "GET", "/ajax-api/3.0/mlflow/prompt-optimization/jobs/search?experiment_id=0")[0] == 200


@pytest.mark.parametrize("method, path", [
    ("POST", "/api/3.0/mlflow/scorers/register"), ("POST", "/ajax-api/3.0/mlflow/scorers/register"),
    ("DELETE", "/api/3.0/mlflow/scorers/delete"), ("PUT", "/ajax-api/3.0/mlflow/scorers/online-config"),
    ("PUT", "/api/3.0/mlflow/scorers/online-config"), ("POST", "/API/3.0/MLflow/Scorers/Register/"),
    ("POST", "//api/3.0/mlflow//scorers/register"), ("POST", "/api/3.0/mlflow/scorers/regist%65r"),
    ("DELETE", "/ajax-api/3.0/mlflow/scorers/delete/")])
def test_judge_writes_are_refused_on_every_spelling_even_to_the_admin(native_proxy, admin, method, path):
    assert ask(native_proxy, admin, method, path, {"experiment_id": "1", "name": "x"}) == JUDGE_WRITE


@pytest.mark.parametrize("path", ["/ajax-api/3.0/mlflow/scorers/list?experiment_id=0",
                                  "/ajax-api/3.0/mlflow/scorers/online-configs?scorer_ids=none"])
def test_judges_stay_listed_for_the_ui(native_proxy, admin, path):
    assert ask(native_proxy, admin, "GET", path)[0] == 200


@pytest.mark.parametrize("path", ["/api/3.0/mlflow/gateway/secrets/create", "/ajax-api/3.0/mlflow/gateway/endpoints/update"])
def test_gateway_writes_are_refused(native_proxy, admin, path):
    assert ask(native_proxy, admin, "POST", path, {}) == GATEWAY_WRITE


def test_gateway_endpoints_stay_listed_for_the_ui(native_proxy, admin):
    assert ask(native_proxy, admin, "GET", "/ajax-api/3.0/mlflow/gateway/endpoints/list")[0] == 200


@pytest.mark.parametrize("path", ["/gateway/judge/mlflow/invocations", "/gateway/mlflow/v1/chat/completions"])
def test_gateway_model_calls_are_refused(native_proxy, admin, path):
    assert ask(native_proxy, admin, "POST", path, {"messages": []}) == GATEWAY_CALL


@pytest.mark.parametrize("method, path", [("GET", "/api/2.0/mlflow/users/list"),
                                          ("POST", "/api/2.0/mlflow/users/create"),
                                          ("POST", "/api/3.0/mlflow/users/permissions/grant"),
                                          ("POST", "/ajax-api/2.0/mlflow/experiments/permissions/create"),
                                          ("POST", "/api/2.0/mlflow/experiments/update"),
                                          ("POST", "/ajax-api/3.0/mlflow/demo/generate")])
def test_accounts_permissions_renaming_and_the_demo_are_managed_on_the_server(native_proxy, admin, method, path):
    assert ask(native_proxy, admin, method, path, {}) == MANAGED


@pytest.mark.parametrize("path", ["/api/2.0/mlflow/users/current", "/ajax-api/3.0/mlflow/users/current/permissions"])
def test_who_am_i_and_what_may_i_do_reach_mlflow(native_proxy, admin, path):
    assert ask(native_proxy, admin, "GET", path)[0] == 200


def test_metrics_are_refused(native_proxy, admin):
    status, reply = ask(native_proxy, admin, "GET", "/metrics")
    assert status == 403 and b"mlflow_" not in reply


def test_a_foreign_origin_is_refused_and_the_public_one_served(native_proxy, admin):
    path = "/api/2.0/mlflow/experiments/search?max_results=1"
    assert ask(native_proxy, admin, "GET", path, Origin="http://localhost:3000") == (
        403, b"requests from another origin are refused")
    assert ask(native_proxy, admin, "GET", path, Origin=native_proxy.url)[0] == 200


def test_a_compressed_body_is_refused(native_proxy, admin):
    body = gzip.compress(otlp.encode_export_request(otlp.goose_session("gzip"), {"service.name": "goose"}))
    status, _, reply = native_proxy.request("POST", "/v1/traces", {
        **admin, "Content-Encoding": "gzip", "Content-Type": "application/x-protobuf",
        "x-mlflow-experiment-id": "0"}, body)
    assert (status, reply) == (415, b"compressed request bodies are refused; send them uncompressed")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_batch_of_exactly_the_cap_lands_and_one_byte_more_is_refused(native_proxy, admin, chunked):
    headers = {**admin, "Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": "0"}
    assert [native_proxy.request("POST", "/v1/traces", headers, otlp_batch_of(size), chunked=chunked)[0]
            for size in (10_000_000, 10_000_001)] == [200, 413]


@pytest.mark.parametrize("path, length", [("/v1/traces", "10000001"), ("/v1/traces", "000000010000001"),
                                          ("/api/2.0/mlflow/runs/create", "99999999999"),
                                          ("/api/2.0/mlflow-artifacts/artifacts/0/x", "1000000001"),
                                          ("/ajax-api/2.0/mlflow-artifacts/artifacts/0/x", "0001000000001")])
def test_a_declared_size_over_the_cap_gets_413_before_any_byte_of_the_body(native_proxy, path, length):
    answer = native_proxy.raw(f"POST {path} HTTP/1.1\r\nHost: localhost:{native_proxy.https_port}\r\n"
                              f"Content-Length: {length}\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 413")


def test_a_host_other_than_the_public_name_gets_421(native_proxy):
    answer = native_proxy.raw(b"GET /health HTTP/1.1\r\nHost: mlflow:5000\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 421")


def test_answers_demand_https_name_no_server_and_advertise_no_http3(native_proxy):
    status, headers, _ = native_proxy.request("GET", "/health")
    names = {name.lower(): value for name, value in headers.items()}
    assert (status, names.get("strict-transport-security")) == (200, "max-age=31536000")
    assert "server" not in names and "alt-svc" not in names


def test_port_80_redirects_to_the_public_url_whatever_the_host(native_proxy):
    status, headers, _ = native_proxy.request("GET", "/x?y=1", {"Host": "evil.example"}, port=native_proxy.http_port)
    assert (status, headers.get("Location")) == (308, f"{native_proxy.url}/x?y=1")
