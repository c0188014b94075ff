"""An OpenAI-compatible LLM provider that answers every chat completion with one fixed judgement.

The stand-in for the model an LLM judge calls (tests/README.md says what
differs from a real provider). It speaks the chat-completions protocol over
real HTTP, refuses a request without its API key (401, as OpenAI does), and
records every request it answered so a test can show the judge really called it.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

JUDGEMENT = {"result": "yes", "rationale": "The reply does what was asked (fixed answer of the test provider)."}
CHAT_PATH = "/v1/chat/completions"


class LlmProvider:
    """`POST {url}/chat/completions` answered with JUDGEMENT as the assistant's JSON content."""

    def __init__(self, host: str = "127.0.0.1", api_key: str = "sk-test-provider") -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.refused = 0
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self.url = f"http://{host}:{self._server.server_address[1]}/v1"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # the test's output stays the test's
                pass

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 (the http.server interface)
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                if self.headers.get("Authorization") != f"Bearer {provider.api_key}":
                    provider.refused += 1
                    self._reply(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                                                "code": "invalid_api_key"}})
                    return
                if self.path.rstrip("/") != CHAT_PATH:
                    self._reply(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
                    return
                provider.requests.append(request)
                self._reply(200, {
                    "id": f"chatcmpl-{len(provider.requests)}", "object": "chat.completion", "created": int(time.time()),
                    "model": request.get("model", ""),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": json.dumps(JUDGEMENT)}}],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
                })

        return Handler

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
