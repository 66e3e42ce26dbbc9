"""The accuracy estimate end to end: a labelled baseline (labels.csv) through the real demo
classifier, tonight's estimate and interval in the report, its metric rows and HTML."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from analyzer import DatasetAnalyzer
from analyzer.accuracy import LabelsError
from analyzer.contract import DriftReport, Metric, TrendPoint, metric_rows
from analyzer.model import Classifier
from analyzer.render import render_html

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "demo_classifier.tflite"
IMAGES = sorted((ROOT / "daemon" / "demo" / "images").glob("*.png"))
#: file-name slug of the demo images → class index of the demo model (labels.txt order)
SLUGS = ("t-shirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
         "bag", "ankle-boot")


def truth(path: Path) -> int:
    """The true class of a demo image, from its name (``00001_sandal.png``)."""
    return SLUGS.index(path.stem.split("_", 1)[1])


def true_accuracy(folder: Path) -> float:
    """The demo model's accuracy on a folder, computed here with the model directly."""
    model = Classifier.load(MODEL)
    paths = sorted(folder.glob("*.png"))
    probs = model.predict(np.stack([model.preprocess(Image.open(p)) for p in paths]))
    return float(np.mean(probs.argmax(axis=1) == [truth(p) for p in paths]))


def write_labels(path: Path, files: list[Path]) -> Path:
    """labels.csv with a header; every other row by class name, the others by index."""
    labels = [line.strip() for line in (ROOT / "models" / "demo_classifier.labels.txt")
              .read_text().splitlines() if line.strip()]
    rows = ["filename,label"]
    for i, f in enumerate(files):
        rows.append(f"{f.name},{labels[truth(f)] if i % 2 else truth(f)}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("accuracy")
    base = root / "base"
    base.mkdir()
    for path in IMAGES[0::2]:
        shutil.copy(path, base / path.name)
    same = root / "same"
    same.mkdir()
    faded = root / "faded"
    faded.mkdir()
    for path in IMAGES[1::4]:
        shutil.copy(path, same / path.name)
        ImageEnhance.Contrast(Image.open(path)).enhance(0.6).save(faded / path.name)
    return {"base": base, "same": same, "faded": faded}


@pytest.fixture(scope="module")
def labelled(folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> dict[str, Any]:
    labels = write_labels(tmp_path_factory.mktemp("labels") / "labels.csv",
                          sorted(folders["base"].glob("*.png")))
    return DatasetAnalyzer(folders["base"], MODEL, labels=labels, workers=1,
                           progress="off").analyze()


def _report(folder: Path, baseline: dict[str, Any]) -> DriftReport:
    return DatasetAnalyzer(folder, MODEL, workers=1, progress="off").drift_report(baseline)


class TestLabelledBaseline:
    """``--labels``: the calibration stored in the baseline."""

    def test_calibration_counts_every_labelled_image(self, folders: dict[str, Path],
                                                     labelled: dict[str, Any]) -> None:
        """400 labelled images; the stored right answers are the model's true accuracy."""
        counts = labelled["accuracy_calibration"]
        assert sum(counts["count"]) == 400
        assert sum(counts["correct"]) / 400 == pytest.approx(true_accuracy(folders["base"]))

    def test_unknown_file_and_label_name_their_lines(self, folders: dict[str, Path],
                                                     tmp_path: Path) -> None:
        """A row for a file not in the folder, or a label that is no class, names its line."""
        labels = write_labels(tmp_path / "labels.csv", sorted(folders["base"].glob("*.png")))
        with labels.open("a") as out:
            out.write("missing.png,Bag\n")
        with pytest.raises(LabelsError, match=r"line 402: 'missing.png'"):
            DatasetAnalyzer(folders["base"], MODEL, labels=labels, workers=1).profile()
        labels = write_labels(tmp_path / "labels.csv", sorted(folders["base"].glob("*.png")))
        text = labels.read_text().replace(",Trouser\n", ",Trousers\n", 1)
        labels.write_text(text)
        line = text.splitlines().index(next(r for r in text.splitlines()
                                            if r.endswith(",Trousers"))) + 1
        with pytest.raises(LabelsError, match=rf"line {line}: 'Trousers'.*class names"):
            DatasetAnalyzer(folders["base"], MODEL, labels=labels, workers=1).profile()

    def test_labels_without_a_model_are_refused(self, folders: dict[str, Path],
                                                tmp_path: Path) -> None:
        """Labels calibrate a model's confidence: without a model they are an error."""
        labels = write_labels(tmp_path / "labels.csv", sorted(folders["base"].glob("*.png")))
        with pytest.raises(LabelsError, match="without a model"):
            DatasetAnalyzer(folders["base"], None, labels=labels, workers=1).profile()

    def test_too_few_labelled_images(self, folders: dict[str, Path], tmp_path: Path) -> None:
        """Fewer than 100 labelled images is an error that says how many are needed."""
        labels = write_labels(tmp_path / "labels.csv", sorted(folders["base"].glob("*.png"))[:50])
        with pytest.raises(LabelsError, match="only 50 baseline images have labels; need at "
                                              "least 100"):
            DatasetAnalyzer(folders["base"], MODEL, labels=labels, workers=1).profile()


class TestEstimate:
    """Tonight's accuracy estimate in the report."""

    @pytest.mark.parametrize("night", ["same", "faded"])
    def test_true_accuracy_inside_the_interval(self, folders: dict[str, Path],
                                               labelled: dict[str, Any], night: str) -> None:
        """Same-law and low-contrast nights: the 90% interval holds the true accuracy, and
        estimated_accuracy_change is the estimate against the labelled baseline."""
        report = _report(folders[night], labelled)
        acc = report.accuracy
        assert acc is not None and acc.available and acc.reason is None
        assert acc.low is not None and acc.high is not None and acc.estimate is not None
        assert acc.low <= true_accuracy(folders[night]) <= acc.high
        assert acc.images == 200 and acc.labelled_images == 400 and acc.level == 0.9
        assert report.confidence.estimated_accuracy_change == pytest.approx(
            acc.estimate - (acc.baseline_accuracy or 0.0))
        rows = dict(metric_rows(report))
        assert rows[Metric.ACCURACY_ESTIMATE] == acc.estimate
        assert (rows[Metric.ACCURACY_LOW], rows[Metric.ACCURACY_HIGH]) == (acc.low, acc.high)

    def test_without_labels_there_is_no_estimate(self, folders: dict[str, Path]) -> None:
        """An unlabelled baseline: no estimate, a reason, null in the JSON (never the
        confidence shift under that name); no accuracy metric rows."""
        baseline = DatasetAnalyzer(folders["base"], MODEL, workers=1, progress="off").analyze()
        report = _report(folders["faded"], baseline)
        data = report.to_dict()
        assert data["confidence_drift"]["estimated_accuracy_change"] is None
        assert data["confidence_drift"]["mean_confidence_shift"] < 0
        assert data["accuracy_estimate"]["available"] is False
        assert data["accuracy_estimate"]["estimate"] is None
        assert "--labels" in data["accuracy_estimate"]["reason"]
        assert Metric.ACCURACY_ESTIMATE not in dict(metric_rows(report))
        html = render_html(report)
        assert "no estimate" in html and "--labels labels.csv" in html


class TestHtml:
    """The estimate with its interval, and night over night from the history."""

    def test_estimate_interval_and_trend(self, folders: dict[str, Path],
                                         labelled: dict[str, Any]) -> None:
        """Tonight's estimate and interval are shown; with previous nights that carry an
        estimate (as the daemon's store gives them) the chart of the estimate is drawn; the
        embedding test has its own panel."""
        report = _report(folders["faded"], labelled)
        acc = report.accuracy
        assert acc is not None and acc.low is not None and acc.high is not None
        alone = render_html(report)
        assert "Estimated accuracy" in alone
        assert f"{100 * acc.low:.1f}% – {100 * acc.high:.1f}%" in alone
        assert "estimated accuracy and interval per night" not in alone
        assert "What the model sees (embedding)" in alone and "Probe AUC" in alone
        history = [TrendPoint.from_dict({
            "report_id": f"2026112{d}", "date": f"2026-11-2{d}", "overall_severity": "none",
            "pixel_mean_shift": 0.01, "confidence_shift": 0.0, "drift_detected": False,
            "accuracy_estimate": 0.88, "accuracy_estimate.low": 0.83,
            "accuracy_estimate.high": 0.93}) for d in (4, 5)]
        page = render_html(report, history)
        assert "estimated accuracy and interval per night" in page
        assert "estimated accuracy 88.0% (83.0% – 93.0%)" in page
