"""The MLflow client's health wait, against real HTTP servers on loopback that answer what MLflow may."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from lib.errors import StackError
from lib.mlflow_api import MlflowClient, wait_until_healthy


def serve(status: int) -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def healthy() -> Iterator[str]:
    yield from serve(200)


@pytest.fixture
def failing() -> Iterator[str]:
    yield from serve(500)


def test_a_200_from_health_ends_the_wait(healthy):
    MlflowClient(healthy).wait_until_healthy(5)


def test_a_500_is_not_healthy_and_the_error_says_so(failing):
    with pytest.raises(StackError) as refused:
        wait_until_healthy(failing + "/health", 1)
    assert str(refused.value) == (f"MLflow did not become healthy at {failing}/health within 1 s (status 500); "
                                  "is the stack up (make up) and the URL right?")


def test_a_server_that_exited_ends_the_wait_at_once(failing):
    with pytest.raises(StackError, match="the S3 stand-in exited with status 3 before"):
        wait_until_healthy(failing + "/health", 60, what="the S3 stand-in", exited=lambda: 3)
