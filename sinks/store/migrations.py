"""Versioned schema migrations: an ordered registry per dialect and the code that applies it.

A migration is applied once, in version order, inside one transaction that also records it
in ``schema_migrations``; the transaction first takes a lock that serialises migrators
(PostgreSQL: ``pg_advisory_xact_lock``; SQLite: ``BEGIN IMMEDIATE``), so two processes
starting together leave one schema. Never edit a released migration: append a new one.

On a TimescaleDB hypertable every unique key must contain the time column, so the metrics
key is ``(partition_date, metric_name, timestamp)``; idempotency by folder date comes from
deleting that date's rows before inserting them, in the same transaction.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

ADVISORY_LOCK_KEY = 0x6472696674_64
"""``pg_advisory_xact_lock`` key that serialises driftd migrators ("driftd" in ASCII)."""


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` (strictly increasing), what it does, its SQL statements."""

    version: int
    description: str
    statements: tuple[str, ...]


POSTGRES: tuple[Migration, ...] = (
    Migration(
        1,
        "metrics, reports and runs tables",
        (
            """CREATE TABLE monitoring_metrics (
                timestamp timestamptz NOT NULL,
                partition_date date NOT NULL,
                metric_name text NOT NULL,
                value double precision NOT NULL,
                run_id text NOT NULL,
                labels jsonb NOT NULL DEFAULT '{}'::jsonb,
                PRIMARY KEY (partition_date, metric_name, timestamp)
            )""",
            "CREATE INDEX monitoring_metrics_name_time ON monitoring_metrics "
            "(metric_name, timestamp DESC)",
            """CREATE TABLE monitor_reports (
                partition_date date PRIMARY KEY,
                report_id text NOT NULL,
                severity text NOT NULL,
                drift_detected boolean NOT NULL,
                created_at timestamptz NOT NULL,
                run_id text NOT NULL,
                report jsonb NOT NULL
            )""",
            "CREATE INDEX monitor_reports_created_at ON monitor_reports (created_at)",
            """CREATE TABLE driftd_runs (
                partition_date date PRIMARY KEY,
                run_id text NOT NULL,
                status text NOT NULL,
                started_at timestamptz NOT NULL,
                finished_at timestamptz,
                severity text,
                baseline_image_count integer,
                current_image_count integer
            )""",
        ),
    ),
    Migration(
        2,
        "monitor_reports.night_at: the night's instant, so report panels plot one point a night",
        (
            "ALTER TABLE monitor_reports ADD COLUMN night_at timestamptz",
            # Rows written before: their folder date at midnight UTC (a backfill rewrites them
            # at midnight in the schedule's timezone).
            "UPDATE monitor_reports SET night_at = partition_date::timestamp AT TIME ZONE 'UTC'",
            "ALTER TABLE monitor_reports ALTER COLUMN night_at SET NOT NULL",
            "CREATE INDEX monitor_reports_night_at ON monitor_reports (night_at)",
        ),
    ),
)

SQLITE: tuple[Migration, ...] = (
    Migration(
        1,
        "metrics, reports and runs tables",
        (
            # Times are ISO 8601 UTC text, dates YYYY-MM-DD, JSON as text: they sort as stored.
            """CREATE TABLE monitoring_metrics (
                timestamp TEXT NOT NULL,
                partition_date TEXT NOT NULL,
                metric_name TEXT NOT NULL,
                value REAL NOT NULL,
                run_id TEXT NOT NULL,
                labels TEXT NOT NULL DEFAULT '{}',
                PRIMARY KEY (partition_date, metric_name, timestamp)
            )""",
            "CREATE INDEX monitoring_metrics_name_time ON monitoring_metrics "
            "(metric_name, timestamp)",
            """CREATE TABLE monitor_reports (
                partition_date TEXT PRIMARY KEY,
                report_id TEXT NOT NULL,
                severity TEXT NOT NULL,
                drift_detected INTEGER NOT NULL,
                created_at TEXT NOT NULL,
                run_id TEXT NOT NULL,
                report TEXT NOT NULL
            )""",
            "CREATE INDEX monitor_reports_created_at ON monitor_reports (created_at)",
            """CREATE TABLE driftd_runs (
                partition_date TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                status TEXT NOT NULL,
                started_at TEXT NOT NULL,
                finished_at TEXT,
                severity TEXT,
                baseline_image_count INTEGER,
                current_image_count INTEGER
            )""",
        ),
    ),
    Migration(
        2,
        "monitor_reports.night_at: the night's instant, so report panels plot one point a night",
        (
            "ALTER TABLE monitor_reports ADD COLUMN night_at TEXT",
            "UPDATE monitor_reports SET night_at = partition_date || 'T00:00:00+00:00'",
            "CREATE INDEX monitor_reports_night_at ON monitor_reports (night_at)",
        ),
    ),
)


def _check_order(migrations: tuple[Migration, ...]) -> None:
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migration versions must strictly increase, got {versions}")


def migrate_sqlite(
    conn: sqlite3.Connection,
    migrations: tuple[Migration, ...] = SQLITE,
    table: str = "schema_migrations",
) -> list[int]:
    """Apply the missing ``migrations`` on ``conn`` (opened with ``isolation_level=None``).

    ``table`` records applied versions (another registry sharing the file uses its own).
    Returns the versions applied now (empty when the schema was current). Raises
    ``sqlite3.Error`` and leaves the schema unchanged when a statement fails.
    """
    _check_order(migrations)
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute(f"SELECT version FROM {table}")}
        done = []
        for migration in migrations:
            if migration.version in applied:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                f"INSERT INTO {table} (version, description, applied_at) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (migration.version, migration.description),
            )
            done.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return done


def migrate_postgres(conn: Any, migrations: tuple[Migration, ...] = POSTGRES) -> list[int]:
    """Apply the missing ``migrations`` on the psycopg2 connection ``conn`` and commit.

    Returns the versions applied now. Raises ``psycopg2.Error`` (after rolling back) when a
    statement fails.
    """
    _check_order(migrations)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version FROM schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
            done = []
            for migration in migrations:
                if migration.version in applied:
                    continue
                for statement in migration.statements:
                    cur.execute(statement)
                cur.execute(
                    "INSERT INTO schema_migrations (version, description) VALUES (%s, %s)",
                    (migration.version, migration.description),
                )
                done.append(migration.version)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return done
