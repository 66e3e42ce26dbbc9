"""``[alerts]`` and ``[[alerts.silences]]``: which channels get alerts, and when not.

Pydantic models embedded in ``daemon.config.Settings``; unknown keys are rejected, secrets are
``SecretStr`` (they never appear in ``repr`` or validation errors). Each channel's own table
(``[alerts.slack]`` …, ``[retrain]``) is its model in ``daemon.channels``.

Example::

    [alerts]
    report_base_url = "https://monitoring.example.com/reports"
    [alerts.slack]
    webhook_url = "https://hooks.slack.com/services/…"  # or a slack_webhook_url credential
    min_severity = "low"
    [alerts.pagerduty]
    routing_key = "…"
    [[alerts.silences]]
    start = 2026-12-01
    end = 2026-12-03
    channels = ["pagerduty"]
    reason = "camera replacement on line 3"
    [retrain]
    command = ["/opt/ml/bin/retrain", "--report", "{report_json}", "--severity", "{severity}"]
    medium_at = "03:00"
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from pydantic import Field, field_validator, model_validator

from daemon.channels import CHANNELS, Channel, ConsoleChannel, RetrainSettings
from daemon.channels.email import EmailSettings
from daemon.channels.pagerduty import PagerDutySettings
from daemon.channels.slack import SlackSettings
from daemon.config_types import ConfigSection
from daemon.defaults import (
    ALERT_MAX_ATTEMPTS,
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    CONSOLE_ALERTS,
    MONITOR,
    SEND_TIMEOUT_S,
)

__all__ = ["AlertsSettings", "RetrainSettings", "Silence"]


class Silence(ConfigSection):
    """``[[alerts.silences]]``: no sending while it applies (logged as ``alert.silenced``).

    A silence applies to an alert when the alert's folder date or the time of planning falls
    in ``[start, end]``. A date ``end`` covers that whole day; naive datetimes are UTC.
    ``channels`` empty means every channel, the retraining trigger included.
    """

    start: datetime | date
    end: datetime | date
    channels: list[str] = Field(default_factory=list)
    reason: str = ""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _plain_date(cls, value: object) -> object:
        # "2026-12-03" (env vars, JSON) is a whole day, not midnight: keep it a date.
        if isinstance(value, str) and len(value.strip()) == 10:
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                return value
        return value

    @field_validator("channels", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(CHANNELS))
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; expected some of {list(CHANNELS)}")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Silence:
        if self.end_at <= self.start_at:
            raise ValueError(f"silence end {self.end} is not after start {self.start}")
        return self

    @property
    def start_at(self) -> datetime:
        """The first instant silenced (UTC)."""
        return _instant(self.start, end=False)

    @property
    def end_at(self) -> datetime:
        """The first instant no longer silenced (UTC); a date end means the next midnight."""
        return _instant(self.end, end=True)

    def covers(self, channel: str, partition: date, now: datetime) -> bool:
        """True when this silence suppresses ``channel`` for ``partition`` planned at ``now``."""
        if self.channels and channel not in self.channels:
            return False
        day_start = datetime.combine(partition, time(), timezone.utc)
        day_overlaps = day_start < self.end_at and day_start + timedelta(days=1) > self.start_at
        return day_overlaps or self.start_at <= now < self.end_at


def _instant(value: datetime | date, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    midnight = datetime.combine(value, time(), timezone.utc)
    return midnight + timedelta(days=1) if end else midnight


class AlertsSettings(ConfigSection):
    """``[alerts]``: channels, silences and delivery policy.

    ``console`` prints alerts to stdout when no other channel is configured (the embedded
    default, used by ``driftd demo``). Failed deliveries are retried with exponential backoff
    (``backoff_base_s · 2^(attempt-1)``, capped at ``backoff_cap_s``, times a random jitter
    in [0.5, 1]) up to ``max_attempts`` tries, then recorded as dead.
    """

    monitor: str = Field(default=MONITOR, min_length=1, max_length=200)
    slack: SlackSettings | None = None
    email: EmailSettings | None = None
    pagerduty: PagerDutySettings | None = None
    console: bool = CONSOLE_ALERTS
    silences: list[Silence] = Field(default_factory=list)
    report_base_url: str | None = None
    max_attempts: int = Field(default=ALERT_MAX_ATTEMPTS, ge=1)
    backoff_base_s: float = Field(default=BACKOFF_BASE_S, gt=0)
    backoff_cap_s: float = Field(default=BACKOFF_CAP_S, gt=0)
    send_timeout_s: float = Field(default=SEND_TIMEOUT_S, gt=0)

    def configured(self, retrain: RetrainSettings) -> dict[str, Channel]:
        """Every channel with a table (switched on or not), by name in ``CHANNELS`` order;
        the console while ``console`` is true, the retraining trigger from ``retrain``."""
        found: dict[str, Channel] = {}
        for name, kind in CHANNELS.items():
            section: object
            if kind is ConsoleChannel:
                section = ConsoleChannel() if self.console else None
            elif kind is RetrainSettings:
                section = retrain
            else:
                section = getattr(self, name)
            if isinstance(section, Channel):
                found[name] = section
        return found

    def secrets(self, retrain: RetrainSettings) -> list[str]:
        """Every configured channel secret (a channel switched off still has its secrets),
        for redacting text before it is stored, logged or printed."""
        return [s for c in self.configured(retrain).values() for s in c.secrets() if s]

    def channels(self, retrain: RetrainSettings) -> dict[str, Channel]:
        """The channels that are switched on: ``configured`` minus those whose table says
        ``enabled = false``, and minus the console when another channel gets drift alerts."""
        on = {n: c for n, c in self.configured(retrain).items() if c.active()}
        alerted = any(c.threshold() is not None and not c.FALLBACK for c in on.values())
        return {n: c for n, c in on.items() if not (c.FALLBACK and alerted)}
