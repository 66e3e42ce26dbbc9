"""Metric store behaviour on both backends (SQLite file, real PostgreSQL on 127.0.0.1)."""

from __future__ import annotations

import json
import multiprocessing
import re
import sqlite3
import traceback
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from analyzer.contract import DriftReport, metric_rows
from daemon.config import StoreSettings
from daemon.state import StateDB, flush_pending, store_or_defer
from sinks.errors import StoreUnavailable
from sinks.files import ReportFiles, report_id_for
from sinks.redact import mask_dsn
from sinks.store import NightRecord, night_to_json, open_store
from sinks.store.migrations import POSTGRES, SQLITE
from tests.fixtures import reports
from tests.fixtures.postgres import PostgresServer

GRAFANA_DASHBOARD = Path(__file__).parents[2] / "deploy/grafana/dashboards/driftd.json"
CLASSES = ("T-shirt/top", "Trouser", "Pullover")


OPTIONS = StoreSettings().options()
"""The store options of a default config."""


def make_report(day: date, severity: str = "medium", shift: float = 0.05) -> DriftReport:
    """A night's report: image features and model confidence at ``severity``, the pixel
    shift ``shift`` and the confidence shift ``-shift``, three classes unchanged."""
    return reports.make_report(
        report_id_for(day), severity, confidence=severity, classes="none", shift=shift,
        confidence_shift=-shift, labels=CLASSES, unreadable=(),
        timestamp=datetime(day.year, day.month, day.day, 1, 15, tzinfo=timezone.utc),
    )


def make_night(day: date, run_id: str = "run-1", **report_args: Any) -> NightRecord:
    report = make_report(day, **report_args)
    return NightRecord(
        partition=day,
        run_id=run_id,
        time=report.timestamp,
        report=report,
        metrics=metric_rows(report),
        labels={"model": "fashion.tflite"},
    )


@contextmanager
def sql(url: str) -> Iterator[Any]:
    """A raw DB-API cursor on the store behind ``url``, to check what a dashboard would read."""
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            yield conn.cursor()
    else:
        with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
            yield cur


def count(url: str, query: str) -> int:
    with sql(url) as cur:
        cur.execute(query)
        return int(cur.fetchone()[0])


def _migrate_in_child(url: str) -> None:
    open_store(url, OPTIONS).migrate()


class TestMigrations:
    def test_migrating_twice_applies_each_version_once(self, store_url: str) -> None:
        """A fresh database gets every table, and a second start changes nothing."""
        store = open_store(store_url, OPTIONS)
        store.migrate()
        store.migrate()
        registry = SQLITE if store_url.startswith("sqlite") else POSTGRES
        assert count(store_url, "SELECT count(*) FROM schema_migrations") == len(registry)
        for table in ("monitoring_metrics", "monitor_reports", "driftd_runs"):
            assert count(store_url, f"SELECT count(*) FROM {table}") == 0

    def test_two_processes_migrating_together_leave_one_schema(self, store_url: str) -> None:
        """Two daemons starting at once both succeed and the schema is recorded once."""
        ctx = multiprocessing.get_context("fork")  # children reuse the loaded modules
        children = [ctx.Process(target=_migrate_in_child, args=(store_url,)) for _ in range(2)]
        for child in children:
            child.start()
        for child in children:
            child.join(120)
        assert [c.exitcode for c in children] == [0, 0]
        registry = SQLITE if store_url.startswith("sqlite") else POSTGRES
        assert count(store_url, "SELECT count(*) FROM schema_migrations") == len(registry)
        open_store(store_url, OPTIONS).write_night(make_night(date(2026, 11, 26)))

    def test_plain_postgresql_is_not_mistaken_for_timescaledb(self, pg_url: str) -> None:
        """Without the extension the store runs plain PostgreSQL and never creates it."""
        store = open_store(pg_url, OPTIONS)
        store.migrate()
        assert getattr(store, "timescale", None) is False
        assert count(pg_url, "SELECT count(*) FROM pg_extension WHERE extname='timescaledb'") == 0


class TestWriteNight:
    def test_three_reruns_of_a_date_leave_one_set_of_rows(self, store_url: str) -> None:
        """Rerunning a night replaces its rows and report instead of adding to them."""
        store = open_store(store_url, OPTIONS)
        day = date(2026, 11, 26)
        for attempt, shift in enumerate((0.01, 0.02, 0.07), start=1):
            night = make_night(day, run_id=f"run-{attempt}", shift=shift)
            store.write_night(replace(night, time=night.time + timedelta(hours=attempt)))
        metrics = metric_rows(make_report(day))
        assert count(store_url, "SELECT count(*) FROM monitoring_metrics") == len(metrics)
        assert count(store_url, "SELECT count(*) FROM monitor_reports") == 1
        assert count(store_url, "SELECT count(*) FROM driftd_runs") == 1
        history = store.metric_history(["pixel_mean_shift"], day, 1)
        assert [(p.partition, p.value) for p in history] == [(day, 0.07)]
        [latest] = store.latest_reports()
        assert (latest.report_id, latest.run_id, latest.severity) == ("20261126", "run-3", "medium")

    def test_seed_columns_hold_the_seed_metric_names(self, store_url: str) -> None:
        """The seed's query shape (timestamp, metric_name, value) finds its three metrics."""
        store = open_store(store_url, OPTIONS)
        store.write_night(make_night(date(2026, 11, 26), shift=0.08))
        with sql(store_url) as cur:
            cur.execute(
                "SELECT metric_name, value FROM monitoring_metrics WHERE metric_name IN "
                "('pixel_mean_shift', 'confidence_shift', 'drift_detected') ORDER BY metric_name"
            )
            got = cur.fetchall()
        assert [(n, round(v, 4)) for n, v in got] == [
            ("confidence_shift", -0.08),
            ("drift_detected", 1.0),
            ("pixel_mean_shift", 0.08),
        ]

    def test_history_and_latest_reports_span_nights_in_order(self, store_url: str) -> None:
        """Trend reads return the requested window oldest first, reports newest first."""
        store = open_store(store_url, OPTIONS)
        days = [date(2026, 11, 20) + timedelta(days=i) for i in range(5)]
        for i, day in enumerate(days):
            store.write_night(make_night(day, shift=0.01 * (i + 1)))
        history = store.metric_history(["pixel_mean_shift"], days[-1], 3)
        assert [p.partition for p in history] == days[-3:]
        assert [r.partition for r in store.latest_reports(limit=2)] == [days[4], days[3]]

    def test_retention_deletes_only_nights_older_than_the_window(self, store_url: str) -> None:
        """Old nights disappear from every table; recent ones stay."""
        store = open_store(store_url, replace(OPTIONS, retention_days=30))
        now = datetime(2026, 11, 26, 3, tzinfo=timezone.utc)
        old, recent = date(2026, 9, 1), date(2026, 11, 20)
        store.write_night(make_night(old))
        store.write_night(make_night(recent))
        deleted = store.apply_retention(now)
        assert deleted == len(metric_rows(make_report(old))) + 2
        assert [r.partition for r in store.latest_reports()] == [recent]
        assert count(store_url, "SELECT count(*) FROM monitoring_metrics") == len(
            metric_rows(make_report(recent))
        )


class TestOutage:
    def test_night_during_outage_lands_after_the_database_returns(
        self, pg_url: str, postgres_server: PostgresServer, tmp_path: Path
    ) -> None:
        """A night run while PostgreSQL is down keeps its report and reaches the DB later."""
        store = open_store(pg_url, OPTIONS)
        store.migrate()
        state = StateDB(tmp_path / "state.sqlite")
        files = ReportFiles(tmp_path / "reports")
        night = make_night(date(2026, 11, 26), severity="high")
        postgres_server.stop()
        try:
            json_path = files.write_json(night.report_id, night.report)
            payload = tmp_path / "pending" / "20261126.json"
            payload.parent.mkdir()
            payload.write_text(json.dumps(night_to_json(night)))
            assert store_or_defer(state, store, night, payload, night.time) is False
            status = state.store_status()
            assert status.pending == 1 and status.last_error is not None
            assert "127.0.0.1" in status.last_error
            assert postgres_server.password not in status.last_error
            assert json_path.exists()
            still_down = flush_pending(state, store, night.time)
            assert still_down.written == [] and still_down.still_pending == 1
        finally:
            postgres_server.start()
        result = flush_pending(state, store, night.time + timedelta(days=1))
        assert result.written == [night.partition] and result.error is None
        assert state.pending_writes() == []
        assert state.store_status().last_error is None
        [stored] = store.latest_reports()
        assert stored.severity == "high"
        assert count(pg_url, "SELECT count(*) FROM monitoring_metrics") == len(night.metrics)

    def test_bare_report_file_is_enough_to_rebuild_a_pending_night(
        self, store_url: str, tmp_path: Path
    ) -> None:
        """A pending write that points at the JSON report file is rebuilt from it."""
        store = open_store(store_url, OPTIONS)
        state = StateDB(tmp_path / "state.sqlite")
        files = ReportFiles(tmp_path / "reports")
        day = date(2026, 11, 25)
        report = make_report(day, severity="low")
        state.ledger_start(day, "run-7", datetime(2026, 11, 25, 1, tzinfo=timezone.utc))
        state.pending_writes_add(day, files.write_json(report_id_for(day), report))
        result = flush_pending(state, store, datetime.now(timezone.utc))
        assert result.written == [day]
        [stored] = store.latest_reports()
        assert (stored.run_id, stored.severity) == ("run-7", "low")
        stored_rows = count(store_url, "SELECT count(*) FROM monitoring_metrics")
        assert stored_rows == len(metric_rows(report))

    def test_sqlite_store_in_an_unwritable_place_defers_the_night(self, tmp_path: Path) -> None:
        """An SQLite store that cannot be opened leaves the night pending, not lost."""
        blocker = tmp_path / "not-a-folder"
        blocker.write_text("")
        store = open_store(f"sqlite:///{blocker / 'metrics.sqlite'}", OPTIONS)
        state = StateDB(tmp_path / "state.sqlite")
        night = make_night(date(2026, 11, 26))
        payload = tmp_path / "night.json"
        payload.write_text(json.dumps(night_to_json(night)))
        assert store_or_defer(state, store, night, payload, night.time) is False
        blocker.unlink()
        assert flush_pending(state, store, night.time).written == [night.partition]


class TestSecrets:
    def test_password_never_appears_in_connection_errors(
        self, postgres_server: PostgresServer, pg_url: str
    ) -> None:
        """Refused, unreachable and malformed DSNs name the store with the password masked."""
        secret = postgres_server.password
        wrong = "wrong-" + secret
        attempts = [
            # refused password; nothing listening; rejected by the driver (invalid dsn)
            open_store(pg_url, replace(OPTIONS, password=wrong)),
            open_store(pg_url.replace(f":{postgres_server.port}/", ":1/"), OPTIONS),
            open_store(pg_url + "?bogus_option=1", OPTIONS),
        ]
        for store in attempts:
            with pytest.raises(StoreUnavailable) as caught:
                store.ping()
            text = str(caught.value) + "".join(traceback.format_exception(caught.value))
            assert secret not in text and wrong not in text
            assert "***" in text and "127.0.0.1" in text

    def test_mask_dsn_hides_every_password_form(self) -> None:
        """URL userinfo, query and key=value passwords are all masked, the rest kept."""
        assert mask_dsn("postgresql://u:s%40cret@db:5432/m") == "postgresql://u:***@db:5432/m"
        assert mask_dsn("postgresql://db/m?password=x&sslmode=require") == (
            "postgresql://db/m?password=***&sslmode=require"
        )
        assert mask_dsn("host=db password='a b' user=u") == "host=db password=*** user=u"
        assert mask_dsn("postgresql://u@db/m") == "postgresql://u@db/m"

    def test_unknown_scheme_is_rejected_with_the_password_masked(self) -> None:
        """A mistyped URL is refused with a fix, without echoing the password."""
        with pytest.raises(ValueError, match=r"mysql://u:\*\*\*@db/m") as caught:
            open_store("mysql://u:hunter2@db/m", OPTIONS)
        assert "hunter2" not in str(caught.value)


def grafana_sql(raw: str, start: datetime, end: datetime) -> str:
    """Grafana's PostgreSQL macros replaced by the plain SQL Grafana expands them to."""
    lo, hi = f"'{start.isoformat()}'::timestamptz", f"'{end.isoformat()}'::timestamptz"
    raw = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN {lo} AND {hi}", raw)
    raw = re.sub(
        r"\$__timeGroupAlias\(([^,]+),\s*1d\)",
        r'floor(extract(epoch from \1)/86400)*86400 AS "time"',
        raw,
    )
    raw = raw.replace("$__timeFrom()", lo).replace("$__timeTo()", hi)
    assert "$__" not in raw, f"unsubstituted Grafana macro in {raw}"
    return raw


def test_every_grafana_panel_query_returns_rows(pg_url: str) -> None:
    """Each panel of the provisioned dashboard shows data once a few nights are stored."""
    store = open_store(pg_url, OPTIONS)
    days = [date(2026, 11, 20) + timedelta(days=i) for i in range(4)]
    for day, severity in zip(days, ("none", "low", "medium", "high"), strict=True):
        store.write_night(make_night(day, severity=severity))
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    targets = [(p["title"], t["rawSql"]) for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) >= 6
    start, end = (
        datetime(2026, 11, 1, tzinfo=timezone.utc),
        datetime(2026, 12, 1, tzinfo=timezone.utc),
    )
    with sql(pg_url) as cur:
        for title, raw in targets:
            cur.execute(grafana_sql(raw, start, end))
            assert cur.fetchall(), f"panel {title!r} returned no rows"
