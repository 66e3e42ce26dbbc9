"""The drift report's contract: its names, its typed form, its JSON form, its metric rows.

Everything inside driftd passes a ``DriftReport``; JSON is made (``to_dict``) and read
(``DriftReport.from_dict``) only at the edges: the report file, the metric store's rows, the
alert outbox and the HTTP API. ``from_dict(r.to_dict())`` gives back ``r`` exactly, and a
report file written by any driftd so far reads back and writes out byte for byte the same
(docs/ARCHITECTURE.md, "Drift report dict").

The names here are the only spelling of the report's keys, section names, feature names and
data-quality issues; other modules use these constants, never the strings.

This module imports nothing but the standard library and ``analyzer.severity`` /
``analyzer.errors``, so that a consumer of reports (the HTML renderer, the sinks) needs
nothing else of the analyzer.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias, TypeVar

from analyzer.errors import ReportFormatError
from analyzer.severity import Severity

SCHEMA_VERSION = 2
"""The report's ``schema_version`` as driftd writes it now. Version 2 added the
``embedding_drift`` and ``accuracy_estimate`` sections and made ``estimated_accuracy_change``
null unless a labelled baseline gives an estimate."""
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1, SCHEMA_VERSION)
"""Versions ``from_dict`` reads; a version-1 report reads back and writes out as version 1."""


class SectionName(enum.StrEnum):
    """The report's sections: the keys of the JSON and the ``section`` of each test."""

    PIXEL = "pixel_distribution_drift"
    CONFIDENCE = "confidence_drift"
    CLASSES = "class_distribution_drift"
    DATA_QUALITY = "data_quality"
    EMBEDDING = "embedding_drift"


ACCURACY_SECTION = "accuracy_estimate"
"""The key of the report's accuracy-estimate section (not a drift section: no tests)."""


class ImageFeature(enum.StrEnum):
    """Continuous per-image features (``analyzer.images`` computes them in this order)."""

    BRIGHTNESS = "brightness"  # mean luma (ITU-R 601), 0..255
    CONTRAST = "contrast"  # RMS contrast: standard deviation of luma, 0..~128
    LUMA_P99 = "luma_p99"  # 99th percentile of luma, 0..255: the highlights
    MEAN_R = "mean_r"  # mean of the red channel, 0..255
    MEAN_G = "mean_g"
    MEAN_B = "mean_b"
    SATURATION = "saturation"  # mean HSV saturation, 0..1
    COLORFULNESS = "colorfulness"  # Hasler & Süsstrunk colourfulness
    RED_SHARE = "red_share"  # share of the image's light in red: sum(r) / sum(r + g + b)
    GREEN_SHARE = "green_share"  # (the three sum to 1; 1/3 each for a grey image, 0 if black)
    BLUE_SHARE = "blue_share"
    SHARPNESS = "sharpness"  # variance of the 4-neighbour Laplacian of luma
    ENTROPY = "entropy"  # Shannon entropy of the luma histogram, bits (0..8)
    NOISE_LEVEL = "noise_level"  # Immerkær's fast noise sigma estimate, luma units
    HIGH_FREQ_ENERGY = "high_freq_energy"  # share of luma AC energy in the finest Haar bands
    BLOCKINESS = "blockiness"  # mean |step| on the 8x8 JPEG grid / elsewhere (1 = none)
    JPEG_QUALITY = "jpeg_quality"  # libjpeg quality from the luma table; 100 if lossless
    WIDTH = "width"  # true width in pixels after EXIF orientation
    HEIGHT = "height"
    ASPECT_RATIO = "aspect_ratio"  # width / height
    FILE_SIZE = "file_size"  # bytes on disk


class ModelFeature(enum.StrEnum):
    """Per-image model outputs: top-1 probability, entropy / ln(k) (0..1), top-1 − top-2."""

    MAX_CONFIDENCE = "max_confidence"
    PREDICTION_ENTROPY = "prediction_entropy"
    MARGIN = "margin"


class Category(enum.StrEnum):
    """Categorical per-image features (the predicted class only with a model)."""

    FORMAT = "format"
    MODE = "mode"
    SIZE = "size"
    PREDICTED_CLASS = "predicted_class"


class QualityIssue(enum.StrEnum):
    """Data-quality issues, the keys of ``data_quality.issues`` (in report order)."""

    UNREADABLE = "unreadable"
    TRUNCATED = "truncated"
    ZERO_BYTE = "zero_byte"
    DUPLICATES = "duplicates"
    UNEXPECTED_MODE = "unexpected_mode"
    UNEXPECTED_SIZE = "unexpected_size"


IMAGE_FEATURES: tuple[str, ...] = tuple(f.value for f in ImageFeature)
"""``ImageFeature`` values in order: the columns of every image's feature vector."""
MODEL_FEATURES: tuple[str, ...] = tuple(f.value for f in ModelFeature)
"""``ModelFeature`` values in order: the model's columns after the image features."""
IMAGE_CATEGORIES: tuple[str, ...] = tuple(
    c.value for c in (Category.FORMAT, Category.MODE, Category.SIZE))
"""The categorical features of an image, in ``ImageRecord.categories`` order."""
TESTED_CATEGORIES: tuple[str, ...] = tuple(c.value for c in (Category.FORMAT, Category.MODE))
"""The image categories that are tested (sizes are judged by ``unexpected_size``)."""
ISSUES: tuple[str, ...] = tuple(i.value for i in QualityIssue)
"""``QualityIssue`` values in report order."""
BAD_FILE_ISSUES: tuple[str, ...] = tuple(
    i.value for i in (QualityIssue.UNREADABLE, QualityIssue.TRUNCATED, QualityIssue.ZERO_BYTE))
"""Issues that mean a file could not be analysed (they grade the data-quality severity)."""
SOFTMAX_PREFIX = "softmax."
"""Prefix of the per-class mean-probability features (``softmax.<label>``, BBSD)."""
RGB_CHANNELS: tuple[str, ...] = ("r", "g", "b")
"""The colour channels of ``histograms``, in order."""


class TestKind(enum.StrEnum):
    """Which test a ``TestResult`` ran (``skipped``: too few samples, not in the family)."""

    __test__ = False  # not a pytest test class, whatever its name

    KS = "ks"
    CHI2 = "chi2"
    MMD = "mmd"  # kernel MMD on the model's embeddings, exact permutation p-value
    SKIPPED = "skipped"


class EffectKind(enum.StrEnum):
    """The effect size beside a test's p-value."""

    WASSERSTEIN = "wasserstein_norm"
    TVD = "tvd"
    AUC = "auc_above_chance"  # a linear probe's held-out AUC less chance (embedding test)
    NONE = "none"


class Metric(enum.StrEnum):
    """The fixed metric-row names (``metric_rows``); the seed's three come first."""

    PIXEL_MEAN_SHIFT = "pixel_mean_shift"
    CONFIDENCE_SHIFT = "confidence_shift"
    DRIFT_DETECTED = "drift_detected"
    OVERALL_SEVERITY_RANK = "overall_severity_rank"
    CURRENT_IMAGE_COUNT = "current_image_count"
    ACCURACY_ESTIMATE = "accuracy_estimate"  # with a labelled baseline only
    ACCURACY_LOW = "accuracy_estimate.low"
    ACCURACY_HIGH = "accuracy_estimate.high"
    EMBEDDING_EFFECT = "embedding.effect_size"  # the embedding test's row (feature "embedding")


EMBEDDING_FEATURE = "embedding"
"""The ``feature`` of the embedding test."""


SettingValue: TypeAlias = bool | int | float | str | None
"""A value of the report's ``settings`` (an ``AnalyzerOptions`` threshold)."""


class Setting(enum.StrEnum):
    """Names in the report's ``settings`` that readers of a report use."""

    ALPHA = "alpha"
    CORRECTION = "correction"


CUTOFF_PREFIX: dict[str, str] = {EffectKind.WASSERSTEIN: "wasserstein", EffectKind.TVD: "tvd",
                                 EffectKind.AUC: "auc"}
"""Effect-size kind → the prefix of its severity cut-offs in ``settings`` and in
``AnalyzerOptions`` (``wasserstein_low`` …)."""


def severity_cutoffs(settings: Mapping[str, SettingValue], kind: str
                     ) -> dict[str, float] | None:
    """The effect sizes at which a test of effect-size ``kind`` became ``low``, ``medium``
    and ``high`` (the ``<prefix>_<level>`` settings, e.g. ``wasserstein_low``), as
    ``{"low": .., "medium": .., "high": ..}``; None for ``none`` or when one is not a
    finite number."""
    prefix = CUTOFF_PREFIX.get(kind)
    if prefix is None:
        return None
    out: dict[str, float] = {}
    for level in (Severity.LOW, Severity.MEDIUM, Severity.HIGH):
        value = _optional_number(settings.get(f"{prefix}_{level.value}"))
        if value is None:
            return None
        out[level.value] = value
    return out


_E = TypeVar("_E", bound=enum.Enum)


@dataclass(frozen=True, kw_only=True)
class TestResult:
    """One feature's two-sample test, corrected within the report's family.

    ``threshold`` is the smallest effect size that counts as drift (the ``*_low`` cut-off of
    the test's effect-size kind); ``alpha`` is the family-wise alpha the adjusted p-value was
    compared with. ``severity`` is ``none`` unless ``significant`` and the effect reaches
    ``threshold``.
    """

    __test__ = False  # not a pytest test class, whatever its name

    feature: str
    section: SectionName
    test: TestKind
    statistic: float
    p_value: float
    p_adjusted: float
    effect_size: float
    effect_size_kind: EffectKind
    threshold: float
    alpha: float
    significant: bool
    severity: Severity
    baseline_mean: float
    current_mean: float
    baseline_n: int
    current_n: int

    def to_dict(self) -> dict[str, object]:
        return {
            "feature": self.feature, "section": self.section.value, "test": self.test.value,
            "statistic": self.statistic, "p_value": self.p_value, "p_adjusted": self.p_adjusted,
            "effect_size": self.effect_size, "effect_size_kind": self.effect_size_kind.value,
            "threshold": self.threshold, "alpha": self.alpha, "significant": self.significant,
            "severity": self.severity.value, "baseline_mean": self.baseline_mean,
            "current_mean": self.current_mean, "baseline_n": self.baseline_n,
            "current_n": self.current_n,
        }

    @classmethod
    def from_dict(cls, data: object, where: str = "test") -> TestResult:
        """The ``TestResult`` of a ``to_dict()`` dict; raises ``ReportFormatError``."""
        d = _Reader(data, where, partial=False)
        return cls(
            feature=d.text("feature"), section=d.choice("section", SectionName),
            test=d.choice("test", TestKind), statistic=d.number("statistic"),
            p_value=d.number("p_value"), p_adjusted=d.number("p_adjusted"),
            effect_size=d.number("effect_size"),
            effect_size_kind=d.choice("effect_size_kind", EffectKind),
            threshold=d.number("threshold"), alpha=d.number("alpha"),
            significant=d.flag("significant"), severity=d.severity("severity"),
            baseline_mean=d.number("baseline_mean"), current_mean=d.number("current_mean"),
            baseline_n=d.integer("baseline_n"), current_n=d.integer("current_n"),
        )


@dataclass(frozen=True, kw_only=True)
class Section:
    """What every drift section has: its verdict, whether it ran (else ``reason`` says why)
    and its tests. ``drift_detected`` is ``severity > none``.

    A section with ``available`` false and no ``reason`` is *absent*: only
    ``DriftReport.from_dict(..., partial=True)`` makes one, for a section a hand-made dict
    left out.
    """

    severity: Severity = Severity.NONE
    available: bool = True
    tests: list[TestResult] = field(default_factory=list)
    reason: str | None = None

    @property
    def drift_detected(self) -> bool:
        return self.severity > Severity.NONE

    @property
    def absent(self) -> bool:
        """True for a section the report did not have (see the class docstring)."""
        return not self.available and self.reason is None

    def values(self) -> dict[str, object]:
        """The section's own headline values, in their JSON order (none here)."""
        return {}

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"severity": self.severity.value,
                                  "drift_detected": self.drift_detected,
                                  "available": self.available}
        if self.reason is not None:
            out["reason"] = self.reason
        out.update(self.values())
        out["tests"] = [t.to_dict() for t in self.tests]
        return out


@dataclass(frozen=True)
class ChannelMeans:
    """Mean over images of each image's R, G, B mean (0..255), baseline and tonight."""

    baseline: list[float]
    current: list[float]


@dataclass(frozen=True)
class Histograms:
    """Pixel-value shares per channel (``RGB_CHANNELS``) in ``bins`` bins, baseline and tonight."""

    bins: int
    baseline: dict[str, list[float]]
    current: dict[str, list[float]]


@dataclass(frozen=True, kw_only=True)
class PixelSection(Section):
    """``pixel_distribution_drift``: the image features' tests and the seed's pixel shift.

    ``overall_mean_shift`` = mean over c in R, G, B of |μ_cur,c − μ_base,c| / 255.
    """

    overall_mean_shift: float
    channel_means: ChannelMeans = field(default_factory=lambda: ChannelMeans([], []))
    histograms: Histograms = field(default_factory=lambda: Histograms(0, {}, {}))

    def values(self) -> dict[str, object]:
        return {
            "overall_mean_shift": self.overall_mean_shift,
            "channel_means": {"baseline": list(self.channel_means.baseline),
                              "current": list(self.channel_means.current)},
            "histograms": {"bins": self.histograms.bins,
                           "baseline": {k: list(v) for k, v in self.histograms.baseline.items()},
                           "current": {k: list(v) for k, v in self.histograms.current.items()}},
        }


@dataclass(frozen=True, kw_only=True)
class ConfidenceSection(Section):
    """``confidence_drift``: the model outputs' tests; shifts are current − baseline.

    ``estimated_accuracy_change``: in a version-2 report, the accuracy estimate's change
    (``accuracy_estimate.estimate − baseline_accuracy``) when a labelled baseline gives one,
    else None (JSON ``null``; ``accuracy_estimate.reason`` says why). Version-1 reports held
    ``mean_confidence_shift`` there under that name; they read back as they were.
    """

    mean_confidence_shift: float = 0.0
    baseline_mean_confidence: float = 0.0
    current_mean_confidence: float = 0.0
    estimated_accuracy_change: float | None = 0.0

    def values(self) -> dict[str, object]:
        return {
            "mean_confidence_shift": self.mean_confidence_shift,
            "baseline_mean_confidence": self.baseline_mean_confidence,
            "current_mean_confidence": self.current_mean_confidence,
            "estimated_accuracy_change": self.estimated_accuracy_change,
        }


@dataclass(frozen=True)
class ClassShare:
    """One class's share of the predictions, baseline and tonight."""

    index: int
    label: str
    baseline_share: float
    current_share: float


@dataclass(frozen=True, kw_only=True)
class ClassSection(Section):
    """``class_distribution_drift``: the predicted-class test and the class mix.

    ``wasserstein_distance`` is between the predicted-class share vectors, in class index
    space divided by k − 1; ``chi2_statistic`` / ``p_value`` are the predicted-class test's.
    """

    wasserstein_distance: float = 0.0
    chi2_statistic: float = 0.0
    p_value: float = 1.0
    classes: list[ClassShare] = field(default_factory=list)

    def values(self) -> dict[str, object]:
        return {
            "wasserstein_distance": self.wasserstein_distance,
            "chi2_statistic": self.chi2_statistic,
            "p_value": self.p_value,
            "classes": [{"index": c.index, "label": c.label, "baseline_share": c.baseline_share,
                         "current_share": c.current_share} for c in self.classes],
        }


@dataclass(frozen=True, kw_only=True)
class EmbeddingSection(Section):
    """``embedding_drift``: the multivariate test on the model's penultimate-layer embedding.

    One test (``TestKind.MMD``, effect ``EffectKind.AUC``) in the report's corrected family.
    ``tensor``/``dim`` name the embedding; the test ran on ``baseline_used``/``current_used``
    of the ``baseline_rows``/``current_rows`` sampled embeddings (``subsampled``: fewer than
    the images, which bounds the cost); ``auc`` is the probe's held-out AUC, ``mmd2`` the
    squared MMD; ``permutations`` the permutation draws. ``note`` says the same in words.
    """

    tensor: str = ""
    dim: int = 0
    components: int = 0
    baseline_rows: int = 0
    current_rows: int = 0
    baseline_used: int = 0
    current_used: int = 0
    permutations: int = 0
    auc: float = 0.5
    mmd2: float = 0.0
    note: str = ""

    def values(self) -> dict[str, object]:
        return {"tensor": self.tensor, "dim": self.dim, "components": self.components,
                "baseline_rows": self.baseline_rows, "current_rows": self.current_rows,
                "baseline_used": self.baseline_used, "current_used": self.current_used,
                "permutations": self.permutations, "auc": self.auc, "mmd2": self.mmd2,
                "note": self.note}


@dataclass(frozen=True, kw_only=True)
class AccuracySection:
    """``accuracy_estimate``: tonight's accuracy estimated from the model's confidence,
    calibrated on a labelled baseline (confidence-based performance estimation, CBPE).

    Without a labelled baseline ``available`` is false and ``reason`` says why; the numbers
    are then None (JSON ``null``), never a stand-in. ``low``/``high`` bound the estimate at
    ``level`` coverage; ``baseline_accuracy`` is the labelled baseline's true accuracy
    (``labelled_images`` of them); ``change`` = ``estimate − baseline_accuracy``;
    ``images`` the night's images the estimate used; ``method`` how it was made.
    """

    available: bool = False
    reason: str | None = None
    method: str = "cbpe"
    level: float = 0.9
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    change: float | None = None
    baseline_accuracy: float | None = None
    labelled_images: int = 0
    images: int = 0

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"available": self.available}
        if self.reason is not None:
            out["reason"] = self.reason
        out.update({"method": self.method, "level": self.level, "estimate": self.estimate,
                    "low": self.low, "high": self.high, "change": self.change,
                    "baseline_accuracy": self.baseline_accuracy,
                    "labelled_images": self.labelled_images, "images": self.images})
        return out


@dataclass(frozen=True)
class FileIssue:
    """How many files had one data-quality issue, and the first few of them."""

    count: int
    examples: list[str]


@dataclass(frozen=True)
class DataQuality:
    """File-level problems of the current folder; severity from the share of bad files.

    ``issues`` holds every ``QualityIssue`` (in that order) in a report driftd made; only a
    partial hand-made dict (``from_dict(..., partial=True)``) may leave it empty.
    """

    severity: Severity
    total_files: int
    analyzed: int
    issues: dict[str, FileIssue]

    def count(self, issues: Iterable[str]) -> int:
        """Files with any of ``issues`` (a missing issue counts 0)."""
        return sum(self.issues[k].count for k in issues if k in self.issues)

    def to_dict(self) -> dict[str, object]:
        return {"severity": self.severity.value, "total_files": self.total_files,
                "analyzed": self.analyzed,
                "issues": {k: {"count": v.count, "examples": list(v.examples)}
                           for k, v in self.issues.items()}}


@dataclass(frozen=True)
class AtypicalImage:
    """One of the most atypical current images for a drifted feature."""

    path: str
    file: str
    feature: str
    value: float
    baseline_median: float


@dataclass(frozen=True, kw_only=True)
class DriftReport:
    """The drift report; ``to_dict()`` is the JSON contract (docs/ARCHITECTURE.md).

    ``overall_severity`` is the highest of the sections' severities (data quality and the
    embedding section included) and ``overall_drift_detected`` is ``overall_severity > none``.
    ``embedding`` and ``accuracy`` are None only in a version-1 report (``schema_version``),
    which had neither section.
    """

    report_id: str
    timestamp: datetime
    data_dir: str
    drift_summary: str
    baseline_image_count: int
    current_image_count: int
    settings: dict[str, SettingValue]
    pixel: PixelSection
    confidence: ConfidenceSection
    classes: ClassSection
    data_quality: DataQuality
    atypical_images: list[AtypicalImage] = field(default_factory=list)
    embedding: EmbeddingSection | None = None
    accuracy: AccuracySection | None = None
    schema_version: int = SCHEMA_VERSION

    @property
    def overall_severity(self) -> Severity:
        return Severity.highest([self.pixel.severity, self.confidence.severity,
                                 self.classes.severity, self.data_quality.severity,
                                 self.embedding.severity if self.embedding else Severity.NONE])

    @property
    def overall_drift_detected(self) -> bool:
        return self.overall_severity > Severity.NONE

    @property
    def sections(self) -> tuple[tuple[SectionName, Section], ...]:
        """The test sections with their names, in report order (the embedding section when
        the report has one)."""
        base: tuple[tuple[SectionName, Section], ...] = (
            (SectionName.PIXEL, self.pixel), (SectionName.CONFIDENCE, self.confidence),
            (SectionName.CLASSES, self.classes))
        if self.embedding is not None:
            return (*base, (SectionName.EMBEDDING, self.embedding))
        return base

    @property
    def tests(self) -> list[TestResult]:
        """Every test of the report's one corrected family, in report order."""
        return [t for _, section in self.sections for t in section.tests]

    def severity_of(self, name: SectionName) -> Severity:
        """The severity of section ``name`` (data quality included; a section the report
        does not have is ``none``)."""
        if name is SectionName.DATA_QUALITY:
            return self.data_quality.severity
        section = dict(self.sections).get(name)
        return Severity.NONE if section is None else section.severity

    def to_dict(self) -> dict[str, object]:
        """The JSON contract: every key the seed reads, in the documented order."""
        out: dict[str, object] = {
            "schema_version": self.schema_version,
            "report_id": self.report_id,
            "timestamp": self.timestamp.isoformat(),
            "data_dir": self.data_dir,
            "overall_drift_detected": self.overall_drift_detected,
            "overall_severity": self.overall_severity.value,
            "drift_summary": self.drift_summary,
            "baseline_image_count": self.baseline_image_count,
            "current_image_count": self.current_image_count,
            "settings": dict(self.settings),
            SectionName.PIXEL.value: self.pixel.to_dict(),
            SectionName.CONFIDENCE.value: self.confidence.to_dict(),
            SectionName.CLASSES.value: self.classes.to_dict(),
        }
        if self.embedding is not None:
            out[SectionName.EMBEDDING.value] = self.embedding.to_dict()
        if self.accuracy is not None:
            out[ACCURACY_SECTION] = self.accuracy.to_dict()
        out[SectionName.DATA_QUALITY.value] = self.data_quality.to_dict()
        out["atypical_images"] = [
            {"path": a.path, "file": a.file, "feature": a.feature, "value": a.value,
             "baseline_median": a.baseline_median} for a in self.atypical_images]
        return out

    @classmethod
    def from_dict(cls, data: object, *, partial: bool = False) -> DriftReport:
        """The report of a ``to_dict()`` dict (a report file, a stored row, an API answer).

        Unknown keys are ignored; a ``null`` number reads as NaN (the JSON writer turns NaN
        into ``null``). The derived keys (``overall_severity``, ``overall_drift_detected``,
        each section's ``drift_detected``) must agree with the sections.

        ``partial``: read a hand-made dict that has only the seed's keys (``timestamp``,
        ``overall_drift_detected``, ``drift_summary``, the image counts and
        ``pixel_distribution_drift`` with ``severity`` and ``overall_mean_shift``), as
        ``generate_html_report`` accepts: other keys may be missing (numbers read as NaN,
        texts as empty, lists as empty, a missing model section as absent, with the seed's
        0 for its numbers) and the derived keys need not agree with the sections. Each
        entry of a list that is there must still be complete.

        Raises ``ReportFormatError`` naming the key and what is wrong with it.
        """
        d = _Reader(data, "drift report", partial)
        version = d.raw("schema_version")
        if not partial and version not in READABLE_SCHEMA_VERSIONS:
            raise ReportFormatError(
                f"drift report has schema_version {version!r}; this driftd reads versions "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))} (a report from a newer "
                "driftd? upgrade driftd)")
        if version not in READABLE_SCHEMA_VERSIONS:
            version = SCHEMA_VERSION
        pixel = d.child(SectionName.PIXEL, required=True)
        report = cls(
            report_id=d.text("report_id"),
            timestamp=d.moment("timestamp"),
            data_dir=d.text("data_dir"),
            drift_summary=d.text("drift_summary", required=True),
            baseline_image_count=d.integer("baseline_image_count", required=True),
            current_image_count=d.integer("current_image_count", required=True),
            settings=d.settings("settings"),
            pixel=_pixel(pixel),
            confidence=_confidence(d.child(SectionName.CONFIDENCE)),
            classes=_classes(d.child(SectionName.CLASSES)),
            data_quality=_quality(d.child(SectionName.DATA_QUALITY)),
            atypical_images=[_atypical(a) for a in d.entries("atypical_images")],
            # Version 1 had neither section (compare() always writes both now).
            embedding=_embedding(d.optional_child(SectionName.EMBEDDING)),
            accuracy=_accuracy(d.optional_child(ACCURACY_SECTION)),
            schema_version=version if isinstance(version, int) else SCHEMA_VERSION,
        )
        if partial:
            d.severity("overall_severity")
            d.flag("overall_drift_detected")
        else:
            d.agrees("overall_severity", report.overall_severity.value)
            d.agrees("overall_drift_detected", report.overall_drift_detected)
        return report


def metric_rows(report: DriftReport) -> list[tuple[str, float]]:
    """Flat ``(metric_name, value)`` rows of a report (docs/ARCHITECTURE.md "Metric rows").

    The seed's names come first: ``pixel_mean_shift``, ``confidence_shift``,
    ``drift_detected`` (0/1); then ``overall_severity_rank`` (0..3), ``current_image_count``,
    ``<section>.severity_rank``, ``<feature>.effect_size`` / ``<feature>.p_value`` per test,
    ``class_share.<label>`` per class and ``data_quality.<issue>`` counts.
    """
    rows: list[tuple[str, float]] = [
        (Metric.PIXEL_MEAN_SHIFT, float(report.pixel.overall_mean_shift)),
        (Metric.CONFIDENCE_SHIFT, float(report.confidence.mean_confidence_shift)),
        (Metric.DRIFT_DETECTED, 1.0 if report.overall_drift_detected else 0.0),
        (Metric.OVERALL_SEVERITY_RANK, float(report.overall_severity.rank)),
        (Metric.CURRENT_IMAGE_COUNT, float(report.current_image_count)),
    ]
    for name in SectionName:
        if name is SectionName.EMBEDDING and report.embedding is None:
            continue  # a version-1 report: its rows stay as they were
        rows.append((f"{name}.severity_rank", float(report.severity_of(name).rank)))
    for test in report.tests:
        rows.append((f"{test.feature}.effect_size", float(test.effect_size)))
        rows.append((f"{test.feature}.p_value", float(test.p_value)))
    for cls in report.classes.classes:
        rows.append((f"class_share.{cls.label}", float(cls.current_share)))
    for issue, value in report.data_quality.issues.items():
        rows.append((f"{SectionName.DATA_QUALITY}.{issue}", float(value.count)))
    accuracy = report.accuracy
    if accuracy is not None and accuracy.available and accuracy.estimate is not None:
        rows += [(Metric.ACCURACY_ESTIMATE, float(accuracy.estimate)),
                 (Metric.ACCURACY_LOW, float(accuracy.low if accuracy.low is not None
                                             else math.nan)),
                 (Metric.ACCURACY_HIGH, float(accuracy.high if accuracy.high is not None
                                              else math.nan))]
    return [(str(name), value) for name, value in rows]


@dataclass(frozen=True)
class TrendPoint:
    """One night of the HTML report's trend strip (``render_html``'s ``history``).

    ``date`` is the folder date (``YYYY-MM-DD``); ``overall_severity`` is None when the
    point's severity is missing or not a severity; the shifts are None when unknown (a
    night without a model has no confidence shift). ``accuracy_*`` are the night's accuracy
    estimate and its interval (None without a labelled baseline); ``embedding_effect`` the
    embedding test's effect size (None without it).
    """

    report_id: str | None
    date: str | None
    overall_severity: Severity | None
    pixel_mean_shift: float | None
    confidence_shift: float | None
    drift_detected: bool
    accuracy_estimate: float | None = None
    accuracy_low: float | None = None
    accuracy_high: float | None = None
    embedding_effect: float | None = None

    @classmethod
    def of_report(cls, report: DriftReport) -> TrendPoint:
        """Tonight's point, from the report itself."""
        confidence = report.confidence
        accuracy = report.accuracy if report.accuracy and report.accuracy.available else None
        embedding = [t for t in report.embedding.tests if t.baseline_n] if report.embedding \
            else []
        return cls(
            report_id=report.report_id,
            date=folder_date(report.report_id),
            overall_severity=report.overall_severity,
            pixel_mean_shift=_finite(report.pixel.overall_mean_shift),
            # Without a model the section holds 0.0 placeholders; a gap reads truer than 0.
            confidence_shift=(_finite(confidence.mean_confidence_shift)
                              if confidence.available else None),
            drift_detected=report.overall_drift_detected,
            accuracy_estimate=accuracy.estimate if accuracy else None,
            accuracy_low=accuracy.low if accuracy else None,
            accuracy_high=accuracy.high if accuracy else None,
            embedding_effect=_finite(embedding[0].effect_size) if embedding else None,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TrendPoint:
        """A point of the documented history format (any key may be missing)::

            {"report_id": "20261125", "date": "2026-11-25", "overall_severity": "low",
             "pixel_mean_shift": 0.01, "confidence_shift": -0.02, "drift_detected": false,
             "accuracy_estimate": 0.91, "accuracy_estimate.low": 0.87,
             "accuracy_estimate.high": 0.94, "embedding.effect_size": 0.01}
        """
        report_id = data.get("report_id")
        day = data.get("date")
        try:
            severity: Severity | None = Severity.parse(str(data.get("overall_severity")))
        except ValueError:
            severity = None
        return cls(
            report_id=None if report_id is None else str(report_id),
            date=None if day is None else str(day),
            overall_severity=severity,
            pixel_mean_shift=_optional_number(data.get(Metric.PIXEL_MEAN_SHIFT)),
            confidence_shift=_optional_number(data.get(Metric.CONFIDENCE_SHIFT)),
            drift_detected=bool(data.get(Metric.DRIFT_DETECTED, False)),
            accuracy_estimate=_optional_number(data.get(Metric.ACCURACY_ESTIMATE)),
            accuracy_low=_optional_number(data.get(Metric.ACCURACY_LOW)),
            accuracy_high=_optional_number(data.get(Metric.ACCURACY_HIGH)),
            embedding_effect=_optional_number(data.get(Metric.EMBEDDING_EFFECT)),
        )


def folder_date(report_id: str) -> str:
    """``YYYY-MM-DD`` for a nightly report id (``YYYYMMDD``); any other id as it is."""
    if len(report_id) == 8 and report_id.isdigit():
        return f"{report_id[:4]}-{report_id[4:6]}-{report_id[6:]}"
    return report_id


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _optional_number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


_MISSING = object()


class _Reader:
    """Reads one JSON object of a report, naming the key path in every error."""

    def __init__(self, data: object, where: str, partial: bool) -> None:
        if not isinstance(data, Mapping):
            raise ReportFormatError(
                f"{where} must be a JSON object (a dict from DriftReport.to_dict() or "
                f"detect_drift()); got {type(data).__name__}")
        self.data: Mapping[str, object] = data
        self.where = where
        self.partial = partial

    def _error(self, key: str, problem: str) -> ReportFormatError:
        return ReportFormatError(f"{self.where}: {key} {problem}; the report is damaged or "
                                 "not a driftd drift report (rewrite it with detect_drift())")

    def raw(self, key: str, required: bool = False) -> object:
        if key in self.data:
            return self.data[key]
        if self.partial and not required:
            return _MISSING
        raise self._error(key, "is missing")

    def number(self, key: str, required: bool = False) -> float:
        value = self.raw(key, required)
        if value is _MISSING or value is None:
            return math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"is {value!r}, not a number")
        # ints stay ints, so a threshold configured as 1 is written back as 1, not 1.0
        return value

    def nullable_number(self, key: str) -> float | None:
        """A number that may be ``null`` (None: no value, not NaN); missing reads as NaN."""
        if self.data.get(key, _MISSING) is None:
            return None
        return self.number(key)

    def integer(self, key: str, required: bool = False) -> int:
        value = self.raw(key, required)
        if value is _MISSING:
            return 0
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(key, f"is {value!r}, not a whole number")
        return value

    def text(self, key: str, required: bool = False) -> str:
        value = self.raw(key, required)
        if value is _MISSING:
            return ""
        if not isinstance(value, str):
            raise self._error(key, f"is {value!r}, not a text")
        return value

    def optional_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._error(key, f"is {value!r}, not a text")
        return value

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw(key)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise self._error(key, f"is {value!r}, not true or false")
        return value

    def severity(self, key: str, required: bool = False) -> Severity:
        value = self.raw(key, required)
        if value is _MISSING:
            return Severity.NONE
        if not isinstance(value, str):
            raise self._error(key, f"is {value!r}, not a severity")
        try:
            return Severity.parse(value)
        except ValueError as err:
            raise self._error(key, str(err)) from None

    def choice(self, key: str, kind: type[_E]) -> _E:
        value = self.raw(key)
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise self._error(key, f"is {value!r}; expected one of {allowed}") from None

    def moment(self, key: str) -> datetime:
        value = self.raw(key, required=True)
        if not isinstance(value, str):
            raise self._error(key, f"is {value!r}, not an ISO 8601 time")
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise self._error(key, f"is {value!r}, not an ISO 8601 time") from None

    def numbers(self, value: object, key: str) -> list[float]:
        if not isinstance(value, list):
            raise self._error(key, f"is {value!r}, not a list of numbers")
        out: list[float] = []
        for item in value:
            if item is None:
                out.append(math.nan)
            elif isinstance(item, bool) or not isinstance(item, int | float):
                raise self._error(key, f"holds {item!r}, not a number")
            else:
                out.append(item)
        return out

    def entries(self, key: str) -> list[Mapping[str, object]]:
        value = self.raw(key)
        if value is _MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
            raise self._error(key, "is not a list of objects")
        return list(value)

    def optional_child(self, key: str) -> _Reader | None:
        """The reader of object ``key``, or None when the dict lacks it (any mode)."""
        return self.child(key) if key in self.data else None

    def child(self, key: str, required: bool = False) -> _Reader | None:
        """The reader of object ``key`` (None when a partial dict lacks it)."""
        value = self.raw(key, required)
        if value is _MISSING:
            return None
        return _Reader(value, f"{self.where}.{key}" if self.where != "drift report" else key,
                       self.partial)

    def settings(self, key: str) -> dict[str, SettingValue]:
        value = self.raw(key)
        if value is _MISSING:
            return {}
        if not isinstance(value, Mapping):
            raise self._error(key, "is not an object")
        out: dict[str, SettingValue] = {}
        for name, item in value.items():
            if item is not None and not isinstance(item, bool | int | float | str):
                raise self._error(f"{key}.{name}", f"is {item!r}, not a plain value")
            out[str(name)] = item
        return out

    def agrees(self, key: str, derived: object) -> None:
        """Check a derived key against what the report's sections say."""
        value = self.raw(key)
        if value != derived:
            raise self._error(key, f"is {value!r} but the sections say {derived!r}")


@dataclass(frozen=True)
class _Common:
    """The keys every section has, read once for the three section types."""

    severity: Severity
    available: bool
    reason: str | None
    tests: list[TestResult]


def _common(d: _Reader) -> _Common:
    severity = d.severity("severity", required=True)
    available = d.flag("available", default=True)
    reason = d.optional_text("reason")
    if d.partial and not available and reason is None:
        reason = "not available"  # what a reader shows for an unexplained gap
    if d.partial:
        d.flag("drift_detected")
    else:
        d.agrees("drift_detected", severity > Severity.NONE)
    tests = [TestResult.from_dict(t, f"{d.where}.tests[{i}]")
             for i, t in enumerate(d.entries("tests"))]
    return _Common(severity, available, reason, tests)


def _pixel(d: _Reader | None) -> PixelSection:
    assert d is not None  # required
    means = d.child("channel_means")
    hist = d.child("histograms")
    c = _common(d)
    return PixelSection(
        severity=c.severity, available=c.available, reason=c.reason, tests=c.tests,
        overall_mean_shift=d.number("overall_mean_shift", required=True),
        channel_means=ChannelMeans(
            means.numbers(means.raw("baseline"), "baseline") if means else [],
            means.numbers(means.raw("current"), "current") if means else []),
        histograms=Histograms(
            hist.integer("bins") if hist else 0,
            _channels(hist, "baseline"), _channels(hist, "current")),
    )


def _channels(d: _Reader | None, key: str) -> dict[str, list[float]]:
    side = d.child(key) if d else None
    if side is None:
        return {}
    return {str(ch): side.numbers(v, str(ch)) for ch, v in side.data.items()}


def _confidence(d: _Reader | None) -> ConfidenceSection:
    if d is None:
        return ConfidenceSection(available=False)  # absent: the seed reads its numbers as 0
    c = _common(d)
    return ConfidenceSection(
        severity=c.severity, available=c.available, reason=c.reason, tests=c.tests,
        mean_confidence_shift=d.number("mean_confidence_shift"),
        baseline_mean_confidence=d.number("baseline_mean_confidence"),
        current_mean_confidence=d.number("current_mean_confidence"),
        estimated_accuracy_change=d.nullable_number("estimated_accuracy_change"),
    )


def _classes(d: _Reader | None) -> ClassSection:
    if d is None:
        return ClassSection(available=False)  # absent: the seed reads its numbers as 0
    shares = []
    for i, item in enumerate(d.entries("classes")):
        entry = _Reader(item, f"{d.where}.classes[{i}]", partial=False)
        shares.append(ClassShare(entry.integer("index"), entry.text("label"),
                                 entry.number("baseline_share"), entry.number("current_share")))
    c = _common(d)
    return ClassSection(
        severity=c.severity, available=c.available, reason=c.reason, tests=c.tests,
        wasserstein_distance=d.number("wasserstein_distance"),
        chi2_statistic=d.number("chi2_statistic"),
        p_value=d.number("p_value"),
        classes=shares,
    )


def _embedding(d: _Reader | None) -> EmbeddingSection | None:
    if d is None:
        return None  # a version-1 report, or a hand-made one without it
    c = _common(d)
    return EmbeddingSection(
        severity=c.severity, available=c.available, reason=c.reason, tests=c.tests,
        tensor=d.text("tensor"), dim=d.integer("dim"), components=d.integer("components"),
        baseline_rows=d.integer("baseline_rows"), current_rows=d.integer("current_rows"),
        baseline_used=d.integer("baseline_used"), current_used=d.integer("current_used"),
        permutations=d.integer("permutations"), auc=d.number("auc"), mmd2=d.number("mmd2"),
        note=d.text("note"),
    )


def _accuracy(d: _Reader | None) -> AccuracySection | None:
    if d is None:
        return None
    return AccuracySection(
        available=d.flag("available"), reason=d.optional_text("reason"),
        method=d.text("method"), level=d.number("level"),
        estimate=d.nullable_number("estimate"), low=d.nullable_number("low"),
        high=d.nullable_number("high"), change=d.nullable_number("change"),
        baseline_accuracy=d.nullable_number("baseline_accuracy"),
        labelled_images=d.integer("labelled_images"), images=d.integer("images"),
    )


def _quality(d: _Reader | None) -> DataQuality:
    if d is None:
        return DataQuality(Severity.NONE, 0, 0, {})
    issues: dict[str, FileIssue] = {}
    block = d.child("issues")
    for name, value in (block.data.items() if block else ()):
        entry = _Reader(value, f"{d.where}.issues.{name}", partial=False)
        examples = entry.raw("examples")
        if not isinstance(examples, list) or not all(isinstance(e, str) for e in examples):
            raise entry._error("examples", "is not a list of file names")
        issues[str(name)] = FileIssue(entry.integer("count"), list(examples))
    return DataQuality(d.severity("severity", required=True), d.integer("total_files"),
                       d.integer("analyzed"), issues)


def _atypical(data: Mapping[str, object]) -> AtypicalImage:
    d = _Reader(data, "atypical_images[]", partial=False)
    return AtypicalImage(d.text("path"), d.text("file"), d.text("feature"), d.number("value"),
                         d.number("baseline_median"))
