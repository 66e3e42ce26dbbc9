"""A night's digest log larger than ``SPILL_AT`` lives in a temporary file while the workers
run, and gives exactly the duplicates and packs an in-memory log gives."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from analyzer import digests
from analyzer.digests import DigestLog


def _fill(log: DigestLog, order: list[int], values: dict[int, bytes]) -> DigestLog:
    for position in order:
        if position in values:
            log.record(position, values[position])
    return log


@pytest.fixture
def night() -> dict[int, bytes]:
    """Positions 100..399 with digests, some repeated, some files without one."""
    rng = np.random.default_rng(5)
    values = {p: rng.bytes(8) for p in range(100, 400) if p % 7}
    for later, earlier in ((150, 120), (333, 120), (390, 101)):
        values[later] = values[earlier]
    return values


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "out-of-order"])
def test_a_spilled_log_counts_the_same_duplicates(monkeypatch: pytest.MonkeyPatch,
                                                  night: dict[int, bytes], shuffle: bool) -> None:
    order = list(range(100, 400))
    if shuffle:
        np.random.default_rng(1).shuffle(order)
    expected = _fill(DigestLog.for_range(100, 300), order, night)
    monkeypatch.setattr(digests, "SPILL_AT", 16)
    spilled = _fill(DigestLog.for_range(100, 300), order, night)
    assert spilled.spill is not None and expected.spill is None
    assert spilled.duplicates(10) == expected.duplicates(10) == (3, [150, 333, 390])
    packed, reference = spilled.pack(), expected.pack()
    assert np.array_equal(packed[0], reference[0]) and np.array_equal(packed[1], reference[1])


def test_a_spilled_log_pickles_as_arrays_and_merges(monkeypatch: pytest.MonkeyPatch,
                                                    night: dict[int, bytes]) -> None:
    monkeypatch.setattr(digests, "SPILL_AT", 16)
    first = _fill(DigestLog.for_range(100, 150), list(range(100, 250)), night)
    second = _fill(DigestLog.for_range(250, 150), list(range(250, 400)), night)
    first = pickle.loads(pickle.dumps(first))
    assert first.spill is None
    assert first.merge(second).duplicates(10) == (3, [150, 333, 390])
