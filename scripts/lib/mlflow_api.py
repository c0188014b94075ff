"""A small stdlib client for the parts of MLflow's REST API the scripts use.

Stdlib only, so the bootstrap and verify run with any python3 on the host,
without a virtualenv.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from lib.errors import StackError

HEALTH_PATH = "/health"


class MlflowApiError(StackError):
    """MLflow answered with an error status."""

    def __init__(self, status: int, code: str, message: str, url: str) -> None:
        super().__init__(f"MLflow answered {status} {code} for {url}: {message}")
        self.status = status
        self.code = code


def _error_from_http(exc: urllib.error.HTTPError, url: str) -> MlflowApiError:
    body = exc.read().decode("utf-8", "replace")
    try:
        payload = json.loads(body)
        code, message = payload.get("error_code", ""), payload.get("message", body)
    except ValueError:
        code, message = "", body.strip()[:300]
    return MlflowApiError(exc.code, code, message, url)


def tls_context(cafile: str | None) -> ssl.SSLContext | None:
    """Verification against `cafile` (a team's own CA) on top of the system's trust store."""
    if not cafile:
        return None
    context = ssl.create_default_context()
    context.load_verify_locations(cafile)
    return context


def wait_until_healthy(url: str, timeout: float, what: str = "MLflow", context: ssl.SSLContext | None = None,
                       exited: Callable[[], int | None] | None = None) -> None:
    """Poll `url` until it answers 200, or raise after `timeout` seconds.

    `exited`, for a server this process started (its Popen.poll), ends the
    wait as soon as the server has died instead of at the deadline.
    """
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    while True:
        if exited is not None and (code := exited()) is not None:
            raise StackError(f"{what} exited with status {code} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=min(5.0, max(timeout, 0.1)), context=context) as response:
                if response.status == 200:
                    return
                last_error = f"status {response.status}"
        except urllib.error.HTTPError as exc:
            last_error = f"status {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(getattr(exc, "reason", exc))
        if time.monotonic() >= deadline:
            raise StackError(f"{what} did not become healthy at {url} within {timeout:g} s ({last_error}); "
                             "is the stack up (make up) and the URL right?")
        time.sleep(0.5)


def all_pages(fetch: Callable[[str | None], tuple[list[dict[str, Any]], str | None]]) -> Iterator[dict[str, Any]]:
    """The items of every page a search returns, following its page tokens from the first page."""
    token = None
    while True:
        items, token = fetch(token)
        yield from items
        if token is None:
            return


class MlflowClient:
    """JSON requests against one MLflow server."""

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None, timeout: float = 30.0,
                 cafile: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.context = tls_context(cafile)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None,
                query: Mapping[str, str] | None = None) -> dict[str, Any]:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=dict(self.headers))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise _error_from_http(exc, url) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StackError(f"cannot reach MLflow at {url}: {reason}") from None
        return json.loads(text) if text.strip() else {}

    def wait_until_healthy(self, timeout: float) -> None:
        wait_until_healthy(self.base_url + HEALTH_PATH, timeout, context=self.context)

    # Experiments -----------------------------------------------------------

    def get_experiment_by_name(self, name: str) -> dict[str, Any] | None:
        """The experiment (active or deleted) with this name, or None."""
        try:
            reply = self.request("GET", "/api/2.0/mlflow/experiments/get-by-name",
                                 query={"experiment_name": name})
        except MlflowApiError as exc:
            if exc.code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return reply["experiment"]

    def search_experiments(self, page_token: str | None = None,
                           max_results: int = 1000) -> tuple[list[dict[str, Any]], str | None]:
        """One page of every experiment, active and deleted, and the next page's token, or None."""
        body: dict[str, Any] = {"max_results": max_results, "view_type": "ALL"}
        if page_token:
            body["page_token"] = page_token
        reply = self.request("POST", "/api/2.0/mlflow/experiments/search", body)
        return reply.get("experiments", []), reply.get("next_page_token") or None

    def all_experiments(self) -> list[dict[str, Any]]:
        """Every experiment, active and deleted."""
        return list(all_pages(lambda token: self.search_experiments(page_token=token)))

    def get_experiment(self, experiment_id: str) -> dict[str, Any]:
        return self.request("GET", "/api/2.0/mlflow/experiments/get", query={"experiment_id": experiment_id})["experiment"]

    def create_experiment(self, name: str) -> str:
        reply = self.request("POST", "/api/2.0/mlflow/experiments/create", {"name": name})
        return str(reply["experiment_id"])

    def delete_experiment(self, experiment_id: str) -> None:
        self.request("POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id})

    def restore_experiment(self, experiment_id: str) -> None:
        self.request("POST", "/api/2.0/mlflow/experiments/restore", {"experiment_id": experiment_id})

    def create_run(self, experiment_id: str) -> str:
        return self.request("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": experiment_id})["run"]["info"]["run_id"]

    # Traces ----------------------------------------------------------------

    def search_traces(self, experiment_id: str, filter_string: str = "", max_results: int = 100,
                      order_by: tuple[str, ...] = ("timestamp_ms DESC",),
                      page_token: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the experiment's traces (newest first) and the next page's token, or None."""
        body: dict[str, Any] = {
            "locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}],
            "filter": filter_string,
            "max_results": max_results,
            "order_by": list(order_by),
        }
        if page_token:
            body["page_token"] = page_token
        reply = self.request("POST", "/api/3.0/mlflow/traces/search", body)
        return reply.get("traces", []), reply.get("next_page_token") or None

    def trace_ids(self, experiment_id: str, page_size: int = 500) -> set[str]:
        """Every trace id in the experiment (500 is the API's largest page)."""
        return {trace["trace_id"] for trace in all_pages(lambda token: self.search_traces(
            experiment_id, max_results=page_size, order_by=(), page_token=token))}

    def get_trace(self, trace_id: str) -> dict[str, Any]:
        """The trace with its spans."""
        return self.request("GET", "/api/3.0/mlflow/traces/get", query={"trace_id": trace_id})["trace"]

    def delete_traces(self, experiment_id: str, trace_ids: list[str]) -> int:
        reply = self.request("POST", "/api/2.0/mlflow/traces/delete-traces",
                             {"experiment_id": experiment_id, "request_ids": trace_ids})
        return int(reply.get("traces_deleted", 0))

    def delete_traces_before(self, experiment_id: str, max_timestamp_millis: int, max_traces: int) -> int:
        """Delete up to `max_traces` of the experiment's traces started at or before the timestamp, oldest first."""
        reply = self.request("POST", "/api/2.0/mlflow/traces/delete-traces", {
            "experiment_id": experiment_id, "max_timestamp_millis": max_timestamp_millis, "max_traces": max_traces})
        return int(reply.get("traces_deleted", 0))

    # Accounts (team mode's basic-auth app) -----------------------------------

    def current_user(self) -> dict[str, Any]:
        """The account these credentials belong to; 401 when they are wrong."""
        return self.request("GET", "/api/2.0/mlflow/users/current")["user"]

    def list_users(self) -> list[dict[str, Any]]:
        """Every account, with its `username` and `is_admin`."""
        return self.request("GET", "/api/2.0/mlflow/users/list")["users"]

    def get_user(self, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", "/api/2.0/mlflow/users/get", query={"username": name})["user"]
        except MlflowApiError as exc:
            if exc.code == "RESOURCE_DOES_NOT_EXIST" or exc.status == 404:
                return None
            raise

    def create_user(self, name: str, password: str) -> None:
        self.request("POST", "/api/2.0/mlflow/users/create", {"username": name, "password": password})

    def update_password(self, name: str, password: str) -> None:
        self.request("PATCH", "/api/2.0/mlflow/users/update-password", {"username": name, "password": password})

    def delete_user(self, name: str) -> None:
        self.request("DELETE", "/api/2.0/mlflow/users/delete", {"username": name})

    def permission(self, name: str, resource_type: str, resource_id: str) -> str:
        """The permission `name` holds on the resource (NO_PERMISSIONS when none); `resource_id` "*" is the
        grant on every resource of the type."""
        return self.request("GET", "/api/3.0/mlflow/users/permissions/get", query={
            "username": name, "resource_type": resource_type, "resource_id": resource_id})["permission"]

    def grant(self, name: str, resource_type: str, resource_id: str, permission: str) -> None:
        self.request("POST", "/api/3.0/mlflow/users/permissions/grant", {
            "username": name, "resource_type": resource_type, "resource_id": resource_id, "permission": permission})

    def revoke(self, name: str, resource_type: str, resource_id: str) -> None:
        self.request("POST", "/api/3.0/mlflow/users/permissions/revoke", {
            "username": name, "resource_type": resource_type, "resource_id": resource_id})
    # The AI Gateway (provider keys, model definitions, endpoints) -------------

    def gateway_endpoint(self, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", "/api/3.0/mlflow/gateway/endpoints/get", query={"name": name})["endpoint"]
        except MlflowApiError as exc:
            if exc.status == 404:
                return None
            raise

    def gateway_secrets(self) -> list[dict[str, Any]]:
        """Every stored provider key's name, id, provider and settings (never the key)."""
        return self.request("GET", "/api/3.0/mlflow/gateway/secrets/list").get("secrets", [])

    def gateway_models(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/3.0/mlflow/gateway/model-definitions/list").get("model_definitions", [])

    def create_gateway_secret(self, name: str, provider: str, key: str, auth_config: Mapping[str, str]) -> str:
        return self.request("POST", "/api/3.0/mlflow/gateway/secrets/create", {
            "secret_name": name, "secret_value": {"api_key": key}, "provider": provider,
            "auth_config": dict(auth_config)})["secret"]["secret_id"]

    def update_gateway_secret(self, secret_id: str, key: str, auth_config: Mapping[str, str]) -> None:
        self.request("POST", "/api/3.0/mlflow/gateway/secrets/update", {
            "secret_id": secret_id, "secret_value": {"api_key": key}, "auth_config": dict(auth_config)})

    def create_gateway_model(self, name: str, secret_id: str, provider: str, model: str) -> str:
        return self.request("POST", "/api/3.0/mlflow/gateway/model-definitions/create", {
            "name": name, "secret_id": secret_id, "provider": provider,
            "model_name": model})["model_definition"]["model_definition_id"]

    def update_gateway_model(self, model_definition_id: str, secret_id: str, provider: str, model: str) -> None:
        self.request("POST", "/api/3.0/mlflow/gateway/model-definitions/update", {
            "model_definition_id": model_definition_id, "secret_id": secret_id, "provider": provider,
            "model_name": model})

    def create_gateway_endpoint(self, name: str, model_definition_id: str) -> None:
        self.request("POST", "/api/3.0/mlflow/gateway/endpoints/create", {"name": name, "model_configs": [
            {"model_definition_id": model_definition_id, "linkage_type": "PRIMARY", "weight": 1}]})


def ensure_experiment(client: MlflowClient, name: str) -> tuple[str, str]:
    """The id of the active experiment `name`, creating or restoring it.

    Returns (experiment_id, what_was_done) with what_was_done one of
    "found", "created", "restored".
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name), "created"
        except MlflowApiError as exc:
            if exc.code != "RESOURCE_ALREADY_EXISTS":  # another bootstrap won the race
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    experiment_id = str(experiment["experiment_id"])
    if experiment.get("lifecycle_stage") == "deleted":
        client.restore_experiment(experiment_id)
        return experiment_id, "restored"
    return experiment_id, "found"
