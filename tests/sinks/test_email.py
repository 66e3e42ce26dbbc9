"""EmailTransport against a real aiosmtpd server on 127.0.0.1 (plain and STARTTLS + AUTH)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from analyzer.severity import Severity
from sinks.email import EmailConfig, EmailTransport
from sinks.errors import DeliveryError
from sinks.messages import AlertMessage
from tests.fixtures.servers import SMTP_PASSWORD, SMTP_USER, SMTPServer, free_port

MESSAGE = AlertMessage(
    kind="drift",
    partition=date(2026, 11, 26),
    severity=Severity.HIGH,
    drift_detected=True,
    summary="High drift: sharpness shifted",
    monitor="skin-classifier",
    pixel_mean_shift=0.0832,
    current_image_count=480,
    baseline_image_count=500,
    report_url="https://monitor.example/reports/monitor_report_20261126.html",
)


def _plain(server: SMTPServer, *recipients: str) -> EmailConfig:
    return EmailConfig(
        host=server.host,
        port=server.port,
        sender="driftd@example.com",
        recipients=recipients or ("ml-team@example.com",),
        starttls=False,
        ssl=False,
        timeout_s=5,
    )


def _tls(server: SMTPServer, password: str = SMTP_PASSWORD) -> EmailConfig:
    return EmailConfig(
        host="localhost",
        port=server.port,
        sender="driftd@example.com",
        recipients=("ml-team@example.com", "oncall@example.com"),
        username=SMTP_USER,
        password=password,
        starttls=True,
        ssl=False,
        ca_file=server.ca_file,
        timeout_s=5,
    )


class TestEmailTransport:
    def test_sends_html_table_and_plain_text(self, smtp_server: SMTPServer) -> None:
        """The mail has the seed's subject, an HTML metric table and a plain-text part."""
        EmailTransport(_plain(smtp_server)).send(MESSAGE)
        (mail,) = smtp_server.received
        assert mail.rcpt_tos == ["ml-team@example.com"]
        assert mail.message["Subject"].startswith("Model Drift Alert - HIGH")
        html_part = mail.message.get_body(("html",))
        text_part = mail.message.get_body(("plain",))
        assert html_part is not None and text_part is not None
        html, text = html_part.get_content(), text_part.get_content()
        assert "<td>Pixel Mean Shift</td><td>0.0832</td>" in html
        assert "monitor_report_20261126.html" in html
        assert "Images Analyzed: 480" in text

    def test_partial_recipient_refusal_is_an_error(self, smtp_server: SMTPServer) -> None:
        """One refused recipient out of two raises a permanent error naming it."""
        config = _plain(smtp_server, "ml-team@example.com", "refuse-me@example.com")
        with pytest.raises(DeliveryError) as err:
            EmailTransport(config).send(MESSAGE)
        assert err.value.permanent
        assert "refuse-me@example.com" in str(err.value)

    def test_all_recipients_refused_is_permanent(self, smtp_server: SMTPServer) -> None:
        """Every recipient refused is a permanent failure and nothing is delivered."""
        with pytest.raises(DeliveryError) as err:
            EmailTransport(_plain(smtp_server, "refuse@example.com")).send(MESSAGE)
        assert err.value.permanent
        assert smtp_server.received == []

    def test_unreachable_server_is_transient(self, smtp_server: SMTPServer) -> None:
        """A refused connection is retried later."""
        closed_port = replace(_plain(smtp_server), port=free_port())
        with pytest.raises(DeliveryError) as err:
            EmailTransport(closed_port).send(MESSAGE)
        assert not err.value.permanent

    def test_starttls_with_verified_certificate_and_login(
        self, smtp_tls_server: SMTPServer
    ) -> None:
        """STARTTLS verifies the server against ca_file, then logs in and delivers."""
        EmailTransport(_tls(smtp_tls_server)).send(MESSAGE)
        (mail,) = smtp_tls_server.received
        assert mail.tls
        assert mail.login == SMTP_USER
        assert len(mail.rcpt_tos) == 2

    def test_untrusted_certificate_is_refused(self, smtp_tls_server: SMTPServer) -> None:
        """Without the private CA the self-signed certificate is rejected (nothing sent)."""
        with pytest.raises(DeliveryError) as err:
            EmailTransport(replace(_tls(smtp_tls_server), ca_file=None)).send(MESSAGE)
        assert err.value.permanent
        assert "ca_file" in str(err.value)
        assert smtp_tls_server.received == []

    def test_wrong_password_is_permanent_and_not_echoed(self, smtp_tls_server: SMTPServer) -> None:
        """A rejected login is not retried, and the password is neither in the error nor repr."""
        config = _tls(smtp_tls_server, password="wrong-" + SMTP_PASSWORD)
        with pytest.raises(DeliveryError) as err:
            EmailTransport(config).send(MESSAGE)
        assert err.value.permanent
        assert SMTP_PASSWORD not in str(err.value)
        assert SMTP_PASSWORD not in repr(config)
