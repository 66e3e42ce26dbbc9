"""analyzer.accuracy: labels.csv, the confidence calibration and the accuracy estimate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from analyzer.accuracy import (
    EDGES,
    MIN_LABELLED,
    Calibration,
    LabelsError,
    read_label_rows,
    read_labels,
    resolve_labels,
)

CLASSES = ["cat", "dog", "bird"]


def model_outputs(rng: np.random.Generator, n: int, shift: float = 0.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 probabilities and right/wrong answers of a model that is over-confident:
    P(correct | c) = c², not c (so the calibration has something to correct)."""
    conf = np.clip(rng.beta(6.0, 1.5, n) - shift, 0.34, 1.0)
    return conf, rng.uniform(size=n) < conf**2


class TestReadLabels:
    """The labels.csv format."""

    def test_header_bom_semicolons_blank_lines(self, tmp_path: Path) -> None:
        """A header row, a BOM, semicolons and blank lines are all tolerated."""
        path = tmp_path / "labels.csv"
        path.write_text("\ufefffilename;label\n\na/1.jpg;cat\nb\\2.jpg;dog\n", encoding="utf-8")
        assert read_labels(path) == {"a/1.jpg": "cat", "b/2.jpg": "dog"}

    def test_plain_rows_without_header(self, tmp_path: Path) -> None:
        """Comma-separated rows with no header are all data."""
        path = tmp_path / "labels.csv"
        path.write_text("x.png,bird\ny.png,2\n")
        assert read_labels(path) == {"x.png": "bird", "y.png": "2"}

    def test_conflicting_labels_name_the_row(self, tmp_path: Path) -> None:
        """One file with two labels is an error naming the row and both labels."""
        path = tmp_path / "labels.csv"
        path.write_text("file,label\nx.png,cat\nx.png,dog\n")
        with pytest.raises(LabelsError, match=r"row 3: 'x.png' is labelled 'cat' and 'dog'"):
            read_labels(path)

    def test_short_row(self, tmp_path: Path) -> None:
        """A row without a label says what a row must hold."""
        path = tmp_path / "labels.csv"
        path.write_text("x.png,cat\ny.png\n")
        with pytest.raises(LabelsError, match=r"row 2: \['y.png'\] is not 'file,label'"):
            read_labels(path)

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is a LabelsError naming it."""
        with pytest.raises(LabelsError, match=r"nope\.csv cannot be read"):
            read_labels(tmp_path / "nope.csv")


class TestResolveLabels:
    """Joining labels.csv rows with a folder's files and the model's classes."""

    def test_paths_names_and_indices(self, tmp_path: Path) -> None:
        """Rows match by relative path or unique bare name; labels may be class indices."""
        path = tmp_path / "labels.csv"
        path.write_text("file,label\nday1/a.jpg,cat\nb.jpg,1\nd.jpg,bird\n")
        files = ["day1/a.jpg", "day1/b.jpg", "c.jpg", "d.jpg"]
        assert resolve_labels(read_label_rows(path), files, CLASSES) == {
            "day1/a.jpg": 0, "day1/b.jpg": 1, "d.jpg": 2}

    def test_unknown_files_are_named_with_their_line(self, tmp_path: Path) -> None:
        """Rows naming no image of the folder are listed with their line numbers."""
        path = tmp_path / "labels.csv"
        path.write_text("file,label\na.png,cat\nx/y.png,cat\n\nz.png,dog\n")
        with pytest.raises(LabelsError, match=r"2 row\(s\) name no image of the folder "
                                              r"\(line 3: 'x/y.png'; line 5: 'z.png'\)"):
            resolve_labels(read_label_rows(path), ["a.png"], CLASSES)

    def test_unknown_labels_are_named_with_their_line(self, tmp_path: Path) -> None:
        """A label that is neither a class name nor an index in range names its line."""
        path = tmp_path / "labels.csv"
        path.write_text("a.png,zebra\nb.png,3\nc.png,2\n")
        with pytest.raises(LabelsError, match=r"line 1: 'zebra'; line 2: '3'.*indices below 3"):
            resolve_labels(read_label_rows(path), ["a.png", "b.png", "c.png"], CLASSES)

    def test_a_bare_name_two_files_share_is_not_guessed(self, tmp_path: Path) -> None:
        """A bare name that two subfolders share matches neither: the row is an error."""
        path = tmp_path / "labels.csv"
        path.write_text("a.png,cat\n")
        with pytest.raises(LabelsError, match=r"line 1: 'a\.png'"):
            resolve_labels(read_label_rows(path), ["x/a.png", "y/a.png"], CLASSES)


class TestCalibration:
    """The stored counts and the estimate."""

    def test_interval_covers_truth_on_same_law_nights(self) -> None:
        """200 nights of the baseline's law: the 90% interval holds the true accuracy on at
        least 85% of them, and the estimate is within 0.03 of it on average."""
        rng = np.random.default_rng(20)
        base_conf, base_right = model_outputs(rng, 2000)
        calibration = Calibration.fit(base_conf, base_right)
        inside, errors = [], []
        for _ in range(200):
            conf, right = model_outputs(rng, 200)
            est = calibration.estimate(conf, base_conf)
            inside.append(est.low <= right.mean() <= est.high)
            errors.append(abs(est.estimate - right.mean()))
        assert np.mean(inside) >= 0.85
        assert np.mean(errors) < 0.03

    def test_corrects_over_confidence(self) -> None:
        """The estimate follows the calibrated rate, not the raw mean confidence."""
        rng = np.random.default_rng(21)
        base_conf, base_right = model_outputs(rng, 5000)
        conf, right = model_outputs(rng, 5000)
        est = Calibration.fit(base_conf, base_right).estimate(conf, base_conf)
        assert abs(est.estimate - right.mean()) < 0.015
        assert conf.mean() - right.mean() > 0.1  # the raw confidence would be far off

    def test_shift_widens_the_interval(self) -> None:
        """A night whose confidences moved gets a shift term of about that move."""
        rng = np.random.default_rng(22)
        base_conf, base_right = model_outputs(rng, 2000)
        calibration = Calibration.fit(base_conf, base_right)
        same = calibration.estimate(model_outputs(rng, 300)[0], base_conf)
        moved = calibration.estimate(model_outputs(rng, 300, shift=0.15)[0], base_conf)
        assert same.shift_term < 0.05
        assert moved.shift_term > 0.1
        assert moved.high - moved.low > (same.high - same.low) + 0.15

    def test_rates_never_rise_as_confidence_falls(self) -> None:
        """The isotonic fit makes P(correct | bin) non-increasing from the most confident bin."""
        rng = np.random.default_rng(23)
        rates, _ = Calibration.fit(*model_outputs(rng, 300)).rates()
        assert np.all(np.diff(rates) <= 1e-12)

    def test_merge_and_json(self) -> None:
        """Two shards' calibrations add up to the whole one, and survive JSON."""
        rng = np.random.default_rng(24)
        conf, right = model_outputs(rng, 600)
        whole = Calibration.fit(conf, right)
        merged = Calibration.fit(conf[:300], right[:300]).merge(
            Calibration.fit(conf[300:], right[300:]))
        assert merged == whole
        assert Calibration.from_dict(json.loads(json.dumps(whole.to_dict()))) == whole
        assert len(whole.count) == len(EDGES) and whole.images == 600

    def test_too_few_labels(self) -> None:
        """A calibration needs MIN_LABELLED labelled images; the message says how many."""
        with pytest.raises(LabelsError, match=rf"only 20 baseline images.*{MIN_LABELLED}"):
            Calibration.fit(np.full(20, 0.9), np.ones(20, dtype=bool))

    def test_inconsistent_counts_rejected(self) -> None:
        """More right answers than images in a bin is a malformed baseline."""
        d = Calibration.fit(*model_outputs(np.random.default_rng(25), 200)).to_dict()
        d["correct"][0] = d["count"][0] + 1
        with pytest.raises(LabelsError, match="inconsistent"):
            Calibration.from_dict(d)
