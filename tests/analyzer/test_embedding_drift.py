"""Embeddings in the profile and the embedding test in the report, with the real TFLite
interpreter on the bundled Fashion-MNIST demo classifier (and a real headless model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageFilter

from analyzer import DatasetAnalyzer, ModelError
from analyzer.contract import DriftReport, SectionName, TestKind
from analyzer.profile import Profile
from analyzer.severity import Severity
from tests.fixtures.images import copy_into

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "demo_classifier.tflite"
HEADLESS = Path(__file__).resolve().parent / "data" / "logits_rgb.tflite"
IMAGES = sorted((ROOT / "daemon" / "demo" / "images").glob("*.png"))


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """base: 200 images; same: 200 others of the same law; blurred: those 200 blurred;
    a/b: the two halves of base (shards)."""
    root = tmp_path_factory.mktemp("embed")
    base, other = IMAGES[0:400:2], IMAGES[1:400:2]
    blurred = root / "blurred"
    blurred.mkdir()
    for path in other:
        Image.open(path).filter(ImageFilter.GaussianBlur(1.5)).save(blurred / path.name)
    return {
        "base": copy_into(root / "base", base),
        "same": copy_into(root / "same", other),
        "blurred": blurred,
        "a": copy_into(root / "a", base[:100]),
        "b": copy_into(root / "b", base[100:]),
    }


@pytest.fixture(scope="module")
def baseline(folders: dict[str, Path]) -> dict[str, Any]:
    return DatasetAnalyzer(folders["base"], MODEL, workers=1, progress="off").analyze()


def _report(folder: Path, baseline: dict[str, Any], model: Path = MODEL,
            **options: Any) -> DriftReport:
    options.setdefault("workers", 1)
    options.setdefault("progress", "off")
    return DatasetAnalyzer(folder, model, **options).drift_report(baseline)


class TestProfile:
    """The profile's bounded, mergeable sample of projected embeddings."""

    def test_sample_is_bounded_and_keyed_like_the_feature_sample(
            self, folders: dict[str, Path]) -> None:
        """embedding_sample bounds the rows kept; their keys are the feature sample's."""
        profile = DatasetAnalyzer(folders["base"], MODEL, workers=1, progress="off",
                                  embedding_sample=64).profile()
        sample = profile.embeddings
        assert sample is not None and profile.embedding_reason is None
        assert sample.count == 64 and sample.vectors.shape == (64, 64)
        assert "dense_1/Relu" in sample.tensor and sample.dim == 64
        assert set(sample.keys.tolist()) <= set(profile.sample_keys.tolist())
        assert np.all(np.diff(sample.keys.astype(np.float64)) > 0)

    def test_two_shards_merge_into_the_profile_of_both(self, folders: dict[str, Path]) -> None:
        """Profiles of two halves, merged, hold the embeddings the whole folder's holds."""
        def profile(name: str) -> Profile:
            return DatasetAnalyzer(folders[name], MODEL, workers=1, progress="off",
                                   embedding_sample=150).profile()

        merged = profile("a").merge(profile("b"))
        whole = profile("base")
        assert merged.embeddings is not None and whole.embeddings is not None
        assert merged.embeddings.count == 150
        np.testing.assert_array_equal(merged.embeddings.keys, whole.embeddings.keys)
        np.testing.assert_allclose(merged.embeddings.vectors, whole.embeddings.vectors,
                                   rtol=1e-5, atol=1e-6)

    def test_json_round_trip_keeps_the_sample(self, baseline: dict[str, Any]) -> None:
        """A baseline file written and read back holds the same embeddings."""
        profile = Profile.from_dict(json.loads(json.dumps(baseline)))
        again = Profile.from_dict(profile.to_dict())
        assert profile.embeddings is not None and again.embeddings is not None
        np.testing.assert_array_equal(profile.embeddings.vectors, again.embeddings.vectors)
        assert baseline["embeddings"]["projection"] == "rademacher-shake256-v1"


class TestReport:
    """The embedding test in the report's one corrected family."""

    def test_same_law_night_is_not_flagged(self, folders: dict[str, Path],
                                           baseline: dict[str, Any]) -> None:
        """200 other images of the same law: the embedding test does not fire."""
        section = _report(folders["same"], baseline).embedding
        assert section is not None and section.available
        (test,) = section.tests
        assert test.test is TestKind.MMD and test.feature == "embedding"
        assert not test.significant and section.severity is Severity.NONE

    def test_blurred_night_is_flagged_in_the_family(self, folders: dict[str, Path],
                                                    baseline: dict[str, Any]) -> None:
        """Blurred images move the embedding: significant after Holm, graded by the probe's
        AUC, with the rows used and the cost bound said in the report."""
        report = _report(folders["blurred"], baseline)
        section = report.embedding
        assert section is not None
        (test,) = section.tests
        assert test.significant and test.p_adjusted >= test.p_value
        assert test.severity > Severity.NONE and test.effect_size >= test.threshold
        assert section.auc > 0.6
        assert (section.baseline_used, section.current_used) == (200, 200)
        assert "200 of 200 baseline and 200 of 200 current images" in section.note
        assert "at most 1024 per side" in section.note and "permutations" in section.note
        assert test in report.tests and report.severity_of(SectionName.EMBEDDING) > Severity.NONE
        # the one family: every test's adjusted p-value accounts for the embedding test too
        assert len(report.tests) == len({(t.section, t.feature) for t in report.tests})

    def test_embeddings_switched_off(self, folders: dict[str, Path],
                                     baseline: dict[str, Any]) -> None:
        """embeddings=False: the section says so; the model sections still run."""
        report = _report(folders["same"], baseline, embeddings=False)
        assert report.embedding is not None and not report.embedding.available
        assert "switched off" in (report.embedding.reason or "")
        assert report.confidence.available and report.classes.available

    def test_model_without_a_hidden_layer_reports_why(self, tmp_path: Path) -> None:
        """A real model whose head reads the input pixels: no crash, the reason is given."""
        rng = np.random.default_rng(3)
        for side in ("base", "night"):
            (tmp_path / side).mkdir()
            for i in range(30):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / side / f"{i}.png")
        baseline = DatasetAnalyzer(tmp_path / "base", HEADLESS, workers=1,
                                   progress="off").analyze()
        assert baseline["embeddings"]["reason"].startswith("no penultimate-layer tensor")
        report = _report(tmp_path / "night", baseline, model=HEADLESS)
        assert report.embedding is not None and not report.embedding.available
        assert "no hidden layer" in (report.embedding.reason or "")
        assert "embedding_tensor" in (report.embedding.reason or "")
        assert report.confidence.available

    def test_a_named_tensor_that_does_not_exist_is_an_error(self, folders: dict[str, Path]
                                                           ) -> None:
        """A wrong embedding_tensor is a ModelError naming it, before any image is read."""
        with pytest.raises(ModelError, match=r"no tensor named 'nope'"):
            DatasetAnalyzer(folders["a"], MODEL, workers=1, embedding_tensor="nope").profile()

    def test_tensor_by_index_is_the_automatic_one(self, folders: dict[str, Path]) -> None:
        """embedding_tensor=20 (the demo model's dense_1/Relu) gives the same embeddings."""
        auto = DatasetAnalyzer(folders["a"], MODEL, workers=1, progress="off").profile()
        by_index = DatasetAnalyzer(folders["a"], MODEL, workers=1, progress="off",
                                   embedding_tensor=20).profile()
        assert auto.embeddings is not None and by_index.embeddings is not None
        assert auto.embeddings.tensor == by_index.embeddings.tensor
        np.testing.assert_array_equal(auto.embeddings.vectors, by_index.embeddings.vectors)

    def test_baseline_made_before_embeddings(self, folders: dict[str, Path],
                                             baseline: dict[str, Any]) -> None:
        """A baseline without the embeddings key (an older driftd) makes the section
        unavailable with the fix, and everything else still runs."""
        old = {k: v for k, v in baseline.items() if k != "embeddings"}
        report = _report(folders["same"], old)
        assert report.embedding is not None and not report.embedding.available
        assert "regenerate" in (report.embedding.reason or "")
        assert report.confidence.available

    def test_cost_is_bounded_by_embedding_sample(self, folders: dict[str, Path],
                                                 baseline: dict[str, Any]) -> None:
        """With embedding_sample=64 the test runs on 64 rows per side, and says so."""
        section = _report(folders["blurred"], baseline, embedding_sample=64).embedding
        assert section is not None and section.available
        assert (section.baseline_used, section.current_used) == (64, 64)
        assert (section.baseline_rows, section.current_rows) == (200, 64)
        assert "64 of 200 baseline and 64 of 200 current images" in section.note
        assert "then a seeded subset" in section.note
