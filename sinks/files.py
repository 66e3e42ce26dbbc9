"""Report files on disk, written atomically so a crash never leaves a torn report.

Every write goes to a temp file in the same folder, is fsynced, and is moved over the
target with ``os.replace`` (atomic on POSIX); the folder is fsynced so the rename itself
survives a power cut. A process killed mid-write leaves only a temp file, which
``clean_stale_temp`` removes at the next start.

Reports are named as in the seed: ``monitor_report_<report_id>.json`` / ``.html``, with the
id derived from the folder date (``report_id_for``), so a rerun of a night overwrites it.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from sinks.errors import SinkError

TEMP_PREFIX = ".driftd-tmp-"
"""Prefix of the temp files ``atomic_write_bytes`` creates (hidden, recognisable for cleanup)."""

REPORT_PREFIX = "monitor_report_"
"""The seed's report file name prefix."""

REPORT_EXTENSIONS = ("json", "html")

REPORT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""Every valid report id, matched with ``fullmatch``: ``20261126`` (a nightly folder date) or a
``check`` id such as ``check-20261126T011503Z``. No dots, slashes, backslashes, NULs or
whitespace, at most 64 characters, so an id can never name anything outside the reports folder
nor a second extension (``20261126.json``). The status API serves exactly these ids."""


REPORT_ID_RULE = (
    "1-64 letters, digits, '_' or '-', starting with a letter or digit (e.g. 20261126)"
)
"""``REPORT_ID_RE`` in words, for error messages (kept beside it so the two cannot drift)."""

NIGHTLY_ID_RE = re.compile(r"[0-9]{8}")
"""Report ids of nightly runs: the folder date as ``YYYYMMDD`` (``report_id_for``)."""


class ReportFileError(SinkError):
    """Raised for a report id that is not a safe file name, or a report file that is unreadable."""


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps_json(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON: NaN and infinities become ``null`` (strict parsers, jsonb)."""
    return json.dumps(_finite(value), indent=indent, allow_nan=False)


def report_id_for(partition: date) -> str:
    """The report id of a dated folder: ``YYYYMMDD`` (one report per folder date)."""
    return partition.strftime("%Y%m%d")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, fill: Callable[[Path], object]) -> Path:
    """Create a temp file beside ``path``, let ``fill`` write it, fsync it and rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so os.replace is a rename, not a copy); same suffix for renderers that care.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{path.name}.", suffix=path.suffix, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        fill(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never a mix.

    Returns the path written. Raises ``OSError`` when the folder cannot be written.
    """
    return _atomic_write(Path(path), lambda tmp: tmp.write_bytes(data))


def clean_stale_temp(directory: Path | str) -> int:
    """Delete temp files that an interrupted ``atomic_write_bytes`` left in ``directory``.

    Call at start-up, before any write. Returns how many files were removed (0 when the
    folder does not exist).
    """
    folder = Path(directory)
    if not folder.is_dir():
        return 0
    removed = 0
    for stale in folder.glob(f"{TEMP_PREFIX}*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed += 1
    return removed


class ReportFiles:
    """The folder of report files: ``monitor_report_<id>.json`` and ``.html``."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def path(self, report_id: str, ext: str) -> Path:
        """The file of ``report_id`` with extension ``ext`` ("json" or "html").

        Raises ``ReportFileError`` when the id could escape the folder or ``ext`` is unknown.
        """
        if not isinstance(report_id, str) or not REPORT_ID_RE.fullmatch(report_id):
            raise ReportFileError(
                f"report id {report_id!r} is not a safe file name; use {REPORT_ID_RULE}"
            )
        if ext not in REPORT_EXTENSIONS:
            raise ReportFileError(
                f"report extension {ext!r} is unknown; use one of {', '.join(REPORT_EXTENSIONS)}"
            )
        return self.directory / f"{REPORT_PREFIX}{report_id}.{ext}"

    def clean_stale_temp(self) -> int:
        """Remove temp files left by an interrupted write; returns how many were removed."""
        return clean_stale_temp(self.directory)

    def write_json(self, report_id: str, report: dict[str, Any]) -> Path:
        """Write ``report`` as ``monitor_report_<id>.json`` atomically; returns its path.

        Non-finite floats are written as ``null`` so the file is strict JSON.
        """
        data = dumps_json(report, indent=2) + "\n"
        return atomic_write_bytes(self.path(report_id, "json"), data.encode("utf-8"))

    def write_html(self, report_id: str, render: Callable[[Path], object] | str) -> Path:
        """Write the HTML report atomically; returns its path.

        ``render`` is either the HTML text, or a function that writes the HTML to the path it
        is given (e.g. ``lambda p: generate_html_report(report, p)``); it is given a temp
        file, which replaces the real one only once ``render`` returned.
        """
        target = self.path(report_id, "html")
        if isinstance(render, str):
            return atomic_write_bytes(target, render.encode("utf-8"))
        return _atomic_write(target, render)

    def read_json(self, report_id: str) -> dict[str, Any]:
        """The stored JSON report of ``report_id``.

        Raises ``FileNotFoundError`` when there is none, ``ReportFileError`` when it is not a
        JSON object.
        """
        path = self.path(report_id, "json")
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ReportFileError(
                f"report file {path} is not valid JSON ({err}); delete it and rerun that date"
            ) from err
        if not isinstance(loaded, dict):
            raise ReportFileError(
                f"report file {path} holds a {type(loaded).__name__}, not an object"
            )
        return loaded

    def remove_nightly_before(self, cutoff: date) -> int:
        """Delete the nightly reports (``YYYYMMDD`` ids) of folder dates before ``cutoff``
        (retention); other reports (``check`` ids) are kept. Returns how many files went."""
        removed = 0
        for report_id in self.list_ids():
            if not NIGHTLY_ID_RE.fullmatch(report_id):
                continue
            try:
                day = date(int(report_id[:4]), int(report_id[4:6]), int(report_id[6:]))
            except ValueError:
                continue
            if day >= cutoff:
                continue
            for ext in REPORT_EXTENSIONS:
                path = self.path(report_id, ext)
                if path.is_file():
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    def list_ids(self) -> list[str]:
        """Ids of the JSON reports in the folder, sorted (date ids sort chronologically)."""
        if not self.directory.is_dir():
            return []
        ids = []
        for p in self.directory.glob(f"{REPORT_PREFIX}*.json"):
            candidate = p.name[len(REPORT_PREFIX) : -len(".json")]
            if REPORT_ID_RE.fullmatch(candidate):
                ids.append(candidate)
        return sorted(ids)
