"""The long-running daemon: a cron job that processes what is pending, plus start-up catch-up.

The work list comes from data, not from the scheduler: the dated folders under
``production_root`` within ``schedule.lookback_days``, minus those the run ledger marks done
(or failed ``max_attempts`` times), oldest first, each only once it is ready. Missed nights,
restarts and a double fire on a DST change are therefore harmless. ``Daemon.run_pending(now)``
is the cron job's body; tests call it directly.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import signal
import threading
import zoneinfo
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from types import FrameType

import structlog

from analyzer.severity import Severity
from daemon.config import Settings
from daemon.defaults import IDLE_TICK_S, LOCK_NAME, MISFIRE_GRACE_S
from daemon.http import StatusServer, start_status_server
from daemon.locations import DatedRoot
from daemon.notify import Notifier
from daemon.pipeline import (
    DISK_ERRNOS,
    Partition,
    PartitionResult,
    Pipeline,
    RunError,
)
from daemon.state import Outbox, StateDB, StateError, state_file
from daemon.status import DaemonState, FileStatusProvider, StatusReport

log = structlog.get_logger("driftd.scheduler")

JOB_ID = "run_pending"
RETRY_JOB_ID = "retry_due"


@dataclass
class RunSummary:
    """Counts and verdicts of one run (the ``run.finished`` log line).

    ``error`` is set when the run itself failed (a run-level fault, or a crash); folders
    that failed on their own are ``results`` with status ``failed``.
    """

    run_id: str
    results: list[PartitionResult] = field(default_factory=list)
    waiting: list[date] = field(default_factory=list)
    error: str | None = None
    skipped: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def ok(self) -> bool:
        """True when the run worked and no folder failed (``/healthz``, ``run --once``)."""
        return self.error is None and self.count("failed") == 0

    @property
    def problem(self) -> str | None:
        """What went wrong, in one line (None when ``ok``)."""
        if self.error is not None:
            return self.error
        failed = [r for r in self.results if r.status == "failed"]
        if not failed:
            return None
        first = failed[0]
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return f"folder {first.partition.isoformat()} failed: {first.error}{more}"

    @property
    def worst_severity(self) -> str:
        return Severity.highest(r.severity for r in self.results if r.severity).value


def new_run_id(now: datetime) -> str:
    """A sortable unique run id, e.g. ``20261126T011503Z-3fa9c1``."""
    return f"{now.astimezone(zoneinfo.ZoneInfo('UTC')):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def folder_date(name: str, date_format: str) -> date | None:
    """The date of a folder named ``name``, or None unless ``date_format`` writes exactly
    ``name`` for that date (``strptime`` alone also reads ``2026121`` as 2026-12-01)."""
    try:
        day = datetime.strptime(name, date_format).date()
    except ValueError:
        return None
    return day if day.strftime(date_format) == name else None


class Daemon:
    """Finds pending partitions and runs them through the pipeline; owns the stop flag."""

    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.stop_event = threading.Event()
        self.tz = zoneinfo.ZoneInfo(settings.schedule.timezone)
        self.status = DaemonState(started_at=datetime.now(self.tz))
        """Liveness facts for the status API (``daemon.http``)."""
        self._ignored_names: set[str] = set()
        self.root = DatedRoot(settings.data.production_root, settings.data.storage_options)
        """The dated folders: local, or prefixes of an object store (``daemon.locations``)."""

    def should_stop(self) -> bool:
        return self.stop_event.is_set()

    # ---- the work list ------------------------------------------------------------------

    def dated_folders(self, now: datetime) -> list[Partition]:
        """Folders named by ``date_format`` within ``lookback_days`` of ``now``, oldest first.

        A name counts only when it is exactly what ``date_format`` writes for its date
        (``20261201``, never ``2026121``, which ``strptime`` also reads as 2026-12-01), so two
        folders can never claim one date. Other folders are named once per process in a
        ``folders.ignored`` warning.
        """
        data = self.settings.data
        today = now.astimezone(self.tz).date()
        since = today - timedelta(days=self.settings.schedule.lookback_days)
        found = []
        ignored = []
        for name, folder in self.root.children():
            day = folder_date(name, data.date_format)
            if day is None:
                if not name.startswith(".") and name not in self._ignored_names:
                    ignored.append(name)
                continue
            if since <= day <= today:
                found.append(Partition(day, folder))
        if ignored:
            self._ignored_names.update(ignored)
            log.warning("folders.ignored", names=sorted(ignored), date_format=data.date_format,
                        reason="name is not a date written exactly as date_format writes it")
        return sorted(found, key=lambda p: p.date)

    def is_ready(self, partition: Partition, now: datetime) -> bool:
        """True when the folder holds the ready marker or has not changed for settle_seconds
        (on object storage: the newest object's last-modified time).

        Raises ``OSError`` when the folder cannot be looked into (e.g. permission denied).
        """
        data = self.settings.data
        return self.root.is_ready(partition.folder, data.ready_marker, data.settle_seconds, now)

    def pending(self, pipeline: Pipeline, now: datetime) -> list[Partition]:
        """Dated folders the ledger does not mark done (or given up on), oldest first."""
        folders = self.dated_folders(now)
        if not folders:
            return []
        finished = pipeline.state.ledger_done(
            folders[0].date, max_attempts=self.settings.schedule.max_attempts
        )
        return [p for p in folders if p.date not in finished]

    # ---- one run ------------------------------------------------------------------------

    def run_pending(self, now: datetime | None = None) -> RunSummary:
        """The cron job body: prepare, then process every ready pending partition in order.

        Never raises: a run-level fault (``run.failed``) or a crash (``run.crashed``, with
        its traceback) is the summary's ``error``, and the run counts as failed for
        ``/healthz`` and ``/metrics`` — as does a run in which a folder failed.
        """
        now = now or datetime.now(self.tz)
        summary = RunSummary(new_run_id(now))
        structlog.contextvars.bind_contextvars(run_id=summary.run_id)
        self.status.run_started(now)
        try:
            with self._run_lock() as locked:
                if not locked:
                    summary.skipped = True
                    log.info("run.skipped", reason="another run holds the lock")
                    return summary
                self._run(summary, now)
        except RunError as err:
            summary.error = str(err)
            log.error("run.failed", error=summary.error)
        except Exception as err:  # a bug must fail this run loudly, not the scheduler
            summary.error = f"crashed: {type(err).__name__}: {err}"
            log.exception("run.crashed", error=summary.error)
        finally:
            if not summary.skipped:
                self.status.run_finished(datetime.now(self.tz), summary.ok, summary.problem)
            self._log_summary(summary)
            structlog.contextvars.unbind_contextvars("run_id")
        return summary

    def backfill(self, days: list[date], now: datetime | None = None, *, retry: bool = False
                 ) -> RunSummary:
        """Reprocess the folders of ``days`` whatever the ledger says (alerts already in the
        outbox for a date are never sent again). Missing folders are logged and skipped.

        Each date's attempts start afresh, so a night given up on (``schedule.max_attempts``
        failures) that fails again is retried by later runs. ``retry``: only the dates that
        are not done (``driftd retry``); done ones are logged and left alone.
        """
        now = now or datetime.now(self.tz)
        summary = RunSummary(new_run_id(now))
        structlog.contextvars.bind_contextvars(run_id=summary.run_id)
        fmt = self.settings.data.date_format
        work = []
        for day in days:
            folder = self.root.child(day.strftime(fmt))
            if self.root.exists(folder):
                work.append(Partition(day, folder))
            else:
                log.warning("partition.missing", partition=day.isoformat(), folder=str(folder))
        try:
            with self._run_lock() as locked:
                if not locked:
                    summary.error = "another driftd run holds the lock; try again when it ends"
                    return summary
                self._run(summary, now, work=work, reset=True, skip_done=retry)
        except RunError as err:
            summary.error = str(err)
            log.error("run.failed", error=summary.error)
        except Exception as err:  # same contract as run_pending
            summary.error = f"crashed: {type(err).__name__}: {err}"
            log.exception("run.crashed", error=summary.error)
        finally:
            self._log_summary(summary)
            structlog.contextvars.unbind_contextvars("run_id")
        return summary

    def retry_due(self, now: datetime | None = None) -> None:
        """Between runs: write the nights that waited for the database and send the alerts
        whose retry is due. Skipped while a run holds the lock (the run does both itself)."""
        now = now or datetime.now(self.tz)
        with self._run_lock() as locked:
            if not locked:
                return
            pipeline = Pipeline(self.settings, should_stop=self.should_stop)
            if pipeline.state.pending_writes():
                store = pipeline.open_store()
                try:
                    pipeline.flush_pending(store, now)
                finally:
                    if store is not None:
                        store.close()
            pipeline.deliver_due(now)

    def _run(self, summary: RunSummary, now: datetime, work: list[Partition] | None = None,
             *, reset: bool = False, skip_done: bool = False) -> None:
        log.info("run.started", now=now.isoformat())
        try:
            pipeline = Pipeline(self.settings, should_stop=self.should_stop)
        except StateError as err:
            raise RunError(str(err)) from err
        try:
            self._run_with(pipeline, summary, now, work, reset=reset, skip_done=skip_done)
        except StateError as err:
            raise RunError(str(err)) from err
        except RunError as err:
            self._alert_run_failure(pipeline, str(err), now)
            raise
        except OSError as err:
            if err.errno not in DISK_ERRNOS:
                raise
            message = f"{type(err).__name__}: {err}"
            self._alert_run_failure(pipeline, message, now)
            raise RunError(message) from err

    def _run_with(self, pipeline: Pipeline, summary: RunSummary, now: datetime,
                  work: list[Partition] | None, *, reset: bool, skip_done: bool) -> None:
        pipeline.clean_temp()
        store = pipeline.open_store()
        try:
            pipeline.flush_pending(store, now)
            pipeline.deliver_due(now)
            pipeline.copy_reports()  # what an outage of [data].reports_url left behind
            explicit = work is not None
            work = work if work is not None else self.pending(pipeline, now)
            if skip_done:
                work = self._not_done(pipeline, work)
            if reset:
                for partition in work:
                    entry = pipeline.state.ledger_get(partition.date)
                    if entry is not None and entry.status != "done":
                        pipeline.state.ledger_reset(partition.date)
                        log.info("partition.reset", partition=partition.date.isoformat(),
                                 attempts_before=entry.attempts)
            if work:
                pipeline.preflight()
            for partition in work:
                if self.should_stop():
                    break
                try:
                    ready = explicit or self.is_ready(partition, now)
                except OSError as err:
                    # The folder's own fault (e.g. permission denied): counted like any folder
                    # failure, and the later folders still run.
                    summary.results.append(pipeline.fail(
                        partition, summary.run_id, now,
                        f"folder {partition.folder} cannot be read: {err.strerror or err}",
                    ))
                    continue
                if not ready:
                    summary.waiting.append(partition.date)
                    log.info("partition.waiting", partition=partition.date.isoformat(),
                             reason="not ready (no marker, changed recently)")
                    continue
                result = pipeline.process(partition, summary.run_id, now, store)
                summary.results.append(result)
                self.notifier.watchdog()
            if not self.should_stop():
                pipeline.apply_retention(store, now)
        finally:
            if store is not None:
                store.close()

    @staticmethod
    def _not_done(pipeline: Pipeline, work: list[Partition]) -> list[Partition]:
        left = []
        for partition in work:
            entry = pipeline.state.ledger_get(partition.date)
            if entry is not None and entry.status == "done":
                log.info("partition.already_done", partition=partition.date.isoformat(),
                         hint="use `driftd backfill` to reprocess it")
                continue
            left.append(partition)
        return left

    @staticmethod
    def _alert_run_failure(pipeline: Pipeline, error: str, now: datetime) -> None:
        try:
            pipeline.send_run_failure_alerts(error, now)
        except Exception as err:  # the disk or state file that failed the run may fail this too
            log.error("alert.run_failure_not_queued", error=f"{type(err).__name__}: {err}")

    @contextmanager
    def _run_lock(self) -> Iterator[bool]:
        state_dir = self.settings.data.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        with open(state_dir / LOCK_NAME, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _log_summary(self, summary: RunSummary) -> None:
        if summary.skipped:
            return
        log.info(
            "run.finished",
            processed=summary.count("done"),
            failed=summary.count("failed"),
            abandoned=summary.count("abandoned"),
            waiting=len(summary.waiting),
            drifted=sum(1 for r in summary.results if r.drift_detected),
            worst_severity=summary.worst_severity,
            alerts=sum(len(r.alerts) for r in summary.results),
            error=summary.error,
        )

    # ---- the service loop ---------------------------------------------------------------

    def _job(self) -> None:
        try:
            self.run_pending()
        except Exception:  # the scheduler must survive any bug in one run
            log.exception("run.crashed")

    def _retry_job(self) -> None:
        try:
            self.retry_due()
        except Exception:  # a failed retry pass is retried on the next tick
            log.exception("retry.crashed")

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT only set the stop flag; the run notices it between steps."""

        def handle(signum: int, frame: FrameType | None) -> None:
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def serve(self) -> int:
        """Run until SIGTERM: catch-up at once, then every cron fire. Returns the exit code 0."""
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        self.install_signal_handlers()
        trigger = CronTrigger.from_crontab(self.settings.schedule.cron, timezone=self.tz)
        scheduler = BackgroundScheduler(timezone=self.tz)
        scheduler.add_job(
            self._job, trigger, id=JOB_ID, coalesce=True, max_instances=1,
            misfire_grace_time=MISFIRE_GRACE_S,
            next_run_time=datetime.now(self.tz),  # start-up catch-up
        )
        scheduler.add_job(
            self._retry_job, IntervalTrigger(seconds=self.settings.schedule.retry_seconds),
            id=RETRY_JOB_ID, coalesce=True, max_instances=1,
            misfire_grace_time=self.settings.schedule.retry_seconds,
        )
        http = self._start_http()
        scheduler.start()
        self.status.set_scheduler_alive(True)
        self.notifier.ready(status="processing pending work")
        log.info("daemon.started", cron=self.settings.schedule.cron,
                 timezone=self.settings.schedule.timezone, pid=os.getpid())
        tick = self.notifier.watchdog_interval or IDLE_TICK_S
        while not self.stop_event.wait(tick):
            self.notifier.watchdog()
        self.notifier.stopping()
        log.info("daemon.stopping")
        scheduler.shutdown(wait=True)
        self.status.set_scheduler_alive(False)
        if http is not None:
            http.stop()
        log.info("daemon.stopped")
        return 0

    def _start_http(self) -> StatusServer | None:
        state_path = state_file(self.settings.data.state_dir)
        # No store: the HTTP thread never pings the database; the outage the runs recorded
        # in the state file is what /healthz reports.
        provider = FileStatusProvider(
            self.settings.data.reports_path, StateDB(state_path), None, self.status,
            outbox=Outbox(state_path),
        )
        return start_status_server(self.settings.http.listen, provider)


def status_report(settings: Settings) -> StatusReport:
    """What ``driftd status`` prints: the latest verdict (the seed's dashboard summary), the
    store's health and pending writes, and folders given up on or still failing."""
    state = StateDB(state_file(settings.data.state_dir))
    provider = FileStatusProvider(
        settings.data.reports_path, state, None, DaemonState(started_at=datetime.now())
    )
    return StatusReport(
        latest=provider.latest_report(),
        store_url=settings.store.masked_url,
        store=state.store_status(),
        recent=state.ledger_recent(settings.schedule.lookback_days),
        max_attempts=settings.schedule.max_attempts,
    )
