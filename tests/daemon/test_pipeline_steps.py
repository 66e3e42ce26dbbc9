"""Pipeline steps called directly: report files survive a crash at any point of the write,
and a folder given up on alerts people even when nothing was delivered before."""

from __future__ import annotations

import multiprocessing
import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from daemon.config import Settings, build_settings
from daemon.pipeline import Partition, Pipeline
from daemon.state import Outbox, state_file
from sinks.files import TEMP_PREFIX, read_report_file
from tests.fixtures.reports import make_report

NOW = datetime(2026, 11, 27, 1, 15, tzinfo=timezone.utc)
DAY = date(2026, 11, 26)


def _settings(tmp_path: Path, extra: dict[str, object] | None = None) -> Settings:
    raw: dict[str, object] = {
        "data": {"production_root": "production", "state_dir": "var"},
        "logging": {"format": "json"},
        **(extra or {}),
    }
    return build_settings(raw, base_dir=tmp_path)


def _write_reports_killed_at(settings: Settings, partition: Partition, fsync: int) -> None:
    """Child process: write the night's report files as a run does, and die (SIGKILL-like,
    no cleanup) at the ``fsync``-th fsync: mid-write, between a write and its rename. With
    ``fsync`` 0 it writes them whole and exits 100 + the number of fsyncs it made."""
    calls = 0
    real_fsync = os.fsync

    def dying(fd: int) -> None:
        nonlocal calls
        calls += 1
        if calls == fsync:
            os._exit(9)
        real_fsync(fd)

    os.fsync = dying
    Pipeline(settings).write_reports(partition, make_report(partition.report_id), [])
    os._exit(100 + calls)


def _run_child(settings: Settings, partition: Partition, fsync: int) -> int | None:
    child = multiprocessing.get_context("fork").Process(
        target=_write_reports_killed_at, args=(settings, partition, fsync))
    child.start()
    child.join(60)
    return child.exitcode


class TestReportWriteCrash:
    def test_a_crash_at_any_fsync_leaves_nothing_the_start_up_cleanup_misses(
        self, tmp_path: Path
    ) -> None:
        """Killed at each point of writing the JSON and HTML report, the run leaves only
        complete reports and temp files that the next start's cleanup removes: no nested
        temp file of a second writer inside the first one's."""
        settings = _settings(tmp_path)
        partition = Partition(DAY, tmp_path / "production" / "20261126")
        reports = settings.data.reports_path
        Pipeline(settings).write_reports(partition, make_report("20261126"), [])
        before = {p.name: p.read_bytes() for p in reports.iterdir()}
        code = _run_child(settings, partition, 0)
        assert code is not None and code > 100
        points = code - 100
        assert points >= 2  # the JSON and the HTML file, each fsynced before its rename
        for point in range(1, points + 1):
            code = _run_child(settings, partition, point)
            assert code == 9, f"the child was not killed at fsync {point}"
            assert Pipeline(settings).clean_temp() >= 0
            left = sorted(p.name for p in reports.iterdir())
            assert left == sorted(before), (point, left)
            assert not any(name.startswith(".") for name in left)
            assert read_report_file(reports / "monitor_report_20261126.json").report_id == (
                "20261126")
            html = (reports / "monitor_report_20261126.html").read_text(encoding="utf-8")
            assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")

    def test_temp_files_are_named_for_the_cleanup(self, tmp_path: Path) -> None:
        """What a killed writer leaves starts with TEMP_PREFIX, and only that."""
        settings = _settings(tmp_path)
        partition = Partition(DAY, tmp_path / "production" / "20261126")
        assert _run_child(settings, partition, 1) == 9
        leftovers = [p.name for p in settings.data.reports_path.iterdir()]
        assert leftovers and all(n.startswith(TEMP_PREFIX) for n in leftovers), leftovers


class TestFailureAlerts:
    def test_a_folder_given_up_before_any_delivery_ran_is_announced(
        self, tmp_path: Path
    ) -> None:
        """The first thing a pipeline does is give up on a folder (max_attempts = 1): the
        failure alert is queued and sent, with no delivery pass having run before."""
        settings = _settings(tmp_path, {"schedule": {"max_attempts": 1}})
        pipeline = Pipeline(settings)
        partition = Partition(DAY, tmp_path / "production" / "20261126")
        result = pipeline.fail(partition, "run-1", NOW, "folder cannot be read")
        assert result.status == "failed"
        assert result.alerts == ["console:failed"]
        [alert] = Outbox(state_file(settings.data.state_dir)).outbox_all()
        assert (alert.kind, alert.status) == ("failed", "sent")

    @pytest.mark.parametrize("step", ["send_run_failure_alerts", "deliver_due"])
    def test_every_alerting_step_works_first(self, tmp_path: Path, step: str) -> None:
        """Any alerting step may be a pipeline's first; each builds what it needs."""
        pipeline = Pipeline(_settings(tmp_path))
        if step == "deliver_due":
            assert pipeline.deliver_due(NOW) == 0
        else:
            assert pipeline.send_run_failure_alerts("baseline missing", NOW) == [
                "console:run_failed"]
