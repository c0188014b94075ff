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
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector

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
# A token's own characters: a match may not start or end inside a longer run of them (random base64 is one).
_TOKEN = r"A-Za-z0-9_-"
# Names of a PEM private key block: detect-secrets' list, and encrypted PKCS#8.
_PEM_NAMES = "|".join([*(re.escape(pattern.pattern.removeprefix("BEGIN "))
                         for pattern in PrivateKeyDetector.denylist if pattern.pattern.startswith("BEGIN ")),
                       "ENCRYPTED PRIVATE KEY"])
# A PEM body: base64, headers (Proc-Type: 4,ENCRYPTED), line breaks, also JSON-escaped ones.
_PEM_BODY = r"(?:\\[nr]|[\sA-Za-z0-9+/=:,.-])"
# A key that says secret, token, password or key, as its last word (`DB_PASSWORD`, `api_key`; not `max_tokens`).
_SECRET_KEY = r"[A-Za-z0-9_.-]{0,64}?(?:secret|token|passw(?:or)?d|pass|pwd|key|credentials?|auth)"
# A key may be quoted, as in JSON or YAML (`"password": "..."`), the quotes JSON-escaped or not.
_QUOTE = r"(?:\\?[\"'])?"
# A value: not a word of code or config (a call, an index, true/false), at least 4 characters.
_NOT_A_WORD = r"(?!(?:true|false|null|none|yes|no)\b)"

BUILT_IN: tuple[Pattern, ...] = (
    # Longest first where kinds overlap: a whole PEM block before anything inside it. Without its END line
    # (cut short), the block's body to where the base64 stops.
    Pattern("private-key", re.compile(rf"-----BEGIN (?:{_PEM_NAMES})-----(?:{_PEM_BODY}*?-----END [A-Z0-9 ]+-----"
                                      rf"|{_PEM_BODY}*+)")),
    *library("aws-access-key", AWSKeyDetector, only=[0]),
    Pattern("aws-secret-key", re.compile(r"aws_?secret_?access_?key[\"']?\s*[=:]\s*[\"']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+])",
                                         re.IGNORECASE), 1),
    *library("aws-secret-key", AWSKeyDetector, group=1, only=[1]),
    # detect-secrets' GitHub and GitLab patterns cap the length; tokens as long or longer, whole.
    Pattern("github-token", re.compile(rf"(?<![{_TOKEN}])(?:gh[pousr]_[A-Za-z0-9_]{{36,255}}|github_pat_[A-Za-z0-9_]{{22,255}})"
                                       rf"(?![{_TOKEN}])")),
    *library("github-token", GitHubTokenDetector),
    Pattern("gitlab-token", re.compile(r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}")),
    *library("gitlab-token", GitLabTokenDetector),
    Pattern("anthropic-key", re.compile(r"sk-ant-[a-z0-9]+-[A-Za-z0-9_-]{20,}+")),
    # OpenAI's keys, old and new (detect-secrets' pattern knows only the old, and backtracks on long runs).
    Pattern("openai-key", re.compile(rf"(?<![{_TOKEN}])sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{{20,}}+"
                                     rf"|[A-Za-z0-9]{{48}}(?![{_TOKEN}]))")),
    Pattern("google-api-key", re.compile(rf"(?<![{_TOKEN}])AIza[0-9A-Za-z_-]{{35}}(?![{_TOKEN}])")),
    Pattern("jwt", re.compile(rf"(?<![{_TOKEN}])eyJ[{_TOKEN}]{{5,}}+\.eyJ[{_TOKEN}]{{5,}}+\.[{_TOKEN}]*+")),
    *library("pypi-token", PypiTokenDetector),
    # npm's `_authToken=` (detect-secrets' pattern runs to the line's end, inside captured JSON its end).
    Pattern("npm-token", re.compile(r":_authToken=\s*([^\s\"'\\]++)"), 1),
    *library("slack-token", SlackDetector),
    # Stripe's keys are longer than detect-secrets' pattern: the whole key.
    Pattern("stripe-key", re.compile(rf"(?<![{_TOKEN}])[rs]k_(?:live|test)_[0-9A-Za-z]{{24,}}+")),
    *library("sendgrid-key", SendGridDetector),
    *library("square-secret", SquareOAuthDetector),
    *library("azure-storage-key", AzureStorageKeyDetector),
    *library("password-in-url", BasicAuthDetector, group=1),
    # Any userinfo password, also with characters detect-secrets leaves out (! $ + = ...), or no user.
    Pattern("password-in-url", re.compile(r"(?<![a-z0-9+.-])[a-z][a-z0-9+.-]{0,31}://[^\s/@:\"']{0,256}:([^\s/@\"']{1,256})@",
                                          re.IGNORECASE), 1),
    # The Basic credentials of a header (the env files' OTEL_EXPORTER_OTLP_HEADERS, curl -H) and of curl -u.
    Pattern("basic-auth", re.compile(r"authorization\s*[=:]\s*basic(?:%20|\s)+([A-Za-z0-9+/]{8,}+=*)",
                                     re.IGNORECASE), 1),
    Pattern("basic-auth", re.compile(r"(?<![\w-])(?:-u|--user)[ =]+[^\s:\"']+:([^\s\"'\\]+)"), 1),
    # A bearer token: 16 characters or more, one a digit (not "bearer authentication").
    Pattern("bearer-token", re.compile(r"\bbearer(?:%20|\s)+(?=[A-Za-z0-9._~+/-]{16})(?=[A-Za-z._~+/-]*[0-9])"
                                       r"([A-Za-z0-9._~+/-]++=*)", re.IGNORECASE), 1),
    # `.env` lines: a quoted value whole (quotes JSON-escaped or not), else the value up to where it ends.
    Pattern("env-secret", re.compile(
        rf"{_LINE}[ \t]*(?:export[ \t]+)?{_QUOTE}{_SECRET_KEY}{_QUOTE}[ \t]*[=:][ \t]*\\?([\"'])([^\"'\n]{{1,256}}?)\\?\1",
        re.IGNORECASE | re.MULTILINE), 2),
    Pattern("env-secret", re.compile(
        rf"{_LINE}[ \t]*(?:export[ \t]+)?{_QUOTE}{_SECRET_KEY}{_QUOTE}[ \t]*[=:][ \t]*{_NOT_A_WORD}"
        rf"([^\s\"'\\()\[\]{{}}<>]{{4,}}+)(?![(\[{{<])", re.IGNORECASE | re.MULTILINE), 1),
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
