"""The Slack channel: ``[alerts.slack]``, an incoming webhook."""

from __future__ import annotations

from typing import ClassVar, TextIO

from pydantic import Field, SecretStr, field_validator

from analyzer.severity import Severity
from daemon.channels.base import Channel, Transport
from daemon.config_types import check_url, non_empty_secret
from daemon.defaults import SLACK_MIN_SEVERITY, SLACK_TIMEOUT_S
from sinks.redact import webhook_secrets
from sinks.slack import SlackConfig, SlackTransport


class SlackSettings(Channel):
    """``[alerts.slack]``: an incoming webhook; alerts at ``min_severity`` and above."""

    NAME: ClassVar[str] = "slack"
    CREDENTIALS: ClassVar[dict[str, str]] = {"slack_webhook_url": "webhook_url"}

    webhook_url: SecretStr
    min_severity: Severity = SLACK_MIN_SEVERITY
    enabled: bool = True
    timeout_s: float = Field(default=SLACK_TIMEOUT_S, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        non_empty_secret(value)
        check_url(value.get_secret_value(), what="webhook_url",
                  example="https://hooks.slack.com/services/…", secret=True)
        return value

    def active(self) -> bool:
        return self.enabled

    def threshold(self) -> Severity | None:
        return max(self.min_severity, Severity.LOW)

    def secrets(self) -> list[str]:
        return webhook_secrets(self.webhook_url.get_secret_value())

    def transport(self, stream: TextIO | None = None) -> Transport:
        return SlackTransport(SlackConfig(self.webhook_url.get_secret_value(), self.timeout_s))
