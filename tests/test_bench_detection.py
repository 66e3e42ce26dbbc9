"""Smoke tests of bench/detection.py: its shifts, reference detectors and summary.

The tests that use real images need Debian's ``dataset-fashion-mnist``; without it they skip
with the install command (tests/fixtures/system.py) and the others still run.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import system

BENCH = Path(__file__).resolve().parent.parent / "bench" / "detection.py"
_spec = importlib.util.spec_from_file_location("bench_detection", BENCH)
assert _spec is not None and _spec.loader is not None
detection = importlib.util.module_from_spec(_spec)
sys.modules["bench_detection"] = detection
_spec.loader.exec_module(detection)
image_sources = sys.modules["image_sources"]


@pytest.fixture(scope="module")
def pools() -> object:
    """The colourised Fashion-MNIST pools (skips the test when the data set is missing)."""
    return image_sources.load_pools(Path(system.require("fashion-mnist")))


def test_pools_are_disjoint_colour_images(pools: object) -> None:
    """The baseline and current pools share no image, and the images carry colour."""
    assert not set(pools.baseline) & set(pools.current)
    assert pools.images.shape[1:] == (28, 28, 3)
    sample = pools.images[:200].astype(int)
    assert np.abs(sample[..., 0] - sample[..., 2]).mean() > 1.0


@pytest.mark.parametrize("shift", detection.SHIFTS, ids=lambda s: s.name)
def test_every_shift_changes_the_night(pools: object, shift: object) -> None:
    """Each shift changes the pixels or, for the class-prior shift, the class mix of a night."""
    rng = np.random.default_rng(0)
    if shift.prior:
        weights = image_sources.prior_weights(pools.groups)
        idx = pools.sample(pools.current, 200, rng, weights)
        share = np.isin(pools.labels[idx], [0, 1, 2]).mean()
        assert share > 0.45
        return
    images = pools.images[pools.sample(pools.current, 200, rng)]
    shifted = shift.apply(images, rng)
    assert shifted.shape == images.shape and shifted.dtype == np.uint8
    changed = (shifted != images).any(axis=(1, 2, 3)).mean()
    assert changed >= 0.45 * shift.fraction


def test_property_rule_sees_darkening_not_a_fresh_sample(pools: object, tmp_path: Path) -> None:
    """The deepchecks-style rule stays quiet on a fresh sample and fires on darkened images."""
    rng = np.random.default_rng(1)
    detector = detection.PropertyDetector()
    detection.write_folder(tmp_path / "base", pools.images[rng.choice(pools.baseline, 150)])
    reference = detector.fit(tmp_path / "base")
    fresh = pools.images[rng.choice(pools.current, 150)]
    detection.write_folder(tmp_path / "cur", fresh)
    assert detector.detect(reference, tmp_path / "cur").drift is False
    dark = {s.name: s for s in detection.SHIFTS}["brightness_down_0.7"]
    detection.write_folder(tmp_path / "cur", dark.apply(fresh, rng))
    verdict = detector.detect(reference, tmp_path / "cur")
    assert verdict.drift and "brightness" in verdict.fired


def test_bbsd_runs_per_class_ks_with_bonferroni(tmp_path: Path) -> None:
    """BBSD fires when one class's softmax share moves and not when the outputs are alike."""
    rng = np.random.default_rng(2)

    def softmax(folder: Path) -> np.ndarray:
        # Stand-in scorer: 3 "classes" from the mean of each channel of the image.
        images = detection.read_folder(folder)
        means = np.array([im.reshape(-1, 3).mean(axis=0) + 1.0 for im in images])
        return means / means.sum(axis=1, keepdims=True)

    detector = detection.BBSDDetector(softmax)
    base = rng.integers(0, 255, (120, 8, 8, 3), dtype=np.uint8)
    detection.write_folder(tmp_path / "base", base)
    reference = detector.fit(tmp_path / "base")
    detection.write_folder(tmp_path / "cur", rng.integers(0, 255, (120, 8, 8, 3), dtype=np.uint8))
    assert detector.detect(reference, tmp_path / "cur") == detection.Verdict(False, [])
    red = base.copy()
    red[..., 0] = np.minimum(255, red[..., 0].astype(int) + 120).astype(np.uint8)
    detection.write_folder(tmp_path / "cur", red)
    verdict = detector.detect(reference, tmp_path / "cur")
    assert verdict.drift and "softmax_0" in verdict.fired
    # The top-1 variant tests only the class with the highest mean baseline probability.
    top = detection.BBSDDetector(softmax, top=1)
    assert top.name == "bbsd-top1"
    assert top.detect(reference, tmp_path / "cur").fired == [
        f"softmax_{int(np.argmax(reference.mean(axis=0)))}"]


def test_summary_counts_false_alarms_and_family_rates() -> None:
    """The summary turns verdicts into false-alarm and per-family detection rates."""
    config = detection.Config(
        sizes=[10], trials=1, null_per_trial=2, shifts=["noise_s8", "noise_s40"], seed=0,
        model=None, options={}, detectors=["properties"], command="test",
    )
    rec = detection.Record
    records = [
        rec(10, 0, "no_shift", "none", 0, "properties", True, 0.1, ["brightness"]),
        rec(10, 0, "no_shift", "none", 1, "properties", False, 0.1, []),
        rec(10, 0, "noise_s8", "noise", 0, "properties", False, 0.1, []),
        rec(10, 0, "noise_s40", "noise", 0, "properties", True, 0.1, ["rms_contrast"]),
    ]
    summary = detection.summarise(records, config)["10"]["properties"]
    assert summary["false_alarm_rate"] == 0.5
    assert summary["family_rate"] == {"noise": 0.5}
    text = detection.markdown({"10": {"properties": summary}}, config, {"properties": 0.2}, 1.0)
    assert "| properties | 50% (1/2; ≤ 97%) |" in text


def test_upper_bound_is_clopper_pearson() -> None:
    """0 of 20 nights bounds the rate at 1 - 0.05^(1/20) ≈ 13.9%; 1 of 100 at ≈ 4.7%."""
    assert detection.upper_bound(0, 20) == pytest.approx(1 - 0.05 ** (1 / 20))
    assert detection.upper_bound(1, 100) == pytest.approx(0.0466, abs=1e-4)
    assert detection.upper_bound(3, 3) == 1.0


def test_photo_crops_are_iid_and_the_prior_shift_reweights_groups() -> None:
    """Crops have the source's side; the prior shift draws the heavy groups more often."""
    photos = [Image.new("RGB", (64, 48), (40 * g, 0, 0)) for g in range(6)]
    source = image_sources.PhotoCrops("t", "test", photos, np.arange(6), side=16,
                                      min_crop=0.5, max_crop=1.0)
    rng = np.random.default_rng(0)
    night = source.draw("current", 600, rng)
    assert night.shape == (600, 16, 16, 3)
    heavy = source.draw("current", 600, rng, image_sources.prior_weights(6))

    def share_of_groups_0_and_1(images: np.ndarray) -> float:
        return float((images[..., 0].mean(axis=(1, 2)) < 60).mean())

    assert share_of_groups_0_and_1(heavy) > share_of_groups_0_and_1(night) + 0.2


def test_hommel_replay_is_between_simes_and_holm() -> None:
    """The what-if Hommel correction matches R on a textbook case and is never above Holm."""
    assert np.allclose(detection.hommel([0.01, 0.02, 0.03, 0.04, 0.05]), [0.05] * 5)
    p = np.random.default_rng(3).uniform(size=40) ** 4
    assert (detection.hommel(p) <= detection.holm(p) + 1e-12).all()
    simes = np.min(p.size * np.sort(p) / np.arange(1, p.size + 1))
    assert np.isclose(detection.hommel(p).min(), simes)
