"""The pure statistics: corrections, effect sizes and severity bands."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer import Severity
from analyzer.stats import chi2_test, holm, ks_test, psi, severity_from_effect


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


def test_chi2_and_psi_see_a_changed_category_mix() -> None:
    """A 50/50 → 90/10 category mix is significant with a large PSI; equal mixes give 0."""
    moved = chi2_test({"RGB": 50, "L": 50}, {"RGB": 90, "L": 10})
    assert moved.p_value < 1e-6 and moved.effect_size > 0.5
    assert psi([5, 5], [10, 10]) == 0.0


def test_severity_bands_are_inclusive_lower_bounds() -> None:
    """An effect exactly at a cut-off gets that cut-off's severity."""
    bands = (0.1, 0.25, 0.5)
    assert severity_from_effect(0.05, *bands) == Severity.NONE
    assert severity_from_effect(0.1, *bands) == Severity.LOW
    assert severity_from_effect(0.3, *bands) == Severity.MEDIUM
    assert severity_from_effect(5.0, *bands) == Severity.HIGH
