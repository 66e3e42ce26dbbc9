"""Report files: seed names, atomic writes, crash leftovers cleaned at start."""

from __future__ import annotations

import dataclasses
import json
import math
import multiprocessing
import os
from datetime import date
from pathlib import Path

import pytest

from sinks.files import (
    TEMP_PREFIX,
    ReportFileError,
    ReportFiles,
    atomic_write_bytes,
    clean_stale_temp,
    report_id_for,
)
from tests.fixtures.reports import make_report


def _die_mid_write(directory: str) -> None:
    """Child process: start rewriting the HTML report, then get killed before the rename."""

    def killed(fd: int) -> None:
        os._exit(9)

    os.fsync = killed  # the data is in the temp file; the process dies before os.replace
    ReportFiles(directory).write_html("20261126", "<html><body>the new report</body></html>")


class TestReportFiles:
    def test_reports_use_the_seed_names_and_the_folder_date(self, tmp_path: Path) -> None:
        """A night's report is monitor_report_<YYYYMMDD>.json/.html and reads back unchanged."""
        files = ReportFiles(tmp_path)
        rid = report_id_for(date(2026, 11, 26))
        report = make_report(rid)
        json_path = files.write_json(rid, report)
        html_path = files.write_html(rid, "<html>ok</html>")
        assert json_path == tmp_path / "monitor_report_20261126.json"
        assert html_path == tmp_path / "monitor_report_20261126.html"
        assert files.read_report(rid) == report
        assert files.list_ids() == ["20261126"]

    def test_rerun_overwrites_the_same_report(self, tmp_path: Path) -> None:
        """Writing a date twice leaves one file holding the second report."""
        files = ReportFiles(tmp_path)
        files.write_json("20261126", make_report(severity="high"))
        files.write_json("20261126", make_report(severity="low"))
        assert files.read_report("20261126").pixel.severity == "low"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor_report_20261126.json"]

    def test_non_finite_numbers_are_written_as_strict_json(self, tmp_path: Path) -> None:
        """A NaN p-value becomes null, so strict JSON readers and jsonb accept the file, and
        it reads back as NaN."""
        files = ReportFiles(tmp_path)
        report = make_report()
        test = dataclasses.replace(report.pixel.tests[0], p_value=float("nan"))
        pixel = dataclasses.replace(report.pixel, tests=[test, *report.pixel.tests[1:]])
        files.write_json("20261126", dataclasses.replace(report, pixel=pixel))
        text = (tmp_path / "monitor_report_20261126.json").read_text()
        assert json.loads(text)["pixel_distribution_drift"]["tests"][0]["p_value"] is None
        assert "NaN" not in text
        assert math.isnan(files.read_report("20261126").pixel.tests[0].p_value)

    def test_a_file_that_is_no_report_is_refused_naming_the_key(self, tmp_path: Path) -> None:
        """A JSON file without a report's keys is a ReportFileError saying what is missing."""
        (tmp_path / "monitor_report_20261126.json").write_text('{"run": 1}')
        with pytest.raises(ReportFileError, match="schema_version"):
            ReportFiles(tmp_path).read_report("20261126")

    @pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", ".hidden", "", "x" * 65, "a b"])
    def test_unsafe_report_ids_are_refused(self, tmp_path: Path, bad: str) -> None:
        """An id that could escape the reports folder is refused with the rule to follow."""
        with pytest.raises(ReportFileError, match="not a safe file name"):
            ReportFiles(tmp_path).write_json(bad, make_report())
        assert list(tmp_path.iterdir()) == []


class TestAtomicWrites:
    def test_killed_writer_leaves_no_torn_file_and_start_cleans_up(self, tmp_path: Path) -> None:
        """A writer killed mid-write leaves the old report intact; the next start cleans up."""
        files = ReportFiles(tmp_path)
        files.write_html("20261126", "<html>complete</html>")
        child = multiprocessing.get_context("fork").Process(
            target=_die_mid_write, args=(str(tmp_path),)
        )
        child.start()
        child.join(30)
        assert child.exitcode == 9
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]
        assert len(leftovers) == 1
        assert (tmp_path / "monitor_report_20261126.html").read_text() == "<html>complete</html>"
        assert files.list_ids() == []
        assert ReportFiles(tmp_path).clean_stale_temp() == 1
        assert [p.name for p in tmp_path.iterdir()] == ["monitor_report_20261126.html"]

    def test_atomic_write_bytes_creates_folders_and_replaces(self, tmp_path: Path) -> None:
        """The shared helper writes into new folders and replaces existing files whole."""
        target = tmp_path / "a" / "b" / "payload.json"
        atomic_write_bytes(target, b"one")
        atomic_write_bytes(target, b"two")
        assert target.read_bytes() == b"two"
        assert clean_stale_temp(target.parent) == 0
        assert clean_stale_temp(tmp_path / "missing") == 0
