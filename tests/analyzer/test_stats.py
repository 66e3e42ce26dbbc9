"""The pure statistics: corrections, effect sizes and severity bands."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer import Severity
from analyzer.stats import align_counts, category_test, holm, ks_test, severity_from_effect


def test_holm_adjusts_step_down_and_keeps_order() -> None:
    """Holm multiplies the k-th smallest p by (m-k+1) and keeps the result monotone."""
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]) == []
    assert max(holm([0.9, 0.8])) <= 1.0


def test_ks_effect_size_is_shift_in_baseline_standard_deviations() -> None:
    """Shifting a sample by half its spread gives a normalised Wasserstein of ~0.5."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 2, 2000)
    result = ks_test(base, base + 1.0, scale=2.0)
    assert result.effect_size == pytest.approx(0.5, abs=0.01)
    assert result.p_value < 1e-6


class TestCategoryTest:
    def test_a_changed_category_mix_is_significant_with_its_share_moved(self) -> None:
        """50/50 → 90/10 is significant, and about 40% of the images changed category."""
        moved = category_test({"RGB": 50, "L": 50}, {"RGB": 90, "L": 10}, permutations=1999)
        assert moved.p_value == pytest.approx(1 / 2000)
        assert moved.effect_size_kind == "tvd"
        assert 0.3 < moved.effect_size < 0.45

    def test_equal_mixes_have_no_effect_and_a_large_p_value(self) -> None:
        """Identical mixes: p-value near 1, effect floored at 0."""
        same = category_test({"a": 50, "b": 30, "c": 20}, {"a": 50, "b": 30, "c": 20})
        assert same.p_value > 0.9
        assert same.effect_size == 0.0

    def test_the_same_table_gives_the_same_p_value(self) -> None:
        """The permutation seed comes from the table: a rerun reproduces the report."""
        base = {str(i): 10 + i for i in range(40)}
        cur = {str(i): 3 + (i % 5) for i in range(40)}
        assert category_test(base, cur) == category_test(dict(base), dict(cur))

    def test_p_value_resolution_follows_the_number_of_permutations(self) -> None:
        """With B permutations the smallest p-value is 1 / (B + 1)."""
        result = category_test({"x": 500, "y": 500}, {"x": 0, "y": 500}, permutations=99)
        assert result.p_value == pytest.approx(0.01)

    def test_a_single_category_or_an_empty_side_cannot_reject(self) -> None:
        """Nothing to compare: p-value 1, effect 0."""
        assert category_test({"PNG": 100}, {"PNG": 30}).p_value == 1.0
        assert category_test({"a": 3, "b": 4}, {}).p_value == 1.0

    def test_a_shift_among_frequent_classes_is_found_beside_many_rare_ones(self) -> None:
        """1,000 classes, most of them rare: tripling the top 10 classes' share is found at
        n=500 (Pearson's χ² alone misses it; the L2 statistic of the combination sees it)."""
        rng = np.random.default_rng(3)
        law = 1.0 / np.arange(1, 1001)
        law /= law.sum()
        shifted = law.copy()
        shifted[:10] *= 3
        shifted /= shifted.sum()
        base = dict(enumerate(rng.multinomial(1000, law)))
        cur = dict(enumerate(rng.multinomial(500, shifted)))
        result = category_test({str(k): int(v) for k, v in base.items()},
                               {str(k): int(v) for k, v in cur.items()})
        assert result.p_value <= 0.001
        assert result.effect_size >= 0.1


class TestAlignCounts:
    def test_without_an_other_bucket_every_category_is_kept(self) -> None:
        """Plain counts line up by name; categories neither side saw are dropped."""
        keys, b, c = align_counts({"a": 1, "b": 0}, {"a": 2, "c": 5}, "__other__")
        assert keys == ["a", "c"] and b.tolist() == [1, 0] and c.tolist() == [2, 5]

    def test_categories_a_truncated_side_did_not_name_are_folded_on_both_sides(self) -> None:
        """A baseline that folded its rare values into __other__ is compared like with like."""
        keys, b, c = align_counts({"a": 10, "b": 5, "__other__": 7}, {"a": 4, "b": 1, "z": 3},
                                  "__other__")
        assert keys == ["__other__", "a", "b"]
        assert b.tolist() == [7, 10, 5] and c.tolist() == [3, 4, 1]


def test_severity_bands_are_inclusive_lower_bounds() -> None:
    """An effect exactly at a cut-off gets that cut-off's severity."""
    bands = (0.1, 0.25, 0.5)
    assert severity_from_effect(0.05, *bands) == Severity.NONE
    assert severity_from_effect(0.1, *bands) == Severity.LOW
    assert severity_from_effect(0.3, *bands) == Severity.MEDIUM
    assert severity_from_effect(5.0, *bands) == Severity.HIGH
