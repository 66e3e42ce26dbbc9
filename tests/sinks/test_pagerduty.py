"""PagerDutyTransport against a real loopback Events API v2 endpoint."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest

from analyzer.severity import Severity
from sinks.errors import DeliveryError
from sinks.messages import AlertMessage
from sinks.pagerduty import PagerDutyConfig, PagerDutyTransport
from tests.fixtures.servers import RecordingHTTPServer, Reply

ROUTING_KEY = "R0UTINGKEYsecret0123456789abcdef"

DRIFT = AlertMessage(
    kind="drift",
    partition=date(2026, 11, 26),
    severity=Severity.HIGH,
    drift_detected=True,
    summary="High drift: " + "sharpness, " * 200,
    monitor="skin-classifier",
    report_url="https://monitor.example/reports/monitor_report_20261126.html",
)


def _transport(server: RecordingHTTPServer) -> PagerDutyTransport:
    return PagerDutyTransport(
        PagerDutyConfig(routing_key=ROUTING_KEY, events_url=server.url + "/v2/enqueue",
                        source="driftd", timeout_s=5)
    )


class TestPagerDutyTransport:
    def test_trigger_then_resolve_share_one_dedup_key(
        self, pagerduty_server: RecordingHTTPServer
    ) -> None:
        """Drift triggers and a later resolve closes the same incident key."""
        transport = _transport(pagerduty_server)
        transport.send(DRIFT)
        transport.send(replace(DRIFT, partition=date(2026, 11, 27), severity=Severity.MEDIUM))
        transport.send(replace(DRIFT, kind="resolve", severity=Severity.NONE))
        events = [r.json for r in pagerduty_server.requests]
        assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
        assert {e["dedup_key"] for e in events} == {"driftd/skin-classifier"}
        assert all(e["routing_key"] == ROUTING_KEY for e in events)
        assert pagerduty_server.requests[0].path == "/v2/enqueue"

    def test_a_failed_night_opens_its_own_incident(
        self, pagerduty_server: RecordingHTTPServer
    ) -> None:
        """A folder given up on triggers under its own key, so a drift resolve can't close it."""
        transport = _transport(pagerduty_server)
        transport.send(AlertMessage.failure(date(2026, 11, 26), "EmptyDatasetError: no images",
                                            attempts=3, monitor="skin-classifier"))
        event = pagerduty_server.requests[0].json
        assert event["event_action"] == "trigger"
        assert event["dedup_key"] == "driftd/skin-classifier/failed"
        assert event["payload"]["severity"] == "critical"
        assert "EmptyDatasetError" in event["payload"]["custom_details"]["Error"]

    def test_trigger_payload_maps_severity_and_truncates_summary(
        self, pagerduty_server: RecordingHTTPServer
    ) -> None:
        """High maps to critical, medium to warning; the summary fits PagerDuty's 1024 chars."""
        transport = _transport(pagerduty_server)
        transport.send(DRIFT)
        transport.send(replace(DRIFT, severity=Severity.MEDIUM))
        high, medium = (r.json["payload"] for r in pagerduty_server.requests)
        assert (high["severity"], medium["severity"]) == ("critical", "warning")
        assert len(high["summary"]) <= 1024
        assert pagerduty_server.requests[0].json["links"][0]["href"].endswith("20261126.html")

    def test_test_message_opens_and_closes_its_own_incident(
        self, pagerduty_server: RecordingHTTPServer
    ) -> None:
        """The wiring test never leaves an incident open on the real model's key."""
        _transport(pagerduty_server).send(AlertMessage.test(monitor="skin-classifier"))
        events = [r.json for r in pagerduty_server.requests]
        assert [e["event_action"] for e in events] == ["trigger", "resolve"]
        assert {e["dedup_key"] for e in events} == {"driftd/skin-classifier/test"}

    @pytest.mark.parametrize("status", [429, 500, 503])
    def test_rate_limit_and_server_errors_are_retried(
        self, pagerduty_server: RecordingHTTPServer, status: int
    ) -> None:
        """429 and 5xx raise retryable errors; Retry-After is passed on."""
        pagerduty_server.respond((status, {"Retry-After": "3"}))
        with pytest.raises(DeliveryError) as err:
            _transport(pagerduty_server).send(DRIFT)
        assert not err.value.permanent
        assert err.value.retry_after == 3

    @pytest.mark.parametrize("status", [400, 401, 403, 404])
    def test_client_errors_are_never_retried(
        self, pagerduty_server: RecordingHTTPServer, status: int
    ) -> None:
        """An invalid event or routing key is permanent, and the key is not in the message."""
        pagerduty_server.respond(Reply(status, body=f'{{"message": "bad key {ROUTING_KEY}"}}'))
        with pytest.raises(DeliveryError) as err:
            _transport(pagerduty_server).send(DRIFT)
        assert err.value.permanent
        assert ROUTING_KEY not in str(err.value)
        config = PagerDutyConfig(routing_key=ROUTING_KEY, events_url="https://pd.example",
                                 source="driftd", timeout_s=5)
        assert ROUTING_KEY not in repr(config)
