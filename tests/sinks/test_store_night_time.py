"""Rows carry the night they describe, not the moment they were analysed: four nights
analysed in one catch-up are four points on a time axis, on both backends."""

from __future__ import annotations

import json
import zoneinfo
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from daemon.state import StateDB, flush_pending
from sinks.store import open_store
from sinks.times import night_start
from tests.sinks.test_store import (
    GRAFANA_DASHBOARD,
    OPTIONS,
    grafana_sql,
    make_night,
    make_report,
    sql,
)

DAYS = [date(2026, 11, 20) + timedelta(days=i) for i in range(4)]
ANALYSED = datetime(2026, 11, 24, 1, 15, tzinfo=timezone.utc)
"""One catch-up run analysed all four nights at this instant."""


def test_four_nights_of_one_run_keep_their_own_times(store_url: str) -> None:
    """Metric rows and report rows are at each night's midnight; `created_at` is the run."""
    store = open_store(store_url, OPTIONS)
    for day in DAYS:
        store.write_night(replace(make_night(day), time=night_start(day),
                                  analysed_at=ANALYSED))
    points = store.metric_history(["drift_detected"], DAYS[-1], 7)
    assert [p.time.astimezone(timezone.utc) for p in points] == [night_start(d) for d in DAYS]
    with sql(store_url) as cur:
        cur.execute("SELECT night_at, created_at FROM monitor_reports ORDER BY partition_date")
        rows = cur.fetchall()
    night_at = [_utc(r[0]) for r in rows]
    assert night_at == [night_start(d) for d in DAYS]
    assert {_utc(r[1]) for r in rows} == {ANALYSED}


def test_report_panels_plot_one_point_per_night(pg_url: str) -> None:
    """The report-table panels (confidence trend, nights with drift) use the night's time."""
    store = open_store(pg_url, OPTIONS)
    for day in DAYS:
        store.write_night(replace(make_night(day), time=night_start(day),
                                  analysed_at=ANALYSED))
    panels = {p["title"]: p["targets"][0]["rawSql"]
              for p in json.loads(GRAFANA_DASHBOARD.read_text())["panels"]}
    start, end = datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 12, 1,
                                                                     tzinfo=timezone.utc)
    with sql(pg_url) as cur:
        cur.execute(grafana_sql(panels["Model confidence trend"], start, end))
        trend = [_utc(r[0]) for r in cur.fetchall()]
        window = datetime(2026, 11, 21, tzinfo=timezone.utc)
        cur.execute(grafana_sql(panels["Nights with drift (range)"], window, end))
        nights = cur.fetchone()
    assert trend == [night_start(d) for d in DAYS]
    assert nights[1] == 3  # the nights from 11-21 on, whenever they were analysed


def test_a_deferred_night_lands_at_midnight_in_the_schedules_timezone(
    store_url: str, tmp_path: Path
) -> None:
    """A night rebuilt from its report file after an outage gets the same time as if it had
    been written at once: midnight of its date in [schedule] timezone."""
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    report = make_report(DAYS[0])
    path = tmp_path / "monitor_report_20261120.json"
    path.write_text(json.dumps(report.to_dict()))
    state = StateDB(tmp_path / "state.sqlite")
    state.pending_writes_add(DAYS[0], path)
    store = open_store(store_url, OPTIONS)
    assert flush_pending(state, store, tz=berlin).written == [DAYS[0]]
    (point,) = store.metric_history(["drift_detected"], DAYS[0], 1)
    assert _utc(point.time) == datetime(2026, 11, 19, 23, 0, tzinfo=timezone.utc)


def _utc(value: object) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.astimezone(timezone.utc)
