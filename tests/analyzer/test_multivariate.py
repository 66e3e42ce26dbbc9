"""analyzer.multivariate: the MMD and domain-classifier tests hold their level and detect."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

from analyzer.multivariate import MultiSample, classifier_test, embedding_test, mmd_test

Test = Callable[..., MultiSample]
TESTS = {"mmd": mmd_test, "classifier": classifier_test, "embedding": embedding_test}


def embeddings(rng: np.random.Generator, n: int, shift: float = 0.0, scale: float = 1.0
               ) -> np.ndarray:
    """Skewed, correlated 8-d rows (a ReLU-like embedding), optionally shifted or spread."""
    mixing = np.random.default_rng(99).normal(size=(8, 8))
    x = np.maximum(rng.standard_t(5, size=(n, 8)) @ mixing, 0.0) * scale
    x[:, 0] += shift
    return x


@pytest.mark.parametrize("name", sorted(TESTS))
class TestLevelAndPower:
    """Same-law samples are rarely flagged; shifted ones are."""

    def test_false_alarms_at_most_alpha(self, name: str) -> None:
        """120 same-law pairs: the share of p ≤ 0.05 is not significantly above 5%."""
        rng = np.random.default_rng(2026)
        p = [TESTS[name](embeddings(rng, 150), embeddings(rng, 60), permutations=199).p_value
             for _ in range(120)]
        flagged = sum(v <= 0.05 for v in p)
        assert stats.binomtest(flagged, 120, 0.05, alternative="greater").pvalue > 0.01
        # The p-values are spread over (0, 1], not stuck at 1 (a test that never fires).
        assert 0.3 < float(np.mean(p)) < 0.7

    def test_level_holds_in_many_dimensions(self, name: str) -> None:
        """48-d rows, 200 baseline rows: the whitening basis is fitted on both samples pooled.

        Fitted on the baseline alone it makes the baseline rows in-sample and the night's
        out-of-sample, and this setting then flags most same-law nights.
        """
        rng = np.random.default_rng(48)
        p = [TESTS[name](np.maximum(rng.normal(size=(200, 48)), 0.0),
                         np.maximum(rng.normal(size=(60, 48)), 0.0), permutations=99).p_value
             for _ in range(40)]
        flagged = sum(v <= 0.05 for v in p)
        assert stats.binomtest(flagged, 40, 0.05, alternative="greater").pvalue > 0.01

    def test_mean_shift_detected(self, name: str) -> None:
        """A shift of half a unit along one axis is found at n = 100 with a positive effect."""
        rng = np.random.default_rng(7)
        result = TESTS[name](embeddings(rng, 400), embeddings(rng, 100, shift=1.5))
        assert result.p_value <= 0.001
        assert result.effect_size > 0.0

    def test_effect_near_zero_without_shift(self, name: str) -> None:
        """The bias-corrected effect of a same-law pair is small next to a shifted one's."""
        rng = np.random.default_rng(8)
        same = TESTS[name](embeddings(rng, 400), embeddings(rng, 100), permutations=299)
        moved = TESTS[name](embeddings(rng, 400), embeddings(rng, 100, shift=1.5),
                            permutations=299)
        assert same.effect_size < 0.25 * moved.effect_size


class TestDetails:
    """Reproducibility, bounded cost, and the spread-only shift."""

    @pytest.mark.parametrize("name", sorted(TESTS))
    def test_rerun_gives_same_result(self, name: str) -> None:
        """The permutations are seeded from the data: a rerun repeats the p-value."""
        rng = np.random.default_rng(9)
        a, b = embeddings(rng, 120), embeddings(rng, 50, shift=0.3)
        assert TESTS[name](a, b, permutations=199) == TESTS[name](a, b, permutations=199)

    @pytest.mark.parametrize("name", sorted(TESTS))
    def test_large_samples_are_cut(self, name: str) -> None:
        """Sides above max_rows are tested on a random subset, and the result says so."""
        rng = np.random.default_rng(10)
        result = TESTS[name](embeddings(rng, 300), embeddings(rng, 90), permutations=99,
                             max_rows=100)
        assert (result.baseline_n, result.baseline_used) == (300, 100)
        assert (result.current_n, result.current_used) == (90, 90)
        assert result.subsampled

    @pytest.mark.parametrize("name", sorted(TESTS))
    def test_tiny_sample_is_not_significant(self, name: str) -> None:
        """One current row gives p = 1, not an error."""
        rng = np.random.default_rng(11)
        assert TESTS[name](embeddings(rng, 50), embeddings(rng, 1)).p_value == 1.0

    def test_spread_change_seen_by_kernel(self) -> None:
        """A change of spread with the same centre is found by the kernel test (and so by
        the embedding test, whose p-value is the kernel test's)."""
        rng = np.random.default_rng(12)
        base = rng.normal(size=(400, 8))
        cur = rng.normal(size=(150, 8)) * 1.5
        assert mmd_test(base, cur).p_value <= 0.001
        assert embedding_test(base, cur).p_value <= 0.001

    def test_embedding_test_parts(self) -> None:
        """The embedding test reads like the classifier (AUC effect), decides like the MMD."""
        rng = np.random.default_rng(13)
        base, cur = embeddings(rng, 300), embeddings(rng, 100, shift=1.0)
        result = embedding_test(base, cur, permutations=499)
        assert set(result.parts) == {"mmd2", "auc", "auc_p_value"}
        assert result.statistic == result.parts["mmd2"] > 0
        assert 0.5 < result.parts["auc"] <= 1.0
        assert result.effect_size_kind == "auc_above_chance"
        assert 0.0 < result.effect_size <= result.parts["auc"] - 0.4
