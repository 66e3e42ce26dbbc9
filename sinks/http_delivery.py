"""POST a JSON body with the standard library and turn the outcome into ``DeliveryError``.

Shared by the HTTP alert transports (PagerDuty, the retraining URL) and by Slack's status
check, so that every channel classifies HTTP failures the same way: 429 and 5xx and
network errors are transient (retried), every other non-2xx status is permanent. Messages
name the channel, never the URL (it may carry a secret token).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from sinks.errors import DeliveryError

#: Statuses worth retrying besides 5xx: rate limited, request timeout, too early.
TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class HttpResponse:
    """A received HTTP answer: status, headers (lower-case names) and body text."""

    status: int
    headers: dict[str, str]
    body: str


def post_json(
    url: str,
    body: Mapping[str, Any],
    *,
    timeout_s: float,
    channel: str,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """POST ``body`` as JSON and return the answer whatever its status.

    Raises ``DeliveryError(permanent=False)`` when no answer arrived (connection refused,
    DNS failure, timeout); the message names ``channel`` and the cause, not the URL.
    """
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("User-Agent", "driftd")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return HttpResponse(
                status=response.status,
                headers={k.lower(): v for k, v in response.headers.items()},
                body=response.read().decode("utf-8", "replace"),
            )
    except urllib.error.HTTPError as err:
        return HttpResponse(
            status=err.code,
            headers={k.lower(): v for k, v in (err.headers or {}).items()},
            body=err.read().decode("utf-8", "replace") if err.fp else "",
        )
    except urllib.error.URLError as err:
        raise DeliveryError(
            f"{channel}: could not reach the endpoint ({err.reason}); will retry",
            permanent=False,
        ) from None
    except OSError as err:  # timeouts and resets raised while reading the answer
        raise DeliveryError(
            f"{channel}: no answer from the endpoint ({type(err).__name__}: {err}); will retry",
            permanent=False,
        ) from None


def error_for_status(
    status: int, headers: Mapping[str, str], body: str, *, channel: str
) -> DeliveryError:
    """The ``DeliveryError`` for a non-success ``status`` (permanent unless 408/425/429/5xx).

    ``retry_after`` comes from the ``Retry-After`` header (seconds or an HTTP date).
    """
    transient = status in TRANSIENT_STATUSES or status >= 500
    hint = {
        400: "the endpoint rejected the request body",
        401: "check the credential (webhook URL, routing key or token)",
        403: "check the credential (webhook URL, routing key or token)",
        404: "check the URL: the endpoint does not exist (a revoked webhook answers 404)",
        410: "the endpoint is gone (a revoked webhook answers 410)",
    }.get(status, "will retry" if transient else "not retried")
    excerpt = " ".join(body.split())[:200]
    return DeliveryError(
        f"{channel}: HTTP {status} {excerpt!r}; {hint}",
        permanent=not transient,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header value (delta-seconds or HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())
