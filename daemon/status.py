"""What the status API reports: daemon liveness, the latest drift report, and metric counters.

The HTTP server (``daemon.http``) and the ``driftd status`` command read everything through a
:class:`StatusProvider`; :class:`FileStatusProvider` is the implementation the daemon uses. It
reads the report files on disk and, when they are given, the local state database (the store's
recorded health and pending writes), the alert outbox (alert counts) and the metric store (a
live ping). Every one of those is optional so the status API keeps answering when a piece is
missing or down. Nothing here changes state.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

import structlog

from analyzer.contract import DriftReport, SectionName, folder_date
from daemon.defaults import STORE_PING_TTL_S
from daemon.state import OUTBOX_STATUSES, LedgerEntry, Outbox, StateDB, StoreStatus
from sinks.files import NIGHTLY_ID_RE, REPORT_ID_RE, REPORT_PREFIX, read_report_file
from sinks.store import MetricStore

log = structlog.get_logger(__name__)

ReportExt = Literal["json", "html"]
HealthStatus = Literal["ok", "degraded", "down"]
"""``down`` (the scheduler is not running: HTTP 503); ``degraded`` (running, but the last run
failed or the metric store is unreachable: HTTP 200, the daemon keeps buffering); ``ok``."""


def is_valid_report_id(report_id: str) -> bool:
    """True when ``report_id`` matches :data:`REPORT_ID_RE` exactly (no path may be built else)."""
    return REPORT_ID_RE.fullmatch(report_id) is not None


@dataclass
class DaemonState:
    """Liveness facts the daemon updates and the status API reads; safe across threads.

    The daemon calls :meth:`set_scheduler_alive`, :meth:`run_started` and :meth:`run_finished`;
    readers take a consistent :meth:`copy`. ``last_error`` must already be secret-free (every
    driftd error message is).
    """

    started_at: datetime
    scheduler_alive: bool = False
    last_run_started: datetime | None = None
    last_run_finished: datetime | None = None
    last_run_ok: bool | None = None
    last_error: str | None = None
    runs_total: int = 0
    failures_total: int = 0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def set_scheduler_alive(self, alive: bool) -> None:
        """Record whether the scheduler thread is running (False on shutdown or crash)."""
        with self._lock:
            self.scheduler_alive = alive

    def run_started(self, now: datetime) -> None:
        """Record that a run (one "process what is pending" pass) began at ``now``."""
        with self._lock:
            self.last_run_started = now

    def run_finished(self, now: datetime, ok: bool, error: str | None = None) -> None:
        """Record the end of a run; a failed run (``ok=False``) counts in ``failures_total``."""
        with self._lock:
            self.last_run_finished = now
            self.last_run_ok = ok
            self.last_error = None if ok else error
            self.runs_total += 1
            if not ok:
                self.failures_total += 1

    def copy(self) -> DaemonState:
        """A consistent copy taken under the lock (with its own lock)."""
        with self._lock:
            return dataclasses.replace(self)


@dataclass(frozen=True)
class StoreHealth:
    """The metric store as the status API sees it.

    ``reachable``: the live ping's answer when a store is given, else the daemon's last recorded
    write (False after a failed write until the next success), None when unknown.
    ``error``: the ping's exception type, or the recorded (secret-free) last write error.
    ``last_ok_at``: the last successful write; ``pending_writes``: nights waiting for the store
    (None without a state database).
    """

    configured: bool
    reachable: bool | None
    error: str | None
    last_ok_at: datetime | None
    pending_writes: int | None


@dataclass(frozen=True)
class MetricsSnapshot:
    """Everything ``/metrics`` renders, read once per scrape.

    ``report`` is the latest report (None when there is none or it is unreadable:
    ``report_readable`` tells which). ``alerts`` maps outbox status (``pending``/``sent``/
    ``dead``/``silenced``) to a count, empty when no outbox is known.
    """

    daemon: DaemonState
    report: DriftReport | None
    report_readable: bool
    alerts: dict[str, int]
    store: StoreHealth


class StatusProvider(Protocol):
    """What the status server reads; no method changes state."""

    def health(self) -> dict[str, object]:
        """Liveness as a JSON-able dict whose ``status`` is a :data:`HealthStatus`."""
        ...

    def latest_report(self) -> DriftReport | None:
        """The latest report; None when there is none. Raises OSError/ValueError when the
        latest file cannot be read or is not a drift report."""
        ...

    def report_path(self, report_id: str, ext: ReportExt) -> Path | None:
        """The existing report file for a *valid* id, inside the reports folder; else None."""
        ...

    def metrics_snapshot(self) -> MetricsSnapshot:
        """The current state for one ``/metrics`` scrape; never raises for a missing piece."""
        ...


def status_summary(report: DriftReport) -> dict[str, object]:
    """The seed's dashboard summary (``get_monitoring_dashboard()``) of one report.

    Keys: ``report_id``, ``timestamp``, ``drift_detected``, ``severity_level`` (the report's
    ordered ``overall_severity`` — never ``max()`` of the strings, which ranks ``"none"``
    above ``"high"``), ``metrics`` {``pixel_mean_shift``, ``confidence_shift``,
    ``class_drift_distance``}, ``images_analyzed``, ``baseline_images``, ``drift_summary``
    and ``section_severity``.
    """
    return {
        "report_id": report.report_id,
        "timestamp": report.timestamp.isoformat(),
        "drift_detected": report.overall_drift_detected,
        "severity_level": report.overall_severity.value,
        "metrics": {
            "pixel_mean_shift": float(report.pixel.overall_mean_shift),
            "confidence_shift": float(report.confidence.mean_confidence_shift),
            "class_drift_distance": float(report.classes.wasserstein_distance),
        },
        "images_analyzed": report.current_image_count,
        "baseline_images": report.baseline_image_count,
        "drift_summary": report.drift_summary,
        "section_severity": {name.value: report.severity_of(name).value
                             for name in SectionName},
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class FileStatusProvider:
    """A :class:`StatusProvider` over the report files in ``reports_dir`` and the daemon's state.

    The latest report is the highest nightly (8-digit date) id; only when there is no nightly
    report is it the newest other report by modification time (so an ad-hoc ``check`` does not
    displace the nightly status). ``state``, ``store`` and ``outbox`` are optional; a failing
    call on one of them is logged and reported as unknown, never raised. ``store.ping`` is
    called from the HTTP thread at most once per :data:`STORE_PING_TTL_S`; without a store the
    store's health is the one the daemon recorded in ``state``.
    """

    def __init__(
        self,
        reports_dir: Path,
        state: StateDB | None,
        store: MetricStore | None,
        daemon_state: DaemonState,
        outbox: Outbox | None = None,
    ) -> None:
        self._reports_dir = Path(reports_dir)
        self._state = state
        self._store = store
        self._outbox = outbox
        self._daemon_state = daemon_state
        self._cache_lock = threading.Lock()
        self._cached: tuple[Path, int, int, DriftReport] | None = None
        self._ping_lock = threading.Lock()
        self._ping: tuple[float, bool, str | None] | None = None

    def report_path(self, report_id: str, ext: ReportExt) -> Path | None:
        """See :meth:`StatusProvider.report_path`; invalid ids return None before any path use."""
        if not is_valid_report_id(report_id) or ext not in ("json", "html"):
            return None
        root = self._reports_dir.resolve()
        path = (root / f"{REPORT_PREFIX}{report_id}.{ext}").resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def latest_report_id(self) -> str | None:
        """The id of the latest report file (see the class docstring); None when there is none."""
        dated: list[str] = []
        others: list[tuple[float, str]] = []
        try:
            candidates = list(self._reports_dir.glob(f"{REPORT_PREFIX}*.json"))
        except OSError:
            return None
        for path in candidates:
            report_id = path.name[len(REPORT_PREFIX):-len(".json")]
            if not is_valid_report_id(report_id):
                continue
            if NIGHTLY_ID_RE.fullmatch(report_id):
                dated.append(report_id)
                continue
            try:
                others.append((path.stat().st_mtime, report_id))
            except OSError:
                continue  # removed between glob and stat
        if dated:
            return max(dated)
        return max(others)[1] if others else None

    def latest_report(self) -> DriftReport | None:
        """See :meth:`StatusProvider.latest_report`; parsed once per file version (mtime, size).

        A file with only the seed's keys is read too (``from_dict(..., partial=True)``): the
        status shows what it can of a report driftd did not write."""
        report_id = self.latest_report_id()
        if report_id is None:
            return None
        path = self.report_path(report_id, "json")
        if path is None:
            return None
        stat = path.stat()
        with self._cache_lock:
            cached = self._cached
            if cached and cached[:3] == (path, stat.st_mtime_ns, stat.st_size):
                return cached[3]
        report = read_report_file(path, partial=True)
        with self._cache_lock:
            self._cached = (path, stat.st_mtime_ns, stat.st_size, report)
        return report

    def health(self) -> dict[str, object]:
        """See :meth:`StatusProvider.health`: ``down`` iff the scheduler is not alive,
        ``degraded`` after a failed run or while the store is unreachable."""
        daemon = self._daemon_state.copy()
        store = self.store_health()
        if not daemon.scheduler_alive:
            status: HealthStatus = "down"
        elif daemon.last_run_ok is False or store.reachable is False:
            status = "degraded"
        else:
            status = "ok"
        return {
            "status": status,
            "scheduler_alive": daemon.scheduler_alive,
            "started_at": _iso(daemon.started_at),
            "last_run": {
                "started": _iso(daemon.last_run_started),
                "finished": _iso(daemon.last_run_finished),
                "ok": daemon.last_run_ok,
                "error": daemon.last_error,
            },
            "runs_total": daemon.runs_total,
            "failures_total": daemon.failures_total,
            "store": {
                "configured": store.configured,
                "reachable": store.reachable,
                "error": store.error,
                "last_ok_at": _iso(store.last_ok_at),
                "pending_writes": store.pending_writes,
            },
            "latest_report_id": self.latest_report_id(),
        }

    def metrics_snapshot(self) -> MetricsSnapshot:
        """See :meth:`StatusProvider.metrics_snapshot`."""
        readable = True
        try:
            report = self.latest_report()
        except (OSError, ValueError) as err:
            log.warning("status.report_unreadable", error=str(err))
            report, readable = None, False
        return MetricsSnapshot(
            daemon=self._daemon_state.copy(),
            report=report,
            report_readable=readable,
            alerts=self._alert_counts(),
            store=self.store_health(),
        )

    def store_health(self) -> StoreHealth:
        """The metric store's health: a live ping (when a store is given) over the recorded one."""
        recorded = self._recorded_store_status()
        reachable: bool | None = None
        error: str | None = None
        if recorded is not None and (recorded.last_error or recorded.last_ok_at):
            reachable, error = recorded.last_error is None, recorded.last_error
        if self._store is not None:
            reachable, error = self._ping_store(self._store)
        return StoreHealth(
            configured=self._store is not None or recorded is not None,
            reachable=reachable,
            error=error,
            last_ok_at=recorded.last_ok_at if recorded else None,
            pending_writes=recorded.pending if recorded else None,
        )

    def _recorded_store_status(self) -> StoreStatus | None:
        if self._state is None:
            return None
        try:
            return self._state.store_status()
        except Exception as err:  # a status read must never take the API down
            log.warning("status.state_unreadable", error_type=type(err).__name__)
            return None

    def _alert_counts(self) -> dict[str, int]:
        if self._outbox is None:
            return {}
        try:
            counts = self._outbox.outbox_counts()
        except Exception as err:  # a status read must never take the API down
            log.warning("status.outbox_unreadable", error_type=type(err).__name__)
            return {}
        # Every status present (0 when none), so alert rules on e.g. dead > 0 always have data.
        return {status: int(counts.get(status, 0)) for status in OUTBOX_STATUSES} | {
            str(k): int(v) for k, v in counts.items()
        }

    def _ping_store(self, store: MetricStore) -> tuple[bool, str | None]:
        """(reachable, error type) of the metric store, cached for STORE_PING_TTL_S."""
        with self._ping_lock:
            now = time.monotonic()
            if self._ping is not None and now - self._ping[0] < STORE_PING_TTL_S:
                return self._ping[1], self._ping[2]
            try:
                store.ping()
                result: tuple[bool, str | None] = (True, None)
            except Exception as err:
                # Only the type: a driver's message may echo the DSN (with its password).
                result = (False, type(err).__name__)
            self._ping = (now, *result)
            return result


_SECTION_NAMES: dict[SectionName, str] = {
    SectionName.PIXEL: "image properties",
    SectionName.CONFIDENCE: "model confidence",
    SectionName.CLASSES: "predicted classes",
    SectionName.DATA_QUALITY: "data quality",
}


@dataclass(frozen=True)
class StatusReport:
    """What ``driftd status`` shows: the latest report, the store's health and the recent
    nights of the run ledger (``max_attempts`` tells which failures were given up on)."""

    latest: DriftReport | None
    store_url: str
    store: StoreStatus
    recent: list[LedgerEntry]
    max_attempts: int

    @property
    def failed(self) -> list[LedgerEntry]:
        """The recent nights whose last attempt failed."""
        return [e for e in self.recent if e.status == "failed"]

    def to_dict(self) -> dict[str, object]:
        """``driftd status --json``: ``latest`` is the seed's dashboard summary."""
        store = self.store
        return {
            "latest": status_summary(self.latest) if self.latest else {"status": "no_reports"},
            "store": {
                "url": self.store_url,
                "last_ok_at": store.last_ok_at,
                "last_error": store.last_error,
                "last_error_at": store.last_error_at,
                "pending_writes": store.pending,
            },
            "recent_runs": [
                {"partition": e.partition.isoformat(), "status": e.status,
                 "attempts": e.attempts, "severity": e.severity}
                for e in self.recent
            ],
            "failed": [
                {"partition": e.partition.isoformat(), "attempts": e.attempts,
                 "error": e.error, "gave_up": e.attempts >= self.max_attempts}
                for e in self.failed
            ],
        }


def format_status(status: StatusReport) -> str:
    """``driftd status`` for a person: the latest verdict, the store, recent and failed nights."""
    lines: list[str] = []
    latest = status.latest
    if latest is None:
        lines.append("latest night: no report yet (the daemon has not finished a night)")
    else:
        night = folder_date(latest.report_id or "?")
        verdict = "DRIFT" if latest.overall_drift_detected else "no drift"
        lines.append(f"latest night: {night}  {verdict} "
                     f"(severity {latest.overall_severity.value})")
        if latest.drift_summary:
            lines.append(f"  {latest.drift_summary}")
        lines.append(
            f"  images {latest.current_image_count} (baseline "
            f"{latest.baseline_image_count}) · pixel mean shift "
            f"{_number(latest.pixel.overall_mean_shift)} · confidence shift "
            f"{_number(latest.confidence.mean_confidence_shift, signed=True)} · class distance "
            f"{_number(latest.classes.wasserstein_distance)}")
        lines.append("  " + " · ".join(f"{title} {latest.severity_of(name).value}"
                                       for name, title in _SECTION_NAMES.items()))
    store = status.store
    if store.last_error:
        health = f"DOWN since {_when(store.last_error_at)}: {store.last_error}"
    elif store.last_ok_at:
        health = f"ok, last write {_when(store.last_ok_at)}"
    else:
        health = "no write yet"
    waiting = f"; {store.pending} night(s) waiting to be written" if store.pending else ""
    lines.append(f"metric store: {status.store_url}  {health}{waiting}")
    lines.append("recent nights:" if status.recent else "recent nights: none processed yet")
    for run in status.recent:
        lines.append(f"  {run.partition.isoformat()}  {run.status:7}  "
                     f"{run.severity or '-':6}  attempts {run.attempts}")
    if status.failed:
        lines.append("failed nights:")
        for item in status.failed:
            state = "given up" if item.attempts >= status.max_attempts else "will be retried"
            lines.append(f"  {item.partition.isoformat()}  {state} after {item.attempts} "
                         f"attempt(s): {item.error or 'unknown error'}")
    return "\n".join(lines)


def _number(value: float, signed: bool = False) -> str:
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M %Z").strip() if value else "?"
