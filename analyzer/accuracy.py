"""Label-free accuracy estimate: the model's confidence, calibrated on a labelled baseline.

When the baseline comes with labels (``labels.csv``, see ``read_labels``), every baseline image
is known to be classified right or wrong. ``Calibration`` counts them per confidence bin: the
model's top-1 probability ``c`` falls in one of ``EDGES``' fixed bins (fixed, so the counts of
two shards add up: a calibration merges like the rest of a profile). Those counts are the
whole stored state, plain JSON, a few hundred bytes.

For a night without labels, ``Calibration.estimate`` returns the expected accuracy of its
images (confidence-based performance estimation, CBPE): each image counts with the baseline's
rate of correct answers at its confidence, ``P(correct | c)``, read from the bins after a
monotone (isotonic, pool-adjacent-violators) fit, since a more confident answer should not be
less often right. The estimate is the mean of those rates. Its interval adds up, as variances:

* sampling: the night's own accuracy is a sum of independent right/wrong outcomes with those
  probabilities (a Poisson-binomial), variance ``Σ p(1 - p) / n²``;
* calibration: each pooled bin's rate is known from a finite number of baseline images; a
  Jeffreys Beta(correct + ½, wrong + ½) posterior gives its variance, weighted by the night's
  share of images in that bin, squared;
* shift: CBPE assumes ``P(correct | c)`` is still the baseline's. Under covariate shift it is
  not: a model stays confident on noisy images it now gets wrong (the estimate reads high),
  or grows unsure of low-contrast images it still gets right (the estimate reads low). How
  far the night's confidences moved from the baseline's — their Wasserstein-1 distance, in
  probability units, with no tuned factor — is added to the half-width as it is: the further
  the night is from the data the calibration was made on, the less the calibration is
  trusted. On same-law nights it is sampling noise (~0.02 at 100 images).

The interval is ``estimate ± (z · √(sampling + calibration) + shift)``, clipped to [0, 1].
Evidence (``bench/accuracy_estimate.py``, Fashion-MNIST with its labels, 18 shifts): without
the shift term the interval covers the true accuracy on 82% (n = 100) and 71% (n = 500) of
nights and on 0-18% of low-contrast nights; with it, on ≥ 95% of the nights of every shift
family. Average thresholded confidence (ATC, Garg et al. 2022) was measured beside CBPE and
was less accurate on every shift family (mean absolute error 0.052 against CBPE's 0.034 at
n = 100), so it is not used.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.errors import AnalyzerError

FloatArray = npt.NDArray[np.float64]

#: Upper edges of the bins on ``1 - confidence`` (the last bin reaches 1.0): fine near full
#: confidence, where most images of a good model sit, coarse below one half.
EDGES: tuple[float, ...] = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1,
                            0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
#: Fewer labelled baseline images than this give no calibration (the interval would be wide).
MIN_LABELLED = 100
#: Names accepted in the first cell of a header row of ``labels.csv``.
HEADER_NAMES = frozenset({"file", "filename", "file_name", "name", "path", "image", "image_path"})
CALIBRATION_KIND = "cbpe-bins-v1"


class LabelsError(AnalyzerError):
    """Raised when a labels file is missing, unreadable or malformed, or matches no image."""


@dataclass(frozen=True)
class LabelRow:
    """One data row of ``labels.csv``: its 1-based line number, the file and its label."""

    line: int
    file: str
    label: str


def read_label_rows(path: str | Path) -> list[LabelRow]:
    """Read ``labels.csv``: one ``file,label`` row per image.

    Format: two columns, comma-, semicolon- or tab-separated, UTF-8 (a BOM is tolerated).
    ``file`` is the image's path relative to the data folder, as the report names files
    (``a/b.jpg``), or its bare name when names are unique; ``label`` is the true class, as a
    label of the model (``labels.txt``) or its 0-based output index. An optional header row is
    recognised by its first cell (``file``, ``filename``, ``path``, ``image``, ...). Blank
    lines are skipped; extra columns are ignored.

    Raises:
        LabelsError: the file is missing or unreadable, a row has fewer than two cells or an
            empty cell, or one file is given two different labels; the message names the row.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise LabelsError(f"labels file {path} cannot be read as UTF-8 text: {err}") from err
    try:
        dialect: Any = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    rows: dict[str, LabelRow] = {}
    for number, row in enumerate(csv.reader(text.splitlines(), dialect), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if number == 1 and cells[0].lower() in HEADER_NAMES:
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            raise LabelsError(
                f"labels file {path}, row {number}: {row!r} is not 'file,label'; give the "
                "image's path in the data folder and its true class on each row")
        name = cells[0].replace("\\", "/")
        seen = rows.get(name)
        if seen is not None and seen.label != cells[1]:
            raise LabelsError(
                f"labels file {path}, row {number}: {name!r} is labelled {seen.label!r} "
                f"and {cells[1]!r}; keep one label per file")
        rows.setdefault(name, LabelRow(number, name, cells[1]))
    if not rows:
        raise LabelsError(f"labels file {path} has no 'file,label' rows")
    return list(rows.values())


def read_labels(path: str | Path) -> dict[str, str]:
    """``read_label_rows`` as ``{file: label}``; raises as it does."""
    return {row.file: row.label for row in read_label_rows(path)}


def _listing(bad: list[str], total: int) -> str:
    more = f" and {total - len(bad)} more" if total > len(bad) else ""
    return "; ".join(bad) + more


def resolve_labels(rows: Sequence[LabelRow], files: Sequence[str], classes: Sequence[str],
                   source: str = "labels.csv") -> dict[str, int]:
    """Each labelled image's true class index, keyed by its path relative to the data folder.

    ``files`` are the folder's image files (relative paths, readable or not). A row matches a
    file by its relative path, else by its bare name when exactly one file has that name. A
    label is a class name of the model or a 0-based class index.

    Raises:
        LabelsError: a row names no file of the folder (or a bare name several files share),
            or a label that is not a class of the model; the message gives the line numbers
            of the first few such rows, and how to fix them.
    """
    known = {f.replace("\\", "/") for f in files}
    by_name: dict[str, list[str]] = {}
    for f in sorted(known):
        by_name.setdefault(Path(f).name, []).append(f)
    index_of = {c: i for i, c in enumerate(classes)}
    out: dict[str, int] = {}
    no_file: list[str] = []
    no_class: list[str] = []
    for row in rows:
        name = row.file if row.file in known else None
        if name is None and len(by_name.get(row.file, ())) == 1:
            name = by_name[row.file][0]
        truth = index_of.get(row.label)
        if truth is None and row.label.isdigit() and int(row.label) < len(classes):
            truth = int(row.label)
        if name is None:
            no_file.append(f"line {row.line}: {row.file!r}")
        elif truth is None:
            no_class.append(f"line {row.line}: {row.label!r}")
        else:
            out[name] = truth
    if no_file:
        example = sorted(known)[0] if known else "a/b.jpg"
        raise LabelsError(
            f"{source}: {len(no_file)} row(s) name no image of the folder ("
            f"{_listing(no_file[:5], len(no_file))}); give each file's path inside the data "
            f"folder (e.g. {example!r}) or its bare name when it is unique")
    if no_class:
        raise LabelsError(
            f"{source}: {len(no_class)} label(s) are not classes of the model ("
            f"{_listing(no_class[:5], len(no_class))}); use the model's class names "
            f"(e.g. {list(classes[:3])}) or 0-based indices below {len(classes)}")
    return out


def _bin_of(confidence: npt.ArrayLike) -> npt.NDArray[np.intp]:
    """Bin index of each confidence (bin 0 = the most confident)."""
    gap = 1.0 - np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    return np.searchsorted(np.asarray(EDGES), gap, side="left").clip(0, len(EDGES) - 1)


def _isotonic_blocks(correct: FloatArray, count: FloatArray) -> npt.NDArray[np.intp]:
    """Pool-adjacent-violators on the bins' rates (non-increasing from bin 0 down).

    Returns, per bin, the id of the pooled block it belongs to; empty bins join a neighbour.
    """
    blocks: list[list[int]] = []
    sums: list[list[float]] = []
    for b in range(count.size):
        blocks.append([b])
        sums.append([float(correct[b]), float(count[b])])
        # Bins run from most to least confident: a later block must not have a higher rate.
        while len(blocks) > 1 and _rate(sums[-1]) > _rate(sums[-2]):
            last_b, last_s = blocks.pop(), sums.pop()
            blocks[-1] += last_b
            sums[-1] = [sums[-1][0] + last_s[0], sums[-1][1] + last_s[1]]
    # Bins less confident than any baseline image take the rate of the least confident ones.
    while len(blocks) > 1 and sums[-1][1] == 0:
        empty = blocks.pop()
        sums.pop()
        blocks[-1] += empty
    out = np.empty(count.size, dtype=np.intp)
    for block_id, members in enumerate(blocks):
        out[members] = block_id
    return out


def _rate(pair: list[float]) -> float:
    """A block's rate; an empty block's is -inf, so the next non-empty bin pools into it."""
    return pair[0] / pair[1] if pair[1] > 0 else -math.inf


@dataclass(frozen=True)
class AccuracyEstimate:
    """A night's estimated accuracy with its interval and how the interval was made.

    ``sampling_sd`` and ``calibration_sd`` are standard deviations; ``shift_term`` (the
    Wasserstein-1 distance between the night's and the baseline's confidences) is added to
    the half-width as it is. ``baseline_accuracy`` is the labelled baseline's.
    """

    estimate: float
    low: float
    high: float
    level: float
    images: int
    sampling_sd: float
    calibration_sd: float
    shift_term: float
    baseline_accuracy: float
    method: str = "cbpe"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the report's ``accuracy_estimate`` section body)."""
        return {"estimate": self.estimate, "low": self.low, "high": self.high,
                "level": self.level, "images": self.images, "method": self.method,
                "sampling_sd": self.sampling_sd, "calibration_sd": self.calibration_sd,
                "shift_term": self.shift_term, "baseline_accuracy": self.baseline_accuracy}


@dataclass(frozen=True)
class Calibration:
    """Right and wrong answers of the labelled baseline per confidence bin (``EDGES``)."""

    count: tuple[int, ...]
    correct: tuple[int, ...]

    @classmethod
    def fit(cls, confidence: npt.ArrayLike, correct: npt.ArrayLike) -> Calibration:
        """Count a labelled baseline: top-1 probability and right/wrong per image.

        Raises:
            LabelsError: fewer than ``MIN_LABELLED`` labelled images.
        """
        calibration = cls.counted(confidence, correct)
        calibration.check_enough()
        return calibration

    def check_enough(self) -> None:
        """Raise ``LabelsError`` unless at least ``MIN_LABELLED`` images were counted."""
        if self.images < MIN_LABELLED:
            raise LabelsError(
                f"only {self.images} baseline images have labels; need at least "
                f"{MIN_LABELLED} to calibrate the accuracy estimate (label more baseline "
                "images)")

    @classmethod
    def counted(cls, confidence: npt.ArrayLike, correct: npt.ArrayLike) -> Calibration:
        """The counts of some labelled images (a shard's: no minimum; see ``fit``)."""
        conf = np.asarray(confidence, dtype=np.float64)
        right = np.asarray(correct, dtype=bool)
        bins = _bin_of(conf)
        count = np.bincount(bins, minlength=len(EDGES))
        hits = np.bincount(bins, weights=right.astype(np.float64), minlength=len(EDGES))
        return cls(tuple(int(c) for c in count), tuple(int(h) for h in hits))

    @property
    def images(self) -> int:
        """Labelled baseline images counted."""
        return sum(self.count)

    @property
    def baseline_accuracy(self) -> float:
        """The labelled baseline's accuracy."""
        return sum(self.correct) / self.images

    def rates(self) -> tuple[FloatArray, FloatArray]:
        """Per bin: the isotonic P(correct | bin) and the variance of that rate.

        The rate is the pooled block's share of right answers (the isotonic fit's own value,
        non-increasing from the most confident bin); its variance is that of a Jeffreys
        Beta(right + ½, wrong + ½) posterior, so a block of few images counts as uncertain.
        """
        count = np.asarray(self.count, dtype=np.float64)
        hits = np.asarray(self.correct, dtype=np.float64)
        blocks = _isotonic_blocks(hits, count)
        block_n = np.bincount(blocks, weights=count)
        block_hits = np.bincount(blocks, weights=hits)
        a, b = block_hits + 0.5, block_n - block_hits + 0.5
        variance = a * b / ((a + b) ** 2 * (a + b + 1))
        return (block_hits / np.maximum(block_n, 1.0))[blocks], variance[blocks]

    def estimate(self, confidence: npt.ArrayLike, baseline_confidence: npt.ArrayLike,
                 level: float = 0.9) -> AccuracyEstimate:
        """The expected accuracy of a night with these top-1 probabilities, and its interval.

        Args:
            confidence: the night's top-1 probabilities (all images, or a uniform sample such
                as a profile's bottom-k sample: the sampling term is then the sample's, wider).
            baseline_confidence: the baseline's top-1 probabilities (all or a uniform
                sample), for the shift term.
            level: the interval's coverage (0.9 = 90%).

        Raises ``ValueError`` for an empty night or baseline, or a level outside (0, 1).
        """
        conf = np.asarray(confidence, dtype=np.float64)
        base = np.asarray(baseline_confidence, dtype=np.float64)
        if conf.size == 0 or base.size == 0 or not 0 < level < 1:
            raise ValueError(f"need images on both sides and 0 < level < 1; got {conf.size} "
                             f"night and {base.size} baseline confidences, level {level}")
        count = np.asarray(self.count, dtype=np.float64)
        hits = np.asarray(self.correct, dtype=np.float64)
        blocks = _isotonic_blocks(hits, count)
        rate, variance = self.rates()
        bins = _bin_of(conf)
        p = rate[bins]
        n = conf.size
        estimate = float(p.mean())
        sampling = float((p * (1.0 - p)).sum()) / n**2
        # Bins pooled into one block share one rate: their errors add before squaring.
        share = np.bincount(blocks[bins], minlength=int(blocks.max()) + 1) / n
        block_variance = np.zeros(share.size)
        block_variance[blocks] = variance
        calibration = float((share**2 * block_variance).sum())
        # scipy here, not at import: the profiling workers import this module's label
        # reader and would carry scipy's ~60 MB each (measured: 105 MB instead of 40).
        from scipy import stats as sps

        shift = float(sps.wasserstein_distance(base, conf))
        half = float(sps.norm.ppf(0.5 + level / 2)) * math.sqrt(sampling + calibration) + shift
        return AccuracyEstimate(estimate, max(0.0, estimate - half), min(1.0, estimate + half),
                                level, n, math.sqrt(sampling), math.sqrt(calibration), shift,
                                self.baseline_accuracy)

    def merge(self, other: Calibration) -> Calibration:
        """The counts of two shards of one labelled baseline, added."""
        return Calibration(tuple(a + b for a, b in zip(self.count, other.count, strict=True)),
                           tuple(a + b for a, b in zip(self.correct, other.correct, strict=True)))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the bin edges, images and right answers per bin."""
        return {"kind": CALIBRATION_KIND, "edges": list(EDGES), "count": list(self.count),
                "correct": list(self.correct)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        """Rebuild from ``to_dict()``; raises ``LabelsError`` for another layout."""
        if d.get("kind") != CALIBRATION_KIND or list(d.get("edges", [])) != list(EDGES):
            raise LabelsError(
                f"accuracy calibration {d.get('kind')!r} has other bins than this analyzer's "
                f"{CALIBRATION_KIND!r}; regenerate the baseline with --labels")
        try:
            count = tuple(int(c) for c in d["count"])
            correct = tuple(int(c) for c in d["correct"])
        except (KeyError, TypeError, ValueError) as err:
            raise LabelsError(f"accuracy calibration is malformed ({err}); regenerate the "
                              "baseline with --labels") from err
        if len(count) != len(EDGES) or len(correct) != len(EDGES) or any(
                h > c or h < 0 for h, c in zip(correct, count, strict=True)):
            raise LabelsError("accuracy calibration counts are inconsistent; regenerate the "
                              "baseline with --labels")
        return cls(count, correct)
