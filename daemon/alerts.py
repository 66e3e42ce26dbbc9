"""Alert routing and delivery: report → outbox rows → one sender per channel.

``AlertRouter.plan`` decides, from config and the outbox's history, which channels get a
``drift``, ``resolve`` or ``retrain`` alert for one folder date. ``AlertDispatcher.enqueue``
records those decisions in the outbox *before* anything is sent (insert-if-absent by key, so
a rerun or backfill of a date never queues the same alert twice), and ``deliver_due`` sends
what is due: each channel in its own thread, marked sent only on success, transient failures
rescheduled with exponential backoff and jitter, permanent ones recorded as dead. Log events
(structlog): ``alert.queued``, ``alert.silenced``, ``alert.sent``, ``alert.retry_scheduled``,
``alert.dead`` — with channel and partition bound, never a URL, key or password.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TextIO

import structlog

from analyzer.contract import DriftReport
from analyzer.severity import Severity
from daemon.alert_settings import AlertsSettings
from daemon.channels import CHANNELS, ConsoleChannel, RetrainSettings, Transport
from daemon.defaults import ALERT_MAX_ATTEMPTS, BACKOFF_BASE_S, BACKOFF_CAP_S, SEND_TIMEOUT_S
from daemon.redact import Redactor
from daemon.state import Outbox, OutboxAlert
from sinks.errors import DeliveryError
from sinks.files import REPORT_PREFIX, report_id_for
from sinks.messages import AlertKind, AlertMessage


def build_transports(
    alerts: AlertsSettings, retrain: RetrainSettings | None = None
) -> dict[str, Transport]:
    """One transport per channel that is switched on (``retrain`` included when set)."""
    retrain = retrain if retrain is not None else RetrainSettings()
    return {name: channel.transport() for name, channel in alerts.channels(retrain).items()}


class AlertRouter:
    """Maps one night's report to the alerts it should cause, from config and outbox history."""

    def __init__(self, alerts: AlertsSettings, retrain: RetrainSettings, outbox: Outbox) -> None:
        self._alerts = alerts
        self._retrain = retrain
        self._outbox = outbox

    def thresholds(self) -> dict[str, Severity]:
        """Each enabled alert channel → the lowest severity it is sent (never below low)."""
        out: dict[str, Severity] = {}
        for name, channel in self._alerts.channels(self._retrain).items():
            threshold = channel.threshold()
            if threshold is not None:
                out[name] = threshold
        return out

    def plan(
        self,
        report: DriftReport,
        partition: date,
        now: datetime,
        *,
        report_path: str | None = None,
    ) -> list[OutboxAlert]:
        """The alerts for ``report`` of folder date ``partition``, decided at ``now``.

        Per channel: ``drift`` when the overall severity reaches its ``min_severity``;
        ``resolve`` when the severity is ``none`` and the channel's latest drift alert (of an
        earlier date) has not been resolved yet. ``retrain`` on high (due ``now``) or medium
        (due at the next ``retrain.medium_at``). Alerts a silence covers come back with
        status ``silenced``. ``report_path`` (the report JSON) is passed to the retrain command.
        """
        base_url = self._alerts.report_base_url
        report_id = report.report_id or report_id_for(partition)
        url = f"{base_url.rstrip('/')}/{REPORT_PREFIX}{report_id}.html" if base_url else None

        def message(kind: AlertKind) -> AlertMessage:
            return AlertMessage.from_report(
                report, partition, kind, url, monitor=self._alerts.monitor, report_path=report_path
            )

        severity = message("drift").severity
        planned: list[tuple[str, AlertMessage, datetime]] = []
        for channel, threshold in self.thresholds().items():
            if severity >= threshold:
                planned.append((channel, message("drift"), now))
            elif severity == Severity.NONE and self._incident_open(channel, partition):
                planned.append((channel, message("resolve"), now))
        retrain_at = self._retrain_time(severity, now)
        if retrain_at is not None:
            planned.append((RetrainSettings.NAME, message("retrain"), retrain_at))
        return [self._alert(channel, msg, partition, due, now) for channel, msg, due in planned]

    def plan_failure(
        self, partition: date, error: str, attempts: int, now: datetime
    ) -> list[OutboxAlert]:
        """``failed`` alerts for a folder given up on after ``attempts`` tries: to every
        enabled channel (a blind night is as urgent as high drift), silences respected."""
        message = AlertMessage.failure(
            partition, error, attempts=attempts, monitor=self._alerts.monitor
        )
        return [self._alert(channel, message, partition, now, now) for channel in self.thresholds()]

    def plan_run_failure(self, day: date, error: str, now: datetime) -> list[OutboxAlert]:
        """``run_failed`` alerts for a run that could analyse nothing (no baseline, broken
        model, full disk ...): to every enabled channel, keyed by ``day`` so that a fault
        that lasts is announced once a day, not at every run."""
        message = AlertMessage.run_failure(day, error, monitor=self._alerts.monitor)
        return [self._alert(channel, message, day, now, now) for channel in self.thresholds()]

    def _retrain_time(self, severity: Severity, now: datetime) -> datetime | None:
        r = self._retrain
        if not r.enabled:
            return None
        if severity == Severity.HIGH and r.on_high == "now":
            return now
        if severity == Severity.MEDIUM and r.on_medium == "now":
            return now
        if severity == Severity.MEDIUM and r.on_medium == "schedule":
            return r.next_medium_run(now)
        return None

    def _incident_open(self, channel: str, partition: date) -> bool:
        drift = self._outbox.outbox_last(channel, "drift")
        if drift is None or drift.partition >= partition:
            return False
        resolve = self._outbox.outbox_last(channel, "resolve")
        return resolve is None or resolve.partition < drift.partition

    def _alert(
        self, channel: str, message: AlertMessage, partition: date, due: datetime, now: datetime
    ) -> OutboxAlert:
        silence = next(
            (s for s in self._alerts.silences if s.covers(channel, partition, now)), None
        )
        return OutboxAlert(
            channel=channel,
            kind=message.kind,
            partition=partition,
            severity=message.severity.value,
            payload=message.to_payload(),
            created_at=now,
            next_attempt_at=due,
            status="silenced" if silence else "pending",
            last_error=f"silenced: {silence.reason or 'no reason given'}" if silence else None,
        )


@dataclass
class DeliveryStats:
    """What one ``deliver_due`` call did: counts of alerts sent, rescheduled and given up."""

    sent: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0

    def add(self, other: DeliveryStats) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.dead += other.dead
        self.deferred += other.deferred


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class AlertDispatcher:
    """Records alerts in the outbox and delivers the due ones, each channel independently.

    ``rng`` draws the backoff jitter and ``clock`` stamps outcomes (pass fixed ones in tests).
    ``send_timeout_s`` bounds one ``deliver_due`` call: a channel still sending after it keeps
    its thread, is not waited for, and is skipped by later calls until it finishes.
    """

    def __init__(
        self,
        outbox: Outbox,
        transports: Mapping[str, Transport],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = _utcnow,
        max_attempts: int = ALERT_MAX_ATTEMPTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        send_timeout_s: float = SEND_TIMEOUT_S,
        secrets: Sequence[str] = (),
    ) -> None:
        self._outbox = outbox
        self._transports = dict(transports)
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._send_timeout_s = send_timeout_s
        self._redactor = Redactor(secrets)
        self._busy: set[str] = set()
        self._busy_lock = threading.Lock()
        self._log = structlog.get_logger()

    @classmethod
    def from_settings(
        cls,
        outbox: Outbox,
        alerts: AlertsSettings,
        retrain: RetrainSettings,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> AlertDispatcher:
        """A dispatcher with the configured transports, retry policy and secrets to redact."""
        return cls(
            outbox,
            build_transports(alerts, retrain),
            rng=rng,
            clock=clock,
            max_attempts=alerts.max_attempts,
            backoff_base_s=alerts.backoff_base_s,
            backoff_cap_s=alerts.backoff_cap_s,
            send_timeout_s=alerts.send_timeout_s,
            secrets=alerts.secrets(retrain),
        )

    def enqueue(self, alerts: Iterable[OutboxAlert]) -> int:
        """Record each alert unless its key exists; return how many were new."""
        added = 0
        for alert in alerts:
            log = self._log.bind(
                channel=alert.channel,
                partition=alert.partition.isoformat(),
                kind=alert.kind,
                severity=alert.severity,
            )
            if not self._outbox.outbox_add(alert):
                log.debug("alert.already_queued")
                continue
            added += 1
            if alert.status == "silenced":
                log.info("alert.silenced", reason=alert.last_error)
            else:
                log.info("alert.queued", due=alert.next_attempt_at.isoformat())
        return added

    def deliver_due(self, now: datetime) -> DeliveryStats:
        """Send every pending alert due at ``now``; one thread per channel; return the counts."""
        by_channel: dict[str, list[OutboxAlert]] = {}
        for alert in self._outbox.outbox_due(now):
            by_channel.setdefault(alert.channel, []).append(alert)
        stats = DeliveryStats()
        for channel in [c for c in by_channel if c not in self._transports]:
            for alert in by_channel.pop(channel):
                self._dead(alert, f"channel {channel!r} is no longer configured; not sent")
                stats.dead += 1
        with self._busy_lock:
            by_channel = {c: a for c, a in by_channel.items() if c not in self._busy}
            self._busy.update(by_channel)
        if not by_channel:
            return stats
        deadline = time.monotonic() + self._send_timeout_s
        pool = ThreadPoolExecutor(max_workers=len(by_channel), thread_name_prefix="alerts")
        futures = [
            pool.submit(self._deliver_channel, channel, alerts, deadline)
            for channel, alerts in by_channel.items()
        ]
        done, _ = wait(futures, timeout=self._send_timeout_s)
        pool.shutdown(wait=False)
        for future in done:
            stats.add(future.result())
        return stats

    def _deliver_channel(
        self, channel: str, alerts: list[OutboxAlert], deadline: float
    ) -> DeliveryStats:
        stats = DeliveryStats()
        try:
            transport = self._transports[channel]
            for alert in sorted(alerts, key=lambda a: (a.partition, a.kind != "resolve")):
                if time.monotonic() > deadline:
                    break
                if alert.kind == "resolve" and self._drift_pending_before(alert):
                    stats.deferred += 1
                    continue
                self._deliver_one(transport, alert, stats)
        finally:
            with self._busy_lock:
                self._busy.discard(channel)
        return stats

    def _drift_pending_before(self, resolve: OutboxAlert) -> bool:
        """A resolve waits while an older drift alert of its channel is still pending."""
        drift = self._outbox.outbox_last(resolve.channel, "drift", ("pending",))
        return drift is not None and drift.partition < resolve.partition

    def _deliver_one(self, transport: Transport, alert: OutboxAlert, stats: DeliveryStats) -> None:
        log = self._log.bind(
            channel=alert.channel,
            partition=alert.partition.isoformat(),
            kind=alert.kind,
            attempt=alert.attempts + 1,
        )
        try:
            transport.send(AlertMessage.from_payload(alert.payload))
        except DeliveryError as err:
            self._failed(alert, self._redact(str(err)), err.permanent, err.retry_after, stats)
            return
        except Exception as err:  # a transport bug must not stop the other alerts
            reason = self._redact(f"unexpected {type(err).__name__}: {err}")
            self._failed(alert, reason, False, None, stats)
            return
        self._outbox.outbox_mark_sent(alert.key, self._clock())
        stats.sent += 1
        log.info("alert.sent", severity=alert.severity)

    def _failed(
        self,
        alert: OutboxAlert,
        reason: str,
        permanent: bool,
        retry_after: float | None,
        stats: DeliveryStats,
    ) -> None:
        attempt = alert.attempts + 1
        if permanent:
            self._dead(alert, reason)
            stats.dead += 1
            return
        if attempt >= self._max_attempts:
            self._dead(alert, f"gave up after {attempt} attempts (alerts.max_attempts): {reason}")
            stats.dead += 1
            return
        now = self._clock()
        delay = self.backoff_s(attempt, retry_after)
        next_at = now + timedelta(seconds=delay)
        self._outbox.outbox_mark_retry(alert.key, now, next_at, reason)
        stats.retried += 1
        self._log.warning(
            "alert.retry_scheduled",
            channel=alert.channel,
            partition=alert.partition.isoformat(),
            kind=alert.kind,
            attempt=attempt,
            next_attempt_at=next_at.isoformat(),
            error=reason,
        )

    def backoff_s(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before try ``attempt + 1``: capped exponential times jitter in [0.5, 1].

        Never shorter than the receiver's ``retry_after``.
        """
        exponential = min(self._backoff_cap_s, self._backoff_base_s * 2.0 ** (attempt - 1))
        delay = exponential * self._rng.uniform(0.5, 1.0)
        return max(delay, retry_after or 0.0)

    def _dead(self, alert: OutboxAlert, reason: str) -> None:
        self._outbox.outbox_mark_dead(alert.key, self._clock(), reason)
        self._log.error(
            "alert.dead",
            channel=alert.channel,
            partition=alert.partition.isoformat(),
            kind=alert.kind,
            attempt=alert.attempts + 1,
            error=reason,
        )

    def _redact(self, text: str) -> str:
        return self._redactor.text(text)


def send_test_alert(
    alerts: AlertsSettings, channel: str | None = None, *, stream: TextIO | None = None
) -> dict[str, str]:
    """Send a labelled test message to ``channel`` (every configured one when None).

    Bypasses the outbox, thresholds and silences: it checks wiring, now. Returns channel →
    ``"sent"`` or ``"failed: <reason>"`` (or why the channel was not tried). The retraining
    trigger is never run by a test. ``stream`` receives console output (default stdout).
    """
    names = [name for name, kind in CHANNELS.items() if kind.TESTABLE]
    if channel is not None and channel not in names:
        return {channel: f"unknown channel; expected one of {', '.join(names)}"}
    retrain = RetrainSettings()
    channels = {n: c for n, c in alerts.channels(retrain).items() if c.TESTABLE}
    if channel == ConsoleChannel.NAME and channel not in channels:
        channels[channel] = ConsoleChannel()
    if channel is not None:
        if channel not in channels:
            return {channel: f"not configured; add an enabled [alerts.{channel}] table"}
        channels = {channel: channels[channel]}
    message = AlertMessage.test(monitor=alerts.monitor, report_url=alerts.report_base_url)
    redactor = Redactor(alerts.secrets(retrain))
    log = structlog.get_logger()
    results: dict[str, str] = {}
    for name, section in channels.items():
        try:
            section.transport(stream).send(message)
        except DeliveryError as err:
            reason = redactor.text(str(err))
            results[name] = f"failed: {reason}"
            log.warning("alert.test_failed", channel=name, error=reason)
        else:
            results[name] = "sent"
            log.info("alert.test_sent", channel=name)
    return results
