"""The PostgreSQL metric store, with TimescaleDB features when the extension is installed.

The schema and queries are plain PostgreSQL. When the target database already has the
``timescaledb`` extension (found in ``pg_extension``; driftd never runs ``CREATE EXTENSION``,
which is fatal without ``shared_preload_libraries``), ``migrate`` also turns the metrics
table into a hypertable with retention and compression policies. Each call opens its own
connection, so a database that went away and came back needs no reconnect logic.

Passwords never leave this module: error messages carry the DSN masked and the driver's
text scrubbed of the password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from datetime import date, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extras

from analyzer.contract import DriftReport
from sinks.errors import StoreUnavailable
from sinks.files import dumps_json
from sinks.redact import dsn_secrets, mask_dsn, scrub
from sinks.store.base import (
    MetricPoint,
    NightRecord,
    ReportRow,
    StoreOptions,
    unique_metrics,
)
from sinks.store.migrations import ADVISORY_LOCK_KEY, migrate_postgres
from sinks.times import as_utc


class PostgresStore:
    """``MetricStore`` on PostgreSQL (optionally TimescaleDB); see ``sinks.store.base``."""

    def __init__(self, dsn: str, options: StoreOptions) -> None:
        self._dsn = dsn
        self.options = options
        self.url = mask_dsn(dsn)
        self._secrets = [self.options.password, *dsn_secrets(dsn)]
        self._migrated = False
        self.timescale: bool | None = None
        """Whether TimescaleDB was found by the last ``migrate`` (None before it ran)."""

    def _fail(self, action: str, err: BaseException) -> StoreUnavailable:
        detail = scrub(str(err).strip(), self._secrets) or type(err).__name__
        return StoreUnavailable(
            f"metric store {self.url} could not {action}: {detail}; check that the server is "
            "up and the URL, user and password ([store] url / password secret) are right"
        )

    @contextmanager
    def _connect(self, action: str) -> Iterator[Any]:
        # statement_timeout / lock_timeout: a lock held by someone else or a stuck query must
        # not hold a night (and SIGTERM, which a blocked libpq call does not see) forever; the
        # cancelled statement raises, and the night is deferred like in an outage.
        kwargs: dict[str, Any] = {
            "connect_timeout": self.options.connect_timeout_s,
            "application_name": "driftd",
            "options": (
                f"-c statement_timeout={_ms(self.options.statement_timeout_s)} "
                f"-c lock_timeout={_ms(self.options.lock_timeout_s)}"
            ),
        }
        if self.options.password is not None:
            kwargs["password"] = self.options.password
        try:
            with closing(psycopg2.connect(self._dsn, **kwargs)) as conn:
                yield conn
        except psycopg2.Error as err:
            # ``from None``: the driver's own message can quote the DSN (e.g. "invalid dsn"),
            # and a chained cause would print it, password included, in every traceback.
            raise self._fail(action, err) from None

    @contextmanager
    def _ready(self, action: str) -> Iterator[Any]:
        with self._connect(action) as conn:
            if not self._migrated:
                self._migrate(conn)
            yield conn

    def _migrate(self, conn: Any) -> None:
        migrate_postgres(conn)
        self.timescale = _has_timescale(conn)
        if self.timescale:
            _setup_timescale(conn, self.options)
        self._migrated = True

    def migrate(self) -> None:
        with self._connect("migrate its schema") as conn:
            self._migrate(conn)

    def write_night(self, night: NightRecord) -> None:
        at = as_utc(night.time)
        analysed = as_utc(night.analysed_at or night.time)
        labels = json.dumps(night.labels, sort_keys=True)
        baseline_n, current_n = night.report.baseline_image_count, night.report.current_image_count
        with self._ready(f"write the night of {night.partition}") as conn:
            try:
                with conn.cursor() as cur:
                    # Rows other writers inserted (the seed's snippet: run_id 'external',
                    # migration 2) are theirs; a rerun replaces only driftd's own.
                    cur.execute(
                        "DELETE FROM monitoring_metrics WHERE partition_date = %s "
                        "AND run_id <> 'external'",
                        (night.partition,),
                    )
                    psycopg2.extras.execute_values(
                        cur,
                        "INSERT INTO monitoring_metrics "
                        "(timestamp, partition_date, metric_name, value, run_id, labels) VALUES %s",
                        [
                            (at, night.partition, name, value, night.run_id, labels)
                            for name, value in unique_metrics(night.metrics)
                        ],
                        template="(%s, %s, %s, %s, %s, %s::jsonb)",
                    )
                    cur.execute(
                        "INSERT INTO monitor_reports (partition_date, report_id, severity, "
                        "drift_detected, created_at, run_id, report, night_at) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s) "
                        "ON CONFLICT (partition_date) DO UPDATE SET "
                        "report_id = EXCLUDED.report_id, "
                        "severity = EXCLUDED.severity, drift_detected = EXCLUDED.drift_detected, "
                        "created_at = EXCLUDED.created_at, run_id = EXCLUDED.run_id, "
                        "report = EXCLUDED.report, night_at = EXCLUDED.night_at",
                        (
                            night.partition,
                            night.report_id,
                            night.severity,
                            night.drift_detected,
                            analysed,
                            night.run_id,
                            dumps_json(night.report.to_dict()),
                            at,
                        ),
                    )
                    cur.execute(
                        "INSERT INTO driftd_runs (partition_date, run_id, status, started_at, "
                        "finished_at, severity, baseline_image_count, current_image_count) "
                        "VALUES (%s, %s, 'done', %s, %s, %s, %s, %s) "
                        "ON CONFLICT (partition_date) DO UPDATE SET run_id = EXCLUDED.run_id, "
                        "status = EXCLUDED.status, started_at = EXCLUDED.started_at, "
                        "finished_at = EXCLUDED.finished_at, severity = EXCLUDED.severity, "
                        "baseline_image_count = EXCLUDED.baseline_image_count, "
                        "current_image_count = EXCLUDED.current_image_count",
                        (
                            night.partition,
                            night.run_id,
                            as_utc(night.started_at or night.analysed_at or night.time),
                            analysed,
                            night.severity,
                            baseline_n,
                            current_n,
                        ),
                    )
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def latest_reports(self, limit: int = 14) -> list[ReportRow]:
        with self._ready("read reports") as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT report_id, partition_date, severity, drift_detected, created_at, run_id, "
                "report FROM monitor_reports ORDER BY partition_date DESC LIMIT %s",
                (limit,),
            )
            rows = cur.fetchall()
        return [ReportRow(row[0], row[1], row[2], row[3], row[4], row[5],
                          DriftReport.from_dict(row[6])) for row in rows]

    def metric_history(self, names: Sequence[str], until: date, days: int) -> list[MetricPoint]:
        if not names:
            return []
        since = until - timedelta(days=days)
        with self._ready("read metric history") as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT partition_date, metric_name, value, timestamp FROM monitoring_metrics "
                "WHERE metric_name = ANY(%s) AND partition_date > %s AND partition_date <= %s "
                "ORDER BY partition_date, metric_name",
                (list(names), since, until),
            )
            rows = cur.fetchall()
        return [MetricPoint(r[0], r[1], float(r[2]), r[3]) for r in rows]

    def apply_retention(self, now: datetime) -> int:
        if self.options.retention_days is None:
            return 0
        cutoff = as_utc(now).date() - timedelta(days=self.options.retention_days)
        deleted = 0
        with self._ready("apply retention") as conn:
            try:
                with conn.cursor() as cur:
                    for table in ("monitoring_metrics", "monitor_reports", "driftd_runs"):
                        cur.execute(f"DELETE FROM {table} WHERE partition_date < %s", (cutoff,))
                        deleted += cur.rowcount
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        return deleted

    def ping(self) -> None:
        with self._connect("answer a ping") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")

    def close(self) -> None:
        """Nothing to release: every call opens and closes its own connection."""


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _set_retention_policy(cur: Any, retention_days: int | None) -> None:
    """Make the hypertable's retention policy drop chunks older than ``retention_days`` (no
    policy for None). ``add_retention_policy(if_not_exists => TRUE)`` keeps an existing
    policy whatever its interval, so a changed value replaces the policy."""
    cur.execute(
        "SELECT (config->>'drop_after')::interval FROM timescaledb_information.jobs "
        "WHERE proc_name = 'policy_retention' AND hypertable_name = 'monitoring_metrics'"
    )
    current = [row[0] for row in cur.fetchall()]
    wanted = timedelta(days=retention_days) if retention_days is not None else None
    if current == ([wanted] if wanted is not None else []):
        return
    if current:
        cur.execute("SELECT remove_retention_policy('monitoring_metrics', if_exists => TRUE)")
    if retention_days is not None:
        cur.execute(
            "SELECT add_retention_policy('monitoring_metrics', make_interval(days => %s))",
            (retention_days,),
        )


def _has_timescale(conn: Any) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        return cur.fetchone() is not None


def _setup_timescale(conn: Any, options: StoreOptions) -> None:
    """Make ``monitoring_metrics`` a hypertable with the policies of ``options`` (idempotent).

    Only runs where the extension already exists. Reruns of a date older than
    ``compress_after_days`` delete from compressed chunks, which needs TimescaleDB >= 2.11.
    """
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            cur.execute(
                "SELECT create_hypertable('monitoring_metrics', 'timestamp', "
                "chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE, "
                "migrate_data => TRUE)"
            )
            cur.execute(
                "SELECT compression_enabled FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = 'monitoring_metrics'"
            )
            row = cur.fetchone()
            if options.compress_after_days is not None:
                if not (row and row[0]):
                    cur.execute(
                        "ALTER TABLE monitoring_metrics SET (timescaledb.compress, "
                        "timescaledb.compress_segmentby = 'metric_name', "
                        "timescaledb.compress_orderby = 'timestamp DESC')"
                    )
                cur.execute(
                    "SELECT add_compression_policy('monitoring_metrics', "
                    "make_interval(days => %s), if_not_exists => TRUE)",
                    (options.compress_after_days,),
                )
            _set_retention_policy(cur, options.retention_days)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
