"""A night in the life: the real ``driftd`` process against real PostgreSQL, SMTP and HTTP
servers, over dated folders (normal, drifted, recovered), with faults injected.

The promise under test: a night's drift reaches the right people exactly once and is stored,
whatever breaks — the database, a channel, the process itself, or the images.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sinks.files import TEMP_PREFIX
from tests.e2e.conftest import (
    D1,
    D2,
    D3,
    ROOT,
    Deployment,
    Nights,
    events,
    stop_timeout_s,
    title,
)
from tests.fixtures.images import write_images
from tests.fixtures.servers import RecordingHTTPServer, Reply

pytestmark = pytest.mark.slow


def _report_names(*days: Any) -> list[str]:
    return sorted(f"monitor_report_{d:%Y%m%d}.{ext}" for d in days for ext in ("json", "html"))


def _analyzed(stdout: str) -> list[tuple[str, str]]:
    return [(e["partition"], e["severity"]) for e in events(stdout)
            if e["event"] == "partition.analyzed"]


def _event_names(stdout: str) -> list[str]:
    return [str(e["event"]) for e in events(stdout)]


class TestNightsInOrder:
    def test_normal_drifted_recovered_reach_disk_database_and_the_right_people(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """Three nights: reports on disk, rows in PostgreSQL, alerts per routing, a resolve."""
        d = deployment
        d.night(D1, nights.normal)
        d.night(D2, nights.drifted)
        d.night(D3, nights.recovered)
        result = d.run_once()
        assert result.returncode == 0, result.stderr
        assert _analyzed(result.stdout) == [
            (D1.isoformat(), "none"), (D2.isoformat(), "high"), (D3.isoformat(), "none")]
        assert d.report_files() == _report_names(D1, D2, D3)
        assert d.report(D2)["overall_drift_detected"] is True
        assert d.stored_nights() == [(D1, "none"), (D2, "high"), (D3, "none")]
        assert d.metric("drift_detected") == [(D1, 0.0), (D2, 1.0), (D3, 0.0)]
        assert d.duplicate_metric_rows() == []
        # low → Slack, medium → + email, high → + PagerDuty; recovery resolves each.
        assert d.slack_alerts() == [title("high", D2), title("resolve", D3)]
        assert d.emails() == [title("high", D2), title("resolve", D3)]
        (trigger, trigger_key), (resolve, resolve_key) = d.pagerduty_events()
        assert (trigger, resolve) == ("trigger", "resolve") and trigger_key == resolve_key

        again = d.run_once()
        assert again.returncode == 0, again.stderr
        assert _analyzed(again.stdout) == []
        assert len(d.slack.requests) == 2 and len(d.smtp.received) == 2
        assert len(d.pagerduty.requests) == 2


class TestFaults:
    def test_database_down_for_a_night_loses_and_duplicates_nothing(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """PostgreSQL stopped for the drifted night: report and alerts on time, rows later."""
        d = deployment
        d.night(D1, nights.normal)
        assert d.run_once().returncode == 0
        d.pg.stop()
        try:
            d.night(D2, nights.drifted)
            outage = d.run_once()
        finally:
            d.pg.start()
        assert outage.returncode == 0, outage.stderr
        assert "store.unavailable" in _event_names(outage.stdout)
        assert d.report_files() == _report_names(D1, D2)
        assert d.report(D2)["overall_severity"] == "high"
        assert d.slack_alerts() == [title("high", D2)]
        assert d.emails() == [title("high", D2)]
        assert [a for a, _ in d.pagerduty_events()] == ["trigger"]
        assert d.stored_nights() == [(D1, "none")]

        d.night(D3, nights.recovered)
        back = d.run_once()
        assert back.returncode == 0, back.stderr
        flushed = [e for e in events(back.stdout) if e["event"] == "pending_writes.flushed"]
        assert [e["count"] for e in flushed] == [1]
        assert d.stored_nights() == [(D1, "none"), (D2, "high"), (D3, "none")]
        assert d.metric("drift_detected") == [(D1, 0.0), (D2, 1.0), (D3, 0.0)]
        assert d.duplicate_metric_rows() == []
        assert d.slack_alerts() == [title("high", D2), title("resolve", D3)]
        assert d.emails() == [title("high", D2), title("resolve", D3)]
        assert [a for a, _ in d.pagerduty_events()] == ["trigger", "resolve"]

    def test_slack_down_for_a_night_is_delivered_once_when_it_recovers(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """Slack answering 503 delays only Slack; email and PagerDuty go out on time."""
        d = deployment
        d.night(D1, nights.normal)
        d.night(D2, nights.drifted)
        d.slack.default = Reply(503, body="service unavailable")
        try:
            down = d.run_once()
        finally:
            d.slack.default = Reply(200, body="ok")
        assert down.returncode == 0, down.stderr
        assert d.emails() == [title("high", D2)]
        assert [a for a, _ in d.pagerduty_events()] == ["trigger"]
        assert d.slack_alerts() == [title("high", D2)]  # the one attempt, answered 503
        retries = [e for e in events(down.stdout) if e["event"] == "alert.retry_scheduled"]
        assert [e["channel"] for e in retries] == ["slack"]

        d.night(D3, nights.recovered)
        up = d.run_once()
        assert up.returncode == 0, up.stderr
        # Exactly one more drift post (the delivered one), then the resolve after it.
        assert d.slack_alerts() == [title("high", D2), title("high", D2), title("resolve", D3)]
        assert d.emails() == [title("high", D2), title("resolve", D3)]
        assert [a for a, _ in d.pagerduty_events()] == ["trigger", "resolve"]
        assert d.stored_nights() == [(D1, "none"), (D2, "high"), (D3, "none")]

    def test_slack_blip_is_retried_by_the_running_daemon_within_the_night(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """A failed Slack post is retried on its backoff by the running daemon, not a day later."""
        d = deployment
        d.night(D2, nights.drifted)
        d.slack.default = Reply(503, body="service unavailable")
        daemon = d.start()
        try:
            daemon.wait_for("alert.retry_scheduled", channel="slack")
            d.slack.default = Reply(200, body="ok")
            # backoff_cap_s is 1 s: ten seconds is many retries' worth.
            daemon.wait_for("alert.sent", timeout=10, channel="slack")
        finally:
            daemon.signal(signal.SIGTERM)
            assert daemon.finish(timeout=stop_timeout_s()) == 0, daemon.output
            d.record(daemon)
        assert d.slack_alerts()[-1] == title("high", D2)


class TestSignals:
    @pytest.mark.parametrize("kill_after", ["partition.started", "partition.analyzed"],
                             ids=["mid-analysis", "before-report-write"])
    def test_sigkill_mid_folder_then_restart_completes_it_once(
        self, deployment: Deployment, nights: Nights, kill_after: str
    ) -> None:
        """SIGKILL mid-folder, then a restart: one complete report, one row, one alert each."""
        d = deployment
        d.night(D2, nights.large_drifted)
        killed = d.start(DRIFTD_ANALYSIS__CHUNK_SIZE="4")
        killed.wait_for(kill_after, partition=D2.isoformat())
        killed.signal(signal.SIGKILL)
        assert killed.finish(timeout=30) == -signal.SIGKILL
        d.record(killed)
        assert d.slack.requests == [] and d.pagerduty.requests == [] and d.smtp.received == []
        # What a kill during the atomic write leaves behind (the kill lands just before it).
        d.reports.mkdir(parents=True, exist_ok=True)
        torn = d.reports / f"{TEMP_PREFIX}monitor_report_{D2:%Y%m%d}.html.k1ll3d.html"
        torn.write_text("<!doctype html><html><head><title>Drift rep")

        restarted = d.start()
        finished = restarted.wait_for("run.finished")
        restarted.signal(signal.SIGTERM)
        assert restarted.finish(timeout=stop_timeout_s()) == 0, restarted.output
        d.record(restarted)
        assert finished["processed"] == 1 and finished["failed"] == 0
        assert d.report_files() == _report_names(D2)  # no torn or temp file left
        report = d.report(D2)
        assert report["overall_severity"] == "high" and report["current_image_count"] == 400
        html = (d.reports / f"monitor_report_{D2:%Y%m%d}.html").read_text()
        assert html.rstrip().endswith("</html>")
        assert d.stored_nights() == [(D2, "high")]
        assert d.duplicate_metric_rows() == []
        assert d.slack_alerts() == [title("high", D2)]
        assert d.emails() == [title("high", D2)]
        assert [a for a, _ in d.pagerduty_events()] == ["trigger"]

    def test_sigterm_mid_folder_exits_zero_within_the_unit_stop_timeout(
        self, deployment: Deployment, nights: Nights
    ) -> None:
        """SIGTERM during analysis: exit 0 before systemd would SIGKILL, nothing half-done."""
        d = deployment
        d.night(D2, nights.large_drifted)
        daemon = d.start(DRIFTD_ANALYSIS__CHUNK_SIZE="4")
        daemon.wait_for("partition.started", partition=D2.isoformat())
        daemon.signal(signal.SIGTERM)
        assert daemon.finish(timeout=stop_timeout_s()) == 0, daemon.output
        d.record(daemon)
        names = _event_names("".join(daemon.lines))
        assert "partition.abandoned" in names and "daemon.stopped" in names
        assert d.report_files() == []
        assert d.stored_nights() == []
        assert d.slack.requests == [] and d.pagerduty.requests == [] and d.smtp.received == []

        resumed = d.run_once()
        assert resumed.returncode == 0, resumed.stderr
        assert _analyzed(resumed.stdout) == [(D2.isoformat(), "high")]
        assert d.report_files() == _report_names(D2)
        assert d.stored_nights() == [(D2, "high")]
        assert d.slack_alerts() == [title("high", D2)]
        assert [a for a, _ in d.pagerduty_events()] == ["trigger"]


# ---- hostile inputs ------------------------------------------------------------------------

HOSTILE_CONFIG = """
[data]
production_root = "production"
baseline = "{baseline}"
state_dir = "var"

[analysis]
workers = 1

[store]
url = "sqlite:///var/metrics.sqlite"

[alerts]
console = true

[logging]
format = "json"
"""

OUTSIDE_SIZE = "97x31"
"""The size of every image outside the night's folder: it must never reach the report."""


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path: Path, side: int = 20_000) -> None:
    """A valid 1-bit PNG of side × side pixels (4× Pillow's limit) in ~50 kB of zeros."""
    row_batch = (b"\x00" * (1 + side // 8)) * 500
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row_batch) for _ in range(side // 500))
    data += compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b""))


def write_hostile_files(folder: Path, outside: Path) -> None:
    """Add one of each hostile input to ``folder``; ``outside`` receives the symlink targets."""
    rng = np.random.default_rng(7)
    big = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    big.save(folder / "_big.jpg", "JPEG", quality=95)
    data = (folder / "_big.jpg").read_bytes()
    (folder / "_big.jpg").unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) * 6 // 10])  # cut in the scan
    (folder / "truncated_header.jpg").write_bytes(data[:300])  # cut inside the headers
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notimage.jpg").write_text("id,label\n1,cat\n2,dog\n", encoding="utf-8")
    write_bomb_png(folder / "bomb.png")
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "tiny.png")
    deep = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")
    Image.open(folder / "img_00001.jpg").convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.open(folder / "img_00002.jpg").resize((64, 40)).save(
        folder / "rotated.jpg", "JPEG", exif=exif.tobytes())
    outside.mkdir()
    Image.new("RGB", (97, 31), (255, 255, 0)).save(outside / "secret.jpg")
    (outside / "nested").mkdir()
    Image.new("RGB", (97, 31), (0, 255, 255)).save(outside / "nested" / "other.jpg")
    (folder / "link.jpg").symlink_to(outside / "secret.jpg")
    (folder / "linked_dir").symlink_to(outside / "nested", target_is_directory=True)


@dataclass(frozen=True)
class HostileRun:
    """One ``driftd run --once`` over a night of 50 good and 12 hostile entries."""

    result: subprocess.CompletedProcess[str]
    report: dict[str, Any]
    report_text: str
    html: str


@pytest.fixture(scope="module")
def hostile_run(nights: Nights, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostileRun]:
    """The hostile night processed once by the real daemon (SQLite store, console alerts)."""
    root = tmp_path_factory.mktemp("hostile")
    folder = root / "production" / D3.strftime("%Y%m%d")
    write_images(folder, 50, 1, size=(32, 32))
    write_hostile_files(folder, root / "outside")
    (folder / "_SUCCESS").touch()
    config = root / "config.toml"
    config.write_text(HOSTILE_CONFIG.format(baseline=nights.baseline), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTD_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--config", str(config), "run", "--once"],
        cwd=root, env=env, capture_output=True, text=True, timeout=180,
    )
    reports = root / "var" / "reports"
    json_path = reports / f"monitor_report_{D3:%Y%m%d}.json"
    text = json_path.read_text() if json_path.exists() else ""
    html_path = json_path.with_suffix(".html")
    yield HostileRun(result, json.loads(text) if text else {}, text,
                     html_path.read_text() if html_path.exists() else "")


class TestHostileInputs:
    def test_hostile_night_completes_with_each_file_counted_and_named(
        self, hostile_run: HostileRun
    ) -> None:
        """Bad files are counted and named in the report; the night still completes."""
        result = hostile_run.result
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        severity = hostile_run.report["overall_severity"]
        assert _analyzed(result.stdout) == [(D3.isoformat(), severity)]
        quality = hostile_run.report["data_quality"]
        issues = {name: set(issue["examples"]) for name, issue in quality["issues"].items()}
        counts = {name: issue["count"] for name, issue in quality["issues"].items()}
        assert "truncated.jpg" in issues["truncated"]
        assert issues["zero_byte"] == {"empty.jpg"}
        assert {"notimage.jpg", "bomb.png", "link.jpg"} <= issues["unreadable"]
        assert counts["zero_byte"] + counts["unreadable"] + counts["truncated"] == 6
        # 50 good + the 1×1, 16-bit, CMYK and EXIF-rotated images are analysed, and named.
        assert quality["analyzed"] == 54 and quality["total_files"] == 60
        assert issues["unexpected_mode"] == {"cmyk.jpg", "deep16.png"}
        assert issues["unexpected_size"] == {"tiny.png", "rotated.jpg"}

    def test_nothing_outside_the_folder_reaches_the_report(self, hostile_run: HostileRun) -> None:
        """A symlinked file or folder pointing outside the night is skipped, never profiled."""
        assert hostile_run.report, hostile_run.result.stderr
        assert OUTSIDE_SIZE not in hostile_run.report_text
        assert "other.jpg" not in hostile_run.report_text
        assert "secret.jpg" not in hostile_run.report_text + hostile_run.html

    def test_jpeg_truncated_in_its_headers_is_counted_as_truncated(
        self, hostile_run: HostileRun
    ) -> None:
        """An upload cut off early is reported as truncated, not as a non-image."""
        truncated = hostile_run.report["data_quality"]["issues"]["truncated"]
        assert "truncated_header.jpg" in truncated["examples"]


# ---- configuration ---------------------------------------------------------------------------

BROKEN_CONFIG = """
[data]
production_root = "production"
state_dir = "var"
frobnicate = true

[schedule]
lookback_days = "two weeks"

[alerts.slack]
min_severity = "low"
"""


def test_bad_config_lists_every_error_and_starts_nothing(
    tmp_path: Path, slack_server: RecordingHTTPServer
) -> None:
    """A wrong type, an unknown key and a missing secret: one error naming all three, exit 2."""
    config = tmp_path / "config.toml"
    config.write_text(BROKEN_CONFIG, encoding="utf-8")
    (tmp_path / "production").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DRIFTD_") and k != "CREDENTIALS_DIRECTORY"}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "--config", str(config), "run"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "3 configuration error(s)" in result.stderr
    for path in ("schedule.lookback_days", "data.frobnicate", "alerts.slack.webhook_url"):
        assert path in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "var").exists()
    assert slack_server.requests == []
