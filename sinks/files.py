"""Report files on disk, written atomically so a crash never leaves a torn report.

This module is driftd's only atomic writer (reports, the baseline): every write goes to a
temp file in the same folder named ``TEMP_PREFIX…``, is fsynced, and is moved over the target
with ``os.replace`` (atomic on POSIX); the folder is fsynced so the rename itself survives a
power cut. A process killed mid-write leaves only such a temp file, which
``clean_stale_temp`` removes at the next start. Writers hand over finished bytes (the HTML
renderer returns a string), so no second writer ever nests inside a temp file.

Reports are named as in the seed: ``monitor_report_<report_id>.json`` / ``.html``, with the
id derived from the folder date (``report_id_for``), so a rerun of a night overwrites it.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from datetime import date
from pathlib import Path

from analyzer.contract import DriftReport
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


class ReportFileError(SinkError, ValueError):
    """Raised for a report id that is not a safe file name, or a report file that is unreadable."""


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps_json(value: object, indent: int | None = None) -> str:
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


def atomic_write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: readers see the old file or the new one, never a mix.

    The file is readable by all (0644), like every report file. Returns the path written.
    Raises ``OSError`` when the folder cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so os.replace is a rename, not a copy); same suffix for readers that care.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f"{TEMP_PREFIX}{path.name}.", suffix=path.suffix, dir=path.parent
    )
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


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


def read_report_file(path: Path, *, partial: bool = False) -> DriftReport:
    """The drift report in the JSON file at ``path``.

    ``partial``: also accept a file with only the seed's keys (``DriftReport.from_dict``),
    for readers that show what they can of a hand-made or seed-made report. Raises
    ``OSError`` (``FileNotFoundError`` when there is none) when it cannot be read,
    ``ReportFileError`` when it is not valid JSON or not a drift report this driftd reads.
    """
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return DriftReport.from_dict(raw, partial=partial)
    except json.JSONDecodeError as err:
        raise ReportFileError(
            f"report file {path} is not valid JSON ({err}); delete it and rerun that date"
        ) from err
    except ValueError as err:  # ReportFormatError, or text that is not UTF-8
        raise ReportFileError(f"report file {path}: {err}") from err


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

    def write_json(self, report_id: str, report: DriftReport) -> Path:
        """Write ``report.to_dict()`` as ``monitor_report_<id>.json`` atomically; returns its
        path. Non-finite floats are written as ``null`` so the file is strict JSON."""
        data = dumps_json(report.to_dict(), indent=2) + "\n"
        return atomic_write_bytes(self.path(report_id, "json"), data.encode("utf-8"))

    def write_html(self, report_id: str, html: str) -> Path:
        """Write the rendered page as ``monitor_report_<id>.html`` atomically; returns its
        path."""
        return atomic_write_bytes(self.path(report_id, "html"), html.encode("utf-8"))

    def read_report(self, report_id: str) -> DriftReport:
        """The stored report of ``report_id``.

        Raises ``FileNotFoundError`` when there is none, ``ReportFileError`` when it is not
        valid JSON or not a drift report this driftd reads.
        """
        return read_report_file(self.path(report_id, "json"))

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
