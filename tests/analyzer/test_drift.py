"""Drift verdicts on seeded synthetic folders: calm when nothing changed, loud when it did."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from analyzer import DatasetAnalyzer, Profile, Severity
from analyzer.options import AnalyzerOptions
from analyzer.report import compare
from tests.fixtures.images import write_images

NOW = datetime(2026, 11, 26, 1, 15, tzinfo=timezone.utc)
N = 80


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Baseline dict of 80 seeded 48×48 JPEGs."""
    folder = tmp_path_factory.mktemp("baseline")
    write_images(folder, N, seed=1000, size=(48, 48))
    return DatasetAnalyzer(folder, workers=1).analyze()


def _report(tmp: Path, baseline: dict[str, Any], seed: int = 1, **shift: Any) -> dict[str, Any]:
    folder = tmp / f"cur_{seed}_{'_'.join(f'{k}{v}' for k, v in shift.items())}"
    shift.setdefault("size", (48, 48))
    write_images(folder, N, seed=seed, **shift)
    return DatasetAnalyzer(folder, workers=1, now=NOW, report_id="r").detect_drift(baseline)


def test_same_distribution_gives_no_drift_in_almost_all_seeds(
        tmp_path: Path, baseline: dict[str, Any]) -> None:
    """Ten folders drawn like the baseline are called drift-free at least nine times."""
    calm = [_report(tmp_path, baseline, seed=s)["overall_drift_detected"] is False
            for s in range(10)]
    assert sum(calm) >= 9


@pytest.mark.parametrize(
    ("shift", "feature"),
    [
        ({"brightness": 1.3}, "brightness"),
        ({"noise": 12.0}, "noise_level"),
        ({"blur": 1.5}, "high_freq_energy"),
        ({"grayscale": True}, "saturation"),
        ({"size": (32, 32)}, "width"),
    ],
)
def test_each_shift_is_detected_by_the_feature_that_sees_it(
        tmp_path: Path, baseline: dict[str, Any], shift: dict[str, Any], feature: str) -> None:
    """Brightness, noise, blur, grayscale and resizing each raise drift on their feature."""
    report = _report(tmp_path, baseline, **shift)
    assert report["overall_drift_detected"] is True
    assert report["pixel_distribution_drift"]["severity"] != "none"
    test = next(t for t in report["pixel_distribution_drift"]["tests"] if t["feature"] == feature)
    assert test["significant"] and test["severity"] != "none"
    assert report["atypical_images"], "the report names images that drove the drift"


@pytest.mark.parametrize(
    ("key", "strengths"),
    [("brightness", [1.04, 1.12, 1.3]), ("noise", [2.0, 5.0, 15.0]), ("blur", [0.15, 0.25, 1.0])],
)
def test_severity_rises_with_shift_strength(
        tmp_path: Path, baseline: dict[str, Any], key: str, strengths: list[float]) -> None:
    """A stronger shift never gets a lower severity, and the strongest one is high."""
    levels = [Severity(_report(tmp_path, baseline, **{key: s})["overall_severity"])
              for s in strengths]
    assert levels == sorted(levels)
    assert levels[-1] == Severity.HIGH
    assert levels[0] < Severity.HIGH


def test_brightness_shift_moves_the_seed_headline_number(
        tmp_path: Path, baseline: dict[str, Any]) -> None:
    """`overall_mean_shift` is ~0 for the same distribution and clearly larger after ×1.3."""
    same = _report(tmp_path, baseline, seed=3)["pixel_distribution_drift"]["overall_mean_shift"]
    bright = _report(tmp_path, baseline, seed=3, brightness=1.3)
    shift = bright["pixel_distribution_drift"]["overall_mean_shift"]
    assert same < 0.03 < shift


def test_tests_of_a_report_form_one_corrected_family(
        tmp_path: Path, baseline: dict[str, Any]) -> None:
    """Holm-adjusted p-values are never below the raw ones and all share one alpha."""
    report = _report(tmp_path, baseline, noise=6.0)
    tests = report["pixel_distribution_drift"]["tests"]
    assert all(t["p_adjusted"] >= t["p_value"] for t in tests)
    assert {t["alpha"] for t in tests} == {0.05}
    assert all(t["severity"] == "none" for t in tests if not t["significant"])
    graded = [t for t in tests if t["severity"] != "none"]
    assert graded and all(t["effect_size"] >= t["threshold"] for t in graded)


def test_constant_features_do_not_dilute_the_corrected_family(
        tmp_path: Path, baseline: dict[str, Any]) -> None:
    """Size, JPEG quality and format are the same for every image: reported, left out of Holm."""
    report = _report(tmp_path, baseline, noise=6.0)
    tests = {t["feature"]: t for t in report["pixel_distribution_drift"]["tests"]}
    constant = ("width", "height", "aspect_ratio", "jpeg_quality", "format", "mode")
    assert all(tests[f]["p_adjusted"] == 1.0 and not tests[f]["significant"] for f in constant)
    family = [t for name, t in tests.items() if name not in constant]
    smallest = min(family, key=lambda t: t["p_value"])
    assert smallest["p_adjusted"] == pytest.approx(
        min(1.0, smallest["p_value"] * len(family)))


def test_compare_takes_the_clock_from_the_caller(baseline: dict[str, Any]) -> None:
    """`compare` stamps the report with the `now` it is given and the given report id."""
    profile = Profile.from_dict(baseline)
    report = compare(profile, profile, AnalyzerOptions(), NOW, "20261126").to_dict()
    assert report["timestamp"] == "2026-11-26T01:15:00+00:00"
    assert report["report_id"] == "20261126"
    assert report["overall_severity"] == "none"
