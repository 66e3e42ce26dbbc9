"""The HTML trend's history as the daemon reads it from its metric store: the accuracy
estimate and its interval come back night over night (analyzer stays free of the store)."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone
from pathlib import Path

from analyzer.contract import AccuracySection, metric_rows
from daemon.config import build_settings
from daemon.pipeline import Partition, Pipeline
from sinks.store import open_store
from sinks.store.base import NightRecord
from tests.fixtures.reports import make_report


def test_history_carries_the_accuracy_estimate(tmp_path: Path) -> None:
    """Two stored nights, one with a labelled-baseline estimate: the history of the third
    night has both points, the estimate and interval only where there was one."""
    settings = build_settings({"data": {"production_root": "production", "state_dir": "var"},
                               "logging": {"format": "json"}}, base_dir=tmp_path)
    store = open_store(f"sqlite:///{tmp_path / 'metrics.sqlite'}", settings.store.options())
    store.migrate()
    estimate = AccuracySection(available=True, estimate=0.84, low=0.79, high=0.9, change=-0.03,
                               baseline_accuracy=0.87, labelled_images=400, images=200)
    for day, accuracy in ((date(2026, 11, 24), None), (date(2026, 11, 25), estimate)):
        report = make_report(day.strftime("%Y%m%d"))
        if accuracy is not None:
            report = dataclasses.replace(report, accuracy=accuracy)
        moment = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        store.write_night(NightRecord(partition=day, run_id="r", time=moment, report=report,
                                      metrics=metric_rows(report), labels={},
                                      started_at=moment, analysed_at=moment))
    night = Partition(date(2026, 11, 26), tmp_path / "production" / "20261126")
    first, second = Pipeline(settings).history(store, night)
    store.close()
    assert (first.date, first.accuracy_estimate, first.accuracy_low) == ("2026-11-24", None, None)
    assert (second.accuracy_estimate, second.accuracy_low, second.accuracy_high) == (
        0.84, 0.79, 0.9)
