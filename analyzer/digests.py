"""Duplicate files, counted exactly across shards in 8-12 bytes per file.

A file is a duplicate when an earlier file of the night (in listing order) has the same
content digest (the first 8 bytes of its SHA-1, ``ImageRecord.digest``). Counting them
needs every digest at once somewhere: a Python ``set`` of a million 8-byte ``bytes`` costs
about 100 MB, while a numpy array of ``uint64`` costs 8 MB. So each shard keeps its digests
in an array indexed by file position (``DigestLog``), shards concatenate on merge, and the
duplicates are resolved once, at the end, by sorting (``duplicates``): exact, independent of
the sharding and of the merge order. Two different files share a 64-bit digest with
probability about n²/2⁶⁵ (3·10⁻⁸ for a night of a million files): that is the only error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


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

    @classmethod
    def for_range(cls, start: int, size: int) -> DigestLog:
        """An empty log for the files at positions ``start .. start + size - 1``."""
        return cls(start, size, np.zeros(size, dtype=np.uint64), np.zeros(size, dtype=bool))

    def record(self, position: int, digest: bytes) -> None:
        """Note the digest of the file at ``position`` (in this log's range)."""
        offset = position - self.start
        self.digests[offset] = int.from_bytes(digest, "little")
        self.present[offset] = True

    def pack(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """``(digests, positions)`` of the files that had a digest."""
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
