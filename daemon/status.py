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
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from analyzer.severity import Severity
from sinks.files import REPORT_ID_RE, REPORT_PREFIX
from sinks.outbox import Outbox
from sinks.state import StateDB, StoreStatus
from sinks.store.base import MetricStore

log = structlog.get_logger(__name__)

DATE_ID_RE = re.compile(r"[0-9]{8}")
"""Report ids of nightly runs (the folder date, ``YYYYMMDD``)."""

ALERT_STATUSES = ("pending", "sent", "dead", "silenced")
"""Outbox statuses always exported on ``/metrics`` (``sinks.outbox.OutboxStatus``)."""

STORE_PING_TTL_S = 30.0
"""How long one metric-store reachability check is reused, so scrapes do not hammer the DB."""

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

    ``report`` is the latest report dict (None when there is none or it is unreadable:
    ``report_readable`` tells which). ``alerts`` maps outbox status (``pending``/``sent``/
    ``dead``/``silenced``) to a count, empty when no outbox is known.
    """

    daemon: DaemonState
    report: dict[str, Any] | None
    report_readable: bool
    alerts: dict[str, int]
    store: StoreHealth


class StatusProvider(Protocol):
    """What the status server reads; no method changes state."""

    def health(self) -> dict[str, Any]:
        """Liveness as a JSON-able dict whose ``status`` is a :data:`HealthStatus`."""
        ...

    def latest_report(self) -> dict[str, Any] | None:
        """The latest report dict; None when there is none. Raises OSError/ValueError when the
        latest file cannot be read or parsed."""
        ...

    def report_path(self, report_id: str, ext: ReportExt) -> Path | None:
        """The existing report file for a *valid* id, inside the reports folder; else None."""
        ...

    def metrics_snapshot(self) -> MetricsSnapshot:
        """The current state for one ``/metrics`` scrape; never raises for a missing piece."""
        ...


def status_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """The seed's dashboard summary (``get_monitoring_dashboard()``) of one report.

    Keys: ``report_id``, ``timestamp``, ``drift_detected``, ``severity_level`` (the report's
    ordered ``overall_severity``; for a report without it, the highest section severity by
    rank — never ``max()`` of the strings, which ranks ``"none"`` above ``"high"``),
    ``metrics`` {``pixel_mean_shift``, ``confidence_shift``, ``class_drift_distance``},
    ``images_analyzed``, ``baseline_images``, ``drift_summary`` and ``section_severity``.
    Missing keys read as the seed reads them (``0`` / ``"none"``). Raises ``ValueError`` for a
    severity that is not one of none/low/medium/high.
    """
    pixel = report.get("pixel_distribution_drift") or {}
    confidence = report.get("confidence_drift") or {}
    classes = report.get("class_distribution_drift") or {}
    sections = {
        "pixel_distribution_drift": pixel,
        "confidence_drift": confidence,
        "class_distribution_drift": classes,
        "data_quality": report.get("data_quality") or {},
    }
    section_severity = {
        name: Severity.parse(section.get("severity", "none")).value
        for name, section in sections.items()
    }
    overall = report.get("overall_severity")
    severity = (
        Severity.parse(overall) if overall is not None
        else Severity.highest(section_severity.values())
    )
    return {
        "report_id": report.get("report_id"),
        "timestamp": report.get("timestamp"),
        "drift_detected": bool(report.get("overall_drift_detected", False)),
        "severity_level": severity.value,
        "metrics": {
            "pixel_mean_shift": float(pixel.get("overall_mean_shift", 0)),
            "confidence_shift": float(confidence.get("mean_confidence_shift", 0)),
            "class_drift_distance": float(classes.get("wasserstein_distance", 0)),
        },
        "images_analyzed": int(report.get("current_image_count", 0)),
        "baseline_images": int(report.get("baseline_image_count", 0)),
        "drift_summary": report.get("drift_summary", ""),
        "section_severity": section_severity,
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
        self._cached: tuple[Path, int, int, dict[str, Any]] | None = None
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
            if DATE_ID_RE.fullmatch(report_id):
                dated.append(report_id)
                continue
            try:
                others.append((path.stat().st_mtime, report_id))
            except OSError:
                continue  # removed between glob and stat
        if dated:
            return max(dated)
        return max(others)[1] if others else None

    def latest_report(self) -> dict[str, Any] | None:
        """See :meth:`StatusProvider.latest_report`; parsed once per file version (mtime, size)."""
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
        report = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(report, dict):
            raise ValueError(
                f"report {path.name} holds a JSON {type(report).__name__}, not an object"
            )
        with self._cache_lock:
            self._cached = (path, stat.st_mtime_ns, stat.st_size, report)
        return report

    def health(self) -> dict[str, Any]:
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
        return {status: int(counts.get(status, 0)) for status in ALERT_STATUSES} | {
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


_SECTION_NAMES = {
    "pixel_distribution_drift": "image properties",
    "confidence_drift": "model confidence",
    "class_distribution_drift": "predicted classes",
    "data_quality": "data quality",
}


def format_status(status: Mapping[str, Any]) -> str:
    """``driftd status`` for a person: the latest verdict, the store, recent and failed nights.

    ``status`` is what ``daemon.scheduler.status_report`` returns (the ``--json`` output);
    every part of it is optional here, so an older or partial status still prints.
    """
    lines: list[str] = []
    latest = status.get("latest") or {}
    if not latest or latest.get("status") == "no_reports":
        lines.append("latest night: no report yet (the daemon has not finished a night)")
    else:
        report_id = str(latest.get("report_id") or "?")
        night = (f"{report_id[:4]}-{report_id[4:6]}-{report_id[6:]}"
                 if DATE_ID_RE.fullmatch(report_id) else report_id)
        verdict = "DRIFT" if latest.get("drift_detected") else "no drift"
        lines.append(f"latest night: {night}  {verdict} (severity {latest.get('severity_level')})")
        if latest.get("drift_summary"):
            lines.append(f"  {latest['drift_summary']}")
        metrics = latest.get("metrics") or {}
        lines.append(
            f"  images {latest.get('images_analyzed', '?')} (baseline "
            f"{latest.get('baseline_images', '?')}) · pixel mean shift "
            f"{_number(metrics.get('pixel_mean_shift'))} · confidence shift "
            f"{_number(metrics.get('confidence_shift'), signed=True)} · class distance "
            f"{_number(metrics.get('class_drift_distance'))}")
        sections = latest.get("section_severity") or {}
        if sections:
            lines.append("  " + " · ".join(f"{_SECTION_NAMES.get(k, k)} {v}"
                                           for k, v in sections.items()))
    store = status.get("store") or {}
    if store:
        if store.get("last_error"):
            health = (f"DOWN since {_when(store.get('last_error_at'))}: {store['last_error']}")
        elif store.get("last_ok_at"):
            health = f"ok, last write {_when(store.get('last_ok_at'))}"
        else:
            health = "no write yet"
        pending = store.get("pending_writes") or 0
        waiting = f"; {pending} night(s) waiting to be written" if pending else ""
        lines.append(f"metric store: {store.get('url', '?')}  {health}{waiting}")
    recent = status.get("recent_runs") or []
    lines.append("recent nights:" if recent else "recent nights: none processed yet")
    for run in recent:
        lines.append(f"  {run.get('partition')}  {run.get('status', '?'):7}  "
                     f"{run.get('severity') or '-':6}  attempts {run.get('attempts', '?')}")
    failed = status.get("failed") or []
    if failed:
        lines.append("failed nights:")
        for item in failed:
            state = "given up" if item.get("gave_up") else "will be retried"
            lines.append(f"  {item.get('partition')}  {state} after {item.get('attempts')} "
                         f"attempt(s): {item.get('error') or 'unknown error'}")
    return "\n".join(lines)


def _number(value: object, signed: bool = False) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _when(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M %Z").strip()
    return str(value) if value else "?"
