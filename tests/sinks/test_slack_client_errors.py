"""Slack transport: whatever the HTTP client raises becomes a ``DeliveryError`` that never
quotes the webhook URL (a URL the config would refuse, built here directly)."""

from __future__ import annotations

import pytest

from sinks.errors import DeliveryError
from sinks.messages import AlertMessage
from sinks.slack import SlackConfig, SlackTransport
from tests.fixtures.servers import RecordingHTTPServer

TOKEN = "tokenWITHspace0123"


def test_a_url_the_http_client_refuses_is_a_permanent_error_without_the_secret(
    slack_server: RecordingHTTPServer,
) -> None:
    """urllib's InvalidURL quotes the path (the secret); the error the outbox stores does not."""
    url = f"{slack_server.url}/services/T0/B0/{TOKEN} x"
    with pytest.raises(DeliveryError) as caught:
        SlackTransport(SlackConfig(webhook_url=url, timeout_s=5)).send(AlertMessage.test())
    assert caught.value.permanent
    assert "InvalidURL" in str(caught.value) and TOKEN not in str(caught.value)
    assert slack_server.requests == []
