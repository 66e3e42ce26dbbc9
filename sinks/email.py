"""SMTP email transport: the seed's HTML metric table plus a plain-text part.

Security: STARTTLS and implicit TLS both use ``ssl.create_default_context()`` (certificate and
host name verified; ``ca_file`` adds a private CA). smtplib's ``starttls()`` without a context
would not verify anything. ``send_message`` raises only when *every* recipient is refused; a
partial refusal comes back as a dict and is turned into a permanent ``DeliveryError`` here
(re-sending would duplicate the mail for the recipients who got it).
"""

from __future__ import annotations

import html
import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sinks.errors import DeliveryError
from sinks.messages import AlertMessage


@dataclass(frozen=True, kw_only=True)
class EmailConfig:
    """SMTP server, credentials and addresses; the password stays out of ``repr``.

    ``ssl`` selects implicit TLS (port 465); otherwise ``starttls`` upgrades a plain
    connection (port 587) and fails when the server does not offer STARTTLS.
    """

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    starttls: bool
    ssl: bool
    timeout_s: float
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None


class EmailTransport:
    """Sends one ``AlertMessage`` as a multipart (text + HTML) email to every recipient."""

    def __init__(self, config: EmailConfig) -> None:
        if not config.recipients:
            raise ValueError("email: recipients is empty; list at least one address")
        self._config = config

    def send(self, message: AlertMessage) -> None:
        """Deliver ``message``; return when the server accepted every recipient.

        Raises ``DeliveryError``: transient for connection errors, timeouts and 4xx SMTP
        replies; permanent for TLS verification failures, authentication failures, 5xx
        replies and any refused recipient (the message names them).
        """
        cfg = self._config
        email = build_email(message, cfg.sender, cfg.recipients)
        try:
            with self._connect() as smtp:
                if cfg.username is not None:
                    smtp.login(cfg.username, cfg.password or "")
                refused = smtp.send_message(email)
        except ssl.SSLCertVerificationError as err:
            raise DeliveryError(
                f"email: TLS certificate of {cfg.host}:{cfg.port} not trusted "
                f"({err.verify_message}); set ca_file for a private CA",
                permanent=True,
            ) from None
        except smtplib.SMTPAuthenticationError as err:
            raise DeliveryError(
                f"email: {cfg.host} rejected the login of user {cfg.username!r} "
                f"(SMTP {err.smtp_code}); check username/password",
                permanent=True,
            ) from None
        except smtplib.SMTPRecipientsRefused as err:
            raise DeliveryError(
                f"email: {cfg.host} refused every recipient {sorted(err.recipients)}",
                permanent=True,
            ) from None
        except smtplib.SMTPNotSupportedError as err:
            raise DeliveryError(
                f"email: {cfg.host}:{cfg.port} does not support {err}; "
                "check starttls/ssl/username for this server",
                permanent=True,
            ) from None
        except smtplib.SMTPResponseException as err:
            transient = 400 <= err.smtp_code < 500
            raise DeliveryError(
                f"email: {cfg.host} answered SMTP {err.smtp_code} {_text(err.smtp_error)[:200]!r}",
                permanent=not transient,
            ) from None
        except (smtplib.SMTPException, OSError) as err:
            raise DeliveryError(
                f"email: could not talk to {cfg.host}:{cfg.port} ({type(err).__name__}: {err});"
                " will retry",
                permanent=False,
            ) from None
        if refused:
            raise DeliveryError(
                f"email: {cfg.host} refused {len(refused)} of {len(cfg.recipients)} "
                f"recipients: {sorted(refused)} (the others received it; not retried)",
                permanent=True,
            )

    def _connect(self) -> smtplib.SMTP:
        cfg = self._config
        context = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.ssl:
            return smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=context)
        smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        try:
            if cfg.starttls:
                smtp.starttls(context=context)
        except BaseException:
            smtp.close()
            raise
        return smtp


def build_email(message: AlertMessage, sender: str, recipients: tuple[str, ...]) -> EmailMessage:
    """The email for ``message``: subject = title, a plain-text part and an HTML part."""
    email = EmailMessage()
    email["Subject"] = message.title
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Date"] = formatdate(localtime=False)
    email["Message-ID"] = make_msgid(domain="driftd")
    email.set_content(_text_body(message))
    email.add_alternative(_html_body(message), subtype="html")
    return email


def _text_body(message: AlertMessage) -> str:
    lines = [message.title, "", message.summary, ""]
    if message.has_metrics:
        lines += [f"{label}: {value}" for label, value in message.metric_rows()]
    if message.report_url:
        lines += ["", f"Report: {message.report_url}"]
    return "\n".join(lines) + "\n"


def _html_body(message: AlertMessage) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(label)}</td><td>{esc(value)}</td></tr>"
        for label, value in message.metric_rows()
    )
    table = (
        f'<table border="1" cellpadding="4"><tr><th>Metric</th><th>Value</th></tr>{rows}</table>'
        if message.has_metrics
        else ""
    )
    link = (
        f'<p><a href="{esc(message.report_url, quote=True)}">Open the drift report</a></p>'
        if message.report_url
        else ""
    )
    return (
        "<html><body>"
        f'<h2 style="color:{message.colour}">{esc(message.title)}</h2>'
        f"<p><strong>Drift Detected:</strong> {message.drift_detected}</p>"
        f"<p><strong>Severity:</strong> {esc(message.severity.value)}</p>"
        f"<p>{esc(message.summary)}</p>{table}{link}"
        "</body></html>"
    )


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
