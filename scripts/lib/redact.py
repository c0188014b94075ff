"""Credentials in span text, replaced by a marker that names their kind, before MLflow stores them.

`[REDACTED:github-token]` stands where the token was. The patterns are
detect-secrets' own (its plugins' pattern lists, the kinds whose match is
the credential itself) and, for what it lacks, the stack's: newer OpenAI
keys, Anthropic and Google keys, GitHub's fine-grained tokens, PEM private
keys whole (detect-secrets matches only their first line), AWS secret keys
after their name, bearer tokens, and `.env`-style `KEY=value` lines whose
key says secret, token, password or key. A team adds its own in
REDACTION_PATTERNS (`kind=regex`, separated by spaces). detect-secrets'
entropy guesses are not used: a git SHA, a UUID, an id or base64 image data
is not a credential by its looks.

Text is scanned as it came: the JSON a tool's arguments or result is
captured in keeps its line breaks as `\\n`, and a `.env` line after one
counts as a line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector

SETTING = "REDACTION_PATTERNS"
OFF_SETTING = "REDACTION"


@dataclass(frozen=True)
class Pattern:
    """A kind of credential: the text `regex` finds, or only its `group` when the match names it too."""

    kind: str
    regex: re.Pattern[str]
    group: int = 0


def library(kind: str, detector: type, group: int = 0, only: Iterable[int] | None = None) -> list[Pattern]:
    """detect-secrets' patterns of one plugin (those at the indexes `only`, else all)."""
    patterns = detector.denylist
    return [Pattern(kind, patterns[index], group) for index in (only if only is not None else range(len(patterns)))]


# A line start, or a line break JSON escaped (`\n` as two characters), before a `.env` line.
_LINE = r"(?:^|(?<=\\n)|(?<=\n)|(?<=\\r))"
# What ends a value: whitespace, a quote, or the backslash of an escaped line break or quote.
_VALUE = r"[^\s\"'\\]+"
_PEM_NAMES = "|".join(re.escape(pattern.pattern.removeprefix("BEGIN "))
                      for pattern in PrivateKeyDetector.denylist if pattern.pattern.startswith("BEGIN "))

BUILT_IN: tuple[Pattern, ...] = (
    # Longest first where kinds overlap: a whole PEM block before anything inside it.
    Pattern("private-key", re.compile(rf"-----BEGIN (?:{_PEM_NAMES})-----.*?(?:-----END [A-Z0-9 ]+-----|$)",
                                      re.DOTALL)),
    *library("aws-access-key", AWSKeyDetector, only=[0]),
    Pattern("aws-secret-key", re.compile(r"aws_?secret_?access_?key[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
                                         re.IGNORECASE), 1),
    *library("aws-secret-key", AWSKeyDetector, group=1, only=[1]),
    *library("github-token", GitHubTokenDetector),
    Pattern("github-token", re.compile(r"github_pat_[A-Za-z0-9_]{22,255}")),
    *library("gitlab-token", GitLabTokenDetector),
    Pattern("anthropic-key", re.compile(r"sk-ant-[a-z0-9]+-[A-Za-z0-9_-]{20,}")),
    *library("openai-key", OpenAIDetector),
    Pattern("openai-key", re.compile(r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9]{48}\b")),
    Pattern("google-api-key", re.compile(r"AIza[0-9A-Za-z_-]{35}")),
    Pattern("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")),
    *library("pypi-token", PypiTokenDetector),
    *library("npm-token", NpmDetector, group=1),
    *library("slack-token", SlackDetector),
    *library("stripe-key", StripeDetector),
    *library("sendgrid-key", SendGridDetector),
    *library("square-secret", SquareOAuthDetector),
    *library("azure-storage-key", AzureStorageKeyDetector),
    *library("discord-token", DiscordBotTokenDetector),
    *library("mailchimp-key", MailchimpDetector),
    *library("password-in-url", BasicAuthDetector, group=1),
    Pattern("bearer-token", re.compile(r"\bbearer\s+([A-Za-z0-9._~+/-]{8,}=*)", re.IGNORECASE), 1),
    Pattern("env-secret", re.compile(
        rf"{_LINE}[ \t]*(?:export[ \t]+)?[A-Za-z0-9_.-]*(?:secret|token|passw(?:or)?d|key)[A-Za-z0-9_.-]*"
        rf"[ \t]*[=:][ \t]*[\"']?({_VALUE})", re.IGNORECASE | re.MULTILINE), 1),
)


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


def parse_patterns(setting: str) -> tuple[Pattern, ...]:
    """A team's REDACTION_PATTERNS: `kind=regex` entries separated by spaces (a regex writes a space as \\s)."""
    patterns = []
    for entry in setting.split():
        kind, equals, regex = entry.partition("=")
        if not equals or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", kind) or not regex:
            raise ValueError(f"{SETTING} entry {entry!r} is not kind=regex; write e.g. "
                             f"{SETTING}='acme-token=acme_[0-9a-f]{{32}}' (kind: a-z, 0-9, -)")
        try:
            compiled = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"{SETTING} entry {kind}: {regex!r} is not a regular expression ({exc}); "
                             "fix it in .env and run make up") from None
        if compiled.match(""):
            raise ValueError(f"{SETTING} entry {kind}: {regex!r} matches empty text; make it match the credential")
        patterns.append(Pattern(kind, compiled, 1 if compiled.groups else 0))
    return tuple(patterns)


class Redactor:
    """Replaces what the patterns find; counts what it replaced, by kind."""

    def __init__(self, patterns: Iterable[Pattern] = BUILT_IN) -> None:
        self.patterns = tuple(patterns)

    def redact(self, text: str) -> tuple[str, list[str]]:
        """The text with each credential replaced by its marker, and the kinds replaced (one per credential)."""
        found: list[str] = []
        for pattern in self.patterns:
            if not pattern.regex.search(text):
                continue
            pieces, end = [], 0
            for match in pattern.regex.finditer(text):
                start, stop = match.span(pattern.group)
                if start < end or start == stop or text[start:stop].startswith("[REDACTED:"):
                    continue
                pieces += [text[end:start], marker(pattern.kind)]
                end = stop
                found.append(pattern.kind)
            if pieces:
                text = "".join(pieces) + text[end:]
        return text, found


def from_settings(environ: dict[str, str]) -> Redactor | None:
    """The redactor the settings ask for: None with REDACTION=off, else the built-in patterns and the team's."""
    mode = environ.get(OFF_SETTING, "").strip().lower() or "on"
    if mode not in ("on", "off"):
        raise ValueError(f"{OFF_SETTING}={environ[OFF_SETTING]} is neither on nor off; set REDACTION=off to store "
                         "credentials as sent, or remove it")
    if mode == "off":
        return None
    return Redactor(BUILT_IN + parse_patterns(environ.get(SETTING, "")))
