"""PagerDuty Events API v2 transport: one incident per monitored model, resolved when drift ends.

Every drift alert is a ``trigger`` with the stable ``dedup_key`` ``driftd/<monitor>``, so
repeated drift nights update one open incident instead of paging again; a ``resolve`` alert
closes it. Severity mapping (PagerDuty knows critical/error/warning/info):

    high → critical, medium → warning, low → info, none → info

``error`` is left unused: a drift monitor has no state worse than "high" short of failing,
and a failing daemon is reported by systemd, not here. 202 is success; 429 and 5xx are
retried, every other status (400 invalid event, 401/403 bad routing key, 404) is permanent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from analyzer.severity import Severity
from sinks.http_delivery import error_for_status, post_json
from sinks.messages import AlertMessage
from sinks.redact import scrub

MAX_SUMMARY_CHARS = 1024
MAX_DEDUP_KEY_CHARS = 255

PAGERDUTY_SEVERITY: dict[Severity, str] = {
    Severity.HIGH: "critical",
    Severity.MEDIUM: "warning",
    Severity.LOW: "info",
    Severity.NONE: "info",
}


@dataclass(frozen=True)
class PagerDutyConfig:
    """Integration routing key (a secret, out of ``repr``) and the Events API endpoint."""

    routing_key: str = field(repr=False)
    events_url: str
    source: str
    timeout_s: float


class PagerDutyTransport:
    """Sends ``drift``/``test`` messages as triggers and ``resolve`` messages as resolves."""

    def __init__(self, config: PagerDutyConfig) -> None:
        self._config = config

    def send(self, message: AlertMessage) -> None:
        """Enqueue the event for ``message``; return when PagerDuty answered 2xx (202).

        A ``test`` message triggers an ``info`` event under its own key and resolves it at
        once, so the wiring is proven without leaving an incident open. Raises
        ``DeliveryError`` (transient: network, 429 with ``retry_after``, 5xx; else permanent).
        """
        if message.kind == "test":
            key = dedup_key(message.monitor, suffix="test")
            self._post(self._trigger(message, key))
            self._post({"event_action": "resolve", "dedup_key": key})
        elif message.kind == "resolve":
            self._post({"event_action": "resolve", "dedup_key": dedup_key(message.monitor)})
        elif message.kind in ("failed", "run_failed"):
            # Its own incident: a later clean night resolves drift, not a blind night.
            self._post(self._trigger(message, dedup_key(message.monitor, suffix="failed")))
        else:
            self._post(self._trigger(message, dedup_key(message.monitor)))

    def _trigger(self, message: AlertMessage, key: str) -> dict[str, Any]:
        details: dict[str, Any] = (
            dict(message.metric_rows()) if message.has_metrics else {"Error": message.summary}
        )
        if message.partition:
            details["partition"] = message.partition.isoformat()
        event: dict[str, Any] = {
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {
                "summary": _summary(message),
                "source": self._config.source,
                "severity": PAGERDUTY_SEVERITY[message.severity],
                "component": message.monitor,
                "group": "model-monitoring",
                "class": "data drift" if message.has_metrics else "monitoring failure",
                "custom_details": details,
            },
            "client": "driftd",
        }
        if message.report_url:
            event["links"] = [{"href": message.report_url, "text": "Drift report"}]
            event["client_url"] = message.report_url
        return event

    def _post(self, event: dict[str, Any]) -> None:
        body = {"routing_key": self._config.routing_key, **event}
        response = post_json(
            self._config.events_url, body, timeout_s=self._config.timeout_s, channel="pagerduty"
        )
        if not 200 <= response.status < 300:
            raise error_for_status(
                response.status,
                response.headers,
                scrub(response.body, [self._config.routing_key]),
                channel="pagerduty",
            )


def dedup_key(monitor: str, suffix: str | None = None) -> str:
    """The incident key for ``monitor``: ``driftd/<monitor>`` (``/<suffix>``), ≤ 255 chars."""
    key = f"driftd/{monitor}" + (f"/{suffix}" if suffix else "")
    return key[:MAX_DEDUP_KEY_CHARS]


def _summary(message: AlertMessage) -> str:
    text = f"{message.title}: {message.summary}" if message.summary else message.title
    if len(text) > MAX_SUMMARY_CHARS:
        text = text[: MAX_SUMMARY_CHARS - 1] + "…"
    return text
