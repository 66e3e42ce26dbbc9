"""The files of a night: listed once, sorted, and kept on disk instead of in memory.

A night of a million files named ``img_0000001.jpg`` held as a Python list of paths costs
about 100 MB in the profiling process for the whole night; ``FileTable`` writes the sorted
names (relative to the night's root) and sizes to an unlinked temp file and hands them out a
chunk at a time, so the process holds one chunk. Sorting a folder's names uses a numpy byte
string array (the folder's file count × its longest name in bytes, briefly, before any
worker starts).

``list_local`` walks a local folder (``os.scandir``: each entry's type without a stat), and
``list_remote`` an object-store prefix through fsspec (``analyzer.storage``).
"""

from __future__ import annotations

import logging
import os
import stat
import struct
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from analyzer.errors import DatasetError
from analyzer.images import IMAGE_SUFFIXES, file_kind

logger = logging.getLogger("analyzer")

_RECORD = struct.Struct("<qI")
"""Per file: its size in bytes (-1: not known from the listing) and its name's length."""
_BATCH = 65536
_OUTSIDE = ("symlink points outside the data folder; to analyse such links pass "
            "follow_symlinks_outside=True (driftd: [analysis] follow_symlinks_outside = true)")
_SUFFIXES = frozenset(s.encode() for s in IMAGE_SUFFIXES)


class FileTable:
    """Sorted ``(name, size)`` of a night's image files, in a temp file.

    ``name`` is relative to ``root`` (``/``-separated); ``size`` is the byte size the
    listing saw (-1 for local files, whose size is checked when they are opened).
    ``rejected`` are ``(path, reason)`` of entries turned away by the listing.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.count = 0
        self.rejected: list[tuple[str, str]] = []
        # Closed by close() / the context manager: the table outlives this method.
        self._file: IO[bytes] = tempfile.TemporaryFile(prefix="driftd-files-")  # noqa: SIM115

    def add_sorted(self, names: npt.NDArray[np.bytes_], sizes: npt.NDArray[np.int64] | None,
                   prefix: bytes = b"") -> None:
        """Append ``names`` (already in order) below ``prefix``, with their ``sizes``."""
        out = self._file
        # A slice at a time: a million names as Python bytes at once would cost ~56 MB.
        for start in range(0, len(names), _BATCH):
            for i, name in enumerate(names[start:start + _BATCH].tolist(), start):
                full = prefix + name
                out.write(_RECORD.pack(-1 if sizes is None else int(sizes[i]), len(full)))
                out.write(full)
        self.count += len(names)

    def chunks(self, size: int) -> Iterator[list[tuple[str, int]]]:
        """The files in order, ``size`` at a time, as ``(name, size)``."""
        self._file.flush()
        self._file.seek(0)
        chunk: list[tuple[str, int]] = []
        for pair in self._read():
            chunk.append(pair)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def names_at(self, positions: Iterable[int]) -> dict[int, str]:
        """The names of the files at ``positions`` (one pass over the table)."""
        wanted = set(positions)
        found: dict[int, str] = {}
        if not wanted:
            return found
        self._file.flush()
        self._file.seek(0)
        for position, (name, _) in enumerate(self._read()):
            if position in wanted:
                found[position] = name
                if len(found) == len(wanted):
                    break
        return found

    def _read(self) -> Iterator[tuple[str, int]]:
        read = self._file.read
        while header := read(_RECORD.size):
            size, length = _RECORD.unpack(header)
            yield os.fsdecode(read(length)), size

    def close(self) -> None:
        """Delete the temp file."""
        self._file.close()

    def __enter__(self) -> FileTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sort_names(batches: list[npt.NDArray[np.bytes_]]) -> npt.NDArray[np.bytes_]:
    """The names of ``batches`` in one sorted byte-string array (byte order = code point
    order for UTF-8 names). Empties ``batches``."""
    if not batches:
        return np.zeros(0, dtype="S1")
    if len(batches) == 1:
        names = batches.pop()
    else:
        # Filled batch by batch, each let go once copied: the peak is the names once plus
        # one batch, not twice the names (15 MB more for a million files).
        width = max(b.dtype.itemsize for b in batches)
        names = np.empty(sum(len(b) for b in batches), dtype=f"S{width}")
        at = 0
        while batches:
            batch = batches.pop(0)
            names[at:at + len(batch)] = batch
            at += len(batch)
    names.sort()
    return names


class _Batches:
    """Names collected a batch of Python bytes at a time into compact numpy arrays."""

    def __init__(self) -> None:
        self.arrays: list[npt.NDArray[np.bytes_]] = []
        self.pending: list[bytes] = []

    def add(self, name: bytes) -> None:
        self.pending.append(name)
        if len(self.pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.arrays.append(np.array(self.pending, dtype=np.bytes_))
            self.pending = []

    def sorted(self) -> npt.NDArray[np.bytes_]:
        """All names in one sorted array; the batches are let go (not kept beside it)."""
        self.flush()
        arrays, self.arrays = self.arrays, []
        return sort_names(arrays)


def list_local(data_dir: Path, follow_symlinks_outside: bool = False) -> FileTable:
    """The image files under ``data_dir`` (recursive; hidden entries skipped).

    Order: each folder's files by name, before its subfolders' (depth first, by name).
    ``rejected``: symlinks that point outside the folder (unless ``follow_symlinks_outside``)
    or nowhere, entries named like images that are not regular files (a FIFO would block
    the reader for ever), and subfolders that cannot be listed (named with a trailing
    ``/``); each reason is logged once with a count (``dataset.entries_rejected``).
    Directory symlinks are never followed. Raises ``DatasetError`` when ``data_dir`` is
    missing, not a folder, or cannot be listed.
    """
    if not data_dir.exists():
        raise DatasetError(f"data folder {str(data_dir)!r} does not exist; pass the folder "
                           "that holds the images")
    if not data_dir.is_dir():
        raise DatasetError(f"data folder {str(data_dir)!r} is not a folder; pass the folder "
                           "that holds the images, not a file")
    root = data_dir.resolve()
    top = os.fsencode(str(data_dir.absolute()))
    table = FileTable(os.fsdecode(top))
    pending: list[bytes] = [b""]
    try:
        while pending:
            relative = pending.pop()
            folder = os.path.join(top, relative) if relative else top
            subfolders = _list_folder(folder, relative, root, follow_symlinks_outside, table,
                                      is_top=not relative)
            pending.extend(reversed(subfolders))  # depth first, in name order
    except BaseException:
        table.close()
        raise
    _log_rejected(data_dir, table.rejected)
    return table


def _list_folder(folder: bytes, relative: bytes, root: Path, follow_outside: bool,
                 table: FileTable, is_top: bool) -> list[bytes]:
    """Append one folder's image files to ``table``; return its subfolders (relative)."""
    names = _Batches()
    subfolders: list[bytes] = []
    rejected: list[tuple[bytes, str]] = []
    try:
        with os.scandir(folder) as it:
            for entry in it:
                name = entry.name
                if name.startswith(b"."):
                    continue
                if entry.is_dir():  # follows symlinks, so a linked folder is not a file either
                    if not entry.is_symlink():
                        subfolders.append(relative + name + b"/")
                    continue
                if os.path.splitext(name)[1].lower() not in _SUFFIXES:
                    continue
                reason = _rejection(entry, root, follow_outside)
                if reason:
                    rejected.append((name, reason))
                else:
                    names.add(name)
    except OSError as err:
        shown = os.fsdecode(folder)
        if is_top:
            raise DatasetError(f"data folder {shown!r} cannot be read "
                               f"({err.strerror or err}); give the service read access to it"
                               ) from err
        table.rejected.append((os.path.join(shown, ""),
                               f"subfolder cannot be read: {err.strerror or err}"))
        return []
    table.add_sorted(names.sorted(), None, relative)
    for name, reason in sorted(rejected):
        table.rejected.append((os.fsdecode(os.path.join(folder, name)), reason))
    return sorted(subfolders)


def _rejection(entry: os.DirEntry[bytes], root: Path, follow_symlinks_outside: bool) -> str:
    """Why an entry named like an image cannot be analysed; "" when it can."""
    if entry.is_symlink():
        target = Path(os.fsdecode(entry.path)).resolve()
        if not target.exists():
            return "broken symlink"
        if not follow_symlinks_outside and not target.is_relative_to(root):
            return _OUTSIDE
    if entry.is_file():  # from the entry's type, without a stat (a link: its target's)
        return ""
    try:
        mode = entry.stat().st_mode
    except OSError as err:
        return f"cannot read: {err.strerror or err}"
    return "" if stat.S_ISREG(mode) else f"not a regular file ({file_kind(mode)})"


def _log_rejected(data_dir: Path | str, rejected: list[tuple[str, str]]) -> None:
    """One warning per reason: these are entries an operator acts on (a link, a FIFO, a
    folder's permissions), unlike undecodable files, which only the report lists."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in rejected:
        by_reason.setdefault(reason, []).append(path)
    for reason, paths in by_reason.items():
        logger.warning("dataset.entries_rejected", extra={
            "folder": str(data_dir), "reason": reason, "count": len(paths),
            "examples": paths[:5],
        })


def list_remote(url: str, fs: Any, root: str) -> FileTable:
    """The image objects under the prefix ``root`` of filesystem ``fs`` (an fsspec one),
    sorted by key; ``url`` is how the prefix is named in messages and reports.

    Keys with a hidden part (``.tmp/x.jpg``, ``.x.jpg``) and folder markers are skipped.
    Raises ``DatasetError`` when the prefix holds nothing at all or cannot be listed.
    """
    try:
        found = fs.find(root, detail=True)
    except FileNotFoundError as err:
        raise DatasetError(f"data folder {url!r} does not exist; pass the prefix that holds "
                           "the images") from err
    except (OSError, ValueError) as err:
        raise DatasetError(f"data folder {url!r} cannot be listed ({err}); check the URL and "
                           "the credentials in the environment") from err
    if not found:
        raise DatasetError(f"data folder {url!r} does not exist or is empty; pass the prefix "
                           "that holds the images")
    base = root.rstrip("/") + "/"
    names = _Batches()
    sizes: dict[bytes, int] = {}
    for key, info in found.items():
        if not key.startswith(base) or info.get("type") == "directory":
            continue
        relative = key[len(base):]
        if any(part.startswith(".") for part in relative.split("/")):
            continue
        if os.path.splitext(relative)[1].lower() not in IMAGE_SUFFIXES:
            continue
        encoded = relative.encode()
        names.add(encoded)
        sizes[encoded] = int(info.get("size") or 0)
    del found
    table = FileTable(url.rstrip("/"))
    ordered = names.sorted()
    table.add_sorted(ordered, np.array([sizes[n] for n in ordered.tolist()], dtype=np.int64))
    return table
