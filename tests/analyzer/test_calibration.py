"""Property test: no-shift nights are flagged at most alpha of the time, for any k and n."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from scipy import stats

from analyzer.stats import category_test

BENCH = Path(__file__).resolve().parents[2] / "bench" / "calibration.py"
_spec = importlib.util.spec_from_file_location("bench_calibration", BENCH)
assert _spec is not None and _spec.loader is not None
calibration = importlib.util.module_from_spec(_spec)
sys.modules["bench_calibration"] = calibration
_spec.loader.exec_module(calibration)

NIGHTS = 100
ALPHA = 0.05


@pytest.fixture(scope="module")
def cells() -> dict[tuple[int, int], object]:
    """The k × n grid of bench/calibration.py with 100 nights per cell (199 permutations per
    test: the test is exact for any number of permutations; the bench uses driftd's 1,999)."""
    grid = calibration.grid(calibration.KS, calibration.NS, NIGHTS, baseline=1000,
                            permutations=199, seed=2026)
    for cell in grid:
        print(f"k={cell.k:5d} n={cell.n:6d} flagged {cell.flagged}/{cell.nights} "
              f"(95% upper bound {100 * cell.upper:.1f}%), significant {cell.significant}")
    return {(c.k, c.n): c for c in grid}


@pytest.mark.parametrize("k", calibration.KS)
@pytest.mark.parametrize("n", calibration.NS)
def test_no_shift_nights_are_flagged_at_most_alpha_of_the_time(
        cells: dict[tuple[int, int], object], k: int, n: int) -> None:
    """At every (k, n) the flagged share is not above alpha: a binomial test of "rate ≤ 5%"
    does not reject at the 1% level (the chi-squared test it replaces flagged 20-25% of the
    nights at k ≥ 100, n = 30)."""
    cell = cells[(k, n)]
    assert stats.binomtest(cell.flagged, cell.nights, ALPHA, alternative="greater").pvalue > 0.01


def test_the_old_asymptotic_chi2_would_fail_this_grid() -> None:
    """The check has teeth: scipy's asymptotic chi-squared p-value on the same sparse nights
    (k = 1000, n = 30) is significant on far more than 5% of them."""
    rng = calibration.np.random.default_rng([2026, 1000, 30])
    p = calibration.law(1000)
    rejected = 0
    for _ in range(NIGHTS):
        base, cur = rng.multinomial(1000, p), rng.multinomial(30, p)
        table = calibration.np.array([base, cur])
        table = table[:, table.sum(axis=0) > 0]
        rejected += stats.chi2_contingency(table, correction=False).pvalue <= ALPHA
    assert stats.binomtest(rejected, NIGHTS, ALPHA, alternative="greater").pvalue < 0.01


def test_a_large_shift_is_flagged_at_every_k() -> None:
    """The same cut-offs grade a big mix change as drift whether k is 2 or 1,000: half the
    night moved to the least frequent categories."""
    for k in calibration.KS:
        p = calibration.law(k)
        base = calibration.np.rint(p * 2000).astype(int)
        shifted = p.copy()
        shifted *= 0.5
        shifted[-max(1, k // 10):] += 0.5 / max(1, k // 10)
        cur = calibration.np.rint(shifted * 500).astype(int)
        result = category_test({str(i): int(v) for i, v in enumerate(base)},
                               {str(i): int(v) for i, v in enumerate(cur)})
        assert result.p_value <= 0.001
        assert result.effect_size >= 0.2, (k, result)
