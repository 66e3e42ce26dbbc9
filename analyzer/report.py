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
on a night of 30 images included). The MMD test on the model's embeddings
(``analyzer.model_sections``) is one more member of the family, graded by its probe-AUC
effect size (``options.auc_*``). A section's
severity is the highest of its tests; ``overall_severity`` is the highest of the sections
(data quality included) and ``overall_drift_detected`` is ``overall_severity != "none"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy import stats as sps

from analyzer.contract import (
    BAD_FILE_ISSUES,
    CUTOFF_PREFIX,
    EMBEDDING_FEATURE,
    IMAGE_FEATURES,
    ISSUES,
    RGB_CHANNELS,
    TESTED_CATEGORIES,
    AtypicalImage,
    Category,
    ChannelMeans,
    ClassSection,
    ClassShare,
    ConfidenceSection,
    DataQuality,
    DriftReport,
    EffectKind,
    EmbeddingSection,
    FileIssue,
    Histograms,
    ImageFeature,
    ModelFeature,
    PixelSection,
    QualityIssue,
    SectionName,
    TestKind,
    TestResult,
)
from analyzer.errors import BaselineError
from analyzer.model_sections import (
    accuracy_section,
    embedding_outcome,
    embedding_section,
    embedding_unavailable,
)
from analyzer.options import AnalyzerOptions
from analyzer.profile import OTHER, Categories, Issue, Profile
from analyzer.severity import Severity
from analyzer.stats import TwoSample, adjust, category_test, ks_test, severity_from_effect

_ATYPICAL_FEATURES = 5
PIXEL, CONFIDENCE, CLASSES = SectionName.PIXEL, SectionName.CONFIDENCE, SectionName.CLASSES
EMBEDDING = SectionName.EMBEDDING


@dataclass(frozen=True)
class _Planned:
    feature: str
    section: SectionName
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


def _plan_ks(base: Profile, cur: Profile, feature: str, section: SectionName,
             options: AnalyzerOptions) -> _Planned:
    b, c = base.sample(feature), cur.sample(feature)
    enough = min(b.size, c.size) >= options.min_samples
    outcome = ks_test(b, c, _scale(base, feature)) if enough else None
    low, high = base.moments[feature], cur.moments[feature]
    constant = min(low.min, high.min) == max(low.max, high.max)
    return _Planned(feature, section, outcome, constant, base.moments[feature].mean,
                    cur.moments[feature].mean, base.moments[feature].count,
                    cur.moments[feature].count)


def _plan_chi2(base: Categories, cur: Categories, feature: str, section: SectionName,
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
        prefix = CUTOFF_PREFIX[EffectKind.WASSERSTEIN if o is None else o.effect_size_kind]
        cutoffs = [getattr(options, f"{prefix}_{lvl}") for lvl in ("low", "medium", "high")]
        if o is not None and significant:
            severity = severity_from_effect(o.effect_size, *cutoffs)
        results.append(TestResult(
            feature=p.feature, section=p.section,
            test=TestKind(o.test) if o else TestKind.SKIPPED,
            statistic=o.statistic if o else 0.0, p_value=o.p_value if o else 1.0,
            p_adjusted=p_adj, effect_size=o.effect_size if o else 0.0,
            effect_size_kind=EffectKind(o.effect_size_kind) if o else EffectKind.NONE,
            threshold=cutoffs[0],
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
    return {ch: [round(float(v), 6) for v in shares[i]] for i, ch in enumerate(RGB_CHANNELS)}


def _pixel_section(base: Profile, cur: Profile, options: AnalyzerOptions,
                   tests: list[TestResult]) -> PixelSection:
    """``overall_mean_shift`` = mean over c in R, G, B of |μ_cur,c − μ_base,c| / 255.

    μ_c is the mean over images of each image's mean value of channel c (each image weighs
    the same, whatever its size), on the analysis image (see ``analyzer.images``), 0..255.
    So 0.0 = identical average colour, 1.0 = black versus white.
    """
    channels = (ImageFeature.MEAN_R, ImageFeature.MEAN_G, ImageFeature.MEAN_B)
    b = [base.moments[c].mean for c in channels]
    c = [cur.moments[c].mean for c in channels]
    return PixelSection(
        severity=_highest(tests), tests=tests,
        overall_mean_shift=float(np.mean(np.abs(np.subtract(c, b)))) / 255.0,
        channel_means=ChannelMeans(b, c),
        histograms=Histograms(options.histogram_bins,
                              _histograms(base, options.histogram_bins),
                              _histograms(cur, options.histogram_bins)),
    )


def _highest(tests: list[TestResult]) -> Severity:
    return Severity.highest(t.severity for t in tests)


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


def _class_section(base: Categories, cur: Categories, labels: list[str],
                   tests: list[TestResult]) -> ClassSection:
    b = np.array([base.counts.get(label, 0) for label in labels], dtype=np.float64)
    c = np.array([cur.counts.get(label, 0) for label in labels], dtype=np.float64)
    bs, cs = b / max(b.sum(), 1.0), c / max(c.sum(), 1.0)
    k = len(labels)
    distance = 0.0
    if k > 1 and b.sum() and c.sum():
        idx = np.arange(k, dtype=np.float64)
        distance = float(sps.wasserstein_distance(idx, idx, bs, cs)) / (k - 1)
    chi2 = tests[0] if tests else None
    return ClassSection(
        severity=_highest(tests), tests=tests,
        wasserstein_distance=distance,
        chi2_statistic=chi2.statistic if chi2 else 0.0,
        p_value=chi2.p_value if chi2 else 1.0,
        classes=[ClassShare(i, label, float(bs[i]), float(cs[i]))
                 for i, label in enumerate(labels)],
    )


def _data_quality(base: Profile, cur: Profile, options: AnalyzerOptions) -> DataQuality:
    issues = {k: Issue(v.count, list(v.examples)) for k, v in cur.issues.items()}
    limit = options.examples_per_issue
    base_modes = set(base.categories.get(Category.MODE, Categories()).counts)
    modes = cur.categories.get(Category.MODE, Categories())
    unexpected_mode = Issue()
    for mode, count in modes.counts.items():
        if base_modes and mode not in base_modes:
            unexpected_mode.merge(Issue(count, modes.examples.get(mode, [])), limit)
    unexpected_size = Issue()
    bw, bh = base.moments[ImageFeature.WIDTH], base.moments[ImageFeature.HEIGHT]
    sizes = cur.categories.get(Category.SIZE, Categories())
    for size, count in sizes.counts.items():
        if size == OTHER or bw.count == 0:
            continue
        w, h = (int(v) for v in size.split("x"))
        if not (bw.min <= w <= bw.max and bh.min <= h <= bh.max):
            unexpected_size.merge(Issue(count, sizes.examples.get(size, [])), limit)
    issues[QualityIssue.UNEXPECTED_MODE] = unexpected_mode
    issues[QualityIssue.UNEXPECTED_SIZE] = unexpected_size
    bad = sum(issues[k].count for k in BAD_FILE_ISSUES)
    share = bad / max(cur.total_files, 1)
    severity = (severity_from_effect(share, options.quality_low, options.quality_medium,
                                     options.quality_high) if bad else Severity.NONE)
    found = {k: issues.get(k, Issue()) for k in ISSUES}
    return DataQuality(severity, cur.total_files, cur.image_count,
                       {k: FileIssue(v.count, list(v.examples)) for k, v in found.items()})


def _atypical(base: Profile, cur: Profile, tests: list[TestResult],
              options: AnalyzerOptions) -> list[AtypicalImage]:
    """The most extreme current images of the most drifted continuous features."""
    drifted = sorted((t for t in tests if t.severity > Severity.NONE and t.test == TestKind.KS
                      and t.feature in cur.extremes), key=lambda t: -t.effect_size)
    out = []
    for t in drifted[:_ATYPICAL_FEATURES]:
        ext = cur.extremes[t.feature]
        side = ext.high if t.current_mean >= t.baseline_mean else ext.low
        median = float(np.median(base.sample(t.feature))) if base.sample(t.feature).size else 0.0
        for value, path in side[: options.atypical_per_feature]:
            out.append(AtypicalImage(path, Path(path).name, t.feature, value, median))
    return out


def summarize(tests: list[TestResult], severity: Severity, quality: DataQuality,
              options: AnalyzerOptions) -> str:
    """One human sentence: the verdict (``severity``) and what drove it."""
    if severity == Severity.NONE:
        run = [t for t in tests if t.baseline_n]
        return (f"No drift: none of {len(run)} tests shifted at family-wise alpha "
                f"{options.alpha} ({options.correction}).")
    parts = []
    for section, noun in ((PIXEL, "image features"), (CONFIDENCE, "model outputs"),
                          (CLASSES, "predicted classes"), (EMBEDDING, "model embedding")):
        hits = sorted((t for t in tests if t.section == section and t.severity > Severity.NONE),
                      key=lambda t: -t.effect_size)
        if hits:
            names = [t.feature for t in hits[:2]]
            more = f" and {len(hits) - 2} more" if len(hits) > 2 else ""
            parts.append(f"{', '.join(names)}{more} {noun} shifted")
    if quality.severity > Severity.NONE:
        parts.append(f"{quality.count(BAD_FILE_ISSUES)} of {quality.total_files} files "
                     "unreadable")
    return f"{severity.value.capitalize()} drift: {'; '.join(parts)}."


def compare(baseline: Profile, current: Profile, options: AnalyzerOptions, now: datetime,
            report_id: str | None = None) -> DriftReport:
    """Compare ``current`` with ``baseline``; ``now`` becomes the report's timestamp.

    ``report_id`` defaults to the name of the current profile's folder. Raises
    ``BaselineError`` when the baseline has no images or lacks the image features.
    """
    if baseline.image_count == 0:
        raise BaselineError("baseline profile holds 0 images; regenerate it from a folder "
                            "of readable images")
    missing = [f for f in IMAGE_FEATURES if f not in baseline.features]
    if missing:
        raise BaselineError(f"baseline profile lacks features {', '.join(missing)}; "
                            "regenerate it with this analyzer version")
    reason = _model_unavailable(baseline, current)
    shared = ([f for f in current.features if f in baseline.features and f not in IMAGE_FEATURES]
              if reason is None else [])
    no_embedding = embedding_unavailable(baseline, current, reason)
    family = (len(IMAGE_FEATURES) + len(TESTED_CATEGORIES)
              + (len(shared) + 1 if reason is None else 0) + (no_embedding is None))
    permutations = max(options.permutations, math.ceil(4 * family / options.alpha))
    plans = [_plan_ks(baseline, current, f, PIXEL, options) for f in IMAGE_FEATURES]
    plans += [_plan_chi2(baseline.categories.get(c, Categories()),
                         current.categories.get(c, Categories()), c, PIXEL, options,
                         permutations)
              for c in TESTED_CATEGORIES]
    if reason is None:
        plans += [_plan_ks(baseline, current, f, CONFIDENCE, options) for f in shared]
        plans.append(_plan_chi2(baseline.categories.get(Category.PREDICTED_CLASS, Categories()),
                                current.categories.get(Category.PREDICTED_CLASS, Categories()),
                                Category.PREDICTED_CLASS, CLASSES, options, permutations))
    embedded = None
    if no_embedding is None:
        embedded = embedding_outcome(baseline, current, options, permutations)
        plans.append(_Planned(EMBEDDING_FEATURE, EMBEDDING, embedded.two_sample(), False,
                              math.nan, math.nan, embedded.baseline_rows,
                              embedded.current_rows))
    results = _finish(plans, options)

    def tests_of(name: SectionName) -> list[TestResult]:
        return [t for t in results if t.section == name]

    pixel = _pixel_section(baseline, current, options, tests_of(PIXEL))
    accuracy = accuracy_section(baseline, current, options, reason)
    embedding = (EmbeddingSection(available=False, reason=no_embedding) if embedded is None
                 else embedding_section(embedded, tests_of(EMBEDDING)))
    confidence: ConfidenceSection
    classes: ClassSection
    if reason is None and current.model is not None:
        b_conf = baseline.moments[ModelFeature.MAX_CONFIDENCE].mean
        c_conf = current.moments[ModelFeature.MAX_CONFIDENCE].mean
        confidence = ConfidenceSection(
            severity=_highest(tests_of(CONFIDENCE)), tests=tests_of(CONFIDENCE),
            mean_confidence_shift=c_conf - b_conf,
            baseline_mean_confidence=b_conf,
            current_mean_confidence=c_conf,
            # Only a calibrated estimate (labelled baseline) says how accuracy changed; the
            # confidence shift is reported as what it is, above.
            estimated_accuracy_change=accuracy.change,
        )
        classes = _class_section(
            baseline.categories.get(Category.PREDICTED_CLASS, Categories()),
            current.categories.get(Category.PREDICTED_CLASS, Categories()),
            current.model.labels, tests_of(CLASSES))
    else:
        why = reason or "no model"
        confidence = ConfidenceSection(available=False, reason=why)
        classes = ClassSection(available=False, reason=why)
    quality = _data_quality(baseline, current, options)
    severity = Severity.highest([pixel.severity, confidence.severity, classes.severity,
                                 quality.severity, embedding.severity])
    return DriftReport(
        report_id=report_id or Path(current.data_dir).name,
        timestamp=now,
        data_dir=current.data_dir,
        drift_summary=summarize(results, severity, quality, options),
        baseline_image_count=baseline.image_count,
        current_image_count=current.image_count,
        settings=options.settings(),
        pixel=pixel, confidence=confidence, classes=classes,
        data_quality=quality,
        atypical_images=_atypical(baseline, current, results, options),
        embedding=embedding, accuracy=accuracy,
    )
