"""Pure two-sample tests, effect sizes and multiple-testing corrections.

Nothing here knows about images or reports: arrays and counts in, typed results out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from analyzer.severity import Severity

FloatArray = npt.NDArray[np.float64]

#: Share floor used by PSI so an empty category does not make the index infinite.
PSI_EPSILON = 1e-4


@dataclass(frozen=True)
class TwoSample:
    """One two-sample test: the statistic, its p-value, and an effect size beside it."""

    test: str  # "ks" | "chi2"
    statistic: float
    p_value: float
    effect_size: float
    effect_size_kind: str  # "wasserstein_norm" | "psi"


def wasserstein_norm(base: FloatArray, cur: FloatArray, scale: float) -> float:
    """W1 distance between the two samples divided by ``scale`` (the baseline's spread).

    ``scale`` should be the baseline standard deviation; when it is ~0 (a constant feature,
    e.g. every baseline image is 64 px wide) the caller passes ``max(|baseline mean|, 1)``,
    so the effect reads as a relative change.
    """
    if base.size == 0 or cur.size == 0:
        return 0.0
    return float(sps.wasserstein_distance(base, cur)) / scale


def ks_test(base: FloatArray, cur: FloatArray, scale: float) -> TwoSample:
    """Two-sample Kolmogorov-Smirnov test with the normalised Wasserstein effect size."""
    result = sps.ks_2samp(base, cur)
    return TwoSample(
        "ks", float(result.statistic), float(result.pvalue),
        wasserstein_norm(base, cur, scale), "wasserstein_norm",
    )


def psi(base_counts: Sequence[float], cur_counts: Sequence[float]) -> float:
    """Population stability index Σ (c − b)·ln(c / b) over category shares (floored at 1e-4)."""
    b = np.asarray(base_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    if b.sum() <= 0 or c.sum() <= 0:
        return 0.0
    b = np.maximum(b / b.sum(), PSI_EPSILON)
    c = np.maximum(c / c.sum(), PSI_EPSILON)
    return float(np.sum((c - b) * np.log(c / b)))


def chi2_test(base: Mapping[str, int], cur: Mapping[str, int]) -> TwoSample:
    """Chi-squared test of homogeneity on category counts, with PSI as the effect size."""
    keys = sorted(set(base) | set(cur))
    table = np.array([[base.get(k, 0) for k in keys], [cur.get(k, 0) for k in keys]], float)
    table = table[:, table.sum(axis=0) > 0]
    effect = psi(table[0], table[1]) if table.size else 0.0
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return TwoSample("chi2", 0.0, 1.0, effect, "psi")
    result = sps.chi2_contingency(table, correction=False)
    return TwoSample("chi2", float(result.statistic), float(result.pvalue), effect, "psi")


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (controls the family-wise error rate)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return [float(x) for x in out]


def bonferroni(p_values: Sequence[float]) -> list[float]:
    """Bonferroni adjusted p-values."""
    return [min(1.0, float(p) * len(p_values)) for p in p_values]


def adjust(p_values: Sequence[float], method: str) -> list[float]:
    """Adjusted p-values by ``method`` (``"holm"`` or ``"bonferroni"``)."""
    return holm(p_values) if method == "holm" else bonferroni(p_values)


def severity_from_effect(effect: float, low: float, medium: float, high: float) -> Severity:
    """Severity band of an effect size (call only for significant tests)."""
    if effect >= high:
        return Severity.HIGH
    if effect >= medium:
        return Severity.MEDIUM
    if effect >= low:
        return Severity.LOW
    return Severity.NONE
