"""The seed's own SQL against driftd's schema: its TimescaleDB INSERT and its Grafana query.

``store_monitoring_report`` below is the seed's function (seeds/integration-guide.md,
"Store Metrics in TimescaleDB") verbatim, except that the connection string is a parameter
instead of ``"dbname=monitoring user=postgres password=secret"``. It passes
``drift_detected`` as a Python bool and leaves ``partition_date`` and ``run_id`` out.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from datetime import date, datetime

import psycopg2
import pytest

from analyzer.contract import ConfidenceSection
from sinks.store import open_store
from sinks.store.migrations import BOOLEAN_CAST_SQL, migrate_postgres
from tests.fixtures.postgres import PostgresServer
from tests.sinks.test_store import OPTIONS, make_night

SEED_GRAFANA_QUERY = "SELECT time, confidence FROM model_metrics"


def store_monitoring_report(drift_report, dsn):
    """Store monitoring report in TimescaleDB."""

    conn = psycopg2.connect(
        dsn
    )
    cur = conn.cursor()

    # Insert metrics
    cur.execute("""
        INSERT INTO monitoring_metrics (timestamp, metric_name, value)
        VALUES
            (%s, 'pixel_mean_shift', %s),
            (%s, 'confidence_shift', %s),
            (%s, 'drift_detected', %s)
    """, [
        datetime.now(),
        drift_report['pixel_distribution_drift']['overall_mean_shift'],
        datetime.now(),
        drift_report.get('confidence_drift', {}).get('mean_confidence_shift', 0),
        datetime.now(),
        drift_report['overall_drift_detected']
    ])

    conn.commit()
    cur.close()
    conn.close()


def _rows(url: str, query: str) -> list[tuple[object, ...]]:
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        cur.execute(query)
        return list(cur.fetchall())


def _superuser_dsn(server: PostgresServer, url: str) -> str:
    """The database of ``url`` as the superuser ``postgres`` (as the seed connects)."""
    return f"host={server.base} port={server.port} user=postgres dbname={url.rsplit('/', 1)[1]}"


def _as_superuser(server: PostgresServer, url: str) -> psycopg2.extensions.connection:
    return psycopg2.connect(_superuser_dsn(server, url))


REPORT = make_night(date(2026, 11, 26), severity="high", shift=0.12).report.to_dict()
"""The seed's code takes the report as ``detect_drift()`` returns it: a dict."""


class TestSeedInsert:
    def test_runs_verbatim_once_an_admin_made_booleans_insertable(
        self, pg_url: str, postgres_server: PostgresServer
    ) -> None:
        """driftd (not a superuser) migrates; an admin runs BOOLEAN_CAST_SQL once; then the
        seed's INSERT lands: the night from the timestamp, run_id 'external', true → 1.0."""
        open_store(pg_url, OPTIONS).migrate()
        with closing(_as_superuser(postgres_server, pg_url)) as admin, admin.cursor() as cur:
            cur.execute(BOOLEAN_CAST_SQL)
            admin.commit()
        store_monitoring_report(REPORT, pg_url)
        rows = _rows(pg_url, "SELECT metric_name, value, run_id, partition_date = "
                             "(timestamp AT TIME ZONE current_setting('TimeZone'))::date "
                             "FROM monitoring_metrics ORDER BY metric_name")
        assert rows == [
            ("confidence_shift", pytest.approx(-0.12), "external", True),
            ("drift_detected", 1.0, "external", True),
            ("pixel_mean_shift", pytest.approx(0.12), "external", True),
        ]

    def test_runs_verbatim_where_a_superuser_migrated(
        self, pg_url: str, postgres_server: PostgresServer
    ) -> None:
        """Migrated by a superuser (as the seed connects), the cast comes with the schema."""
        with closing(_as_superuser(postgres_server, pg_url)) as admin:
            migrate_postgres(admin)
        store_monitoring_report(REPORT | {"overall_drift_detected": False},
                                _superuser_dsn(postgres_server, pg_url))
        rows = _rows(_superuser_dsn(postgres_server, pg_url),
                     "SELECT value FROM monitoring_metrics WHERE metric_name = 'drift_detected'")
        assert rows == [(0.0,)]

    def test_without_the_cast_the_boolean_row_is_refused_with_postgresql_own_error(
        self, pg_url: str
    ) -> None:
        """What README warns about: migrated by a plain role and no admin step, the bool row
        is refused (nothing else is inserted: the statement is one transaction)."""
        open_store(pg_url, OPTIONS).migrate()
        with pytest.raises(psycopg2.errors.DatatypeMismatch, match="boolean"):
            store_monitoring_report(REPORT, pg_url)
        assert _rows(pg_url, "SELECT count(*) FROM monitoring_metrics") == [(0,)]

    def test_driftd_rows_and_rewrites_still_work_beside_seed_rows(
        self, pg_url: str, postgres_server: PostgresServer
    ) -> None:
        """driftd's own nights still write (and rewrite) with their run id and date, and a
        rerun of a date keeps the rows another writer inserted for it."""
        store = open_store(pg_url, OPTIONS)
        store.migrate()
        with closing(_as_superuser(postgres_server, pg_url)) as admin, admin.cursor() as cur:
            cur.execute(BOOLEAN_CAST_SQL)
            admin.commit()
        store_monitoring_report(REPORT, pg_url)
        today = _rows(pg_url, "SELECT DISTINCT partition_date FROM monitoring_metrics")[0][0]
        night = make_night(date(2026, 11, 20), run_id="run-7")
        store.write_night(night)
        store.write_night(night)
        store.write_night(make_night(today, run_id="run-8"))  # a rerun of the seed's date
        ours = _rows(pg_url, "SELECT DISTINCT run_id, partition_date FROM monitoring_metrics "
                             "WHERE partition_date = '2026-11-20'")
        assert ours == [("run-7", date(2026, 11, 20))]
        assert _rows(pg_url, "SELECT count(*) FROM monitoring_metrics "
                             "WHERE run_id = 'external'") == [(3,)]


class TestSeedGrafanaQuery:
    def test_model_metrics_has_a_confidence_point_per_night(self, pg_url: str) -> None:
        """`SELECT time, confidence FROM model_metrics` returns each stored night's mean
        confidence at the time of its metric rows."""
        store = open_store(pg_url, OPTIONS)
        nights = [make_night(date(2026, 11, d), shift=s) for d, s in ((24, 0.01), (25, 0.2))]
        for night in nights:
            store.write_night(night)
        rows = sorted(_rows(pg_url, SEED_GRAFANA_QUERY))
        assert rows == [(n.time, pytest.approx(0.91 - s))
                        for n, s in zip(nights, (0.01, 0.2), strict=True)]

    def test_model_metrics_leaves_confidence_empty_without_a_model(self, sqlite_url: str) -> None:
        """On SQLite too; a night analysed without a model has no confidence (NULL, not 0)."""
        store = open_store(sqlite_url, OPTIONS)
        night = make_night(date(2026, 11, 24))
        no_model = ConfidenceSection(available=False, reason="no model_path given")
        store.write_night(replace(night, report=replace(night.report, confidence=no_model)))
        with closing(sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))) as conn:
            rows = conn.execute(SEED_GRAFANA_QUERY).fetchall()
        assert len(rows) == 1 and rows[0][1] is None
        assert str(rows[0][0]).startswith("2026-11-24T01:15")

