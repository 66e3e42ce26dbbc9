"""``compare(baseline, current, options, now)`` → ``DriftReport``, and its metric rows.

All two-sample tests of one report — image features and model outputs alike — form ONE
family whose p-values are corrected together (``options.correction``, Holm by default) at the
family-wise ``options.alpha``. A test whose pooled sample (baseline and current together)
holds a single value — every image 28×28, every file a PNG — cannot reject and is left out
of the family (reported with ``p_adjusted`` 1.0): the choice depends only on the pooled
sample, not on how it splits between the two sides, so the family-wise level still holds,
and the remaining tests are not diluted by tests that could never fire. A test is
*significant* when its adjusted p-value is at most ``alpha``; its severity then comes from
its effect size (``options.wasserstein_*`` for continuous features, ``options.tvd_*`` for
categorical ones), so a large night does not alarm on a trivial difference. Categorical tests
(``analyzer.stats.category_test``) take their p-value from permutations, so they hold their
level for any number of categories and any night size (a 1,000-class model's predicted class
on a night of 30 images included). A section's
severity is the highest of its tests; ``overall_severity`` is the highest of the sections
(data quality included) and ``overall_drift_detected`` is ``overall_severity != "none"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from analyzer.dataset import MODEL_FEATURES
from analyzer.errors import AnalyzerError, BaselineError
from analyzer.images import FEATURES, ISSUES
from analyzer.options import AnalyzerOptions
from analyzer.profile import OTHER, Categories, Issue, Profile
from analyzer.severity import Severity
from analyzer.stats import TwoSample, adjust, category_test, ks_test, severity_from_effect

SCHEMA_VERSION = 1
PIXEL, CONFIDENCE, CLASSES = (
    "pixel_distribution_drift", "confidence_drift", "class_distribution_drift")
IMAGE_CATEGORIES = ("format", "mode")
_BAD_FILES = ("unreadable", "truncated", "zero_byte")
_ATYPICAL_FEATURES = 5


@dataclass(frozen=True)
class TestResult:
    """One feature's two-sample test, corrected within the report's family.

    ``threshold`` is the smallest effect size that counts as drift (the ``*_low`` cut-off of
    the test's effect-size kind); ``alpha`` is the family-wise alpha the adjusted p-value was
    compared with. ``severity`` is ``none`` unless ``significant`` and the effect reaches
    ``threshold``.
    """

    feature: str
    section: str
    test: str
    statistic: float
    p_value: float
    p_adjusted: float
    effect_size: float
    effect_size_kind: str
    threshold: float
    alpha: float
    significant: bool
    severity: Severity
    baseline_mean: float
    current_mean: float
    baseline_n: int
    current_n: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature, "section": self.section, "test": self.test,
            "statistic": self.statistic, "p_value": self.p_value, "p_adjusted": self.p_adjusted,
            "effect_size": self.effect_size, "effect_size_kind": self.effect_size_kind,
            "threshold": self.threshold, "alpha": self.alpha, "significant": self.significant,
            "severity": self.severity.value, "baseline_mean": self.baseline_mean,
            "current_mean": self.current_mean, "baseline_n": self.baseline_n,
            "current_n": self.current_n,
        }


@dataclass(frozen=True)
class Section:
    """One drift section: its verdict, its tests and its section-specific headline values."""

    severity: Severity
    available: bool
    tests: list[TestResult]
    values: dict[str, Any]
    reason: str | None = None

    @property
    def drift_detected(self) -> bool:
        return self.severity > Severity.NONE

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity.value,
                               "drift_detected": self.drift_detected,
                               "available": self.available}
        if self.reason is not None:
            out["reason"] = self.reason
        out.update(self.values)
        out["tests"] = [t.to_dict() for t in self.tests]
        return out


@dataclass(frozen=True)
class DataQuality:
    """File-level problems of the current folder; severity from the share of bad files."""

    severity: Severity
    total_files: int
    analyzed: int
    issues: dict[str, Issue]

    def to_dict(self) -> dict[str, Any]:
        return {"severity": self.severity.value, "total_files": self.total_files,
                "analyzed": self.analyzed,
                "issues": {k: v.to_dict() for k, v in self.issues.items()}}


@dataclass(frozen=True)
class DriftReport:
    """The drift report; ``to_dict()`` is the JSON contract (docs/ARCHITECTURE.md)."""

    report_id: str
    timestamp: datetime
    data_dir: str
    baseline_image_count: int
    current_image_count: int
    settings: dict[str, Any]
    pixel: Section
    confidence: Section
    classes: Section
    data_quality: DataQuality
    atypical_images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def overall_severity(self) -> Severity:
        return Severity.highest([self.pixel.severity, self.confidence.severity,
                                 self.classes.severity, self.data_quality.severity])

    @property
    def overall_drift_detected(self) -> bool:
        return self.overall_severity > Severity.NONE

    @property
    def tests(self) -> list[TestResult]:
        return self.pixel.tests + self.confidence.tests + self.classes.tests

    def summary(self) -> str:
        """One human sentence: the verdict and what drove it."""
        if not self.overall_drift_detected:
            run = [t for t in self.tests if t.baseline_n]
            return (f"No drift: none of {len(run)} tests shifted at family-wise alpha "
                    f"{self.settings['alpha']} ({self.settings['correction']}).")
        parts = []
        for section, noun in ((self.pixel, "image features"), (self.confidence, "model outputs"),
                              (self.classes, "predicted classes")):
            hits = sorted((t for t in section.tests if t.severity > Severity.NONE),
                          key=lambda t: -t.effect_size)
            if hits:
                names = [t.feature for t in hits[:2]]
                more = f" and {len(hits) - 2} more" if len(hits) > 2 else ""
                parts.append(f"{', '.join(names)}{more} {noun} shifted")
        bad = sum(self.data_quality.issues[k].count for k in _BAD_FILES)
        if self.data_quality.severity > Severity.NONE:
            parts.append(f"{bad} of {self.data_quality.total_files} files unreadable")
        return f"{self.overall_severity.value.capitalize()} drift: {'; '.join(parts)}."

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "report_id": self.report_id,
            "timestamp": self.timestamp.isoformat(),
            "data_dir": self.data_dir,
            "overall_drift_detected": self.overall_drift_detected,
            "overall_severity": self.overall_severity.value,
            "drift_summary": self.summary(),
            "baseline_image_count": self.baseline_image_count,
            "current_image_count": self.current_image_count,
            "settings": dict(self.settings),
            PIXEL: self.pixel.to_dict(),
            CONFIDENCE: self.confidence.to_dict(),
            CLASSES: self.classes.to_dict(),
            "data_quality": self.data_quality.to_dict(),
            "atypical_images": [dict(a) for a in self.atypical_images],
        }


@dataclass(frozen=True)
class _Planned:
    feature: str
    section: str
    outcome: TwoSample | None  # None: too few samples, not part of the family
    constant: bool  # the pooled sample holds one value: reported, not part of the family
    baseline_mean: float
    current_mean: float
    baseline_n: int
    current_n: int


def _scale(base: Profile, feature: str) -> float:
    """Spread used to normalise the Wasserstein distance (see ``stats.wasserstein_norm``)."""
    m = base.moments[feature]
    return m.std if m.std > 1e-9 * max(1.0, abs(m.mean)) else max(abs(m.mean), 1.0)


def _plan_ks(base: Profile, cur: Profile, feature: str, section: str,
             options: AnalyzerOptions) -> _Planned:
    b, c = base.sample(feature), cur.sample(feature)
    enough = min(b.size, c.size) >= options.min_samples
    outcome = ks_test(b, c, _scale(base, feature)) if enough else None
    low, high = base.moments[feature], cur.moments[feature]
    constant = min(low.min, high.min) == max(low.max, high.max)
    return _Planned(feature, section, outcome, constant, base.moments[feature].mean,
                    cur.moments[feature].mean, base.moments[feature].count,
                    cur.moments[feature].count)


def _plan_chi2(base: Categories, cur: Categories, feature: str, section: str,
               options: AnalyzerOptions, permutations: int) -> _Planned:
    nb, nc = sum(base.counts.values()), sum(cur.counts.values())
    enough = min(nb, nc) >= options.min_samples
    outcome = category_test(base.counts, cur.counts, permutations, OTHER) if enough else None
    seen = {k for counts in (base.counts, cur.counts) for k, v in counts.items() if v > 0}
    return _Planned(feature, section, outcome, len(seen) <= 1, math.nan, math.nan, nb, nc)


def _finish(plans: list[_Planned], options: AnalyzerOptions) -> list[TestResult]:
    """Correct the whole family at once and grade each test."""
    run = [(i, p.outcome.p_value) for i, p in enumerate(plans)
           if p.outcome is not None and not p.constant]
    corrected = adjust([p for _, p in run], options.correction)
    adjusted = {i: q for (i, _), q in zip(run, corrected, strict=True)}
    results = []
    for i, p in enumerate(plans):
        o = p.outcome
        p_adj = adjusted.get(i, 1.0)
        significant = o is not None and p_adj <= options.alpha
        severity = Severity.NONE
        kind = "wasserstein" if o is None or o.effect_size_kind == "wasserstein_norm" else "tvd"
        cutoffs = [getattr(options, f"{kind}_{lvl}") for lvl in ("low", "medium", "high")]
        if o is not None and significant:
            severity = severity_from_effect(o.effect_size, *cutoffs)
        results.append(TestResult(
            feature=p.feature, section=p.section, test=o.test if o else "skipped",
            statistic=o.statistic if o else 0.0, p_value=o.p_value if o else 1.0,
            p_adjusted=p_adj, effect_size=o.effect_size if o else 0.0,
            effect_size_kind=o.effect_size_kind if o else "none", threshold=cutoffs[0],
            alpha=options.alpha,
            significant=significant, severity=severity,
            baseline_mean=_finite(p.baseline_mean), current_mean=_finite(p.current_mean),
            baseline_n=p.baseline_n if o else 0, current_n=p.current_n if o else 0,
        ))
    return results


def _finite(x: float) -> float:
    return 0.0 if math.isnan(x) else float(x)


def _histograms(profile: Profile, bins: int) -> dict[str, list[float]]:
    h = profile.histograms.reshape(3, bins, 256 // bins).sum(axis=2).astype(np.float64)
    total = h.sum(axis=1, keepdims=True)
    shares = np.divide(h, total, out=np.zeros_like(h), where=total > 0)
    return {ch: [round(float(v), 6) for v in shares[i]] for i, ch in enumerate("rgb")}


def _pixel_values(base: Profile, cur: Profile, options: AnalyzerOptions) -> dict[str, Any]:
    """``overall_mean_shift`` = mean over c in R, G, B of |μ_cur,c − μ_base,c| / 255.

    μ_c is the mean over images of each image's mean value of channel c (each image weighs
    the same, whatever its size), on the analysis image (see ``analyzer.images``), 0..255.
    So 0.0 = identical average colour, 1.0 = black versus white.
    """
    channels = ("mean_r", "mean_g", "mean_b")
    b = [base.moments[c].mean for c in channels]
    c = [cur.moments[c].mean for c in channels]
    return {
        "overall_mean_shift": float(np.mean(np.abs(np.subtract(c, b)))) / 255.0,
        "channel_means": {"baseline": b, "current": c},
        "histograms": {"bins": options.histogram_bins,
                       "baseline": _histograms(base, options.histogram_bins),
                       "current": _histograms(cur, options.histogram_bins)},
    }


def _model_unavailable(base: Profile, cur: Profile) -> str | None:
    if cur.model is None and base.model is None:
        return "no model_path given: model-output tests not run"
    if cur.model is None:
        return "the baseline has model outputs but this run had no model_path"
    if base.model is None:
        return "the baseline was profiled without a model; regenerate it with model_path"
    if base.model.labels != cur.model.labels:
        return (f"the baseline model's {base.model.num_classes} labels differ from this run's "
                f"{cur.model.num_classes}; regenerate the baseline with the current model")
    return None


def _class_values(base: Categories, cur: Categories, labels: list[str],
                  chi2: TestResult | None) -> dict[str, Any]:
    b = np.array([base.counts.get(label, 0) for label in labels], dtype=np.float64)
    c = np.array([cur.counts.get(label, 0) for label in labels], dtype=np.float64)
    bs, cs = b / max(b.sum(), 1.0), c / max(c.sum(), 1.0)
    k = len(labels)
    distance = 0.0
    if k > 1 and b.sum() and c.sum():
        idx = np.arange(k, dtype=np.float64)
        distance = float(sps.wasserstein_distance(idx, idx, bs, cs)) / (k - 1)
    return {
        "wasserstein_distance": distance,
        "chi2_statistic": chi2.statistic if chi2 else 0.0,
        "p_value": chi2.p_value if chi2 else 1.0,
        "classes": [{"index": i, "label": label, "baseline_share": float(bs[i]),
                     "current_share": float(cs[i])} for i, label in enumerate(labels)],
    }


def _data_quality(base: Profile, cur: Profile, options: AnalyzerOptions) -> DataQuality:
    issues = {k: Issue(v.count, list(v.examples)) for k, v in cur.issues.items()}
    limit = options.examples_per_issue
    base_modes = set(base.categories.get("mode", Categories()).counts)
    modes = cur.categories.get("mode", Categories())
    unexpected_mode = Issue()
    for mode, count in modes.counts.items():
        if base_modes and mode not in base_modes:
            unexpected_mode.merge(Issue(count, modes.examples.get(mode, [])), limit)
    unexpected_size = Issue()
    bw, bh = base.moments["width"], base.moments["height"]
    sizes = cur.categories.get("size", Categories())
    for size, count in sizes.counts.items():
        if size == OTHER or bw.count == 0:
            continue
        w, h = (int(v) for v in size.split("x"))
        if not (bw.min <= w <= bw.max and bh.min <= h <= bh.max):
            unexpected_size.merge(Issue(count, sizes.examples.get(size, [])), limit)
    issues["unexpected_mode"] = unexpected_mode
    issues["unexpected_size"] = unexpected_size
    bad = sum(issues[k].count for k in _BAD_FILES)
    share = bad / max(cur.total_files, 1)
    severity = (severity_from_effect(share, options.quality_low, options.quality_medium,
                                     options.quality_high) if bad else Severity.NONE)
    return DataQuality(severity, cur.total_files, cur.image_count,
                       {k: issues.get(k, Issue()) for k in ISSUES})


def _atypical(base: Profile, cur: Profile, tests: list[TestResult],
              options: AnalyzerOptions) -> list[dict[str, Any]]:
    """The most extreme current images of the most drifted continuous features."""
    drifted = sorted((t for t in tests if t.severity > Severity.NONE and t.test == "ks"
                      and t.feature in cur.extremes), key=lambda t: -t.effect_size)
    out = []
    for t in drifted[:_ATYPICAL_FEATURES]:
        ext = cur.extremes[t.feature]
        side = ext.high if t.current_mean >= t.baseline_mean else ext.low
        median = float(np.median(base.sample(t.feature))) if base.sample(t.feature).size else 0.0
        for value, path in side[: options.atypical_per_feature]:
            out.append({"path": path, "file": Path(path).name, "feature": t.feature,
                        "value": value, "baseline_median": median})
    return out


def compare(baseline: Profile, current: Profile, options: AnalyzerOptions, now: datetime,
            report_id: str | None = None) -> DriftReport:
    """Compare ``current`` with ``baseline``; ``now`` becomes the report's timestamp.

    ``report_id`` defaults to the name of the current profile's folder. Raises
    ``BaselineError`` when the baseline has no images or lacks the image features.
    """
    if baseline.image_count == 0:
        raise BaselineError("baseline profile holds 0 images; regenerate it from a folder "
                            "of readable images")
    missing = [f for f in FEATURES if f not in baseline.features]
    if missing:
        raise BaselineError(f"baseline profile lacks features {', '.join(missing)}; "
                            "regenerate it with this analyzer version")
    reason = _model_unavailable(baseline, current)
    shared = ([f for f in current.features if f in baseline.features and f not in FEATURES]
              if reason is None else [])
    family = len(FEATURES) + len(IMAGE_CATEGORIES) + (len(shared) + 1 if reason is None else 0)
    permutations = max(options.permutations, math.ceil(4 * family / options.alpha))
    plans = [_plan_ks(baseline, current, f, PIXEL, options) for f in FEATURES]
    plans += [_plan_chi2(baseline.categories.get(c, Categories()),
                         current.categories.get(c, Categories()), c, PIXEL, options,
                         permutations)
              for c in IMAGE_CATEGORIES]
    if reason is None:
        plans += [_plan_ks(baseline, current, f, CONFIDENCE, options) for f in shared]
        plans.append(_plan_chi2(baseline.categories.get("predicted_class", Categories()),
                                current.categories.get("predicted_class", Categories()),
                                "predicted_class", CLASSES, options, permutations))
    results = _finish(plans, options)

    def section(name: str, values: dict[str, Any], why: str | None = None) -> Section:
        tests = [t for t in results if t.section == name]
        return Section(Severity.highest(t.severity for t in tests), why is None, tests, values,
                       why)

    pixel = section(PIXEL, _pixel_values(baseline, current, options))
    if reason is None and current.model is not None:
        b_conf = baseline.moments[MODEL_FEATURES[0]].mean
        c_conf = current.moments[MODEL_FEATURES[0]].mean
        confidence = section(CONFIDENCE, {
            "mean_confidence_shift": c_conf - b_conf,
            "baseline_mean_confidence": b_conf,
            "current_mean_confidence": c_conf,
            # Average-confidence estimate: a calibrated model's accuracy ≈ its mean max-softmax.
            "estimated_accuracy_change": c_conf - b_conf,
        })
        chi2 = next((t for t in results if t.section == CLASSES), None)
        classes = section(CLASSES, _class_values(
            baseline.categories.get("predicted_class", Categories()),
            current.categories.get("predicted_class", Categories()),
            current.model.labels, chi2))
    else:
        why = reason or "no model"
        confidence = section(CONFIDENCE, {
            "mean_confidence_shift": 0.0, "baseline_mean_confidence": 0.0,
            "current_mean_confidence": 0.0, "estimated_accuracy_change": 0.0}, why)
        classes = section(CLASSES, {"wasserstein_distance": 0.0, "chi2_statistic": 0.0,
                                    "p_value": 1.0, "classes": []}, why)
    return DriftReport(
        report_id=report_id or Path(current.data_dir).name,
        timestamp=now,
        data_dir=current.data_dir,
        baseline_image_count=baseline.image_count,
        current_image_count=current.image_count,
        settings=options.settings(),
        pixel=pixel, confidence=confidence, classes=classes,
        data_quality=_data_quality(baseline, current, options),
        atypical_images=_atypical(baseline, current, results, options),
    )


def metric_rows(report: Mapping[str, Any]) -> list[tuple[str, float]]:
    """Flat ``(metric_name, value)`` rows of a report dict (docs/ARCHITECTURE.md).

    The seed's names come first: ``pixel_mean_shift``, ``confidence_shift``,
    ``drift_detected`` (0/1); then ``overall_severity_rank`` (0..3), ``current_image_count``,
    ``<section>.severity_rank``, ``<feature>.effect_size`` / ``<feature>.p_value`` per test,
    ``class_share.<label>`` per class and ``data_quality.<issue>`` counts.
    """
    try:
        rows: list[tuple[str, float]] = [
            ("pixel_mean_shift", float(report[PIXEL]["overall_mean_shift"])),
            ("confidence_shift", float(report.get(CONFIDENCE, {}).get("mean_confidence_shift",
                                                                      0.0))),
            ("drift_detected", 1.0 if report["overall_drift_detected"] else 0.0),
            ("overall_severity_rank",
             float(Severity.parse(report.get("overall_severity", "none")).rank)),
            ("current_image_count", float(report["current_image_count"])),
        ]
    except (KeyError, TypeError, ValueError) as err:
        raise AnalyzerError(f"not a drift report dict ({type(err).__name__}: {err})") from err
    for name in (PIXEL, CONFIDENCE, CLASSES, "data_quality"):
        sec = report.get(name)
        if isinstance(sec, Mapping) and "severity" in sec:
            rows.append((f"{name}.severity_rank", float(Severity.parse(sec["severity"]).rank)))
    for name in (PIXEL, CONFIDENCE, CLASSES):
        for test in report.get(name, {}).get("tests", []):
            rows.append((f"{test['feature']}.effect_size", float(test["effect_size"])))
            rows.append((f"{test['feature']}.p_value", float(test["p_value"])))
    for cls in report.get(CLASSES, {}).get("classes", []):
        rows.append((f"class_share.{cls['label']}", float(cls["current_share"])))
    for issue, value in report.get("data_quality", {}).get("issues", {}).items():
        rows.append((f"data_quality.{issue}", float(value["count"])))
    return rows
