"""Duplicate files, counted exactly across shards in 8-12 bytes per file.

A file is a duplicate when an earlier file of the night (in listing order) has the same
content digest (the first 8 bytes of its SHA-1, ``ImageRecord.digest``). Counting them
needs every digest at once somewhere: a Python ``set`` of a million 8-byte ``bytes`` costs
about 100 MB, while a numpy array of ``uint64`` costs 8 MB. So each shard keeps its digests
in an array indexed by file position (``DigestLog``), shards concatenate on merge, and the
duplicates are resolved once, at the end, by sorting (``duplicates``): exact, independent of
the sharding and of the merge order. Two different files share a 64-bit digest with
probability about n²/2⁶⁵ (3·10⁻⁸ for a night of a million files): that is the only error.

A log of more than ``SPILL_AT`` files (the local pool's one log for the whole night) keeps
only a window of ``SPILL_AT`` digests in memory and writes the rest to a temporary file, so
the parent's memory does not grow with the night while the workers run; the digests are read
back once, for ``duplicates``, after the workers are gone. In such a log a digest of 0 is
stored as 1 (0 marks a file without a digest): one more way to collide, at 2⁻⁶³.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

SPILL_AT = 1 << 16
"""Files per log above which digests go to a temporary file, a window of this many at a
time (512 KB of memory whatever the night's size)."""


def _empty_u64() -> npt.NDArray[np.uint64]:
    return np.zeros(0, dtype=np.uint64)


@dataclass
class DigestLog:
    """Digests of files ``start .. start + size - 1`` (listing positions), in 8 bytes each
    plus a presence bit, and the packed digests of merged shards.

    ``record(position, digest)`` during the shard; ``merge`` packs both sides, so a merged
    log holds ``(digest, position)`` pairs of the files that had a digest (12-16 bytes each).
    """

    start: int = 0
    size: int = 0
    digests: npt.NDArray[np.uint64] = field(default_factory=_empty_u64)
    present: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, dtype=bool))
    packed: tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]] | None = None
    spill: _Spill | None = field(default=None, repr=False, compare=False)

    @classmethod
    def for_range(cls, start: int, size: int) -> DigestLog:
        """An empty log for the files at positions ``start .. start + size - 1``."""
        if size > SPILL_AT:
            return cls(start, size, spill=_Spill(size))
        return cls(start, size, np.zeros(size, dtype=np.uint64), np.zeros(size, dtype=bool))

    def record(self, position: int, digest: bytes) -> None:
        """Note the digest of the file at ``position`` (in this log's range)."""
        offset = position - self.start
        if self.spill is not None:
            self.spill.put(offset, int.from_bytes(digest, "little"))
            return
        self.digests[offset] = int.from_bytes(digest, "little")
        self.present[offset] = True

    def _load(self) -> None:
        """Bring spilled digests back into memory (once; the temporary file is removed)."""
        if self.spill is not None:
            self.digests = self.spill.load()
            self.present = self.digests != 0
            self.spill = None

    def __getstate__(self) -> dict[str, Any]:
        # A shard's log crosses processes (Dask) as arrays, never as an open file.
        self._load()
        return self.__dict__

    def pack(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """``(digests, positions)`` of the files that had a digest."""
        self._load()
        own_positions = np.flatnonzero(self.present).astype(np.uint64)
        own = (self.digests[self.present], own_positions + np.uint64(self.start))
        if self.packed is None:
            return own
        return (np.concatenate([self.packed[0], own[0]]),
                np.concatenate([self.packed[1], own[1]]))

    def merge(self, other: DigestLog) -> DigestLog:
        """Both logs' digests in one packed log (any order: ``duplicates`` sorts)."""
        mine, theirs = self.pack(), other.pack()
        return DigestLog(packed=(np.concatenate([mine[0], theirs[0]]),
                                 np.concatenate([mine[1], theirs[1]])))

    def duplicates(self, limit: int) -> tuple[int, list[int]]:
        """``(count, first positions)``: how many files repeat an earlier file's digest, and
        the positions of the first ``limit`` of them in listing order.

        Memory: one sorted copy of the digests (8 bytes per file) and two bit masks; the
        examples come from one pass over the files whose digest repeats.
        """
        self._load()
        if self.packed is None and self.present.all():
            digests = self.digests  # one whole shard: no packed copy
            positions: npt.NDArray[np.uint64] | None = None
        else:
            digests, positions = self.pack()
        if digests.size < 2:
            return 0, []
        ordered = np.sort(digests)
        repeats = ordered[1:] == ordered[:-1]
        count = int(np.count_nonzero(repeats))
        if count == 0:
            return 0, []
        repeated = np.unique(ordered[1:][repeats])
        del ordered, repeats
        hits = np.flatnonzero(np.isin(digests, repeated))
        where = (hits.astype(np.uint64) + np.uint64(self.start) if positions is None
                 else positions[hits])
        seen: set[int] = set()
        later: list[int] = []
        for i in np.argsort(where, kind="stable").tolist():
            digest = int(digests[hits[i]])
            if digest in seen:
                later.append(int(where[i]))
                if len(later) >= limit:
                    break
            else:
                seen.add(digest)
        return count, later


class _Spill:
    """The digests of a large log: a window of ``SPILL_AT`` in memory, the rest in a
    temporary file at offset × 8. Positions mostly arrive in order (chunks come back in file
    order); one behind the window is written to the file directly."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.base = 0
        self.window = np.zeros(min(SPILL_AT, size), dtype=np.uint64)
        # Closed by load(); removed by the OS when closed or when the process ends.
        self.file = tempfile.TemporaryFile(prefix="driftd-digests-")  # noqa: SIM115

    def put(self, offset: int, value: int) -> None:
        value = value or 1  # 0 marks "no digest"
        if offset < self.base:
            os.pwrite(self.file.fileno(), np.uint64(value).tobytes(), offset * 8)
            return
        if offset >= self.base + len(self.window):
            self._flush()
            self.base = offset - offset % len(self.window)
        self.window[offset - self.base] = value

    def _flush(self) -> None:
        end = min(len(self.window), self.size - self.base)
        if self.window[:end].any():
            os.pwrite(self.file.fileno(), self.window[:end].tobytes(), self.base * 8)
        self.window[:] = 0

    def load(self) -> npt.NDArray[np.uint64]:
        """Every digest by offset (0 where none was recorded); closes the file."""
        self._flush()
        data = np.zeros(self.size, dtype=np.uint64)
        with self.file:
            self.file.seek(0)
            self.file.readinto(data.view(np.uint8).data)
        return data
