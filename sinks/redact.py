"""Keeping secrets out of the text sinks produce: exact values, and passwords in DSNs.

A sink scrubs its own secrets (a webhook URL, a routing key, a database password) out of
every error message before raising, with ``scrub``; ``daemon.redact.Redactor`` uses the same
function for everything driftd logs or prints. ``mask_dsn`` is the one spelling of a DSN
that is safe to show.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
"""What a secret is replaced with."""

_URL_PASSWORD = re.compile(r"(://[^:/@?#\s]*:)([^@/\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)([^&#\s]*)", re.IGNORECASE)


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every non-empty secret in ``secrets`` replaced by ``***``, longest
    first (so a secret that contains another is masked whole)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def mask_dsn(dsn: str) -> str:
    """``dsn`` with any password masked as ``***`` (URL userinfo, ``?password=``, ``password=``)."""
    if "://" not in dsn:
        return _KV_PASSWORD.sub(rf"\1{MASK}", dsn)
    try:
        parts = urlsplit(dsn)
        if parts.password is not None:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{hostport}"
            dsn = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        pass  # not parseable as a URL: the patterns below still mask it
    dsn = _URL_PASSWORD.sub(rf"\1{MASK}\3", dsn)
    return _QUERY_PASSWORD.sub(rf"\1{MASK}", dsn)


def dsn_secrets(dsn: str) -> list[str]:
    """The password in ``dsn``'s URL userinfo, as written and percent-decoded (a driver's
    message may quote either); empty when there is none."""
    try:
        password = urlsplit(dsn).password if "://" in dsn else None
    except ValueError:
        return []
    return [p for p in dict.fromkeys([password, unquote(password)]) if p] if password else []


def webhook_secrets(url: str) -> list[str]:
    """The parts of a webhook URL to redact: the URL, its path and each token-like segment."""
    path = urlsplit(url).path
    segments = [p for p in path.split("/") if len(p) >= 8 and p != "services"]
    return sorted({url, path, *segments} - {"", "/"}, key=len, reverse=True)
