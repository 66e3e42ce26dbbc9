"""One run's steps: prepare (clean, flush, retry alerts), then one partition end to end.

A *partition* is one dated production folder. ``Pipeline.process`` takes it through
analyze → report files (atomic) → store write (buffered in the state DB when the store is
down) → alerts (router plan → outbox → dispatch) → ledger done. Each step is a method that
tests call directly; none of them decides *which* folders to process (that is
``daemon.scheduler.Daemon``).
"""

from __future__ import annotations

import errno
import json
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import structlog

from analyzer.contract import DriftReport, Metric, TrendPoint, metric_rows
from analyzer.errors import BaselineError, ModelError
from analyzer.profile import Profile
from analyzer.severity import Severity
from daemon.alerts import AlertDispatcher, AlertRouter
from daemon.config import Settings, analyzer_kwargs
from daemon.defaults import HISTORY_DAYS
from daemon.locations import Location, read_bytes
from daemon.state import (
    Outbox,
    OutboxAlert,
    StateDB,
    StateError,
    flush_pending,
    state_file,
    store_or_defer,
)
from sinks.errors import StoreUnavailable
from sinks.files import ReportFiles, report_id_for
from sinks.store import MetricStore, NightRecord, open_store
from sinks.times import night_start

log = structlog.get_logger("driftd.pipeline")

HISTORY_METRICS: tuple[str, ...] = (
    Metric.PIXEL_MEAN_SHIFT, Metric.CONFIDENCE_SHIFT, Metric.DRIFT_DETECTED,
    Metric.OVERALL_SEVERITY_RANK, Metric.ACCURACY_ESTIMATE, Metric.ACCURACY_LOW,
    Metric.ACCURACY_HIGH, Metric.EMBEDDING_EFFECT,
)
"""The metric rows the HTML report's trend is drawn from."""


class Abandoned(Exception):
    """Raised inside a partition when the daemon was asked to stop; the folder stays pending."""


class RunError(Exception):
    """Raised for a run-level fault: one that is nobody folder's fault and would fail every
    folder alike (no or a broken baseline, a broken model, a full disk, an unusable state
    database). The run stops; no folder's attempts are spent."""


DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
"""OS errors that mean driftd's own disk is full or read-only: a run-level fault."""


def is_run_fault(err: BaseException, step: str) -> bool:
    """True when ``err``, raised at ``step`` of a folder, is a run-level fault (see
    ``RunError``); False when it is the folder's own fault (empty, unreadable, ...).

    Run-level: the baseline or the model (``BaselineError``, ``ModelError``), the local
    state database, a full or read-only disk anywhere, and any OS error while writing the
    report files (the reports folder is driftd's, not the night's).
    """
    if isinstance(err, BaselineError | ModelError | StateError | RunError):
        return True
    if isinstance(err, OSError):
        return err.errno in DISK_ERRNOS or step == "report"
    return False



@dataclass(frozen=True)
class Partition:
    """A dated production folder."""

    date: date
    folder: Location

    @property
    def report_id(self) -> str:
        return report_id_for(self.date)


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


@dataclass(frozen=True)
class Alerting:
    """The outbox in the state file, the router that plans alerts into it and the dispatcher
    that delivers them: built together, once per pipeline, on first use."""

    outbox: Outbox
    router: AlertRouter
    dispatcher: AlertDispatcher


class Pipeline:
    """The steps of a run, bound to one configuration and one stop flag."""

    def __init__(self, settings: Settings, should_stop: StopCheck = _never) -> None:
        self.settings = settings
        self.should_stop = should_stop
        self.tz = zoneinfo.ZoneInfo(settings.schedule.timezone)
        self.files = ReportFiles(settings.data.reports_path)
        settings.data.state_dir.mkdir(parents=True, exist_ok=True)
        self.state = StateDB(state_file(settings.data.state_dir))
        self._baseline: Profile | None = None
        self._alerting: Alerting | None = None

    # ---- start of every run -------------------------------------------------------------

    def clean_temp(self) -> int:
        """Remove temp files an interrupted write left in the reports folder."""
        removed = self.files.clean_stale_temp()
        if removed:
            log.info("temp_files.removed", count=removed)
        return removed

    def open_store(self) -> MetricStore | None:
        """The metric store, migrated; ``None`` (logged) when it is unreachable."""
        try:
            store = open_store(self.settings.store.url, self.settings.store.options())
            store.migrate()
        except StoreUnavailable as err:
            self.state.store_failed(datetime.now().astimezone(), str(err))
            log.warning("store.unavailable", store=self.settings.store.masked_url, error=str(err))
            return None
        return store

    def flush_pending(self, store: MetricStore | None, now: datetime) -> int:
        """Write the nights that waited for the database; returns how many landed."""
        if store is None:
            return 0
        result = flush_pending(self.state, store, labels=self.labels(), tz=self.tz)
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

    def alerting(self) -> Alerting:
        """The outbox, router and dispatcher over the state file (built once per pipeline,
        whichever step needs them first)."""
        if self._alerting is None:
            alerts, retrain = self.settings.alerts, self.settings.retrain
            outbox = Outbox(self.state.path)
            self._alerting = Alerting(
                outbox, AlertRouter(alerts, retrain, outbox),
                AlertDispatcher.from_settings(outbox, alerts, retrain),
            )
        return self._alerting

    def deliver_due(self, now: datetime) -> int:
        """Send the alerts whose (re)try is due; returns how many were delivered."""
        stats = self.alerting().dispatcher.deliver_due(now)
        if stats.sent or stats.retried or stats.dead:
            log.info("alerts.delivered", sent=stats.sent, retried=stats.retried, dead=stats.dead)
        return stats.sent

    def load_baseline(self) -> Profile:
        """The saved baseline (cached for the run). Raises ``RunError`` when it is missing,
        unreadable or not a driftd profile (e.g. ``{}``)."""
        if self._baseline is None:
            path = self.settings.data.baseline
            try:
                baseline = Profile.from_dict(json.loads(
                    read_bytes(path, self.settings.data.storage_options).decode("utf-8")))
            except FileNotFoundError:
                raise RunError(
                    f"baseline {path} not found; build it with `driftd baseline DIR`"
                ) from None
            except (OSError, ValueError) as err:
                raise RunError(f"baseline {path} is unreadable ({err}); rebuild it") from err
            except BaselineError as err:
                raise RunError(
                    f"baseline {path} is not usable ({err}); rebuild it with "
                    "`driftd baseline DIR`"
                ) from err
            self._baseline = baseline
        return self._baseline

    def preflight(self) -> None:
        """Check what every folder needs before any is touched: the baseline and the model
        file. Raises ``RunError`` naming the problem (no folder's attempts are spent)."""
        self.load_baseline()
        model = self.settings.model.path
        if model is not None:
            try:
                with open(model, "rb") as fh:
                    fh.read(1)
            except FileNotFoundError:
                raise RunError(
                    f"model file {model} does not exist; fix [model] path or restore the file"
                ) from None
            except OSError as err:
                raise RunError(
                    f"model file {model} cannot be read ({err.strerror}); fix [model] path "
                    "or the file's permissions"
                ) from None

    # ---- one partition ------------------------------------------------------------------

    def analyze(self, partition: Partition, now: datetime) -> DriftReport:
        """Profile the folder and compare it with the baseline; returns the report.

        Raises ``Abandoned`` when ``should_stop`` turns true between batches of images.
        """
        # numpy, Pillow and the worker pool: only a run that analyses pays for them.
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
        report = analyzer.drift_report(self.load_baseline())
        if self.should_stop():
            raise Abandoned("stopped after the analysis")
        return report

    def history(self, store: MetricStore | None, partition: Partition) -> list[TrendPoint]:
        """Trend points for the HTML report: the stored metrics of the previous nights,
        oldest first."""
        if store is None:
            return []
        try:
            points = store.metric_history(HISTORY_METRICS, partition.date, HISTORY_DAYS)
        except StoreUnavailable:
            return []
        by_date: dict[date, dict[str, float]] = {}
        for p in points:
            by_date.setdefault(p.partition, {})[p.name] = p.value
        severities = list(Severity)
        return [
            TrendPoint(
                report_id=report_id_for(day),
                date=day.isoformat(),
                overall_severity=severities[int(v.get(Metric.OVERALL_SEVERITY_RANK, 0))],
                pixel_mean_shift=v.get(Metric.PIXEL_MEAN_SHIFT),
                confidence_shift=v.get(Metric.CONFIDENCE_SHIFT),
                drift_detected=bool(v.get(Metric.DRIFT_DETECTED, 0)),
                accuracy_estimate=v.get(Metric.ACCURACY_ESTIMATE),
                accuracy_low=v.get(Metric.ACCURACY_LOW),
                accuracy_high=v.get(Metric.ACCURACY_HIGH),
                embedding_effect=v.get(Metric.EMBEDDING_EFFECT),
            )
            for day, v in sorted(by_date.items())
            if day < partition.date
        ]

    def write_reports(
        self, partition: Partition, report: DriftReport, history: list[TrendPoint]
    ) -> tuple[Path, Path]:
        """Write ``monitor_report_<YYYYMMDD>.json`` and ``.html`` atomically."""
        # matplotlib and Jinja2: only a run that writes a report pays for them.
        from analyzer.render import render_html

        json_path = self.files.write_json(partition.report_id, report)
        html_path = self.files.write_html(partition.report_id, render_html(report, history))
        log.info("report.written", json=str(json_path), html=str(html_path))
        return json_path, html_path

    def copy_reports(self, ids: list[str] | None = None) -> int:
        """Copy reports (``ids``, or every local one) missing at ``[data].reports_url``;
        returns how many files were copied. A failure is logged, never raised: the reports
        are safe on disk and the next run copies what is still missing."""
        url = self.settings.data.reports_url
        if not url:
            return 0
        from sinks.remote_reports import RemoteReportError, RemoteReports

        remote = RemoteReports(url, self.settings.data.storage_options)
        try:
            written = remote.sync(self.files, self.files.list_ids() if ids is None else ids)
        except RemoteReportError as err:
            log.warning("report.copy_failed", error=str(err))
            return 0
        if written:
            log.info("report.copied", url=url, files=len(written))
        return len(written)

    def store_report(
        self, store: MetricStore | None, partition: Partition, report: DriftReport,
        run_id: str, json_path: Path, now: datetime,
    ) -> bool:
        """Record the night as a pending write, then write it; False when the store is down.

        The pending payload is the JSON report itself, so nothing is lost while the database
        is down: the next run's ``flush_pending`` writes it.
        """
        if store is None:
            self.state.pending_writes_add(partition.date, json_path)
            log.warning("store.write_deferred", reason="store unavailable")
            return False
        night = NightRecord(
            partition=partition.date, run_id=run_id,
            time=night_start(partition.date, self.tz), report=report,
            metrics=metric_rows(report), labels=self.labels(), started_at=now,
            analysed_at=report.timestamp,
        )
        if store_or_defer(self.state, store, night, json_path):
            log.info("store.written", store=store.url)
            return True
        log.warning("store.write_failed", error=self.state.store_status().last_error)
        return False

    def send_alerts(
        self, partition: Partition, report: DriftReport, json_path: Path, now: datetime
    ) -> list[str]:
        """Plan the night's alerts into the outbox (a key already there is never queued again,
        so reruns and backfills send nothing twice), then deliver what is due.

        Returns the ``channel:kind`` of the alerts newly queued for this night.
        """
        router = self.alerting().router
        return self._queue(router.plan(report, partition.date, now, report_path=str(json_path)),
                           now)

    def send_failure_alerts(
        self, partition: Partition, error: str, attempts: int, now: datetime
    ) -> list[str]:
        """Tell people a folder was given up on (queued once per date, like drift alerts)."""
        router = self.alerting().router
        return self._queue(router.plan_failure(partition.date, error, attempts, now), now)

    def send_run_failure_alerts(self, error: str, now: datetime) -> list[str]:
        """Tell people the run could not analyse anything (a run-level fault): at most one
        alert per channel per day (the day of ``now`` in the schedule's timezone)."""
        router = self.alerting().router
        return self._queue(
            router.plan_run_failure(now.astimezone(self.tz).date(), error, now), now)

    def _queue(self, planned: list[OutboxAlert], now: datetime) -> list[str]:
        """Enqueue ``planned`` and deliver what is due; returns the ``channel:kind`` of the
        alerts that were new (a key already in the outbox is never queued again)."""
        alerting = self.alerting()
        queued = [a for a in planned if alerting.outbox.outbox_get(a.key) is None]
        alerting.dispatcher.enqueue(planned)
        self.deliver_due(now)
        return [f"{a.channel}:{a.kind}" for a in queued if a.status != "silenced"]

    def apply_retention(self, store: MetricStore | None, now: datetime) -> int:
        """Delete nights older than ``store.retention_days`` from the metric store and their
        nightly report files (``check`` reports are kept); returns how many rows and files
        went. A store that is down is skipped (logged): retention runs again after the next
        run."""
        days = self.settings.store.retention_days
        if not days:
            return 0
        cutoff = now.astimezone(self.tz).date() - timedelta(days=days)
        removed = self.files.remove_nightly_before(cutoff)
        rows = 0
        if store is not None:
            try:
                rows = store.apply_retention(now)
            except StoreUnavailable as err:
                log.warning("store.retention_failed", error=str(err))
        if rows or removed:
            log.info("retention.applied", rows=rows, report_files=removed,
                     before=cutoff.isoformat(), retention_days=days)
        return rows + removed

    def fail(self, partition: Partition, run_id: str, now: datetime, message: str,
             counted: bool = False) -> PartitionResult:
        """Record a failed attempt at ``partition`` (the folder's own fault): ledger
        ``failed``, and one failure alert once ``schedule.max_attempts`` attempts failed.
        ``counted``: the attempt was already started with ``ledger_start``."""
        if not counted:
            self.state.ledger_start(partition.date, run_id, now)
        self.state.ledger_finish(partition.date, run_id, now, "failed", message, None)
        entry = self.state.ledger_get(partition.date)
        attempts = entry.attempts if entry is not None else 1
        log.error("partition.failed", partition=partition.date.isoformat(), error=message,
                  attempts=attempts, max_attempts=self.settings.schedule.max_attempts)
        given_up = attempts >= self.settings.schedule.max_attempts
        failure_alerts = (
            self.send_failure_alerts(partition, message, attempts, now) if given_up else []
        )
        return PartitionResult(partition.date, "failed", error=message, alerts=failure_alerts)

    def process(self, partition: Partition, run_id: str, now: datetime,
                store: MetricStore | None) -> PartitionResult:
        """Take ``partition`` end to end and record the outcome in the run ledger.

        A failure that is the folder's own is recorded as ``failed`` (retried on later runs
        up to ``schedule.max_attempts``). ``Abandoned`` (SIGTERM) and run-level faults (see
        ``is_run_fault``) put the ledger entry back as it was, so the attempt does not
        count; a run-level fault is raised as ``RunError`` to stop the run.
        """
        structlog.contextvars.bind_contextvars(partition=partition.date.isoformat())
        previous = self.state.ledger_get(partition.date)
        self.state.ledger_start(partition.date, run_id, now)
        log.info("partition.started", folder=str(partition.folder))
        step = "analysis"
        try:
            report = self.analyze(partition, now)
            log.info(
                "partition.analyzed",
                severity=report.overall_severity.value,
                drift=report.overall_drift_detected,
                images=report.current_image_count,
            )
            step = "report"
            json_path, html_path = self.write_reports(
                partition, report, self.history(store, partition)
            )
            self.copy_reports([partition.report_id])
            step = "store"
            stored = self.store_report(store, partition, report, run_id, json_path, now)
            step = "alerts"
            alerts = self.send_alerts(partition, report, json_path, now)
        except Abandoned as err:
            self.state.ledger_restore(partition.date, previous)
            log.warning("partition.abandoned", reason=str(err))
            return PartitionResult(partition.date, "abandoned", error=str(err))
        except Exception as err:  # one bad folder must not stop the others
            message = f"{type(err).__name__}: {err}"
            if is_run_fault(err, step):
                self.state.ledger_restore(partition.date, previous)
                log.warning("partition.not_counted", step=step,
                            reason="run-level fault, not the folder's")
                raise RunError(f"{step} of {partition.date.isoformat()} failed: {message}"
                               ) from err
            return self.fail(partition, run_id, now, message, counted=True)
        finally:
            structlog.contextvars.unbind_contextvars("partition")
        severity = report.overall_severity.value
        self.state.ledger_finish(partition.date, run_id, now, "done", None, severity)
        return PartitionResult(
            partition.date, "done", severity=severity,
            drift_detected=report.overall_drift_detected,
            report_json=json_path, report_html=html_path, stored=stored, alerts=alerts,
        )

