"""The report dict keeps the seed's contract, and metric rows flatten it for the stores."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from analyzer import DatasetAnalyzer
from analyzer.contract import DriftReport, metric_rows
from tests.fixtures.images import write_images

NOW = datetime(2026, 11, 26, 1, 15, 3, tzinfo=timezone.utc)

SEED_KEYS: dict[str, type | tuple[type, ...]] = {
    "timestamp": str,
    "overall_drift_detected": bool,
    "drift_summary": str,
    "baseline_image_count": int,
    "current_image_count": int,
}
SECTION_KEYS = {
    "pixel_distribution_drift": "overall_mean_shift",
    "confidence_drift": "mean_confidence_shift",
    "class_distribution_drift": "wasserstein_distance",
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A no-model report of a brightened folder against a clean baseline."""
    root = tmp_path_factory.mktemp("report")
    write_images(root / "base", 40, seed=1, size=(32, 32))
    write_images(root / "20261126", 40, seed=2, size=(32, 32), brightness=1.3)
    baseline = json.loads(json.dumps(DatasetAnalyzer(root / "base", workers=1).analyze()))
    return DatasetAnalyzer(root / "20261126", workers=1, now=NOW).detect_drift(baseline)


def test_every_key_the_seed_reads_exists_with_its_type(report: dict[str, Any]) -> None:
    """The seed's integration code finds all its keys with the same types."""
    for key, kind in SEED_KEYS.items():
        assert isinstance(report[key], kind), key
    for section, number in SECTION_KEYS.items():
        assert report[section]["severity"] in ("none", "low", "medium", "high")
        assert isinstance(report[section][number], float)
    assert report["overall_severity"] == "high"
    assert report["timestamp"] == "2026-11-26T01:15:03+00:00"
    assert report["report_id"] == "20261126"


def test_model_sections_without_a_model_say_why(report: dict[str, Any]) -> None:
    """Without a model the model sections are present, unavailable, 'none', with a reason."""
    for section in ("confidence_drift", "class_distribution_drift"):
        body = report[section]
        assert body["available"] is False and body["severity"] == "none"
        assert "model_path" in body["reason"]
        assert body[SECTION_KEYS[section]] == 0.0


def test_report_is_json_serialisable_and_names_atypical_images(report: dict[str, Any]) -> None:
    """The report survives json.dumps and lists existing files that drove the drift."""
    assert json.loads(json.dumps(report)) == report
    atypical = report["atypical_images"]
    assert atypical and all(Path(a["path"]).is_file() for a in atypical)
    assert {"path", "file", "feature", "value", "baseline_median"} <= set(atypical[0])


def test_histograms_have_the_configured_bins(report: dict[str, Any]) -> None:
    """Each channel histogram has `bins` shares that sum to one."""
    hist = report["pixel_distribution_drift"]["histograms"]
    assert hist["bins"] == 32
    assert len(hist["current"]["r"]) == 32
    assert sum(hist["baseline"]["g"]) == pytest.approx(1.0, abs=1e-4)


def test_metric_rows_start_with_the_seed_names(report: dict[str, Any]) -> None:
    """metric_rows gives the seed's three names first, then one row per test and issue."""
    rows = metric_rows(DriftReport.from_dict(report))
    assert [name for name, _ in rows[:3]] == ["pixel_mean_shift", "confidence_shift",
                                              "drift_detected"]
    values = dict(rows)
    assert values["drift_detected"] == 1.0
    assert values["overall_severity_rank"] == 3.0
    assert values["pixel_distribution_drift.severity_rank"] == 3.0
    assert "brightness.effect_size" in values and "brightness.p_value" in values
    assert values["data_quality.zero_byte"] == 0.0
    assert all(isinstance(v, float) for v in values.values())
