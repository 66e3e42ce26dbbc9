"""Pure two-sample tests, effect sizes and multiple-testing corrections.

Nothing here knows about images or reports: arrays and counts in, typed results out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from analyzer.severity import Severity

FloatArray = npt.NDArray[np.float64]

#: Permutation draws are made this many table cells at a time (a few MB, whatever k is).
_CELLS_PER_BATCH = 1 << 18


@dataclass(frozen=True)
class TwoSample:
    """One two-sample test: the statistic, its p-value, and an effect size beside it."""

    test: str  # "ks" | "chi2"
    statistic: float
    p_value: float
    effect_size: float
    effect_size_kind: str  # "wasserstein_norm" | "tvd"


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


def align_counts(base: Mapping[str, int], cur: Mapping[str, int], other: str
                 ) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Category names and the two count vectors over the categories either side has.

    A profile keeps a bounded number of named categories and folds the rest into ``other``
    (``analyzer.profile.MAX_CATEGORIES``). When a side has such a bucket, a category that side
    did not name may hide in it, so every category not named by each truncated side is folded
    into ``other`` on both sides; the comparison is then like with like.
    """
    truncated = [counts for counts in (base, cur) if counts.get(other, 0) > 0]
    named: set[str] | None = None
    for counts in truncated:
        side = {k for k in counts if k != other}
        named = side if named is None else named & side

    def fold(counts: Mapping[str, int]) -> dict[str, int]:
        if named is None:
            return {k: int(v) for k, v in counts.items()}
        out: dict[str, int] = {}
        for k, v in counts.items():
            key = k if k in named else other
            out[key] = out.get(key, 0) + int(v)
        return out

    b, c = fold(base), fold(cur)
    keys = sorted(k for k in set(b) | set(c) if b.get(k, 0) + c.get(k, 0) > 0)
    return (keys, np.array([b.get(k, 0) for k in keys], dtype=np.int64),
            np.array([c.get(k, 0) for k in keys], dtype=np.int64))


#: A category whose pooled count gives an expected count below this on the smaller side is
#: too sparse to measure its share change; the effect size also reads the table with such
#: categories folded into one (Cochran's rule of thumb for expected counts).
MIN_EXPECTED = 5.0


def _table_statistics(current: npt.NDArray[np.float64], pooled: npt.NDArray[np.float64],
                      n_cur: float, n_base: float, sparse: npt.NDArray[np.bool_]
                      ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Statistics of 2×k tables, one value per row of ``current``.

    ``current`` holds the current side's counts, ``pooled`` the column totals (the baseline
    side is ``pooled - current``). Returns Pearson's χ², the squared L2 distance between the
    two share vectors, their total-variation distance (TVD), and the TVD with the ``sparse``
    columns folded into one.
    """
    n = n_cur + n_base
    diff = current / n_cur - (pooled - current) / n_base
    # (c - E_c)² / E_c + (b - E_b)² / E_b with E = pooled × side / n, in one term per cell.
    chi2 = ((current - pooled * (n_cur / n)) ** 2 * (n * n / (pooled * n_cur * n_base))).sum(
        axis=-1)
    folded = np.abs(diff[..., ~sparse]).sum(axis=-1) + np.abs(diff[..., sparse].sum(axis=-1))
    return chi2, (diff * diff).sum(axis=-1), 0.5 * np.abs(diff).sum(axis=-1), 0.5 * folded


def _upper_p(values: FloatArray) -> FloatArray:
    """Each value's upper-tail p-value among ``values``: #{values ≥ v} / len(values).

    ``values`` are the null draws and the observed statistic; as they are exchangeable under
    the null, the observed one's p-value is exact (Monte-Carlo p-value, Davison & Hinkley).
    """
    ordered = np.sort(values)
    # A relative tolerance, so that a draw equal to the observed table counts as "as extreme"
    # despite rounding in the floating-point sums.
    at_least = ordered.size - np.searchsorted(ordered, values - 1e-9 * np.abs(values), "left")
    return at_least / ordered.size


def category_test(base: Mapping[str, int], cur: Mapping[str, int], permutations: int = 1999,
                  other: str = "__other__") -> TwoSample:
    """Exact-conditional (permutation) test that two samples share one categorical law.

    Valid for any number of categories k and any sample sizes, however sparse the table: the
    null distribution is drawn, not assumed. ``permutations`` tables are drawn under the null
    with the pooled counts fixed (the current side's counts from a multivariate
    hypergeometric law: a random relabelling of the pooled sample); the seed comes from the
    table, so the same data always gives the same result.

    Two statistics are combined by their smallest p-value (Tippett's non-parametric
    combination, Pesarin 2001), whose null distribution comes from the same draws:

    * Pearson's χ² weighs each category by its expected count, so it sees mass moving into
      rare or new categories (a camera change making the model answer "monitor"), but with
      hundreds of rare classes its noise hides a shift among the frequent ones;
    * the squared L2 distance between the two share vectors sees exactly those shifts among
      frequent categories (a class-prior change), and little of the rare ones.

    The combined p-value is exact: ``P(p ≤ a) ≤ a`` under the null, with a resolution of
    ``1 / (permutations + 1)``.

    Effect size: the total-variation distance (TVD) between the two share vectors, the share
    of images that would have to change category for the two mixes to agree (0..1, the same
    meaning for 2 or 1,000 categories). Two samples of one law are apart by sampling noise
    alone, the more so the more categories and the fewer images (k = 1000, n = 30: ~0.7), and
    no estimator of the TVD is unbiased when most categories are rare. So the effect is the
    larger of two bias-corrected readings, each its observed value minus its mean over the
    null draws, floored at 0: the TVD over all categories, and the TVD with the categories too
    sparse to measure (pooled expected count below ``MIN_EXPECTED`` on the smaller side)
    folded into one. Under the null it is ~0 (mean ≤ 0.03) at every k and n; under a shift it
    reads low rather than high (folding can only shrink a TVD), so it is a lower bound on the
    share of images that moved. ``statistic`` is Pearson's χ².
    """
    _, b, c = align_counts(base, cur, other)
    n_base, n_cur = float(b.sum()), float(c.sum())
    if b.size < 2 or n_base == 0 or n_cur == 0:
        return TwoSample("chi2", 0.0, 1.0, 0.0, "tvd")
    pooled = (b + c).astype(np.float64)
    # The folding rule reads only the pooled counts, which every null draw shares.
    sparse = pooled * (min(n_cur, n_base) / (n_cur + n_base)) < MIN_EXPECTED
    chi2_obs, l2_obs, tvd_obs, folded_obs = _table_statistics(c.astype(np.float64), pooled,
                                                              n_cur, n_base, sparse)
    seed = int.from_bytes(hashlib.blake2b(b.tobytes() + c.tobytes(), digest_size=8).digest(),
                          "little")
    rng = np.random.default_rng(seed)
    batch = max(1, min(permutations, _CELLS_PER_BATCH // b.size))
    parts: list[tuple[FloatArray, FloatArray, FloatArray, FloatArray]] = []
    drawn = 0
    while drawn < permutations:
        size = min(batch, permutations - drawn)
        draws = rng.multivariate_hypergeometric(b + c, int(n_cur), size=size)
        parts.append(_table_statistics(draws.astype(np.float64), pooled, n_cur, n_base, sparse))
        drawn += size
    chi2_null, l2_null, tvd_null, folded_null = (np.concatenate(cols)
                                                 for cols in zip(*parts, strict=True))
    # The observed table is the last of the exchangeable values; the combined statistic (the
    # smaller p-value) gets its own null distribution from the same draws.
    min_p = np.minimum(_upper_p(np.append(chi2_null, chi2_obs)),
                       _upper_p(np.append(l2_null, l2_obs)))
    combined = np.count_nonzero(min_p <= min_p[-1] * (1 + 1e-12)) / min_p.size
    effect = max(0.0, float(tvd_obs - tvd_null.mean()), float(folded_obs - folded_null.mean()))
    return TwoSample("chi2", float(chi2_obs), float(combined), effect, "tvd")


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
