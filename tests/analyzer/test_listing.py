"""The listing's compact name table: order and sizes survive batching, and a big folder's
names are never all Python objects at once (what kept 1M-file nights at 122 MB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzer import listing
from analyzer.listing import FileTable, list_local, sort_names


def test_sort_names_merges_batches_of_different_widths() -> None:
    batches = [np.array([b"b.jpg", b"a.jpg"]), np.array([b"zz/long-name.jpg", b"c.jpg"]),
               np.array([b"aa.jpg"])]
    expected = sorted(n for b in batches for n in b.tolist())
    names = sort_names(batches)
    assert names.tolist() == expected
    assert batches == []  # the batches were let go


def test_table_keeps_order_and_sizes_across_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "_BATCH", 3)  # many slices from a handful of names
    names = np.array([f"img_{i:02d}.jpg".encode() for i in range(10)])
    sizes = np.arange(10, dtype=np.int64) * 100
    with FileTable("/data") as table:
        table.add_sorted(names, sizes, b"sub/")
        got = [pair for chunk in table.chunks(4) for pair in chunk]
    assert got == [(f"sub/img_{i:02d}.jpg", i * 100) for i in range(10)]


def test_a_folder_listed_in_several_batches_is_sorted(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "_BATCH", 4)
    wanted = [f"{i:03d}{'x' * (i % 5)}.jpg" for i in range(23)]
    for name in reversed(wanted):
        (tmp_path / name).write_bytes(b"\xff\xd8\xff")
    with list_local(tmp_path) as table:
        got = [name for chunk in table.chunks(100) for name, _ in chunk]
    assert got == sorted(wanted)
