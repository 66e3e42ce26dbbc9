"""The nightly work list: catch-up, restarts, readiness, retries and a clean SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.scheduler import Daemon
from daemon.state import Outbox, StateDB
from tests.daemon.conftest import ROOT, cli_env, driftd
from tests.fixtures.images import write_images

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()


def _night(root: Path, day: date, n: int = 24, seed: int = 1, ready: bool = True,
           **shifts: object) -> Path:
    folder = root / "production" / day.strftime("%Y%m%d")
    write_images(folder, n, seed, size=(32, 32), **shifts)  # type: ignore[arg-type]
    if ready:
        (folder / "_SUCCESS").touch()
    return folder


@pytest.fixture
def deployment(tmp_path: Path, config_file: Callable[..., Path]) -> Path:
    """A config, a saved baseline of 40 images, and an empty production root."""
    from analyzer.dataset import DatasetAnalyzer

    config = config_file()
    baseline = DatasetAnalyzer(
        write_images(tmp_path / "baseline", 40, 0, size=(32, 32))[0].parent,
        workers=1, progress="off",
    ).analyze()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "baseline.json").write_text(json.dumps(baseline))
    return config


def _days_back(*offsets: int) -> list[date]:
    return [TODAY - timedelta(days=o) for o in offsets]


def _events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


class TestRunPending:
    def test_three_missed_dates_are_caught_up_in_order_once(
        self, deployment: Path, tmp_path: Path
    ) -> None:
        """After downtime, each missed night is processed once, oldest first."""
        days = _days_back(3, 2, 1)
        for seed, day in enumerate(reversed(days)):
            _night(tmp_path, day, seed=seed + 1)
        daemon = Daemon(load_settings(deployment))
        first = daemon.run_pending(NOW)
        assert [(r.partition, r.status) for r in first.results] == [(d, "done") for d in days]
        for day in days:
            assert (tmp_path / "var" / "reports" / f"monitor_report_{day:%Y%m%d}.json").is_file()
        assert daemon.run_pending(NOW).results == []

    def test_unready_folder_waits_until_its_marker_appears(
        self, deployment: Path, tmp_path: Path
    ) -> None:
        """Today's half-written folder (no marker, just written) is not analysed early."""
        folder = _night(tmp_path, TODAY, ready=False)
        daemon = Daemon(load_settings(deployment))
        waiting = daemon.run_pending(NOW)
        assert waiting.results == [] and waiting.waiting == [TODAY]
        (folder / "_SUCCESS").touch()
        assert [r.status for r in daemon.run_pending(NOW).results] == ["done"]

    def test_failing_folder_is_retried_then_reported_failed(
        self, deployment: Path, tmp_path: Path
    ) -> None:
        """A folder of unreadable files fails max_attempts times, then is left alone, and
        people are told once (a blind night is alerted like high drift)."""
        folder = tmp_path / "production" / f"{TODAY - timedelta(days=1):%Y%m%d}"
        folder.mkdir(parents=True)
        for i in range(3):
            (folder / f"broken_{i}.jpg").write_bytes(b"not a jpeg")
        (folder / "_SUCCESS").touch()
        daemon = Daemon(load_settings(deployment))
        runs = [daemon.run_pending(NOW).results for _ in range(4)]
        assert [[r.status for r in run] for run in runs] == [["failed"], ["failed"], ["failed"], []]
        assert [[r.alerts for r in run] for run in runs[:3]] == [[[]], [[]], [["console:failed"]]]
        entry = StateDB(tmp_path / "var" / "state.sqlite").ledger_get(TODAY - timedelta(days=1))
        assert entry is not None and entry.status == "failed" and entry.attempts == 3
        assert Outbox(tmp_path / "var" / "state.sqlite").outbox_counts()["sent"] == 1


class TestDaemonProcess:
    def test_catch_up_then_restart_processes_nothing_again(
        self, deployment: Path, tmp_path: Path
    ) -> None:
        """`driftd run --once` catches up three nights in order; a second start does nothing."""
        days = _days_back(3, 2, 1)
        for seed, day in enumerate(days):
            _night(tmp_path, day, seed=seed + 1)
        first = driftd("--config", str(deployment), "run", "--once")
        assert first.returncode == 0, first.stderr
        analyzed = [e["partition"] for e in _events(first.stdout)
                    if e["event"] == "partition.analyzed"]
        assert analyzed == [d.isoformat() for d in days]
        second = driftd("--config", str(deployment), "run", "--once")
        assert second.returncode == 0, second.stderr
        finished = [e for e in _events(second.stdout) if e["event"] == "run.finished"]
        assert finished and finished[0]["processed"] == 0

    def test_sigterm_mid_run_exits_cleanly_and_leaves_the_folder_pending(
        self, deployment: Path, tmp_path: Path
    ) -> None:
        """SIGTERM during an analysis: exit 0, no torn or temp files, the night still pending."""
        day = TODAY - timedelta(days=1)
        _night(tmp_path, day, n=600)
        env = cli_env(DRIFTD_ANALYSIS__CHUNK_SIZE="4")
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "--config", str(deployment), "run"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if '"partition.started"' in line:
                    proc.send_signal(signal.SIGTERM)
                    break
            out, err = proc.communicate(timeout=90)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert '"partition.abandoned"' in out
        reports = tmp_path / "var" / "reports"
        leftovers = list(reports.iterdir()) if reports.exists() else []
        assert leftovers == []
        state = StateDB(tmp_path / "var" / "state.sqlite")
        assert day not in state.ledger_done(day - timedelta(days=1))
