"""Drift in the model's outputs, with the bundled Fashion-MNIST demo classifier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageEnhance

from analyzer import DatasetAnalyzer, ModelError
from analyzer.contract import DriftReport, metric_rows
from tests.fixtures.images import copy_into

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "demo_classifier.tflite"
IMAGES = sorted((ROOT / "daemon" / "demo" / "images").glob("*.png"))
SHOES = ("sandal", "sneaker", "ankle-boot")

pytestmark = pytest.mark.skipif(not MODEL.exists() or not IMAGES, reason="demo model missing")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Baseline = even demo images; same = odd ones; shoes = odd shoes only; faded = odd at
    half contrast."""
    root = tmp_path_factory.mktemp("model")
    odd = IMAGES[1::2]
    faded = root / "faded"
    faded.mkdir()
    for path in odd:
        ImageEnhance.Contrast(Image.open(path)).enhance(0.5).save(faded / path.name)
    return {
        "base": copy_into(root / "base", IMAGES[0::2]),
        "same": copy_into(root / "same", odd),
        "shoes": copy_into(root / "shoes", [p for p in odd if any(s in p.name for s in SHOES)]),
        "faded": faded,
    }


@pytest.fixture(scope="module")
def baseline(folders: dict[str, Path]) -> dict[str, Any]:
    """Baseline profile with model outputs."""
    return DatasetAnalyzer(folders["base"], MODEL, workers=1).analyze()


def _drift(folders: dict[str, Path], name: str, baseline: dict[str, Any],
           **options: Any) -> dict[str, Any]:
    options.setdefault("workers", 1)
    return DatasetAnalyzer(folders[name], MODEL, **options).detect_drift(baseline)


def test_same_distribution_gives_no_model_drift(folders: dict[str, Path],
                                                baseline: dict[str, Any]) -> None:
    """Other images of the same classes leave confidence and class mix unflagged."""
    report = _drift(folders, "same", baseline)
    assert report["confidence_drift"]["available"] is True
    assert report["confidence_drift"]["severity"] == "none"
    assert report["class_distribution_drift"]["severity"] == "none"
    assert report["overall_drift_detected"] is False


def test_changed_class_mix_is_high_class_drift(folders: dict[str, Path],
                                               baseline: dict[str, Any]) -> None:
    """A night of only shoes shifts the predicted-class shares, named by label."""
    section = _drift(folders, "shoes", baseline)["class_distribution_drift"]
    assert section["severity"] == "high"
    assert section["wasserstein_distance"] > 0.1
    shares = {c["label"]: c["current_share"] for c in section["classes"]}
    assert shares["Sneaker"] + shares["Sandal"] + shares["Ankle boot"] > 0.9
    assert section["tests"][0]["feature"] == "predicted_class"


def test_faded_images_lower_the_models_confidence(folders: dict[str, Path],
                                                  baseline: dict[str, Any]) -> None:
    """Halving contrast drops mean confidence; BBSD tests join the one corrected family."""
    report = _drift(folders, "faded", baseline, workers=2)
    section = report["confidence_drift"]
    assert section["severity"] != "none"
    assert section["mean_confidence_shift"] < -0.05
    # Without a labelled baseline there is no accuracy estimate, only the confidence shift.
    assert section["estimated_accuracy_change"] is None
    assert report["accuracy_estimate"]["available"] is False
    assert "--labels" in report["accuracy_estimate"]["reason"]
    features = {t["feature"] for t in section["tests"]}
    assert {"max_confidence", "prediction_entropy", "margin", "softmax.Coat"} <= features
    family = (report["pixel_distribution_drift"]["tests"] + section["tests"]
              + report["class_distribution_drift"]["tests"] + report["embedding_drift"]["tests"])
    assert [t["feature"] for t in report["embedding_drift"]["tests"]] == ["embedding"]
    assert all(t["p_adjusted"] >= t["p_value"] for t in family)
    rows = dict(metric_rows(DriftReport.from_dict(report)))
    assert rows["confidence_shift"] == section["mean_confidence_shift"]


def test_baseline_without_model_makes_model_sections_unavailable(
        folders: dict[str, Path]) -> None:
    """A model run against a no-model baseline says to regenerate the baseline."""
    plain = DatasetAnalyzer(folders["base"], workers=1).analyze()
    report = DatasetAnalyzer(folders["same"], MODEL, workers=1).detect_drift(plain)
    assert report["confidence_drift"]["available"] is False
    assert "regenerate" in report["confidence_drift"]["reason"]


def test_model_options_are_passed_to_the_classifier(folders: dict[str, Path]) -> None:
    """A ModelOptions field given to DatasetAnalyzer reaches the model (bad value → ModelError)."""
    with pytest.raises(ModelError, match="input_resize"):
        DatasetAnalyzer(folders["same"], MODEL, workers=1, input_resize="squash").analyze()
