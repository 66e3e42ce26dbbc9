"""The email channel: ``[alerts.email]``, SMTP with STARTTLS or implicit TLS."""

from __future__ import annotations

from typing import ClassVar, TextIO

from pydantic import Field, SecretStr, field_validator, model_validator

from analyzer.severity import Severity
from daemon.channels.base import Channel, Transport
from daemon.config_types import non_empty_secret
from daemon.defaults import EMAIL_MIN_SEVERITY, EMAIL_PORT, EMAIL_TIMEOUT_S
from sinks.email import EmailConfig, EmailTransport


class EmailSettings(Channel):
    """``[alerts.email]``: SMTP with STARTTLS (default) or implicit TLS (``ssl = true``)."""

    NAME: ClassVar[str] = "email"
    CREDENTIALS: ClassVar[dict[str, str]] = {"smtp_password": "password"}

    host: str
    port: int = Field(default=EMAIL_PORT, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    sender: str
    recipients: list[str] = Field(min_length=1)
    min_severity: Severity = EMAIL_MIN_SEVERITY
    enabled: bool = True
    timeout_s: float = Field(default=EMAIL_TIMEOUT_S, gt=0)

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

    def active(self) -> bool:
        return self.enabled

    def threshold(self) -> Severity | None:
        return max(self.min_severity, Severity.LOW)

    def secrets(self) -> list[str]:
        return [self.password.get_secret_value()] if self.password is not None else []

    def transport(self, stream: TextIO | None = None) -> Transport:
        return EmailTransport(EmailConfig(
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
        ))
