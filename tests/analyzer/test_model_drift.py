"""Model drift through the public API (DatasetAnalyzer) with the bundled demo classifiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from analyzer import DatasetAnalyzer

ROOT = Path(__file__).resolve().parents[2]
DEMO_IMAGES = sorted((ROOT / "daemon" / "demo" / "images").glob("*.png"))
MODELS = ["demo_classifier.tflite", "demo_classifier_uint8.tflite"]


def write_folder(folder: Path, paths: list[Path], noise: float = 0.0) -> Path:
    """Copy bundled images into `folder`, optionally with seeded Gaussian noise (0-255 units)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    for path in paths:
        pixels = np.asarray(Image.open(path), dtype=np.float32)
        if noise:
            pixels = np.clip(pixels + rng.normal(0.0, noise, pixels.shape), 0, 255)
        Image.fromarray(pixels.astype(np.uint8)).save(folder / path.name)
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Baseline (even-numbered images) and three current nights from the odd-numbered ones."""
    root = tmp_path_factory.mktemp("nights")
    baseline, held_out = DEMO_IMAGES[0::2], DEMO_IMAGES[1::2]
    kept = {"t-shirt-top", "trouser", "pullover", "dress", "coat"}
    half = [p for p in held_out if p.stem.split("_", 1)[1] in kept]
    return {
        "baseline": write_folder(root / "baseline", baseline),
        "same": write_folder(root / "same", held_out),
        "half_classes": write_folder(root / "half_classes", half),
        "noisy": write_folder(root / "noisy", held_out, noise=80.0),
    }


@pytest.fixture(scope="module", params=MODELS)
def reports(request: pytest.FixtureRequest, folders: dict[str, Path]) -> dict[str, Any]:
    """Drift reports of each current night against the baseline, for one model."""
    model = ROOT / "models" / request.param
    baseline = DatasetAnalyzer(folders["baseline"], model, workers=1).analyze()
    return {
        night: DatasetAnalyzer(folders[night], model, workers=1).detect_drift(baseline)
        for night in ("same", "half_classes", "noisy")
    }


class TestModelDrift:
    """The model sections react to prior shift and corruption, and stay quiet otherwise."""

    def test_same_distribution_has_no_model_drift(self, reports: dict[str, Any]) -> None:
        """Held-out images of the baseline's distribution raise no model drift."""
        report = reports["same"]
        assert report["confidence_drift"]["available"] is True
        assert report["confidence_drift"]["drift_detected"] is False
        assert report["class_distribution_drift"]["drift_detected"] is False

    def test_class_prior_shift_is_detected(self, reports: dict[str, Any]) -> None:
        """A night with only half of the classes shows class-distribution drift."""
        section = reports["half_classes"]["class_distribution_drift"]
        assert section["drift_detected"] is True
        assert section["severity"] != "none"
        shares = {c["label"]: c["current_share"] for c in section["classes"]}
        assert shares["Bag"] < 0.05 < shares["Trouser"]

    def test_heavy_noise_is_detected_as_confidence_drift(self, reports: dict[str, Any]) -> None:
        """Heavy Gaussian sensor noise shows up as confidence drift."""
        section = reports["noisy"]["confidence_drift"]
        assert section["drift_detected"] is True
        assert section["mean_confidence_shift"] < 0
        assert section["severity"] != "none"
