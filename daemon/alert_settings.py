"""``[alerts]``, ``[alerts.*]``, ``[[alerts.silences]]`` and ``[retrain]`` config sections.

Pydantic models embedded in ``daemon.config.Settings``; unknown keys are rejected, secrets are
``SecretStr`` (they never appear in ``repr`` or validation errors). ``to_config()`` turns a
section into the plain frozen config object its ``sinks`` transport takes.

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

import ipaddress
from datetime import date, datetime, time, timedelta, timezone
from typing import Literal, overload
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from analyzer.severity import Severity
from sinks.email import EmailConfig
from sinks.pagerduty import DEFAULT_EVENTS_URL, PagerDutyConfig
from sinks.retrain import RetrainConfig
from sinks.slack import SlackConfig

#: Channel names a silence may list (the keys of ``daemon.alerts.TRANSPORTS``).
CHANNELS = ("console", "slack", "email", "pagerduty", "retrain")


class _Section(BaseModel):
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


class SlackSettings(_Section):
    """``[alerts.slack]``: an incoming webhook; alerts at ``min_severity`` and above."""

    webhook_url: SecretStr
    min_severity: Severity = Severity.LOW
    enabled: bool = True
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr) -> SecretStr:
        non_empty_secret(value)
        check_url(value.get_secret_value(), what="webhook_url",
                  example="https://hooks.slack.com/services/…", secret=True)
        return value

    def to_config(self) -> SlackConfig:
        return SlackConfig(
            webhook_url=self.webhook_url.get_secret_value(), timeout_s=self.timeout_s
        )


class EmailSettings(_Section):
    """``[alerts.email]``: SMTP with STARTTLS (default) or implicit TLS (``ssl = true``)."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    min_severity: Severity = Severity.MEDIUM
    enabled: bool = True
    timeout_s: float = Field(default=20.0, gt=0)

    @field_validator("recipients", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        # DRIFTD_ALERTS__EMAIL__RECIPIENTS="a@x.org, b@x.org" (a JSON list works too).
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("password")
    @classmethod
    def _password_set(cls, value: SecretStr | None) -> SecretStr | None:
        return non_empty_secret(value)

    @model_validator(mode="after")
    def _one_tls_mode(self) -> EmailSettings:
        if self.ssl and self.starttls:
            raise ValueError(
                "ssl (implicit TLS, port 465) and starttls (port 587) are exclusive; "
                "set starttls = false when ssl = true"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not; set username too")
        return self

    def to_config(self) -> EmailConfig:
        return EmailConfig(
            host=self.host,
            port=self.port,
            sender=self.sender,
            recipients=tuple(self.recipients),
            username=self.username,
            password=self.password.get_secret_value() if self.password else None,
            starttls=self.starttls,
            ssl=self.ssl,
            ca_file=self.ca_file,
            timeout_s=self.timeout_s,
        )


class PagerDutySettings(_Section):
    """``[alerts.pagerduty]``: Events API v2 integration key; pages at ``high`` by default."""

    routing_key: SecretStr
    events_url: str = DEFAULT_EVENTS_URL
    min_severity: Severity = Severity.HIGH
    enabled: bool = True
    timeout_s: float = Field(default=10.0, gt=0)

    @field_validator("routing_key")
    @classmethod
    def _key_set(cls, value: SecretStr) -> SecretStr:
        return non_empty_secret(value)

    @field_validator("events_url")
    @classmethod
    def _https(cls, value: str) -> str:
        return check_url(value, what="events_url", secret=False,
                         example="https://events.pagerduty.com/v2/enqueue")

    def to_config(self) -> PagerDutyConfig:
        return PagerDutyConfig(
            routing_key=self.routing_key.get_secret_value(),
            events_url=self.events_url,
            timeout_s=self.timeout_s,
        )


class Silence(_Section):
    """``[[alerts.silences]]``: no sending while it applies (logged as ``alert.silenced``).

    A silence applies to an alert when the alert's folder date or the time of planning falls
    in ``[start, end]``. A date ``end`` covers that whole day; naive datetimes are UTC.
    ``channels`` empty means every channel, the retraining trigger included.
    """

    start: datetime | date
    end: datetime | date
    channels: list[str] = []
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


class AlertsSettings(_Section):
    """``[alerts]``: channels, silences and delivery policy.

    ``console`` prints alerts to stdout when no other channel is configured (the embedded
    default, used by ``driftd demo``). Failed deliveries are retried with exponential backoff
    (``backoff_base_s · 2^(attempt-1)``, capped at ``backoff_cap_s``, times a random jitter
    in [0.5, 1]) up to ``max_attempts`` tries, then recorded as dead.
    """

    monitor: str = Field(default="driftd", min_length=1, max_length=200)
    slack: SlackSettings | None = None
    email: EmailSettings | None = None
    pagerduty: PagerDutySettings | None = None
    console: bool = True
    silences: list[Silence] = []
    report_base_url: str | None = None
    max_attempts: int = Field(default=8, ge=1)
    backoff_base_s: float = Field(default=30.0, gt=0)
    backoff_cap_s: float = Field(default=3600.0, gt=0)
    send_timeout_s: float = Field(default=60.0, gt=0)


class RetrainSettings(_Section):
    """``[retrain]``: the retraining trigger (off unless ``command`` or ``url`` is set).

    ``command`` is an argv list run without a shell; ``{report_json}``, ``{severity}``,
    ``{partition}`` and ``{report_url}`` in it are replaced, and the same values are in the
    environment as ``DRIFTD_REPORT_JSON`` etc. ``url`` is POSTed the report summary as JSON
    (``token`` as a bearer token). On high severity it runs at once (``on_high = "now"``);
    on medium it is scheduled for the next ``medium_at`` (HH:MM, UTC) unless
    ``on_medium = "off"``. It never runs twice for the same folder date.
    """

    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = None
    token: SecretStr | None = None
    on_high: Literal["now", "off"] = "now"
    on_medium: Literal["schedule", "now", "off"] = "schedule"
    medium_at: str = "03:00"
    timeout_s: float = Field(default=3600.0, gt=0)

    @field_validator("url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_url(value, what="url", example="https://ci.example.com/hooks/retrain",
                         secret=True)

    @field_validator("token")
    @classmethod
    def _token_set(cls, value: SecretStr | None) -> SecretStr | None:
        return non_empty_secret(value)

    @field_validator("medium_at")
    @classmethod
    def _hh_mm(cls, value: str) -> str:
        try:
            time.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"medium_at {value!r} must be HH:MM (24 h, UTC), e.g. '03:00'"
            ) from None
        return value

    @property
    def enabled(self) -> bool:
        """True when there is something to trigger."""
        return bool(self.command or self.url)

    def next_medium_run(self, now: datetime) -> datetime:
        """The first ``medium_at`` (UTC) at or after ``now``."""
        at = time.fromisoformat(self.medium_at)
        moment = datetime.combine(now.astimezone(timezone.utc).date(), at, timezone.utc)
        return moment if moment >= now else moment + timedelta(days=1)

    def to_config(self) -> RetrainConfig:
        return RetrainConfig(
            command=tuple(self.command) if self.command else None,
            url=self.url,
            token=self.token.get_secret_value() if self.token else None,
            timeout_s=self.timeout_s,
        )
