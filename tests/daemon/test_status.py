"""The status summary and the file-backed status provider behind the HTTP API."""

from __future__ import annotations

import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from analyzer.contract import DriftReport
from daemon.config import StoreSettings
from daemon.state import Outbox, OutboxAlert, StateDB
from daemon.status import DaemonState, FileStatusProvider, is_valid_report_id, status_summary
from sinks.store.sqlite import SQLiteStore
from tests.daemon.report_samples import make_report, write_report

T0 = datetime(2026, 11, 26, 1, 0, tzinfo=timezone.utc)


def _provider(reports_dir: Path) -> FileStatusProvider:
    state = DaemonState(started_at=T0)
    state.set_scheduler_alive(True)
    return FileStatusProvider(reports_dir, None, None, state)


class TestStatusSummary:
    def test_seed_keys_and_values(self) -> None:
        """The summary carries the seed's dashboard keys with the report's numbers."""
        summary = status_summary(DriftReport.from_dict(make_report("20261126")))
        assert summary["timestamp"] == "2026-11-26T01:15:03+00:00"
        assert summary["drift_detected"] is True
        assert summary["metrics"] == {
            "pixel_mean_shift": 0.0832, "confidence_shift": -0.12, "class_drift_distance": 0.03,
        }
        assert summary["images_analyzed"] == 480
        assert summary["report_id"] == "20261126"

    def test_severity_is_ordered_not_alphabetical(self) -> None:
        """A high pixel drift with no confidence drift reads "high", where the seed's max() of
        the strings would say "none"."""
        report = make_report("20261126", severity="high", confidence="none", classes="none")
        assert max("high", "none") == "none"  # the seed's bug this guards against
        assert status_summary(DriftReport.from_dict(report))["severity_level"] == "high"

    def test_missing_overall_severity_uses_highest_section(self, tmp_path: Path) -> None:
        """A report file without overall_severity (not written by driftd) gets the highest
        section severity by rank."""
        report = make_report("20261126", severity="low")
        del report["overall_severity"]
        report["confidence_drift"]["severity"] = "medium"  # type: ignore[index]
        write_report(tmp_path, report)
        latest = _provider(tmp_path).latest_report()
        assert latest is not None
        assert status_summary(latest)["severity_level"] == "medium"

    def test_model_sections_absent_read_as_zero(self, tmp_path: Path) -> None:
        """A report file without model sections reads with the seed's defaults (0 shift,
        distance 0)."""
        report = make_report("20261126")
        del report["confidence_drift"], report["class_distribution_drift"]
        write_report(tmp_path, report)
        latest = _provider(tmp_path).latest_report()
        assert latest is not None
        summary = status_summary(latest)
        assert summary["metrics"] == {
            "pixel_mean_shift": 0.0832, "confidence_shift": 0.0, "class_drift_distance": 0.0,
        }


class TestReportIds:
    @pytest.mark.parametrize("report_id", ["20261126", "check-20261126T011503Z", "adhoc_1"])
    def test_accepts_known_forms(self, report_id: str) -> None:
        """Nightly dates and check ids are valid."""
        assert is_valid_report_id(report_id)

    @pytest.mark.parametrize("report_id", [
        "", "..", "../x", "a/b", "a\\b", "a\x00b", "20261126.json", "x" * 65, "20261126\n",
        "-x", " 20261126", "é",
    ])
    def test_rejects_everything_else(self, report_id: str) -> None:
        """Anything that could name another path, an extension or a huge id is invalid."""
        assert not is_valid_report_id(report_id)


class TestFileStatusProvider:
    def test_latest_is_highest_date_not_newest_file(self, tmp_path: Path) -> None:
        """A rerun of an older night (newer mtime) does not displace the latest night."""
        write_report(tmp_path, make_report("20261126"), mtime=1_000)
        write_report(tmp_path, make_report("20261125"), mtime=2_000)
        write_report(tmp_path, make_report("check-manual"), mtime=3_000)
        provider = _provider(tmp_path)
        assert provider.latest_report_id() == "20261126"
        latest = provider.latest_report()
        assert latest is not None and latest.report_id == "20261126"

    def test_latest_without_nightly_uses_mtime(self, tmp_path: Path) -> None:
        """With only check reports, the newest file is the latest."""
        write_report(tmp_path, make_report("check-b"), mtime=1_000)
        write_report(tmp_path, make_report("check-a"), mtime=2_000)
        assert _provider(tmp_path).latest_report_id() == "check-a"

    def test_no_reports(self, tmp_path: Path) -> None:
        """An empty or missing reports folder means no latest report."""
        assert _provider(tmp_path).latest_report() is None
        assert _provider(tmp_path / "missing").latest_report() is None

    def test_latest_reread_after_rewrite(self, tmp_path: Path) -> None:
        """A rerun that rewrites the night's report is served, not a cached old copy."""
        write_report(tmp_path, make_report("20261126", severity="high"), mtime=1_000)
        provider = _provider(tmp_path)
        assert provider.latest_report().pixel.severity == "high"  # type: ignore[union-attr]
        write_report(tmp_path, make_report("20261126", severity="low"), mtime=2_000)
        assert provider.latest_report().pixel.severity == "low"  # type: ignore[union-attr]

    def test_report_path_stays_inside_reports_dir(self, tmp_path: Path) -> None:
        """A report file that is a symlink out of the reports folder is not served."""
        reports = tmp_path / "reports"
        reports.mkdir()
        secret = tmp_path / "secret.json"
        secret.write_text("{}")
        os.symlink(secret, reports / "monitor_report_20261126.json")
        write_report(reports, make_report("20261125"))
        provider = _provider(reports)
        assert provider.report_path("20261126", "json") is None
        assert provider.report_path("20261125", "json") == (
            reports / "monitor_report_20261125.json"
        ).resolve()
        assert provider.report_path("../secret", "json") is None

    def test_health_down_when_scheduler_stopped(self, tmp_path: Path) -> None:
        """Health says down once the scheduler is no longer alive."""
        state = DaemonState(started_at=T0)
        provider = FileStatusProvider(tmp_path, None, None, state)
        assert provider.health()["status"] == "down"
        state.set_scheduler_alive(True)
        assert provider.health()["status"] == "ok"

    def test_health_degraded_after_failed_run(self, tmp_path: Path) -> None:
        """A failed run leaves the daemon up but degraded, with the error and counters shown."""
        state = DaemonState(started_at=T0)
        state.set_scheduler_alive(True)
        state.run_started(T0)
        state.run_finished(T0, ok=False, error="baseline missing")
        health = FileStatusProvider(tmp_path, None, None, state).health()
        assert health["status"] == "degraded"
        assert health["last_run"]["error"] == "baseline missing"
        assert (health["runs_total"], health["failures_total"]) == (1, 1)

    def test_health_pings_a_real_store(self, tmp_path: Path) -> None:
        """A real SQLite store is reachable; one whose folder cannot exist is not (degraded)."""
        state = DaemonState(started_at=T0)
        state.set_scheduler_alive(True)
        good = SQLiteStore(tmp_path / "metrics.sqlite", StoreSettings().options())
        health = FileStatusProvider(tmp_path, None, good, state).health()
        assert health["store"]["reachable"] is True and health["status"] == "ok"
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        bad = SQLiteStore(blocker / "metrics.sqlite", StoreSettings().options())
        health = FileStatusProvider(tmp_path, None, bad, state).health()
        assert health["store"] == {
            "configured": True, "reachable": False, "error": "StoreUnavailable",
            "last_ok_at": None, "pending_writes": None,
        }
        assert health["status"] == "degraded"

    def test_health_uses_recorded_store_outage(self, tmp_path: Path) -> None:
        """Without a live store, the state DB's recorded outage and pending nights are shown."""
        state = DaemonState(started_at=T0)
        state.set_scheduler_alive(True)
        db = StateDB(tmp_path / "state.sqlite")
        provider = FileStatusProvider(tmp_path, db, None, state)
        assert provider.health()["store"]["reachable"] is None  # nothing recorded yet
        db.store_ok(T0)
        db.store_failed(T0, "metric store postgresql://driftd:***@db/x could not write")
        db.pending_writes_add(date(2026, 11, 26), tmp_path / "payload.json")
        health = provider.health()
        assert health["status"] == "degraded"
        assert health["store"]["reachable"] is False
        assert health["store"]["pending_writes"] == 1
        assert health["store"]["last_ok_at"] == T0.isoformat()
        db.store_ok(T0)
        assert provider.health()["status"] == "ok"

    def test_alert_counts_from_real_outbox(self, tmp_path: Path) -> None:
        """Alert counts come from the outbox, with every status present."""
        outbox = Outbox(tmp_path / "state.sqlite")
        for channel in ("slack", "email"):
            outbox.outbox_add(OutboxAlert(
                channel=channel, kind="drift", partition=date(2026, 11, 26), severity="high",
                payload={}, created_at=T0, next_attempt_at=T0,
            ))
        outbox.outbox_mark_dead("email:drift:2026-11-26", T0, "550 refused")
        provider = FileStatusProvider(tmp_path, None, None, DaemonState(started_at=T0), outbox)
        assert provider.metrics_snapshot().alerts == {
            "pending": 1, "sent": 0, "dead": 1, "silenced": 0,
        }
        outbox.close()

    def test_unreadable_latest_report_does_not_break_metrics(self, tmp_path: Path) -> None:
        """A torn latest report file is flagged in the snapshot instead of raising."""
        (tmp_path / "monitor_report_20261126.json").write_text("{not json")
        snap = _provider(tmp_path).metrics_snapshot()
        assert snap.report is None and snap.report_readable is False
