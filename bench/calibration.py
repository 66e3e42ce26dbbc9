"""Calibration of driftd's categorical test: how often a no-shift night is flagged.

For k categories (classes of a model, or any categorical feature) and a night of n images,
a baseline of ``--baseline`` images and a night are drawn from the same fixed categorical law
(Zipf: the i-th category has weight 1/i, so most categories are rare, as with a 1,000-class
model's predictions; ``--law uniform`` for equal weights), and the night is judged exactly as
a report judges ``predicted_class``: ``analyzer.stats.category_test`` at ``alpha`` as a family
of one (the worst case: in a report it shares alpha with the other tests), severity from the
effect size with the default ``tvd_*`` cut-offs. A night is *flagged* when its severity is
above ``none``; the share flagged must stay at or below alpha whatever k and n are.

    python bench/calibration.py                      # the README grid, ~10 min on one core
    python bench/calibration.py --nights 100 --permutations 199   # quick look

The table gives per cell the share flagged, the share merely significant (p ≤ alpha, before
the effect cut-off), and the one-sided 95% Clopper-Pearson upper bound of the flagged share.
The same grid runs in the test suite with fewer nights (tests/analyzer/test_calibration.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy import stats

# Run as a script from a checkout: import the working tree's analyzer.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.options import AnalyzerOptions
from analyzer.severity import Severity
from analyzer.stats import category_test, severity_from_effect

KS = (2, 10, 100, 1000)
NS = (30, 100, 1000, 10000)


def law(k: int, kind: str = "zipf") -> NDArray[np.float64]:
    """The categorical law of ``k`` categories: Zipf (weight 1/i) or uniform."""
    weights = 1.0 / np.arange(1, k + 1) if kind == "zipf" else np.ones(k)
    return weights / weights.sum()


@dataclass(frozen=True)
class Cell:
    """Outcome of ``nights`` no-shift nights at one (k, n)."""

    k: int
    n: int
    nights: int
    flagged: int
    significant: int

    @property
    def upper(self) -> float:
        """One-sided 95% Clopper-Pearson upper bound of the flagged share."""
        if self.flagged >= self.nights:
            return 1.0
        return float(stats.beta.ppf(0.95, self.flagged + 1, self.nights - self.flagged))


def run_cell(k: int, n: int, nights: int, baseline: int, permutations: int, seed: int,
             kind: str = "zipf", options: AnalyzerOptions | None = None) -> Cell:
    """Judge ``nights`` no-shift nights of ``n`` draws against fresh baselines of the same law."""
    options = options or AnalyzerOptions()
    p = law(k, kind)
    rng = np.random.default_rng([seed, k, n])
    flagged = significant = 0
    for _ in range(nights):
        base = rng.multinomial(baseline, p)
        cur = rng.multinomial(n, p)
        result = category_test({str(i): int(v) for i, v in enumerate(base)},
                               {str(i): int(v) for i, v in enumerate(cur)}, permutations)
        if result.p_value <= options.alpha:
            significant += 1
            severity = severity_from_effect(result.effect_size, options.tvd_low,
                                            options.tvd_medium, options.tvd_high)
            flagged += severity > Severity.NONE
    return Cell(k, n, nights, flagged, significant)


def grid(ks: Sequence[int], ns: Sequence[int], nights: int, baseline: int, permutations: int,
         seed: int, kind: str = "zipf") -> list[Cell]:
    """Every (k, n) cell of the grid."""
    return [run_cell(k, n, nights, baseline, permutations, seed, kind) for k in ks for n in ns]


def markdown(cells: Sequence[Cell], command: str, seconds: float) -> str:
    """The grid as a Markdown table: flagged share (≤ upper bound) and significant share."""
    ns = sorted({c.n for c in cells})
    lines = [f"Command: `{command}` ({seconds / 60:.1f} min)", "",
             "| k \\ n | " + " | ".join(f"n={n}" for n in ns) + " |",
             "|---|" + "---:|" * len(ns)]
    for k in sorted({c.k for c in cells}):
        row = []
        for n in ns:
            c = next(c for c in cells if c.k == k and c.n == n)
            row.append(f"{100 * c.flagged / c.nights:.1f}% (≤ {100 * c.upper:.1f}%; "
                       f"sig. {100 * c.significant / c.nights:.1f}%)")
        lines.append(f"| k={k} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--nights", type=int, default=400, help="no-shift nights per cell")
    parser.add_argument("--baseline", type=int, default=1000, help="baseline draws per night")
    parser.add_argument("--permutations", type=int, default=1999,
                        help="null tables per test (driftd's default minimum)")
    parser.add_argument("--law", choices=("zipf", "uniform"), default="zipf")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--k", type=int, nargs="+", default=list(KS),
                        help="numbers of categories (default: the whole grid)")
    parser.add_argument("--n", type=int, nargs="+", default=list(NS),
                        help="night sizes (default: the whole grid)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cells = grid(args.k, args.n, args.nights, args.baseline, args.permutations, args.seed, args.law)
    command = "python bench/calibration.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(markdown(cells, command.strip(), time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
