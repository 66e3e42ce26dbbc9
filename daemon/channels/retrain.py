"""The retraining trigger: ``[retrain]``, a command and/or a URL, run on high or medium drift."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from typing import ClassVar, Literal, TextIO

from pydantic import Field, SecretStr, field_validator

from daemon.channels.base import Channel, Transport
from daemon.config_types import check_url, non_empty_secret
from daemon.defaults import (
    RETRAIN_MEDIUM_AT,
    RETRAIN_ON_HIGH,
    RETRAIN_ON_MEDIUM,
    RETRAIN_TIMEOUT_S,
)
from sinks.retrain import RetrainConfig, RetrainTransport


class RetrainSettings(Channel):
    """``[retrain]``: the retraining trigger (off unless ``command`` or ``url`` is set).

    ``command`` is an argv list run without a shell; ``{report_json}``, ``{severity}``,
    ``{partition}`` and ``{report_url}`` in it are replaced, and the same values are in the
    environment as ``DRIFTD_REPORT_JSON`` etc. ``url`` is POSTed the report summary as JSON
    (``token`` as a bearer token). On high severity it runs at once (``on_high = "now"``);
    on medium it is scheduled for the next ``medium_at`` (HH:MM, UTC) unless
    ``on_medium = "off"``. It never runs twice for the same folder date.
    """

    NAME: ClassVar[str] = "retrain"
    CREDENTIALS: ClassVar[dict[str, str]] = {"retrain_token": "token"}
    TESTABLE: ClassVar[bool] = False

    command: list[str] | None = Field(default=None, min_length=1)
    url: str | None = None
    token: SecretStr | None = None
    on_high: Literal["now", "off"] = RETRAIN_ON_HIGH
    on_medium: Literal["schedule", "now", "off"] = RETRAIN_ON_MEDIUM
    medium_at: str = RETRAIN_MEDIUM_AT
    timeout_s: float = Field(default=RETRAIN_TIMEOUT_S, gt=0)

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

    @classmethod
    def table(cls) -> tuple[str, ...]:
        return (cls.NAME,)

    @property
    def enabled(self) -> bool:
        """True when there is something to trigger."""
        return bool(self.command or self.url)

    def active(self) -> bool:
        return self.enabled

    def secrets(self) -> list[str]:
        return [self.token.get_secret_value()] if self.token is not None else []

    def next_medium_run(self, now: datetime) -> datetime:
        """The first ``medium_at`` (UTC) at or after ``now``."""
        at = time.fromisoformat(self.medium_at)
        moment = datetime.combine(now.astimezone(timezone.utc).date(), at, timezone.utc)
        return moment if moment >= now else moment + timedelta(days=1)

    def transport(self, stream: TextIO | None = None) -> Transport:
        return RetrainTransport(RetrainConfig(
            command=tuple(self.command) if self.command else None,
            url=self.url,
            token=self.token.get_secret_value() if self.token else None,
            timeout_s=self.timeout_s,
        ))
