"""The two report sections that need more of the model than its class scores.

* ``embedding_drift``: the multivariate test (``analyzer.multivariate.embedding_test``) on the
  two profiles' sampled, projected embeddings. ``embedding_outcome`` runs it, or says why it
  cannot run; ``analyzer.report`` puts its p-value in the report's one corrected family and
  ``embedding_section`` builds the section around the graded test.
* ``accuracy_estimate``: with a labelled baseline (``Profile.calibration``), tonight's accuracy
  estimated from the model's confidence (``analyzer.accuracy.Calibration.estimate``) with its
  interval; without one, a section that says why there is no estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.contract import AccuracySection, EmbeddingSection, ModelFeature, TestResult
from analyzer.multivariate import MultiSample, embedding_test
from analyzer.options import AnalyzerOptions
from analyzer.profile import Profile
from analyzer.severity import Severity
from analyzer.stats import TwoSample


@dataclass(frozen=True)
class EmbeddingOutcome:
    """The embedding test of two profiles: ``result`` (None when too few rows to test) and
    the sample sizes, tensor and cost note the section reports."""

    result: MultiSample | None
    tensor: str
    dim: int
    components: int
    baseline_rows: int
    current_rows: int
    baseline_images: int
    current_images: int
    capacity: int

    def two_sample(self) -> TwoSample | None:
        """The test as the family's correction and grading take it."""
        r = self.result
        if r is None:
            return None
        return TwoSample(r.test, r.statistic, r.p_value, r.effect_size, r.effect_size_kind)


def embedding_unavailable(base: Profile, cur: Profile, model_reason: str | None) -> str | None:
    """Why the two profiles' embeddings cannot be compared; None when they can."""
    if model_reason is not None:
        return model_reason
    if cur.embeddings is None:
        return cur.embedding_reason or "this run read no embeddings"
    if base.embeddings is None:
        why = base.embedding_reason or "it was made without embeddings"
        return (f"the baseline has no embeddings ({why}); regenerate it with the model and "
                "embeddings on")
    b, c = base.embeddings, cur.embeddings
    if (b.dim, b.tensor) != (c.dim, c.tensor):
        return (f"the baseline's embedding is tensor {b.tensor!r} ({b.dim} values) but "
                f"tonight's is {c.tensor!r} ({c.dim} values); regenerate the baseline with the "
                "same model and embedding_tensor")
    return None


def embedding_outcome(base: Profile, cur: Profile, options: AnalyzerOptions,
                      permutations: int) -> EmbeddingOutcome:
    """Run the embedding test on the two profiles' samples (call only when
    ``embedding_unavailable`` is None). Fewer than ``options.min_samples`` rows on a side:
    no test (``result`` None), as for any other feature."""
    b, c = base.embeddings, cur.embeddings
    assert b is not None and c is not None
    result = None
    if min(b.count, c.count) >= options.min_samples:
        result = embedding_test(b.vectors, c.vectors, permutations=permutations,
                                max_rows=options.embedding_sample)
    return EmbeddingOutcome(result, c.tensor, c.dim, int(c.vectors.shape[1]), b.count, c.count,
                            base.image_count, cur.image_count, min(b.capacity, c.capacity))


def embedding_section(outcome: EmbeddingOutcome, tests: list[TestResult]) -> EmbeddingSection:
    """The ``embedding_drift`` section around the graded test (``tests``: that one test)."""
    r = outcome.result
    if r is None:
        note = (f"not tested: {outcome.baseline_rows} baseline and {outcome.current_rows} "
                "current embeddings; too few to tell")
    else:
        note = (f"MMD permutation test ({r.permutations} permutations) on the embeddings of "
                f"{r.baseline_used} of {outcome.baseline_images} baseline and "
                f"{r.current_used} of {outcome.current_images} current images (cost bound: a "
                f"content-hash sample of at most {outcome.capacity} per side"
                f"{', then a seeded subset' if r.subsampled else ''}); {outcome.dim} values "
                f"projected to {outcome.components}; effect: a linear probe's held-out AUC "
                f"{r.parts.get('auc', 0.5):.3f} less chance")
    return EmbeddingSection(
        severity=Severity.highest(t.severity for t in tests), tests=tests,
        tensor=outcome.tensor, dim=outcome.dim, components=outcome.components,
        baseline_rows=outcome.baseline_rows, current_rows=outcome.current_rows,
        baseline_used=r.baseline_used if r else 0, current_used=r.current_used if r else 0,
        permutations=r.permutations if r else 0,
        auc=float(r.parts.get("auc", 0.5)) if r else 0.5,
        mmd2=float(r.parts.get("mmd2", 0.0)) if r else 0.0, note=note)


def accuracy_section(base: Profile, cur: Profile, options: AnalyzerOptions,
                     model_reason: str | None) -> AccuracySection:
    """Tonight's estimated accuracy with its ``options.accuracy_level`` interval, or why not.

    The night's top-1 probabilities are the profile's bottom-k sample of ``max_confidence``
    (every image up to ``reservoir_size`` images, a uniform sample beyond).
    """
    level = options.accuracy_level
    if model_reason is not None:
        return AccuracySection(reason=f"no accuracy estimate: {model_reason}", level=level)
    calibration = base.calibration
    if calibration is None:
        return AccuracySection(
            reason=("no accuracy estimate: the baseline has no labels; build it with "
                    "`driftd baseline DIR --labels labels.csv` to estimate accuracy from "
                    "confidence"), level=level)
    feature = ModelFeature.MAX_CONFIDENCE.value
    est = calibration.estimate(cur.sample(feature), base.sample(feature), level)
    return AccuracySection(
        available=True, level=level, method=est.method, estimate=est.estimate, low=est.low,
        high=est.high, change=est.estimate - est.baseline_accuracy,
        baseline_accuracy=est.baseline_accuracy, labelled_images=calibration.images,
        images=est.images)
