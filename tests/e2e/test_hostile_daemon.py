"""The real ``driftd`` process against faults an operator (or an attacker) meets: a folder it
may not read, a metrics table someone else holds locked, run-level faults (an empty baseline,
a missing model, a full disk), and a catch-up of four nights seen through Grafana's panels.

The promise under test: one folder's fault stays that folder's; a fault of the run is loud
and costs no folder its attempts; a locked database delays rows but loses none; every night
is its own point in time.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.daemon.conftest import without_file_privileges
from tests.e2e.conftest import (
    D1,
    D2,
    D3,
    Deployment,
    Nights,
    events,
    stop_timeout_s,
    title,
)
from tests.sinks.test_store import GRAFANA_DASHBOARD, grafana_sql

pytestmark = pytest.mark.slow

D0 = D1 - timedelta(days=1)

GRAFANA_PANELS = (
    "Severity over time", "Images analysed", "Headline metrics: pixel mean shift, confidence shift",
)
"""The dashboard's time-series panels that have rows without a model (the e2e nights have
none; the report-table panels are covered in tests/sinks/test_store.py)."""


def driftd(d: Deployment, *args: str, unprivileged: bool = False, timeout: float = 180,
           **env: str) -> subprocess.CompletedProcess[str]:
    """``driftd ARGS`` on deployment ``d`` to completion; its output is kept for the secrets
    check. ``unprivileged``: file permissions apply even when the tests run as root."""
    prefix = without_file_privileges() if unprivileged else []
    result = subprocess.run(
        [*prefix, *d.command(*args)], cwd=d.root, env={**d.env(), **env},
        capture_output=True, text=True, timeout=timeout,
    )
    d.outputs.append(result.stdout + result.stderr)
    return result


def _named(stdout: str, name: str) -> list[dict[str, Any]]:
    return [e for e in events(stdout) if e["event"] == name]


def _analyzed(stdout: str) -> list[str]:
    return [e["partition"] for e in _named(stdout, "partition.analyzed")]


def _failure_titles(d: Deployment) -> list[str]:
    return [t for t in d.slack_alerts() if t.startswith(("Monitoring Failed", "Monitoring Halted"))]


# ---- one folder's fault ------------------------------------------------------------------------


class TestUnreadableFolder:
    def test_an_unreadable_folder_fails_alone_and_is_given_up_with_one_alert(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """A dated folder driftd may not open (permission denied on `_SUCCESS`) is a failure
        of that folder: the nights around it are processed, its attempts are counted, and
        after max_attempts (3) everyone hears once that the night is not monitored."""
        d = deployment
        d.night(D1, nights.normal)
        locked = d.night(D2, nights.drifted)
        d.night(D3, nights.recovered)
        locked.chmod(0)
        try:
            runs = [driftd(d, "run", "--once", unprivileged=True) for _ in range(4)]
        finally:
            locked.chmod(0o755)
        first = runs[0]
        assert "Traceback" not in first.stdout + first.stderr
        assert [r.returncode for r in runs] == [3, 3, 3, 0], runs[0].stderr
        assert _analyzed(first.stdout) == [D1.isoformat(), D3.isoformat()]
        failed = [_named(r.stdout, "partition.failed") for r in runs]
        assert [[(e["partition"], e["attempts"]) for e in f] for f in failed] == [
            [(D2.isoformat(), 1)], [(D2.isoformat(), 2)], [(D2.isoformat(), 3)], []]
        assert "Permission denied" in failed[0][0]["error"]
        assert d.stored_nights() == [(D1, "none"), (D3, "none")]
        expected = f"Monitoring Failed - driftd {D2.isoformat()}"
        assert _failure_titles(d) == [expected]
        assert d.emails() == [expected]
        assert [a for a, _ in d.pagerduty_events()] == ["trigger"]
        status = json.loads(driftd(d, "status", "--json").stdout)
        assert [(f["partition"], f["attempts"], f["gave_up"]) for f in status["failed"]] == [
            (D2.isoformat(), 3, True)]


# ---- a locked table --------------------------------------------------------------------------


@contextmanager
def metrics_table_locked(d: Deployment) -> Iterator[None]:
    """Another session holds ACCESS EXCLUSIVE on monitoring_metrics until the block ends."""
    with closing(psycopg2.connect(d.pg.url(d.database))) as conn:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE monitoring_metrics IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


class TestLockedTable:
    def test_locked_metrics_table_defers_the_night_and_loses_nothing(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """With the table locked, `run --once` finishes (report and alerts on time, the rows
        pending); SIGTERM stops the daemon within TimeoutStopSec with the default timeouts;
        once the lock is gone every night is stored once."""
        d = deployment
        d.night(D1, nights.normal)
        assert driftd(d, "run", "--once").returncode == 0  # creates the schema
        d.night(D2, nights.drifted)
        with metrics_table_locked(d):
            locked = driftd(d, "run", "--once", timeout=120, DRIFTD_STORE__LOCK_TIMEOUT_S="1")
            assert locked.returncode == 0, locked.stderr
            assert _named(locked.stdout, "store.write_failed")
            assert d.report(D2)["overall_severity"] == "high"
            assert d.slack_alerts() == [title("high", D2)]
            status = json.loads(driftd(d, "status", "--json").stdout)
            assert status["store"]["pending_writes"] == 1
            error_at = datetime.fromisoformat(status["store"]["last_error_at"])
            analysed = datetime.fromisoformat(
                _named(locked.stdout, "partition.analyzed")[0]["timestamp"])
            assert error_at >= analysed  # when the write failed, not when the run began

            d.night(D3, nights.recovered)
            daemon = d.start()  # default lock_timeout: the write waits, then is deferred
            daemon.wait_for("partition.analyzed", partition=D3.isoformat())
            daemon.signal(signal.SIGTERM)
            assert daemon.finish(timeout=stop_timeout_s()) == 0, daemon.output
            d.record(daemon)
        back = driftd(d, "run", "--once")
        assert back.returncode == 0, back.stderr
        assert d.stored_nights() == [(D1, "none"), (D2, "high"), (D3, "none")]
        assert d.duplicate_metric_rows() == []
        assert d.slack_alerts() == [title("high", D2), title("resolve", D3)]
        assert json.loads(driftd(d, "status", "--json").stdout)["store"]["pending_writes"] == 0


# ---- run-level faults --------------------------------------------------------------------------


@contextmanager
def full_disk(base: Path) -> Iterator[Path]:
    """A small tmpfs with no space left (a filler file takes it all); yields the mount
    point. Skips when this machine cannot mount (not root, or no CAP_SYS_ADMIN)."""
    mount = Path(tempfile.mkdtemp(prefix="driftd-full-", dir=base))
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up: {done.stderr.strip()}")
    try:
        with open(mount / "filler", "wb") as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(mount, ignore_errors=True)


@pytest.fixture
def disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with full_disk(tmp_path_factory.mktemp("disk")) as mount:
        yield mount


Fault = Callable[[Nights, Path], tuple[dict[str, str], Callable[[], dict[str, str]]]]
"""Sets up a run-level fault; returns the environment of the broken runs and the fix (which
returns the environment of the runs after it)."""


def empty_baseline(nights: Nights, tmp: Path) -> tuple[dict[str, str],
                                                       Callable[[], dict[str, str]]]:
    baseline = tmp / "baseline.json"
    baseline.write_text("{}")
    env = {"DRIFTD_DATA__BASELINE": str(baseline)}

    def fix() -> dict[str, str]:
        shutil.copyfile(nights.baseline, baseline)
        return env

    return env, fix


def missing_model(nights: Nights, tmp: Path) -> tuple[dict[str, str],
                                                      Callable[[], dict[str, str]]]:
    # The fix is the operator correcting [model] path (here: back to no model, which is
    # what the saved baseline was built with).
    return {"DRIFTD_MODEL__PATH": str(tmp / "classifier.tflite")}, dict


def no_space_left(nights: Nights, tmp: Path) -> tuple[dict[str, str],
                                                      Callable[[], dict[str, str]]]:
    env = {"DRIFTD_DATA__REPORTS_DIR": str(tmp)}

    def fix() -> dict[str, str]:
        (tmp / "filler").unlink()
        return env

    return env, fix


class TestRunLevelFaults:
    @pytest.mark.parametrize("fault", [empty_baseline, missing_model, no_space_left],
                             ids=["empty-baseline", "missing-model", "full-disk"])
    def test_run_level_fault_spends_no_attempts_and_is_announced_once(
        self, deployment: Deployment, nights: Nights, tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest, fault: Fault,
    ) -> None:
        """Five runs under a run-level fault: each exits 3 with the cause, one alert in all,
        no folder loses an attempt; after the fix the next run processes every night."""
        d = deployment
        d.night(D1, nights.normal)
        d.night(D2, nights.drifted)
        tmp = (request.getfixturevalue("disk") if fault is no_space_left
               else tmp_path_factory.mktemp("fault"))
        env, fix = fault(nights, tmp)
        for _ in range(5):  # max_attempts is 3
            run = driftd(d, "run", "--once", **env)
            assert run.returncode == 3, run.stdout + run.stderr
            assert "Traceback" not in run.stderr
            assert [e["level"] for e in _named(run.stdout, "run.failed")] == ["error"]
            assert _named(run.stdout, "partition.failed") == []
            assert run.stderr.splitlines()[-1].startswith("driftd run --once: ")
        today = datetime.now(timezone.utc).date().isoformat()
        assert _failure_titles(d) == [f"Monitoring Halted - driftd {today}"]
        assert d.emails() == _failure_titles(d)
        status = json.loads(driftd(d, "status", "--json", **env).stdout)
        assert status["failed"] == [] and status["recent_runs"] == []
        fixed = driftd(d, "run", "--once", **fix())
        assert fixed.returncode == 0, fixed.stderr
        assert _analyzed(fixed.stdout) == [D1.isoformat(), D2.isoformat()]
        assert [day for day, _ in d.stored_nights()] == [D1, D2]

    def test_running_daemon_shows_a_run_level_fault_on_healthz_and_metrics(
        self, deployment: Deployment, nights: Nights, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """`driftd run` with an empty baseline: /healthz degraded with the cause, /metrics
        driftd_last_run_success 0 and one failed run counted."""
        d = deployment
        d.night(D1, nights.normal)
        env, _ = empty_baseline(nights, tmp_path_factory.mktemp("fault"))
        daemon = d.start(DRIFTD_HTTP__LISTEN="127.0.0.1:0", **env)
        try:
            started = daemon.wait_for("http.started")
            failed = daemon.wait_for("run.failed")
            base = f"http://127.0.0.1:{started['port']}"
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
                health = json.loads(response.read())
            with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
                metrics = response.read().decode()
        finally:
            daemon.signal(signal.SIGTERM)
            assert daemon.finish(timeout=stop_timeout_s()) == 0, daemon.output
            d.record(daemon)
        assert "baseline" in failed["error"]
        assert health["status"] == "degraded" and health["last_run"]["ok"] is False
        assert "baseline" in health["last_run"]["error"]
        assert "driftd_last_run_success 0.0" in metrics
        assert "driftd_run_failures_total 1.0" in metrics


# ---- time of the rows --------------------------------------------------------------------------


def _panel_points(d: Deployment) -> dict[str, list[datetime]]:
    """The time column of each time-series panel's rows, over the last two weeks."""
    dashboard = json.loads(GRAFANA_DASHBOARD.read_text())
    end = datetime.now(timezone.utc) + timedelta(days=1)
    start = end - timedelta(days=14)
    points: dict[str, list[datetime]] = {}
    for panel in dashboard["panels"]:
        if panel["title"] not in GRAFANA_PANELS:
            continue
        for target in panel["targets"]:
            rows = d.query(grafana_sql(target["rawSql"], start, end))
            points[panel["title"]] = sorted({_as_time(row[0]) for row in rows})
    return points


def _as_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc)
    return datetime.fromtimestamp(float(value), timezone.utc)


class TestNightTimes:
    def test_four_night_catch_up_is_one_point_per_night_and_backfill_keeps_them(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """Four nights caught up in one run: every time-series panel (Severity over time
        first) shows four points, at each night's midnight; a backfill moves none."""
        d = deployment
        days = [D0, D1, D2, D3]
        for day, template in zip(days, [nights.normal, nights.drifted, nights.recovered,
                                        nights.normal], strict=True):
            d.night(day, template)
        caught_up = driftd(d, "run", "--once")
        assert caught_up.returncode == 0, caught_up.stderr
        midnights = [datetime.combine(day, time(), timezone.utc) for day in days]
        points = _panel_points(d)
        assert set(points) == set(GRAFANA_PANELS)
        assert points["Severity over time"] == midnights
        for panel, times in points.items():
            assert times == midnights, panel
        backfill = driftd(d, "backfill", "--from", D1.isoformat(), "--to", D2.isoformat())
        assert backfill.returncode == 0, backfill.stderr
        assert _panel_points(d) == points
        assert d.duplicate_metric_rows() == []
