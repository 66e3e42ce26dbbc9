"""Exact sums of float64 values, so that moments merge the same in any order.

Chan's parallel update of (mean, M2) rounds at every step, so profiling a night as one shard
or as 500 shards merged in a tree gives means that differ in the last bits. A feature's
``Σx`` and ``Σx²`` are kept here exactly instead: every finite float64 is an integer times a
power of two, so their sum is one too (``ExactSum``: ``mantissa · 2**exponent``, held in a
Python integer). Addition is exact, hence associative and commutative, and the mean and M2
derived from the sums are rounded once, correctly (``ratio``), whatever the order in which
shards were merged. The integers stay small for image features: a few hundred bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_MANTISSA_BITS = 53


@dataclass(frozen=True)
class ExactSum:
    """The exact value ``mantissa * 2**exponent``, normalised (odd mantissa, or 0 with
    exponent 0), so equal values have equal fields."""

    mantissa: int = 0
    exponent: int = 0

    @classmethod
    def make(cls, mantissa: int, exponent: int) -> ExactSum:
        """The normalised ``ExactSum`` of ``mantissa * 2**exponent``."""
        if mantissa == 0:
            return ZERO
        zeros = (mantissa & -mantissa).bit_length() - 1
        return cls(mantissa >> zeros, exponent + zeros)

    @classmethod
    def of(cls, values: npt.NDArray[np.float64], squared: bool = False) -> ExactSum:
        """``Σ values`` (or ``Σ values²`` with ``squared``), exactly.

        Raises ``ValueError`` for a NaN or an infinity (they have no exact sum).
        """
        if values.size == 0:
            return ZERO
        if not np.isfinite(values).all():
            raise ValueError("cannot sum NaN or infinite values exactly")
        fractions, exponents = np.frexp(values)
        # frexp's fraction is in [0.5, 1): times 2**53 it is the float's integer mantissa.
        mantissas = (fractions * float(1 << _MANTISSA_BITS)).astype(np.int64).tolist()
        powers = (exponents.astype(np.int64) - _MANTISSA_BITS).tolist()
        low = min(powers)
        if squared:
            total = sum((m * m) << (2 * (e - low)) for m, e in zip(mantissas, powers, strict=True))
            return cls.make(total, 2 * low)
        return cls.make(sum(m << (e - low) for m, e in zip(mantissas, powers, strict=True)), low)

    def __add__(self, other: ExactSum) -> ExactSum:
        if other.mantissa == 0:
            return self
        if self.mantissa == 0:
            return other
        low = min(self.exponent, other.exponent)
        return ExactSum.make((self.mantissa << (self.exponent - low))
                             + (other.mantissa << (other.exponent - low)), low)

    def to_text(self) -> str:
        """Compact exact text, e.g. ``-1a3fp-46`` (hex mantissa, binary exponent)."""
        sign = "-" if self.mantissa < 0 else ""
        return f"{sign}{abs(self.mantissa):x}p{self.exponent}"

    @classmethod
    def from_text(cls, text: str) -> ExactSum:
        """Parse ``to_text`` output. Raises ``ValueError`` for anything else."""
        mantissa, sep, exponent = str(text).partition("p")
        if not sep:
            raise ValueError(f"exact sum {text!r} is not '<hex>p<exponent>'")
        return cls.make(int(mantissa, 16), int(exponent))


ZERO = ExactSum()


def ratio(numerator: ExactSum, scale: int, denominator: int) -> float:
    """``numerator * scale / denominator`` rounded once to the nearest float (ints exact).

    Python's int / int true division is correctly rounded, so the result depends only on
    the exact value, never on how it was reached.
    """
    top, bottom = numerator.mantissa * scale, denominator
    if numerator.exponent >= 0:
        top <<= numerator.exponent
    else:
        bottom <<= -numerator.exponent
    return top / bottom


def moments(count: int, total: ExactSum, squares: ExactSum) -> tuple[float, float]:
    """``(mean, M2)`` of ``count`` values with exact ``Σx`` and ``Σx²``, each rounded once.

    M2 = Σx² − (Σx)²/n = (n·Σx² − (Σx)²) / n, computed exactly before the one rounding, so
    it is never negative and has no cancellation error.
    """
    if count == 0:
        return 0.0, 0.0
    mean = ratio(total, 1, count)
    square_of_total = ExactSum.make(total.mantissa * total.mantissa, 2 * total.exponent)
    numerator = (ExactSum.make(squares.mantissa * count, squares.exponent)
                 + ExactSum.make(-square_of_total.mantissa, square_of_total.exponent))
    return mean, max(0.0, ratio(numerator, 1, count))
