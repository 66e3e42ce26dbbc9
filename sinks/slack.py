"""Slack incoming-webhook transport: the seed's header + fields layout, coloured by severity.

slack-sdk's ``WebhookClient`` returns (does not raise) on 4xx/5xx, so the status and the
``ok`` body are checked here. It also logs the webhook URL — the secret — at DEBUG and on
retries: the client gets its own logger pinned at WARNING and no retry handlers (the outbox
retries instead, with backoff that survives restarts).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.webhook import WebhookClient

from sinks.errors import DeliveryError
from sinks.http_delivery import error_for_status
from sinks.messages import AlertMessage
from sinks.redact import scrub, webhook_secrets

#: Slack truncates section text at 3000 characters; keep the summary well inside it.
MAX_SUMMARY_CHARS = 2900

_SDK_LOGGER = logging.getLogger("slack_sdk.webhook.driftd")
# The SDK logs the full URL whenever this logger's *own* level is <= DEBUG (NOTSET counts).
_SDK_LOGGER.setLevel(logging.WARNING)


@dataclass(frozen=True)
class SlackConfig:
    """Where and how to post: the webhook URL is a secret and stays out of ``repr``."""

    webhook_url: str = field(repr=False)
    timeout_s: float


class SlackTransport:
    """Posts one ``AlertMessage`` to a Slack incoming webhook."""

    def __init__(self, config: SlackConfig) -> None:
        self._config = config
        self._client = WebhookClient(
            config.webhook_url,
            timeout=max(1, round(config.timeout_s)),
            logger=_SDK_LOGGER,
            retry_handlers=[],
        )

    def send(self, message: AlertMessage) -> None:
        """Post ``message``; return once Slack answered 200 ``ok``.

        Raises ``DeliveryError``: transient for network errors, 429 (with ``retry_after``)
        and 5xx; permanent for other statuses (400 bad payload, 403/404/410 revoked webhook).
        """
        try:
            response = self._client.send(
                text=message.title,
                blocks=[_header(message)],
                attachments=[{"color": message.colour, "blocks": _body_blocks(message)}],
            )
        except OSError as err:  # URLError, timeouts, resets
            reason = self._scrub(str(getattr(err, "reason", err)))
            raise DeliveryError(
                f"slack: could not reach the webhook ({reason}); will retry", permanent=False
            ) from None
        except Exception as err:  # e.g. http.client.InvalidURL, whose text quotes the path
            raise DeliveryError(
                f"slack: the webhook URL was refused by the HTTP client ({type(err).__name__}: "
                f"{self._scrub(str(err))}); check alerts.slack.webhook_url",
                permanent=True,
            ) from None
        headers = {k.lower(): _first(v) for k, v in (response.headers or {}).items()}
        if response.status_code == 200 and response.body.strip() == "ok":
            return
        if response.status_code == 200:
            raise DeliveryError(
                f"slack: webhook answered 200 with {response.body[:200]!r} instead of 'ok'",
                permanent=True,
            )
        raise error_for_status(
            response.status_code, headers, self._scrub(response.body), channel="slack"
        )

    def _scrub(self, text: str) -> str:
        return scrub(text, webhook_secrets(self._config.webhook_url))


def _first(value: object) -> str:
    """Header values arrive as lists from slack-sdk; keep the first."""
    if isinstance(value, list | tuple):
        return str(value[0]) if value else ""
    return str(value)


def _header(message: AlertMessage) -> dict[str, Any]:
    emoji = {"drift": "⚠️", "resolve": "✅", "retrain": "🔁", "test": "🧪", "failed": "🛑",
             "run_failed": "🛑"}[message.kind]
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": f"{emoji} {message.title}"[:150]},
    }


def _body_blocks(message: AlertMessage) -> list[dict[str, Any]]:
    """The seed's fields section plus the summary and the report link."""
    blocks: list[dict[str, Any]] = []
    if message.has_metrics:
        fields = [
            {"type": "mrkdwn", "text": f"*Drift Detected:*\n{message.drift_detected}"},
            {"type": "mrkdwn", "text": f"*Severity:*\n{message.severity.value}"},
            {"type": "mrkdwn", "text": f"*Pixel Shift:*\n{message.pixel_mean_shift:.4f}"},
            {"type": "mrkdwn", "text": f"*Images:*\n{message.current_image_count}"},
            {"type": "mrkdwn", "text": f"*Confidence Shift:*\n{message.confidence_shift:+.4f}"},
            {"type": "mrkdwn", "text": f"*Class Drift:*\n{message.class_drift_distance:.4f}"},
        ]
        blocks.append({"type": "section", "fields": fields})
    text = message.summary[:MAX_SUMMARY_CHARS] or message.title
    if message.top_features:
        text += "\n*Top drifted features:* " + ", ".join(message.top_features)
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    if message.report_url:
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"<{message.report_url}|Open report>"}],
            }
        )
    return blocks
