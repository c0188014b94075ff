"""Credentials that look real, one of every kind the ingest layer redacts, made afresh for each test run.

None is a working credential: each is random characters in its kind's format. They are built here rather
than written into the repository, so no scanner (or person) takes a test file for a leak. Also: text that
looks like a credential to an entropy guess but is not one (a git SHA, a UUID, base64 image data).
"""

from __future__ import annotations

import base64
import hashlib
import random
import string
import uuid

ALNUM = string.ascii_letters + string.digits
UPPER_DIGITS = string.ascii_uppercase + string.digits


def _random(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def pem_block(rng: random.Random) -> str:
    lines = [_random(rng, ALNUM + "+/", 64) for _ in range(6)]
    return "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----"])


def credentials(seed: int | None = None) -> dict[str, str]:
    """kind -> one credential of that kind (the marker's kind), each unique to this call."""
    rng = random.Random(seed)
    return {
        "openai-key": "sk-proj-" + _random(rng, ALNUM + "_-", 120),
        "anthropic-key": "sk-ant-api03-" + _random(rng, ALNUM + "_-", 93) + "AA",
        "google-api-key": "AIza" + _random(rng, ALNUM + "_-", 35),
        "github-token": "ghp_" + _random(rng, ALNUM, 36),
        "gitlab-token": "glpat-" + _random(rng, ALNUM + "_", 20),
        "aws-access-key": "AKIA" + _random(rng, UPPER_DIGITS, 16),
        "aws-secret-key": _random(rng, ALNUM + "/+", 40),
        "private-key": pem_block(rng),
        "password-in-url": _random(rng, ALNUM, 18),
        "bearer-token": _random(rng, ALNUM, 40),
        "env-secret": _random(rng, ALNUM, 24),
    }


def in_context(found: dict[str, str]) -> dict[str, str]:
    """kind -> a line of tool output or a message that carries that credential as it would appear in a session."""
    return {
        "openai-key": f"OPENAI_API_KEY is {found['openai-key']} (from the shell)",
        "anthropic-key": f"using key {found['anthropic-key']} for claude",
        "google-api-key": f"https://maps.example/api?key={found['google-api-key']}",
        "github-token": f"gh auth status: Token: {found['github-token']}",
        "gitlab-token": f"git config credential: {found['gitlab-token']}",
        "aws-access-key": f"aws_access_key_id = {found['aws-access-key']}",
        "aws-secret-key": f"aws_secret_access_key = {found['aws-secret-key']}",
        "private-key": f"$ cat ~/.ssh/id_ed25519\n{found['private-key']}\n$ ",
        "password-in-url": f"origin\thttps://deploy:{found['password-in-url']}@git.example.com/app.git (fetch)",
        "bearer-token": f"curl -H 'Authorization: Bearer {found['bearer-token']}' https://api.example.com",
        "env-secret": f"DATABASE_PASSWORD={found['env-secret']}",
    }


def leaked(found: dict[str, str], text: str) -> list[str]:
    """The kinds of `found` of which any line is in `text` (a private key's lines each on their own)."""
    return [kind for kind, secret in found.items() if any(line in text for line in secret.splitlines())]


def look_alikes(seed: int | None = None) -> dict[str, str]:
    """What an entropy guess would flag but is not a credential: name -> value."""
    rng = random.Random(seed)
    blob = bytes(rng.getrandbits(8) for _ in range(600))
    return {
        "git-sha": hashlib.sha1(blob).hexdigest(),
        "file-sha256": hashlib.sha256(blob).hexdigest(),
        "uuid": str(uuid.UUID(int=rng.getrandbits(128))),
        "trace-id": "tr-" + blob[:16].hex(),
        "base64-image": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + blob).decode(),
    }


def capture_content(spans: list, lines: list[str]) -> None:
    """Give goose-shaped spans (lib/otlp.goose_session) the content goose captures with
    OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true, each of `lines` in a tool's arguments, its result
    and the messages of the next model call (the GenAI semantic conventions' attributes, JSON-encoded)."""
    import json

    text = "\n".join(lines)
    for span in spans:
        operation = span.attributes.get("gen_ai.operation.name")
        if operation == "execute_tool":
            span.attributes["gen_ai.tool.call.arguments"] = json.dumps({"command": f"env; cat notes.txt # {text}"})
            span.attributes["gen_ai.tool.call.result"] = json.dumps([{"type": "text", "text": f"$ env\n{text}\n"}])
        elif operation == "chat":
            span.attributes["gen_ai.input.messages"] = json.dumps([
                {"role": "user", "parts": [{"type": "text", "content": "What is in my environment?"}]},
                {"role": "tool", "parts": [{"type": "tool_call_response", "response": text}]}])
            span.attributes["gen_ai.output.messages"] = json.dumps([
                {"role": "assistant", "parts": [{"type": "text", "content": f"Your environment holds:\n{text}"}]}])
