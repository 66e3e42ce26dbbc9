"""Masking of secrets in everything driftd prints: log lines from any logger, and CLI errors.

``Redactor`` replaces every configured secret value (webhook URL and its path and token,
passwords, routing keys, tokens, the store password) and a few well-known secret shapes
(Slack webhook paths, ``user:password@`` in URLs, ``password=…`` / ``token=…`` pairs,
bearer tokens, ``"routing_key": "…"``) with ``***``. ``daemon.logs`` runs it as a structlog
processor on every event dict *before* rendering, both for driftd's own events and for
records of library loggers (slack_sdk, urllib3, psycopg2 …) that reach the root handler, so
a library that logs a URL cannot leak it. Masking values, not the rendered line, keeps the
JSON valid whatever a secret contains. Exact values are masked with ``sinks.redact.scrub``,
the function the sinks use on their own error messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pydantic import SecretStr
from structlog.typing import EventDict

from sinks.redact import MASK, scrub

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Slack incoming webhooks: everything after /services/ is the secret.
    (re.compile(r"(hooks\.slack(?:-gov)?\.com/services/)[^\s'\"<>]+"), rf"\1{MASK}"),
    (re.compile(r"(/services/)T[A-Za-z0-9]+/B[A-Za-z0-9]+/[^\s'\"<>/]+"), rf"\1{MASK}"),
    # scheme://user:password@host
    (re.compile(r"(://[^:/@\s]*:)[^@/\s]+(@)"), rf"\1{MASK}\2"),
    # password=…, token=… in DSNs and query strings (the '=' form only: "token: empty" is prose)
    (
        re.compile(r"((?:password|passwd|token|secret|routing_key|api_key)=)[^\s&'\",;]+", re.I),
        rf"\1{MASK}",
    ),
    (re.compile(r"(\"routing_key\"\s*:\s*\")[^\"]+"), rf"\1{MASK}"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.I), rf"\1{MASK}"),
)


class Redactor:
    """Masks ``secrets`` (exact values, longest first) and the known secret shapes.

    Calling it as a structlog processor ``(logger, method, event_dict)`` masks every string
    value of the event (nested dicts and lists included); ``text(s)`` masks one string.
    """

    def __init__(self, secrets: Iterable[str | SecretStr | None] = ()) -> None:
        values = {
            s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets if s
        }
        self._secrets = [v for v in values if v and v.strip()]

    def text(self, value: str) -> str:
        """``value`` with every secret and secret-shaped part replaced by ``***``."""
        value = scrub(value, self._secrets)
        for pattern, replacement in _PATTERNS:
            value = pattern.sub(replacement, value)
        return value

    def value(self, value: object) -> object:
        """``value`` with its strings masked (dicts, lists and tuples walked)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, BaseException):
            return self.text(f"{type(value).__name__}: {value}")
        return value

    def __call__(self, logger: object, method: str, event_dict: EventDict) -> EventDict:
        return {
            key: value if key.startswith("_") else self.value(value)
            for key, value in event_dict.items()
        }
