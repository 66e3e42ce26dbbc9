"""One run's steps: prepare (clean, flush, retry alerts), then one partition end to end.

A *partition* is one dated production folder. ``Pipeline.process`` takes it through
analyze → report files (atomic) → store write (buffered in the state DB when the store is
down) → alerts (router plan → outbox → dispatch) → ledger done. Each step is a method that
tests call directly; none of them decides *which* folders to process (that is
``daemon.scheduler.Daemon``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import structlog

from daemon.config import Settings, analyzer_kwargs

log = structlog.get_logger("driftd.pipeline")

STATE_DB_NAME = "state.sqlite"
"""The local state database (run ledger, pending store writes, alert outbox) in ``state_dir``."""

HISTORY_DAYS = 30
"""Nights of trend shown in the HTML report."""

HISTORY_METRICS = (
    "pixel_mean_shift", "confidence_shift", "drift_detected", "overall_severity_rank",
)


class Abandoned(Exception):
    """Raised inside a partition when the daemon was asked to stop; the folder stays pending."""


class RunError(Exception):
    """Raised when a run cannot start at all (e.g. no baseline); no partition is touched."""


@dataclass(frozen=True)
class Partition:
    """A dated production folder."""

    date: date
    folder: Path

    @property
    def report_id(self) -> str:
        return self.date.strftime("%Y%m%d")


@dataclass
class PartitionResult:
    """What happened to one partition (one line of the run summary)."""

    partition: date
    status: Literal["done", "failed", "abandoned"]
    severity: str | None = None
    drift_detected: bool | None = None
    report_json: Path | None = None
    report_html: Path | None = None
    stored: bool = False
    alerts: list[str] = field(default_factory=list)
    error: str | None = None


StopCheck = Callable[[], bool]


def _never() -> bool:
    return False


class Pipeline:
    """The steps of a run, bound to one configuration and one stop flag."""

    def __init__(self, settings: Settings, should_stop: StopCheck = _never) -> None:
        from sinks.files import ReportFiles
        from sinks.state import StateDB

        self.settings = settings
        self.should_stop = should_stop
        self.files = ReportFiles(settings.data.reports_path)
        settings.data.state_dir.mkdir(parents=True, exist_ok=True)
        self.state = StateDB(settings.data.state_dir / STATE_DB_NAME)
        self._baseline: dict[str, Any] | None = None
        self._dispatcher: Any | None = None

    # ---- start of every run -------------------------------------------------------------

    def clean_temp(self) -> int:
        """Remove temp files an interrupted write left in the reports folder."""
        removed = self.files.clean_stale_temp()
        if removed:
            log.info("temp_files.removed", count=removed)
        return removed

    def open_store(self) -> Any | None:
        """The metric store, migrated; ``None`` (logged) when it is unreachable."""
        from sinks.errors import StoreUnavailable
        from sinks.store import StoreOptions, open_store

        password = self.settings.store.password
        options = StoreOptions(
            password=password.get_secret_value() if password else None,
            retention_days=self.settings.store.retention_days,
        )
        try:
            store = open_store(self.settings.store.url, options)
            store.migrate()
        except StoreUnavailable as err:
            self.state.store_failed(datetime.now().astimezone(), str(err))
            log.warning("store.unavailable", store=self.settings.store.masked_url, error=str(err))
            return None
        return store

    def flush_pending(self, store: Any | None, now: datetime) -> int:
        """Write the nights that waited for the database; returns how many landed."""
        from sinks.store import flush_pending

        if store is None:
            return 0
        result = flush_pending(self.state, store, now, labels=self.labels())
        for dropped in result.dropped:
            log.error("pending_write.dropped", detail=dropped)
        if result.error:
            log.warning("store.write_failed", error=result.error, pending=result.still_pending)
        if result.written:
            log.info("pending_writes.flushed", count=len(result.written))
        return len(result.written)

    def labels(self) -> dict[str, str]:
        """Constant tags stored beside every metric row."""
        model = self.settings.model.path
        return {"model": model.name} if model else {}

    def dispatcher(self) -> Any:
        """The alert dispatcher over the outbox in the state DB (built once per pipeline)."""
        if self._dispatcher is None:
            from daemon.alerts import AlertDispatcher, AlertRouter
            from sinks.outbox import Outbox

            self.outbox = Outbox(self.state.path)
            self.router = AlertRouter(self.settings.alerts, self.settings.retrain, self.outbox)
            self._dispatcher = AlertDispatcher.from_settings(
                self.outbox, self.settings.alerts, self.settings.retrain
            )
        return self._dispatcher

    def deliver_due(self, now: datetime) -> int:
        """Send the alerts whose (re)try is due; returns how many were delivered."""
        stats = self.dispatcher().deliver_due(now)
        if stats.sent or stats.retried or stats.dead:
            log.info("alerts.delivered", sent=stats.sent, retried=stats.retried, dead=stats.dead)
        return int(stats.sent)

    def load_baseline(self) -> dict[str, Any]:
        """The saved baseline (cached for the run). Raises ``RunError`` when it is missing."""
        if self._baseline is None:
            path = self.settings.data.baseline
            try:
                self._baseline = json.loads(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise RunError(
                    f"baseline {path} not found; build it with `driftd baseline DIR`"
                ) from None
            except (OSError, ValueError) as err:
                raise RunError(f"baseline {path} is unreadable ({err}); rebuild it") from err
        return self._baseline

    # ---- one partition ------------------------------------------------------------------

    def analyze(self, partition: Partition, now: datetime) -> dict[str, Any]:
        """Profile the folder and compare it with the baseline; returns the report dict.

        Raises ``Abandoned`` when ``should_stop`` turns true between batches of images.
        """
        from analyzer.dataset import DatasetAnalyzer

        def progress(done: int, total: int) -> None:
            # The analyzer calls this between batches; raising here abandons its worker pool.
            if self.should_stop():
                raise Abandoned(f"stopped after {done}/{total} images")

        model = self.settings.model.path
        analyzer = DatasetAnalyzer(
            partition.folder,
            model_path=str(model) if model else None,
            now=now,
            report_id=partition.report_id,
            progress="off",
            progress_callback=progress,
            **analyzer_kwargs(self.settings),
        )
        report: dict[str, Any] = analyzer.detect_drift(self.load_baseline())
        if self.should_stop():
            raise Abandoned("stopped after the analysis")
        return report

    def history(self, store: Any | None, partition: Partition) -> list[dict[str, Any]]:
        """Trend points for the HTML report (``generate_html_report``'s ``history`` format):
        the stored metrics of the previous nights, oldest first."""
        if store is None:
            return []
        from analyzer.severity import Severity
        from sinks.errors import StoreUnavailable

        try:
            points = store.metric_history(HISTORY_METRICS, partition.date, HISTORY_DAYS)
        except StoreUnavailable:
            return []
        by_date: dict[date, dict[str, float]] = {}
        for p in points:
            by_date.setdefault(p.partition, {})[p.name] = p.value
        severities = list(Severity)
        return [
            {
                "report_id": day.strftime("%Y%m%d"),
                "date": day.isoformat(),
                "overall_severity": severities[int(v.get("overall_severity_rank", 0))].value,
                "pixel_mean_shift": v.get("pixel_mean_shift"),
                "confidence_shift": v.get("confidence_shift"),
                "drift_detected": bool(v.get("drift_detected", 0)),
            }
            for day, v in sorted(by_date.items())
            if day < partition.date
        ]

    def write_reports(
        self, partition: Partition, report: dict[str, Any], history: list[dict[str, Any]]
    ) -> tuple[Path, Path]:
        """Write ``monitor_report_<YYYYMMDD>.json`` and ``.html`` atomically."""
        from analyzer.html import generate_html_report

        json_path = self.files.write_json(partition.report_id, report)
        html_path = self.files.write_html(
            partition.report_id, lambda p: generate_html_report(report, p, history=history)
        )
        log.info("report.written", json=str(json_path), html=str(html_path))
        return json_path, html_path

    def store_report(
        self, store: Any | None, partition: Partition, report: dict[str, Any], run_id: str,
        json_path: Path, now: datetime,
    ) -> bool:
        """Record the night as a pending write, then write it; False when the store is down.

        The pending payload is the JSON report itself, so nothing is lost while the database
        is down: the next run's ``flush_pending`` writes it.
        """
        from analyzer.report import metric_rows
        from sinks.store import NightRecord, store_or_defer

        if store is None:
            self.state.pending_writes_add(partition.date, json_path)
            log.warning("store.write_deferred", reason="store unavailable")
            return False
        night = NightRecord(
            partition=partition.date, run_id=run_id,
            time=datetime.fromisoformat(str(report["timestamp"])), report=report,
            metrics=metric_rows(report), labels=self.labels(), started_at=now,
        )
        if store_or_defer(self.state, store, night, json_path, now):
            log.info("store.written", store=store.url)
            return True
        log.warning("store.write_failed", error=self.state.store_status().last_error)
        return False

    def send_alerts(
        self, partition: Partition, report: dict[str, Any], json_path: Path, now: datetime
    ) -> list[str]:
        """Plan the night's alerts into the outbox (a key already there is never queued again,
        so reruns and backfills send nothing twice), then deliver what is due.

        Returns the ``channel:kind`` of the alerts newly queued for this night.
        """
        dispatcher = self.dispatcher()
        planned = self.router.plan(report, partition.date, now, report_path=str(json_path))
        queued = [a for a in planned if self.outbox.outbox_get(a.key) is None]
        dispatcher.enqueue(planned)
        self.deliver_due(now)
        return [f"{a.channel}:{a.kind}" for a in queued if a.status != "silenced"]

    def send_failure_alerts(
        self, partition: Partition, error: str, attempts: int, now: datetime
    ) -> list[str]:
        """Tell people a folder was given up on (queued once per date, like drift alerts)."""
        planned = self.router.plan_failure(partition.date, error, attempts, now)
        queued = [a for a in planned if self.outbox.outbox_get(a.key) is None]
        self.dispatcher().enqueue(planned)
        self.deliver_due(now)
        return [f"{a.channel}:{a.kind}" for a in queued if a.status != "silenced"]

    def process(self, partition: Partition, run_id: str, now: datetime, store: Any | None
                ) -> PartitionResult:
        """Take ``partition`` end to end and record the outcome in the run ledger.

        A failure is recorded as ``failed`` (retried on later runs up to
        ``schedule.max_attempts``); ``Abandoned`` leaves the ledger entry pending.
        """
        structlog.contextvars.bind_contextvars(partition=partition.date.isoformat())
        self.state.ledger_start(partition.date, run_id, now)
        log.info("partition.started", folder=str(partition.folder))
        try:
            report = self.analyze(partition, now)
            log.info(
                "partition.analyzed",
                severity=report.get("overall_severity"),
                drift=report.get("overall_drift_detected"),
                images=report.get("current_image_count"),
            )
            json_path, html_path = self.write_reports(
                partition, report, self.history(store, partition)
            )
            stored = self.store_report(store, partition, report, run_id, json_path, now)
            alerts = self.send_alerts(partition, report, json_path, now)
        except Abandoned as err:
            log.warning("partition.abandoned", reason=str(err))
            return PartitionResult(partition.date, "abandoned", error=str(err))
        except Exception as err:  # one bad folder must not stop the others
            message = f"{type(err).__name__}: {err}"
            self.state.ledger_finish(partition.date, run_id, now, "failed", message, None)
            entry = self.state.ledger_get(partition.date)
            attempts = entry.attempts if entry is not None else 1
            log.error("partition.failed", error=message, attempts=attempts,
                      max_attempts=self.settings.schedule.max_attempts)
            given_up = attempts >= self.settings.schedule.max_attempts
            failure_alerts = (
                self.send_failure_alerts(partition, message, attempts, now) if given_up else []
            )
            return PartitionResult(partition.date, "failed", error=message, alerts=failure_alerts)
        finally:
            structlog.contextvars.unbind_contextvars("partition")
        severity = str(report.get("overall_severity", "none"))
        self.state.ledger_finish(partition.date, run_id, now, "done", None, severity)
        return PartitionResult(
            partition.date, "done", severity=severity,
            drift_detected=bool(report.get("overall_drift_detected")),
            report_json=json_path, report_html=html_path, stored=stored, alerts=alerts,
        )

