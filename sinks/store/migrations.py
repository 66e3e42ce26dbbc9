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

BOOLEAN_CAST_SQL = (
    "CREATE CAST (boolean AS double precision) "
    "WITH FUNCTION driftd_bool_to_float8(boolean) AS ASSIGNMENT"
)
"""What a PostgreSQL superuser runs once in driftd's database (after driftd's first start)
when driftd's own role could not create the cast: then a boolean, such as the seed's
``drift_detected``, can be inserted into ``monitoring_metrics.value`` (true = 1, false = 0)."""


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
    Migration(
        3,
        "seed compatibility: defaults for external metric rows, booleans, model_metrics view",
        (
            # The seed's TimescaleDB snippet inserts (timestamp, metric_name, value) only.
            "ALTER TABLE monitoring_metrics ALTER COLUMN run_id SET DEFAULT 'external'",
            # A column default cannot read another column: the night is the row's date (in
            # the session's time zone), set before the NOT NULL check runs.
            """CREATE FUNCTION driftd_metric_defaults() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.partition_date IS NULL THEN
                        NEW.partition_date := NEW."timestamp"::date;
                    END IF;
                    RETURN NEW;
                END $$""",
            "CREATE TRIGGER monitoring_metrics_defaults BEFORE INSERT ON monitoring_metrics "
            "FOR EACH ROW EXECUTE FUNCTION driftd_metric_defaults()",
            "CREATE FUNCTION driftd_bool_to_float8(boolean) RETURNS double precision "
            "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE "
            "AS 'SELECT CASE WHEN $1 THEN 1.0::float8 ELSE 0.0::float8 END'",
            # The seed passes drift_detected as a Python bool. The parser coerces each VALUES
            # row to the column type before any trigger runs, and PostgreSQL has no boolean →
            # double precision cast, so only an assignment cast makes that row insertable.
            # Creating one needs the owner of one of the two types (a superuser); where the
            # migrating role is not, the rest of this migration still applies and an admin
            # runs BOOLEAN_CAST_SQL once (README, "Storage, dashboards and alerts").
            """DO $$
                BEGIN
                    IF NOT EXISTS (SELECT 1 FROM pg_cast
                                   WHERE castsource = 'boolean'::regtype
                                     AND casttarget = 'double precision'::regtype) THEN
                        CREATE CAST (boolean AS double precision)
                            WITH FUNCTION driftd_bool_to_float8(boolean) AS ASSIGNMENT;
                    END IF;
                EXCEPTION WHEN insufficient_privilege THEN
                    RAISE NOTICE 'driftd: boolean metric values need a superuser to run: %',
                        'CREATE CAST (boolean AS double precision) WITH FUNCTION '
                        'driftd_bool_to_float8(boolean) AS ASSIGNMENT';
                END $$""",
            # The seed's Grafana panel reads `SELECT time, confidence FROM model_metrics`:
            # one row per stored night, at the night's time (as its metric rows).
            """CREATE VIEW model_metrics AS
                SELECT night_at AS time,
                       partition_date,
                       report_id,
                       CASE WHEN report -> 'confidence_drift' ->> 'available' = 'false' THEN NULL
                            ELSE (report -> 'confidence_drift'
                                  ->> 'current_mean_confidence')::double precision
                       END AS confidence,
                       CASE WHEN report -> 'confidence_drift' ->> 'available' = 'false' THEN NULL
                            ELSE (report -> 'confidence_drift'
                                  ->> 'baseline_mean_confidence')::double precision
                       END AS baseline_confidence,
                       CASE WHEN report -> 'confidence_drift' ->> 'available' = 'false' THEN NULL
                            ELSE (report -> 'confidence_drift'
                                  ->> 'mean_confidence_shift')::double precision
                       END AS confidence_shift,
                       severity,
                       drift_detected
                FROM monitor_reports""",
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
    Migration(
        3,
        "model_metrics view (the seed's Grafana query)",
        (
            # The seed's INSERT is psycopg2 code for TimescaleDB; SQLite keeps its strict
            # columns (relaxing them would mean rebuilding the table) and gets the view.
            """CREATE VIEW model_metrics AS
                SELECT night_at AS time,
                       partition_date,
                       report_id,
                       CASE WHEN json_extract(report, '$.confidence_drift.available') = 0
                            THEN NULL
                            ELSE json_extract(report, '$.confidence_drift.current_mean_confidence')
                       END AS confidence,
                       CASE WHEN json_extract(report, '$.confidence_drift.available') = 0
                            THEN NULL
                            ELSE json_extract(report, '$.confidence_drift.baseline_mean_confidence')
                       END AS baseline_confidence,
                       CASE WHEN json_extract(report, '$.confidence_drift.available') = 0
                            THEN NULL
                            ELSE json_extract(report, '$.confidence_drift.mean_confidence_shift')
                       END AS confidence_shift,
                       severity,
                       drift_detected
                FROM monitor_reports""",
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
