"""SlackTransport against a real loopback webhook server."""

from __future__ import annotations

import logging
from datetime import date

import pytest

from analyzer.severity import Severity
from sinks.errors import DeliveryError
from sinks.messages import AlertMessage
from sinks.slack import SlackConfig, SlackTransport
from tests.fixtures.servers import RecordingHTTPServer, Reply

SECRET_PATH = "/services/T0001/B0002/xoxSECRETwebhookTOKEN"


def _message(severity: Severity = Severity.HIGH) -> AlertMessage:
    return AlertMessage(
        kind="drift",
        partition=date(2026, 11, 26),
        severity=severity,
        drift_detected=True,
        summary="High drift: sharpness and noise_level shifted",
        monitor="skin-classifier",
        pixel_mean_shift=0.0832,
        confidence_shift=-0.12,
        class_drift_distance=0.03,
        baseline_image_count=500,
        current_image_count=480,
        top_features=("sharpness", "noise_level"),
        report_url="https://monitor.example/reports/monitor_report_20261126.html",
    )


def _transport(server: RecordingHTTPServer) -> SlackTransport:
    return SlackTransport(SlackConfig(webhook_url=server.url + SECRET_PATH, timeout_s=5))


class TestSlackTransport:
    def test_posts_the_seed_layout_coloured_by_severity(
        self, slack_server: RecordingHTTPServer
    ) -> None:
        """A drift alert arrives with the seed's header and fields, the colour and a report link."""
        _transport(slack_server).send(_message(Severity.MEDIUM))
        (request,) = slack_server.requests
        assert request.path == SECRET_PATH
        body = request.json
        assert body["blocks"][0]["type"] == "header"
        assert "Model Drift Alert - MEDIUM" in body["blocks"][0]["text"]["text"]
        attachment = body["attachments"][0]
        assert attachment["color"] == "#ff6600"
        fields = [f["text"] for f in attachment["blocks"][0]["fields"]]
        assert "*Drift Detected:*\nTrue" in fields
        assert "*Pixel Shift:*\n0.0832" in fields
        assert "*Images:*\n480" in fields
        assert "monitor_report_20261126.html" in str(attachment["blocks"])

    @pytest.mark.parametrize(
        ("severity", "colour"),
        [(Severity.LOW, "#ffaa00"), (Severity.HIGH, "#ff0000")],
    )
    def test_colour_follows_severity(
        self, slack_server: RecordingHTTPServer, severity: Severity, colour: str
    ) -> None:
        """Each severity gets the seed's colour bar."""
        _transport(slack_server).send(_message(severity))
        assert slack_server.requests[0].json["attachments"][0]["color"] == colour

    def test_server_error_is_transient(self, slack_server: RecordingHTTPServer) -> None:
        """A 500 raises a retryable error (slack-sdk itself would return it silently)."""
        slack_server.respond(500)
        with pytest.raises(DeliveryError) as err:
            _transport(slack_server).send(_message())
        assert not err.value.permanent

    def test_rate_limit_carries_retry_after(self, slack_server: RecordingHTTPServer) -> None:
        """A 429 is retryable and carries the server's Retry-After seconds."""
        slack_server.respond((429, {"Retry-After": "7"}))
        with pytest.raises(DeliveryError) as err:
            _transport(slack_server).send(_message())
        assert not err.value.permanent
        assert err.value.retry_after == 7

    @pytest.mark.parametrize("status", [400, 403, 404])
    def test_client_errors_are_permanent(
        self, slack_server: RecordingHTTPServer, status: int
    ) -> None:
        """Bad payloads and revoked webhooks are not retried."""
        slack_server.respond(Reply(status, body="invalid_token"))
        with pytest.raises(DeliveryError) as err:
            _transport(slack_server).send(_message())
        assert err.value.permanent

    def test_ok_status_without_ok_body_is_an_error(self, slack_server: RecordingHTTPServer) -> None:
        """A 200 whose body is not 'ok' is not counted as delivered."""
        slack_server.respond(Reply(200, body="no_text"))
        with pytest.raises(DeliveryError):
            _transport(slack_server).send(_message())

    def test_unreachable_webhook_is_transient(self) -> None:
        """A refused connection is retryable."""
        with pytest.raises(DeliveryError) as err:
            SlackTransport(SlackConfig(f"http://127.0.0.1:9{SECRET_PATH}", timeout_s=2)).send(
                _message()
            )
        assert not err.value.permanent

    def test_webhook_url_never_logged_or_raised(
        self, slack_server: RecordingHTTPServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Even at DEBUG, neither slack_sdk's logs nor our errors contain the webhook secret."""
        caplog.set_level(logging.DEBUG)
        slack_server.respond(500, 400)
        transport = _transport(slack_server)
        messages = []
        for _ in range(2):
            with pytest.raises(DeliveryError) as err:
                transport.send(_message())
            messages.append(str(err.value))
        transport.send(_message())
        assert "xoxSECRETwebhookTOKEN" not in caplog.text
        assert not any("xoxSECRETwebhookTOKEN" in m for m in messages)
        assert "xoxSECRETwebhookTOKEN" not in repr(SlackConfig(slack_server.url + SECRET_PATH, 5))
