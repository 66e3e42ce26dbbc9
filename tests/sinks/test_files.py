"""Report files: seed names, atomic writes, crash leftovers cleaned at start."""

from __future__ import annotations

import json
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


def _die_mid_write(directory: str) -> None:
    """Child process: start rewriting the HTML report, then get killed half way."""

    def render(tmp: Path) -> None:
        tmp.write_text("<html><body>half a rep")
        os._exit(9)

    ReportFiles(directory).write_html("20261126", render)


class TestReportFiles:
    def test_reports_use_the_seed_names_and_the_folder_date(self, tmp_path: Path) -> None:
        """A night's report is monitor_report_<YYYYMMDD>.json/.html and reads back unchanged."""
        files = ReportFiles(tmp_path)
        rid = report_id_for(date(2026, 11, 26))
        report = {"report_id": rid, "overall_severity": "high", "values": [1.5, 2]}
        json_path = files.write_json(rid, report)
        html_path = files.write_html(rid, "<html>ok</html>")
        assert json_path == tmp_path / "monitor_report_20261126.json"
        assert html_path == tmp_path / "monitor_report_20261126.html"
        assert files.read_json(rid) == report
        assert files.list_ids() == ["20261126"]

    def test_rerun_overwrites_the_same_report(self, tmp_path: Path) -> None:
        """Writing a date twice leaves one file holding the second report."""
        files = ReportFiles(tmp_path)
        files.write_json("20261126", {"run": 1})
        files.write_json("20261126", {"run": 2})
        assert files.read_json("20261126") == {"run": 2}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["monitor_report_20261126.json"]

    def test_html_renderer_writes_through_a_temp_file(self, tmp_path: Path) -> None:
        """A renderer that writes to the path it is given produces the final HTML file."""
        files = ReportFiles(tmp_path)
        seen: list[Path] = []

        def render(path: Path) -> None:
            seen.append(path)
            path.write_text("<html>chart</html>")

        out = files.write_html("20261126", render)
        assert out.read_text() == "<html>chart</html>"
        assert seen[0] != out and seen[0].suffix == ".html" and not seen[0].exists()

    def test_non_finite_numbers_are_written_as_strict_json(self, tmp_path: Path) -> None:
        """A NaN p-value becomes null, so strict JSON readers and jsonb accept the file."""
        files = ReportFiles(tmp_path)
        files.write_json("20261126", {"p_value": float("nan"), "x": [float("inf"), 1.0]})
        text = (tmp_path / "monitor_report_20261126.json").read_text()
        assert json.loads(text) == {"p_value": None, "x": [None, 1.0]}
        assert "NaN" not in text

    @pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", ".hidden", "", "x" * 65, "a b"])
    def test_unsafe_report_ids_are_refused(self, tmp_path: Path, bad: str) -> None:
        """An id that could escape the reports folder is refused with the rule to follow."""
        with pytest.raises(ReportFileError, match="not a safe file name"):
            ReportFiles(tmp_path).write_json(bad, {})
        assert list(tmp_path.iterdir()) == []


class TestAtomicWrites:
    def test_failed_render_keeps_the_previous_report(self, tmp_path: Path) -> None:
        """When rendering fails half way, readers still see the old complete report."""
        files = ReportFiles(tmp_path)
        files.write_html("20261126", "<html>old</html>")

        def broken(path: Path) -> None:
            path.write_text("<html>new but")
            raise RuntimeError("renderer crashed")

        with pytest.raises(RuntimeError):
            files.write_html("20261126", broken)
        assert (tmp_path / "monitor_report_20261126.html").read_text() == "<html>old</html>"
        assert [p.name for p in tmp_path.iterdir()] == ["monitor_report_20261126.html"]

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
