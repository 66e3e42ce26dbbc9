"""Profiles merge exactly: any sharding, any merge order, the serial profile's bits."""

from __future__ import annotations

import random
from fractions import Fraction

import numpy as np
import pytest

from analyzer.digests import DigestLog
from analyzer.exact import ExactSum
from analyzer.profile import Extremes, Moments


def shards(values: np.ndarray, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    cuts = np.sort(rng.choice(np.arange(1, values.size), size=parts - 1, replace=False))
    return np.split(values, cuts)


class TestExactSum:
    def test_sum_is_the_exact_rational_sum(self) -> None:
        """Σx and Σx² of awkward floats equal the exact rational sums."""
        values = np.array([1e16, 1.0, -1e16, 0.1, 3e-300, -2.5, 7.0 / 3.0])
        assert ExactSum.of(values) == ExactSum.of(values[::-1])
        total = ExactSum.of(values)
        exact = sum(Fraction(v) for v in values.tolist())
        assert Fraction(total.mantissa) * Fraction(2) ** total.exponent == exact
        squares = ExactSum.of(values, squared=True)
        exact_sq = sum(Fraction(v) ** 2 for v in values.tolist())
        assert Fraction(squares.mantissa) * Fraction(2) ** squares.exponent == exact_sq

    def test_text_round_trips(self) -> None:
        """The JSON text form reads back to the same value."""
        value = ExactSum.of(np.array([-3.75, 1e-9, 12345.678]))
        assert ExactSum.from_text(value.to_text()) == value

    def test_non_finite_values_are_refused(self) -> None:
        with pytest.raises(ValueError, match="NaN or infinite"):
            ExactSum.of(np.array([1.0, np.nan]))


class TestMomentsMerge:
    @pytest.mark.parametrize("seed", range(5))
    def test_any_sharding_and_order_gives_the_serial_moments(self, seed: int) -> None:
        """Values of very different scales split into 40 shards, merged in a random order
        (and as a tree): mean and M2 are bit-identical to the one-shard moments."""
        rng = np.random.default_rng(seed)
        values = rng.normal(100, 30, 5000) * rng.uniform(1e-3, 1e3, 5000)
        serial = Moments.of(values)
        parts = [Moments.of(p) for p in shards(values, 40, rng)]
        random.Random(seed).shuffle(parts)
        flat = Moments()
        for part in parts:
            flat.merge(part)
        while len(parts) > 1:  # a tree: pairs, then pairs of pairs
            merged = []
            for i in range(0, len(parts), 2):
                node = parts[i]
                if i + 1 < len(parts):
                    node.merge(parts[i + 1])
                merged.append(node)
            parts = merged
        for result in (flat, parts[0]):
            assert (result.count, result.mean, result.m2, result.min, result.max) == (
                serial.count, serial.mean, serial.m2, serial.min, serial.max)
        assert serial.mean == float(sum(Fraction(v) for v in values.tolist()) / values.size)

    def test_a_profile_without_exact_sums_still_merges(self) -> None:
        """Moments saved before exact sums existed (no "sum" key) merge by Chan's update."""
        a, b = Moments.of(np.array([1.0, 2.0, 3.0])), Moments.of(np.array([10.0, 20.0]))
        old = Moments.from_dict({k: v for k, v in a.to_dict().items()
                                 if k not in ("sum", "sum_sq")})
        old.merge(b)
        assert old.count == 5 and old.mean == pytest.approx(7.2)
        assert old.total is None and "sum" not in old.to_dict()

    def test_json_round_trip_keeps_the_exact_sums(self) -> None:
        m = Moments.of(np.array([0.1, 0.2, 0.3]))
        again = Moments.from_dict(m.to_dict())
        assert again == m


class TestExtremes:
    def test_ties_are_broken_by_path_whatever_the_order(self) -> None:
        """Many equal values: the kept entries do not depend on batch order or size."""
        values = np.array([5.0] * 12 + [1.0, 9.0])
        paths = [f"f{i:02d}.jpg" for i in range(14)]
        one = Extremes(3)
        one.add(values, paths)
        order = list(range(14))
        random.Random(1).shuffle(order)
        split = Extremes(3)
        for chunk in (order[:5], order[5:9], order[9:]):
            split.add(values[chunk], [paths[i] for i in chunk])
        assert split.low == one.low and split.high == one.high
        assert one.low == [(1.0, "f12.jpg"), (5.0, "f00.jpg"), (5.0, "f01.jpg")]


class TestDuplicates:
    def test_duplicates_across_shards_are_counted_once_in_file_order(self) -> None:
        """The same digest in three shards: two duplicates, at its later positions,
        whatever the merge order."""
        digests = [b"a" * 8, b"b" * 8, b"c" * 8, b"a" * 8, b"d" * 8, b"a" * 8, b"b" * 8]
        logs = []
        for start in range(0, 7, 3):
            log = DigestLog.for_range(start, min(3, 7 - start))
            for position in range(start, min(start + 3, 7)):
                log.record(position, digests[position])
            logs.append(log)
        forward = logs[0].merge(logs[1]).merge(logs[2])
        backward = logs[2].merge(logs[1]).merge(logs[0])
        assert forward.duplicates(5) == backward.duplicates(5) == (3, [3, 5, 6])
        assert forward.duplicates(1) == (3, [3])
