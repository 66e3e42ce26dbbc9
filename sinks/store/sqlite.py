"""The embedded metric store: one SQLite file (by default under the state directory).

Each call opens its own connection (WAL mode, a busy timeout), so the store is safe to use
from the scheduler and the status server threads and from a second process.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path

from analyzer.contract import DriftReport
from sinks.errors import StoreUnavailable
from sinks.files import dumps_json
from sinks.sqlite_file import sqlite_connection
from sinks.store.base import (
    MetricPoint,
    NightRecord,
    ReportRow,
    StoreOptions,
    unique_metrics,
)
from sinks.store.migrations import migrate_sqlite
from sinks.times import as_utc, parse_text, to_text


def sqlite_url(path: Path | str) -> str:
    """The store URL of the SQLite file at ``path`` (``sqlite:////abs/path`` when absolute)."""
    return f"sqlite:///{path}"


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///<path>`` URL (four slashes for an absolute path)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(
            f"SQLite store URL {url!r} is malformed; use sqlite:///relative/file.sqlite or "
            "sqlite:////absolute/file.sqlite"
        )
    return Path(url[len(prefix) :])


class SQLiteStore:
    """``MetricStore`` on a local SQLite file; see ``sinks.store.base.MetricStore``."""

    def __init__(self, path: Path | str, options: StoreOptions) -> None:
        self.path = Path(path)
        self.options = options
        self.url = sqlite_url(self.path)
        self._migrated = False

    def _connect(self, action: str) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_connection(self.path, lambda err: StoreUnavailable(
            f"metric store {self.url} could not {action}: {err}; check that the file's "
            "folder exists and is writable by driftd"))

    @contextmanager
    def _ready(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._connect(action) as conn:
            if not self._migrated:
                migrate_sqlite(conn)
                self._migrated = True
            yield conn

    def migrate(self) -> None:
        with self._connect("migrate its schema") as conn:
            migrate_sqlite(conn)
        self._migrated = True

    def write_night(self, night: NightRecord) -> None:
        day = night.partition.isoformat()
        at = to_text(night.time)
        analysed = to_text(night.analysed_at or night.time)
        labels = json.dumps(night.labels, sort_keys=True)
        baseline_n, current_n = night.report.baseline_image_count, night.report.current_image_count
        with self._ready(f"write the night of {day}") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM monitoring_metrics WHERE partition_date = ?", (day,))
                conn.executemany(
                    "INSERT INTO monitoring_metrics "
                    "(timestamp, partition_date, metric_name, value, run_id, labels) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (at, day, name, value, night.run_id, labels)
                        for name, value in unique_metrics(night.metrics)
                    ],
                )
                conn.execute(
                    "INSERT OR REPLACE INTO monitor_reports (partition_date, report_id, severity, "
                    "drift_detected, created_at, run_id, report, night_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        day,
                        night.report_id,
                        night.severity,
                        int(night.drift_detected),
                        analysed,
                        night.run_id,
                        dumps_json(night.report.to_dict()),
                        at,
                    ),
                )
                conn.execute(
                    "INSERT OR REPLACE INTO driftd_runs (partition_date, run_id, status, "
                    "started_at, finished_at, severity, baseline_image_count, "
                    "current_image_count) VALUES (?, ?, 'done', ?, ?, ?, ?, ?)",
                    (
                        day,
                        night.run_id,
                        to_text(night.started_at or night.analysed_at or night.time),
                        analysed,
                        night.severity,
                        baseline_n,
                        current_n,
                    ),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def latest_reports(self, limit: int = 14) -> list[ReportRow]:
        with self._ready("read reports") as conn:
            rows = conn.execute(
                "SELECT report_id, partition_date, severity, drift_detected, created_at, run_id, "
                "report FROM monitor_reports ORDER BY partition_date DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            ReportRow(
                report_id=r[0],
                partition=date.fromisoformat(r[1]),
                severity=r[2],
                drift_detected=bool(r[3]),
                created_at=parse_text(r[4]),
                run_id=r[5],
                report=DriftReport.from_dict(json.loads(r[6])),
            )
            for r in rows
        ]

    def metric_history(self, names: Sequence[str], until: date, days: int) -> list[MetricPoint]:
        if not names:
            return []
        since = until - timedelta(days=days)
        marks = ", ".join("?" for _ in names)
        with self._ready("read metric history") as conn:
            rows = conn.execute(
                "SELECT partition_date, metric_name, value, timestamp FROM monitoring_metrics "
                f"WHERE metric_name IN ({marks}) AND partition_date > ? AND partition_date <= ? "
                "ORDER BY partition_date, metric_name",
                (*names, since.isoformat(), until.isoformat()),
            ).fetchall()
        return [
            MetricPoint(date.fromisoformat(r[0]), r[1], float(r[2]), parse_text(r[3]))
            for r in rows
        ]

    def apply_retention(self, now: datetime) -> int:
        if self.options.retention_days is None:
            return 0
        cutoff = (as_utc(now).date() - timedelta(days=self.options.retention_days)).isoformat()
        deleted = 0
        with self._ready("apply retention") as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table in ("monitoring_metrics", "monitor_reports", "driftd_runs"):
                    cur = conn.execute(f"DELETE FROM {table} WHERE partition_date < ?", (cutoff,))
                    deleted += cur.rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return deleted

    def ping(self) -> None:
        with self._connect("answer a ping") as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""
