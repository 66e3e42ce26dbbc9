"""The PagerDuty channel: ``[alerts.pagerduty]``, Events API v2."""

from __future__ import annotations

from typing import ClassVar, TextIO

from pydantic import Field, SecretStr, field_validator

from analyzer.severity import Severity
from daemon.channels.base import Channel, Transport
from daemon.config_types import check_url, non_empty_secret
from daemon.defaults import (
    PAGERDUTY_EVENTS_URL,
    PAGERDUTY_MIN_SEVERITY,
    PAGERDUTY_SOURCE,
    PAGERDUTY_TIMEOUT_S,
)
from sinks.pagerduty import PagerDutyConfig, PagerDutyTransport


class PagerDutySettings(Channel):
    """``[alerts.pagerduty]``: Events API v2 integration key; pages at ``high`` by default."""

    NAME: ClassVar[str] = "pagerduty"
    CREDENTIALS: ClassVar[dict[str, str]] = {"pagerduty_routing_key": "routing_key"}

    routing_key: SecretStr
    events_url: str = PAGERDUTY_EVENTS_URL
    min_severity: Severity = PAGERDUTY_MIN_SEVERITY
    enabled: bool = True
    timeout_s: float = Field(default=PAGERDUTY_TIMEOUT_S, gt=0)

    @field_validator("routing_key")
    @classmethod
    def _key_set(cls, value: SecretStr) -> SecretStr:
        return non_empty_secret(value)

    @field_validator("events_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return check_url(value, what="events_url", secret=False,
                         example="https://events.pagerduty.com/v2/enqueue")

    def active(self) -> bool:
        return self.enabled

    def threshold(self) -> Severity | None:
        return max(self.min_severity, Severity.LOW)

    def secrets(self) -> list[str]:
        return [self.routing_key.get_secret_value()]

    def transport(self, stream: TextIO | None = None) -> Transport:
        return PagerDutyTransport(PagerDutyConfig(
            routing_key=self.routing_key.get_secret_value(),
            events_url=self.events_url,
            source=PAGERDUTY_SOURCE,
            timeout_s=self.timeout_s,
        ))
