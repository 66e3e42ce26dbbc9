"""Building blocks of the config models: the strict section, secret and URL checks.

Every table of config.toml is a ``ConfigSection``: frozen, and an unknown key is an error
naming it. The checks raise ``ValueError`` with a message that pydantic reports under the
key's dotted path, and never quote a secret.
"""

from __future__ import annotations

import ipaddress
from typing import overload
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr


class ConfigSection(BaseModel):
    """A config table: frozen, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@overload
def non_empty_secret(value: SecretStr) -> SecretStr: ...
@overload
def non_empty_secret(value: None) -> None: ...
@overload
def non_empty_secret(value: SecretStr | None) -> SecretStr | None: ...
def non_empty_secret(value: SecretStr | None) -> SecretStr | None:
    """Refuse an empty (or blank) secret: it can only be a mistake, and fails late otherwise."""
    if value is not None and not value.get_secret_value().strip():
        raise ValueError("empty; set the secret (or remove the key and its credential file)")
    return value


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, what: str, example: str, secret: bool) -> str:
    """``url`` when it is a strict ``https://host/...`` URL (``http://`` only to a loopback
    host, for local relays and tests); raise ``ValueError`` naming the problem otherwise.

    No whitespace or control characters anywhere (an HTTP client would put them on the
    request line, or refuse them in an error that quotes the URL). The message quotes the
    value only when ``secret`` is false.
    """
    shown = "" if secret else f" {url!r}"
    bad = next((c for c in url if c.isspace() or ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ValueError(
            f"{what}{shown} contains whitespace or a control character "
            f"(U+{ord(bad):04X}); remove it (check the credential file for stray "
            "spaces or line breaks)"
        )
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"{what}{shown} is not a valid URL; use e.g. {example}") from None
    if parts.scheme not in ("https", "http") or not host:
        raise ValueError(f"{what}{shown} must be an https:// URL with a host, e.g. {example}")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValueError(
            f"{what}{shown} uses http:// to a non-loopback host; use https:// "
            "(http:// is accepted only for 127.0.0.1, ::1 or localhost)"
        )
    return url


def parse_listen(listen: str) -> tuple[str, int]:
    """Split ``[http] listen`` (``"127.0.0.1:8000"``, ``"[::1]:8000"``, port 0 = any free port)
    into (host, port); raise ``ValueError`` naming the value and the expected form."""
    text = listen.strip()
    host, sep, port_text = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535 or (
        ":" in host and not text.startswith("[")
    ):
        raise ValueError(
            f"[http] listen = {listen!r} is not host:port; write e.g. \"127.0.0.1:8000\" "
            f"(\"[::1]:8000\" for IPv6), or \"off\" to disable the status API"
        )
    return host, int(port_text)
