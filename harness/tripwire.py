"""A listening socket that catches any request bound for the internet."""

from __future__ import annotations

import socket
import threading


class Tripwire:
    """A listening socket that records every connection made to it and closes it.

    Set as a server's HTTP(S)_PROXY, it catches any request bound for the
    internet: the connection to the proxy is made before any name lookup.
    """

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.requests: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.requests.append(connection.recv(200).split(b"\r\n", 1)[0])
                except OSError:
                    self.requests.append(b"(connection, nothing sent)")

    def proxy_env(self) -> dict[str, str]:
        """Proxy settings that send everything but loopback through the tripwire."""
        return {name: self.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")} | {
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def close(self) -> None:
        self._socket.close()
