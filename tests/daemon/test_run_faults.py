"""Runs that go wrong: crashes, run-level faults, SIGTERM, odd folder names, retention.

Each test drives the real ``Daemon`` (or the ``driftd`` process) over real image folders,
a real SQLite or PostgreSQL store and the real status server; faults are real files and
permissions, never patched clients.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from structlog.testing import capture_logs

from daemon.config import StoreSettings, load_settings
from daemon.http import start_status_server
from daemon.pipeline import Partition
from daemon.scheduler import Daemon
from daemon.state import Outbox, StateDB, store_or_defer
from daemon.status import FileStatusProvider
from sinks.files import REPORT_ID_RE, REPORT_ID_RULE, ReportFileError, ReportFiles
from sinks.store import NightRecord, SQLiteStore
from tests.daemon.conftest import cli_env, driftd
from tests.fixtures.images import write_images
from tests.fixtures.reports import make_report

NOW = datetime(2026, 12, 4, 1, 15, tzinfo=timezone.utc)
"""A fixed clock: folder names and retention cut-offs do not depend on today."""


def _night(root: Path, name: str, seed: int = 1, n: int = 20) -> Path:
    folder = root / "production" / name
    write_images(folder, n, seed, size=(32, 32))
    (folder / "_SUCCESS").touch()
    return folder


@pytest.fixture
def deployment(tmp_path: Path, config_file: Callable[..., Path]) -> Callable[..., Path]:
    """Write a config (plus extra TOML) and a saved baseline of 40 images; returns the path."""
    from analyzer.dataset import DatasetAnalyzer

    baseline = DatasetAnalyzer(
        write_images(tmp_path / "baseline", 40, 0, size=(32, 32))[0].parent,
        workers=1, progress="off",
    ).analyze()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "baseline.json").write_text(json.dumps(baseline))

    def make(extra: str = "", schedule: str = "") -> Path:
        path = config_file("[store]\nurl = \"sqlite:///var/metrics.sqlite\"\n" + extra)
        path.write_text(path.read_text().replace("[schedule]\n", f"[schedule]\n{schedule}"))
        return path

    return make


def _ledger(tmp_path: Path, day: date) -> Any:
    return StateDB(tmp_path / "var" / "state.sqlite").ledger_get(day)


class _CrashingDaemon(Daemon):
    """A daemon whose work list has a bug (the stand-in for any unexpected exception)."""

    def pending(self, pipeline: Any, now: datetime) -> list[Partition]:
        raise RuntimeError("bug while listing the folders")


class _StopMidFolder(Daemon):
    """SIGTERM arriving once the folder is under way: the stop flag reads true from the
    second check on (the first is the loop's, before the folder starts)."""

    checks = 0

    def should_stop(self) -> bool:
        self.checks += 1
        return self.checks > 1


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


class TestCrashedRun:
    def test_a_crash_is_reported_as_a_failed_run_everywhere(
        self, deployment: Callable[..., Path]
    ) -> None:
        """After run.crashed: run.finished carries the error, /healthz is degraded, and
        /metrics says the last run failed and counts it."""
        daemon = _CrashingDaemon(load_settings(deployment()))
        daemon.status.set_scheduler_alive(True)
        provider = FileStatusProvider(Path(daemon.settings.data.reports_path), None, None,
                                      daemon.status)
        server = start_status_server("127.0.0.1:0", provider)
        assert server is not None
        try:
            with capture_logs() as logs:
                summary = daemon.run_pending(NOW)
            host, port = server.address
            health_code, health = _get(f"http://{host}:{port}/healthz")
            _, metrics = _get(f"http://{host}:{port}/metrics")
        finally:
            server.stop()
        assert summary.error is not None and "bug while listing the folders" in summary.error
        events = {e["event"]: e for e in logs}
        assert "run.crashed" in events
        assert "bug while listing" in str(events["run.finished"]["error"])
        body = json.loads(health)
        assert health_code == 200 and body["status"] == "degraded"
        assert body["last_run"]["ok"] is False and "bug while listing" in body["last_run"]["error"]
        assert "driftd_last_run_success 0.0" in metrics
        assert "driftd_run_failures_total 1.0" in metrics


class TestNotCounted:
    def test_sigterm_abandoned_attempts_do_not_count(
        self, deployment: Callable[..., Path], tmp_path: Path
    ) -> None:
        """A folder abandoned on SIGTERM keeps its attempts (here: none), however often."""
        _night(tmp_path, "20261203")
        daemon = _StopMidFolder(load_settings(deployment(schedule="max_attempts = 2\n")))
        for _ in range(3):
            daemon.checks = 0
            results = daemon.run_pending(NOW).results
            assert [r.status for r in results] == ["abandoned"]
        assert _ledger(tmp_path, date(2026, 12, 3)) is None
        daemon.checks = -10**6
        assert [r.status for r in daemon.run_pending(NOW).results] == ["done"]

    def test_empty_baseline_fails_the_run_and_spends_no_attempts(
        self, deployment: Callable[..., Path], tmp_path: Path
    ) -> None:
        """`{}` as the baseline: every run fails loudly (error, alert once a day), no folder is
        given up, and the nights are processed as soon as the baseline is rebuilt."""
        _night(tmp_path, "20261202", seed=1)
        _night(tmp_path, "20261203", seed=2)
        baseline = tmp_path / "var" / "baseline.json"
        good = baseline.read_text()
        baseline.write_text("{}")
        daemon = Daemon(load_settings(deployment(schedule="max_attempts = 2\n")))
        for hour in range(4):
            with capture_logs() as logs:
                summary = daemon.run_pending(NOW + timedelta(hours=hour))
            assert summary.error is not None and "baseline" in summary.error
            assert summary.results == []
            assert any(e["event"] == "run.failed" and e["log_level"] == "error" for e in logs)
        assert daemon.status.last_run_ok is False and daemon.status.failures_total == 4
        assert _ledger(tmp_path, date(2026, 12, 2)) is None
        assert _ledger(tmp_path, date(2026, 12, 3)) is None
        alerts = Outbox(tmp_path / "var" / "state.sqlite").outbox_all()
        assert [(a.channel, a.kind, a.status) for a in alerts] == [
            ("console", "run_failed", "sent")]
        baseline.write_text(good)
        fixed = daemon.run_pending(NOW + timedelta(hours=5))
        assert fixed.error is None
        assert [(r.partition, r.status) for r in fixed.results] == [
            (date(2026, 12, 2), "done"), (date(2026, 12, 3), "done")]

    def test_a_missing_model_file_fails_the_run_without_touching_folders(
        self, deployment: Callable[..., Path], tmp_path: Path
    ) -> None:
        """[model] path pointing at nothing is a run-level fault, named in the error."""
        _night(tmp_path, "20261203")
        daemon = Daemon(load_settings(deployment('[model]\npath = "models/gone.tflite"\n')))
        summary = daemon.run_pending(NOW)
        assert summary.error is not None and "gone.tflite" in summary.error
        assert _ledger(tmp_path, date(2026, 12, 3)) is None

    def test_retry_brings_back_a_night_given_up_on(
        self, deployment: Callable[..., Path], tmp_path: Path
    ) -> None:
        """A night given up on stays given up until `driftd retry DATE` gives it fresh attempts
        and processes it now; a done night is left alone by retry."""
        folder = tmp_path / "production" / "20261203"
        folder.mkdir(parents=True)
        (folder / "broken.jpg").write_bytes(b"not a jpeg")
        (folder / "_SUCCESS").touch()
        _night(tmp_path, "20261202")
        config = deployment(schedule="max_attempts = 1\n")
        daemon = Daemon(load_settings(config))
        first = daemon.run_pending(NOW)
        assert [r.status for r in first.results] == ["done", "failed"]
        assert daemon.run_pending(NOW).results == []  # given up: not retried
        (folder / "broken.jpg").unlink()
        write_images(folder, 20, 5, size=(32, 32))
        result = driftd("--config", str(config), "retry", "2026-12-03", "2026-12-02")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = [line.split()[:2] for line in result.stdout.splitlines()
                 if not line.startswith("{")]
        assert lines == [["2026-12-03", "done"]]
        entry = _ledger(tmp_path, date(2026, 12, 3))
        assert entry.status == "done" and entry.attempts == 1


class TestFolderNames:
    def test_names_that_only_parse_as_a_date_are_ignored_and_named_once(
        self, deployment: Callable[..., Path], tmp_path: Path
    ) -> None:
        """`2026121` is not `20261201`: only the exact name is the night; the other is named in
        one warning, not at every run."""
        _night(tmp_path, "20261201", seed=1)
        _night(tmp_path, "2026121", seed=9)
        daemon = Daemon(load_settings(deployment()))
        with capture_logs() as logs:
            first = daemon.run_pending(NOW)
            daemon.run_pending(NOW)
        assert [(r.partition, r.status) for r in first.results] == [(date(2026, 12, 1), "done")]
        report = json.loads((tmp_path / "var" / "reports" /
                             "monitor_report_20261201.json").read_text())
        assert report["data_dir"].endswith("/20261201")
        ignored = [e for e in logs if e["event"] == "folders.ignored"]
        assert [e["names"] for e in ignored] == [["2026121"]]


class TestExitCodes:
    def test_run_once_exits_3_when_every_folder_failed(
        self, deployment: Callable[..., Path], tmp_path: Path
    ) -> None:
        """`run --once` agrees with `backfill`: a failed folder is a non-zero exit."""
        folder = tmp_path / "production" / (datetime.now(timezone.utc).date()
                                            - timedelta(days=1)).strftime("%Y%m%d")
        folder.mkdir(parents=True)
        (folder / "broken.jpg").write_bytes(b"not a jpeg")
        (folder / "_SUCCESS").touch()
        result = driftd("--config", str(deployment()), "run", "--once", env=cli_env())
        assert result.returncode == 3, result.stdout + result.stderr
        assert "failed" in result.stderr and folder.name[:4] in result.stderr


class TestStatusTimes:
    def test_last_error_at_is_when_the_write_failed_not_when_the_run_began(
        self, tmp_path: Path
    ) -> None:
        """`driftd status` shows the time of the store error, not the run's start."""
        (tmp_path / "not-a-dir").write_text("")
        store = SQLiteStore(tmp_path / "not-a-dir" / "metrics.sqlite", StoreSettings().options())
        state = StateDB(tmp_path / "state.sqlite")
        night = NightRecord(date(2026, 12, 3), "run-1", NOW, make_report("20261203"), [])
        before = datetime.now(timezone.utc)
        assert store_or_defer(state, store, night, tmp_path / "report.json") is False
        status = state.store_status()
        assert status.last_error_at is not None and status.last_error_at >= before


class TestReportIds:
    def test_the_report_id_rule_in_words_matches_the_regex(self, tmp_path: Path) -> None:
        """The error text names exactly the characters the regex accepts (no '.')."""
        with pytest.raises(ReportFileError) as caught:
            ReportFiles(tmp_path).path("2026.11.26", "json")
        assert REPORT_ID_RULE in str(caught.value) and "'.'" not in str(caught.value)
        for char in "_-":
            assert REPORT_ID_RE.fullmatch(f"a{char}b") and f"'{char}'" in REPORT_ID_RULE
        assert not REPORT_ID_RE.fullmatch("a.b") and not REPORT_ID_RE.fullmatch("-ab")
        assert REPORT_ID_RE.fullmatch("x" * 64) and not REPORT_ID_RE.fullmatch("x" * 65)
        assert "1-64" in REPORT_ID_RULE


class TestRetention:
    @pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
    def test_old_nights_leave_every_table_and_the_reports_folder_after_a_run(
        self, deployment: Callable[..., Path], tmp_path: Path, request: pytest.FixtureRequest,
        backend: str,
    ) -> None:
        """retention_days = 30: after a run, nights older than 30 days are gone from the
        metrics, reports and runs tables and their report files; newer ones stay."""
        url = (f"sqlite:///{tmp_path / 'var' / 'metrics.sqlite'}" if backend == "sqlite"
               else str(request.getfixturevalue("pg_url")))
        config = deployment()
        config.write_text(config.read_text().replace(
            'url = "sqlite:///var/metrics.sqlite"\n', f'url = "{url}"\nretention_days = 30\n'))
        old, recent = date(2026, 10, 1), date(2026, 11, 20)
        _night(tmp_path, "20261203")
        daemon = Daemon(load_settings(config))
        for day in (old, recent):  # written by earlier runs (beyond the look-back now)
            folder = _night(tmp_path, day.strftime("%Y%m%d"), seed=3)
            daemon.backfill([day], datetime.combine(day, datetime.min.time(), timezone.utc))
            assert folder.is_dir()
        reports = tmp_path / "var" / "reports"
        ReportFiles(reports).write_json("check-20261001T000000Z", make_report("check-x"))
        summary = daemon.run_pending(NOW)
        assert summary.error is None
        assert _stored_dates(url) == {"monitoring_metrics": {recent, date(2026, 12, 3)},
                                      "monitor_reports": {recent, date(2026, 12, 3)},
                                      "driftd_runs": {recent, date(2026, 12, 3)}}
        names = sorted(p.name for p in reports.iterdir())
        assert "monitor_report_20261001.json" not in names
        assert "monitor_report_20261001.html" not in names
        assert "monitor_report_20261120.json" in names
        assert "monitor_report_check-20261001T000000Z.json" in names

    def test_default_retention_is_the_value_config_toml_shows(self) -> None:
        """config.toml documents the defaults: its retention_days line is the real default."""
        from daemon.config import StoreSettings

        root = Path(__file__).resolve().parents[2]
        text = (root / "config.toml").read_text()
        shown = [line.split("=")[1].split("#")[0].strip() for line in text.splitlines()
                 if line.lstrip("# ").startswith("retention_days")]
        assert shown == [str(StoreSettings().retention_days)] and shown == ["400"]


def _stored_dates(url: str) -> dict[str, set[date]]:
    out: dict[str, set[date]] = {}
    tables = ("monitoring_metrics", "monitor_reports", "driftd_runs")
    if url.startswith("sqlite"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            for table in tables:
                rows = conn.execute(f"SELECT DISTINCT partition_date FROM {table}").fetchall()
                out[table] = {date.fromisoformat(r[0]) for r in rows}
        return out
    with closing(psycopg2.connect(url)) as conn, conn.cursor() as cur:
        for table in tables:
            cur.execute(f"SELECT DISTINCT partition_date FROM {table}")
            out[table] = {r[0] for r in cur.fetchall()}
    return out
