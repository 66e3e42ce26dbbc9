"""Alert routing and outbox delivery end to end against real loopback Slack/SMTP/PagerDuty."""

from __future__ import annotations

import io
import json
import logging
import random
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from analyzer.contract import DriftReport
from analyzer.severity import Severity
from daemon.alert_settings import AlertsSettings, RetrainSettings
from daemon.alerts import AlertDispatcher, AlertRouter, DeliveryStats, send_test_alert
from daemon.state import Outbox
from tests.fixtures.reports import make_report, make_test
from tests.fixtures.servers import RecordingHTTPServer, Reply, SMTPServer

SLACK_SECRET = "xoxSLACKsecretPATH42"
ROUTING_KEY = "PDroutingKEYsecret0042"
START = datetime(2026, 11, 27, 1, 15, tzinfo=timezone.utc)


def report(severity: str, day: date = date(2026, 11, 26)) -> DriftReport:
    """A night's report at ``severity``, driven by sharpness; the model sections quiet."""
    drift = severity != "none"
    return make_report(
        day.strftime("%Y%m%d"), severity, confidence="none", classes="none",
        shift=0.08 if drift else 0.001, confidence_shift=-0.01, class_distance=0.002,
        unreadable=(), summary=f"{severity.title()} drift: sharpness shifted" if drift
        else "No drift",
        pixel_tests=[make_test("sharpness", severity=Severity.parse(severity), effect=0.4)],
    )


class Clock:
    """The dispatcher's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    """Settings, outbox, router and dispatcher wired to the loopback servers."""

    alerts: AlertsSettings
    retrain: RetrainSettings
    outbox: Outbox
    clock: Clock
    slack: RecordingHTTPServer
    pagerduty: RecordingHTTPServer
    smtp: SMTPServer

    @property
    def dispatcher(self) -> AlertDispatcher:
        return AlertDispatcher.from_settings(
            self.outbox, self.alerts, self.retrain, rng=random.Random(0), clock=self.clock
        )

    def night(self, severity: str, day: date = date(2026, 11, 26)) -> DeliveryStats:
        """Plan, enqueue and deliver one folder date at the clock's time (like the pipeline)."""
        router = AlertRouter(self.alerts, self.retrain, self.outbox)
        dispatcher = self.dispatcher
        dispatcher.enqueue(router.plan(report(severity, day), day, self.clock.now))
        return dispatcher.deliver_due(self.clock.now)

    def later(self, hours: float) -> DeliveryStats:
        self.clock.now += timedelta(hours=hours)
        return self.dispatcher.deliver_due(self.clock.now)

    def channels_sent(self) -> list[str]:
        return sorted(a.channel for a in self.outbox.outbox_all() if a.status == "sent")


def make_alerts(
    slack: RecordingHTTPServer, pagerduty: RecordingHTTPServer, smtp: SMTPServer, **extra: Any
) -> AlertsSettings:
    return AlertsSettings.model_validate(
        {
            "monitor": "skin-classifier",
            "slack": {"webhook_url": f"{slack.url}/services/{SLACK_SECRET}"},
            "email": {
                "host": smtp.host,
                "port": smtp.port,
                "starttls": False,
                "sender": "driftd@example.com",
                "recipients": ["ml-team@example.com"],
            },
            "pagerduty": {"routing_key": ROUTING_KEY, "events_url": f"{pagerduty.url}/v2/enqueue"},
            "report_base_url": "https://monitor.example/reports",
            "backoff_base_s": 60,
            **extra,
        }
    )


@pytest.fixture
def world(
    tmp_path: Path,
    slack_server: RecordingHTTPServer,
    pagerduty_server: RecordingHTTPServer,
    smtp_server: SMTPServer,
) -> World:
    return World(
        alerts=make_alerts(slack_server, pagerduty_server, smtp_server),
        retrain=RetrainSettings(),
        outbox=Outbox(tmp_path / "state.sqlite"),
        clock=Clock(),
        slack=slack_server,
        pagerduty=pagerduty_server,
        smtp=smtp_server,
    )


class TestRouting:
    @pytest.mark.parametrize(
        ("severity", "channels"),
        [
            ("none", []),
            ("low", ["slack"]),
            ("medium", ["email", "slack"]),
            ("high", ["email", "pagerduty", "slack"]),
        ],
    )
    def test_each_severity_reaches_its_channels(
        self, world: World, severity: str, channels: list[str]
    ) -> None:
        """Default thresholds: low → Slack, medium → +email, high → +PagerDuty; none → nothing."""
        world.night(severity)
        assert world.channels_sent() == channels
        assert len(world.slack.requests) == ("slack" in channels)
        assert len(world.smtp.received) == ("email" in channels)
        assert len(world.pagerduty.requests) == ("pagerduty" in channels)

    def test_reruns_of_a_date_deliver_once_per_channel(self, world: World) -> None:
        """Three runs of the same date (rerun, backfill) send each channel exactly one alert."""
        for _ in range(3):
            world.night("high")
            world.later(1)
        assert len(world.slack.requests) == 1
        assert len(world.smtp.received) == 1
        assert len(world.pagerduty.requests) == 1

    def test_disabled_channel_sends_nothing(
        self,
        tmp_path: Path,
        slack_server: RecordingHTTPServer,
        pagerduty_server: RecordingHTTPServer,
        smtp_server: SMTPServer,
    ) -> None:
        """A channel with enabled = false is skipped; the report link reaches the others."""
        alerts = make_alerts(slack_server, pagerduty_server, smtp_server)
        alerts = alerts.model_copy(
            update={"slack": alerts.slack.model_copy(update={"enabled": False})}  # type: ignore[union-attr]
        )
        outbox = Outbox(tmp_path / "s.sqlite")
        dispatcher = AlertDispatcher.from_settings(outbox, alerts, RetrainSettings())
        dispatcher.enqueue(
            AlertRouter(alerts, RetrainSettings(), outbox).plan(
                report("high"), date(2026, 11, 26), START
            )
        )
        dispatcher.deliver_due(START)
        assert slack_server.requests == []
        assert "monitor_report_20261126.html" in pagerduty_server.requests[0].body.decode()

    def test_pagerduty_trigger_then_resolve_with_same_key(self, world: World) -> None:
        """Drift nights update one incident; the first clean night resolves it, then quiet."""
        world.night("high", date(2026, 11, 25))
        world.night("high", date(2026, 11, 26))
        world.night("none", date(2026, 11, 27))
        world.night("none", date(2026, 11, 28))
        events = [r.json for r in world.pagerduty.requests]
        assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
        assert {e["dedup_key"] for e in events} == {"driftd/skin-classifier"}
        assert len(world.slack.requests) == 3  # two drift alerts and one resolve

    def test_silence_suppresses_and_logs(
        self,
        tmp_path: Path,
        slack_server: RecordingHTTPServer,
        pagerduty_server: RecordingHTTPServer,
        smtp_server: SMTPServer,
    ) -> None:
        """A maintenance window on PagerDuty keeps it quiet (logged) while Slack still gets it."""
        silence = {
            "start": "2026-11-26",
            "end": "2026-11-26",
            "channels": ["pagerduty"],
            "reason": "camera swap",
        }
        alerts = make_alerts(slack_server, pagerduty_server, smtp_server, silences=[silence])
        outbox = Outbox(tmp_path / "s.sqlite")
        router = AlertRouter(alerts, RetrainSettings(), outbox)
        dispatcher = AlertDispatcher.from_settings(outbox, alerts, RetrainSettings())
        with capture_logs() as logs:
            dispatcher.enqueue(router.plan(report("high"), date(2026, 11, 26), START))
        dispatcher.deliver_due(START + timedelta(days=2))
        assert pagerduty_server.requests == []
        assert len(slack_server.requests) == 1
        (silenced,) = [e for e in logs if e["event"] == "alert.silenced"]
        assert silenced["channel"] == "pagerduty" and "camera swap" in silenced["reason"]


class TestDelivery:
    def test_server_error_is_retried_on_a_later_run(self, world: World) -> None:
        """Slack answering 500 then 200 delivers the alert once, on a later deliver_due."""
        world.slack.respond(500)
        first = world.night("low")
        assert (first.sent, first.retried) == (0, 1)
        assert world.dispatcher.deliver_due(world.clock.now).sent == 0  # backoff not over
        assert world.later(2).sent == 1
        assert world.later(2).sent == 0
        assert len(world.slack.requests) == 2
        (alert,) = world.outbox.outbox_all()
        assert (alert.status, alert.attempts) == ("sent", 2)

    def test_retry_after_is_honoured(self, world: World) -> None:
        """A 429 with Retry-After reschedules no earlier than the server asked."""
        world.pagerduty.respond((429, {"Retry-After": "7200"}))
        world.night("high")
        alert = world.outbox.outbox_get("pagerduty:drift:2026-11-26")
        assert alert is not None and alert.status == "pending"
        assert alert.next_attempt_at >= START + timedelta(seconds=7200)
        assert world.later(1.5).sent == 0
        assert world.later(1).sent == 1

    def test_permanent_failure_is_dead_and_others_still_delivered(self, world: World) -> None:
        """Slack answering 400 is recorded dead, never retried, and email/PagerDuty still arrive."""
        world.slack.respond(Reply(400, body="invalid_blocks"))
        stats = world.night("high")
        assert (stats.sent, stats.dead) == (2, 1)
        world.later(24)
        assert len(world.slack.requests) == 1
        dead = world.outbox.outbox_get("slack:drift:2026-11-26")
        assert dead is not None and dead.status == "dead" and "400" in (dead.last_error or "")
        assert world.channels_sent() == ["email", "pagerduty"]

    def test_gives_up_after_max_attempts(self, world: World) -> None:
        """A channel failing on every try is marked dead after alerts.max_attempts."""
        world.alerts = world.alerts.model_copy(update={"max_attempts": 3})
        world.slack.respond(503, 503, 503, 503)
        world.night("low")
        world.later(24)
        world.later(24)
        world.later(24)
        assert len(world.slack.requests) == 3
        dead = world.outbox.outbox_get("slack:drift:2026-11-26")
        assert (
            dead is not None
            and dead.status == "dead"
            and "gave up after 3" in (dead.last_error or "")
        )

    def test_secrets_never_reach_logs_or_stored_errors(
        self, world: World, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Webhook URL, routing key and SMTP password appear in no log event and no stored error."""
        caplog.set_level(logging.DEBUG)
        world.slack.respond(Reply(500, body=f"boom {SLACK_SECRET}"))
        world.pagerduty.respond(Reply(400, body=f"bad key {ROUTING_KEY}"))
        with capture_logs() as logs:
            world.night("high")
            world.later(2)
        text = json.dumps(logs, default=str) + caplog.text
        text += json.dumps([a.last_error for a in world.outbox.outbox_all()])
        assert any(e["event"] == "alert.dead" for e in logs)
        assert any(e["event"] == "alert.retry_scheduled" for e in logs)
        assert SLACK_SECRET not in text
        assert ROUTING_KEY not in text


class TestRetrain:
    def _retrain(self, tmp_path: Path) -> tuple[RetrainSettings, Path]:
        calls = tmp_path / "calls.log"
        script = "import sys; open(sys.argv[1], 'a').write(' '.join(sys.argv[2:]) + '\\n')"
        command = [sys.executable, "-c", script, str(calls), "{partition}", "{severity}"]
        return RetrainSettings(command=command, medium_at="03:00"), calls

    def test_high_runs_the_command_once_per_date(self, world: World, tmp_path: Path) -> None:
        """High severity runs the retrain command now, and reruns of the date never again."""
        world.retrain, calls = self._retrain(tmp_path)
        for _ in range(3):
            world.night("high")
        assert calls.read_text().splitlines() == ["2026-11-26 high"]
        alert = world.outbox.outbox_get("retrain:retrain:2026-11-26")
        assert alert is not None and alert.status == "sent"

    def test_medium_is_scheduled_for_medium_at(self, world: World, tmp_path: Path) -> None:
        """Medium severity queues retraining for the next 03:00 and runs it only then."""
        world.retrain, calls = self._retrain(tmp_path)
        world.night("medium")
        alert = world.outbox.outbox_get("retrain:retrain:2026-11-26")
        assert alert is not None
        assert alert.next_attempt_at == datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
        assert not calls.exists()
        world.later(2)
        assert calls.read_text().splitlines() == ["2026-11-26 medium"]


class TestSendTestAlert:
    def test_every_channel_gets_a_labelled_test(self, world: World) -> None:
        """`driftd alerts test` reaches each configured channel with a [TEST] message."""
        results = send_test_alert(world.alerts)
        assert results == {"slack": "sent", "email": "sent", "pagerduty": "sent"}
        assert "[TEST]" in world.slack.requests[0].body.decode()
        assert world.smtp.received[0].message["Subject"].startswith("[TEST]")

    def test_one_channel_and_failures_are_reported(self, world: World) -> None:
        """A single channel can be tested; a failure is reported, unconfigured ones say so."""
        world.slack.respond(Reply(404, body="no_service"))
        assert send_test_alert(world.alerts, "slack")["slack"].startswith("failed: slack: HTTP 404")
        assert "not configured" in send_test_alert(AlertsSettings(), "email")["email"]

    def test_console_is_the_default_channel(self) -> None:
        """With nothing configured, the test alert is printed as one paragraph."""
        out = io.StringIO()
        assert send_test_alert(AlertsSettings(), stream=out) == {"console": "sent"}
        assert "[TEST]" in out.getvalue()
