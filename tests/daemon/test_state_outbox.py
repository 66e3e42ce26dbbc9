"""Outbox on a real SQLite file: insert-if-absent, due selection, outcomes, reopen."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.state import Outbox, OutboxAlert

NOW = datetime(2026, 11, 27, 1, 15, tzinfo=timezone.utc)


def _alert(channel: str = "slack", kind: str = "drift", day: int = 26, **kw: object) -> OutboxAlert:
    values: dict = {
        "channel": channel,
        "kind": kind,
        "partition": date(2026, 11, day),
        "severity": "high",
        "payload": {"title": "x"},
        "created_at": NOW,
        "next_attempt_at": NOW,
    }
    values.update(kw)
    return OutboxAlert(**values)


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "state.sqlite")


class TestOutbox:
    def test_same_key_is_added_once(self, outbox: Outbox) -> None:
        """Adding the alert of a rerun date again is a no-op (one row, first payload kept)."""
        assert outbox.outbox_add(_alert())
        assert not outbox.outbox_add(_alert(payload={"title": "rerun"}))
        (stored,) = outbox.outbox_all()
        assert stored.key == "slack:drift:2026-11-26"
        assert stored.payload == {"title": "x"}

    def test_due_selects_pending_alerts_whose_time_has_come(self, outbox: Outbox) -> None:
        """Only pending alerts at or before now are due, optionally for one channel."""
        outbox.outbox_add(_alert("slack"))
        outbox.outbox_add(_alert("email"))
        outbox.outbox_add(_alert("retrain", "retrain", next_attempt_at=NOW + timedelta(hours=2)))
        outbox.outbox_add(_alert("pagerduty", status="silenced"))
        assert {a.channel for a in outbox.outbox_due(NOW)} == {"slack", "email"}
        assert [a.channel for a in outbox.outbox_due(NOW, "email")] == ["email"]
        assert len(outbox.outbox_due(NOW + timedelta(hours=3))) == 3

    def test_outcomes_are_recorded(self, outbox: Outbox) -> None:
        """Retry reschedules, sent and dead leave the due list, dead keeps its reason."""
        for channel in ("slack", "email", "pagerduty"):
            outbox.outbox_add(_alert(channel))
        later = NOW + timedelta(minutes=5)
        outbox.outbox_mark_retry("slack:drift:2026-11-26", NOW, later, "HTTP 500")
        outbox.outbox_mark_sent("email:drift:2026-11-26", NOW)
        outbox.outbox_mark_dead("pagerduty:drift:2026-11-26", NOW, "HTTP 400 invalid event")
        assert outbox.outbox_due(NOW) == []
        (retry,) = outbox.outbox_due(later)
        assert (retry.attempts, retry.last_error) == (1, "HTTP 500")
        dead = outbox.outbox_get("pagerduty:drift:2026-11-26")
        assert dead is not None and dead.status == "dead" and "400" in (dead.last_error or "")
        assert outbox.outbox_counts() == {"pending": 1, "sent": 1, "dead": 1}

    def test_last_returns_the_latest_date(self, outbox: Outbox) -> None:
        """The latest pending/sent alert of a channel and kind is found (for resolves)."""
        outbox.outbox_add(_alert(day=20))
        outbox.outbox_add(_alert(day=24))
        outbox.outbox_add(_alert(day=25, status="dead"))
        last = outbox.outbox_last("slack", "drift")
        assert last is not None and last.partition == date(2026, 11, 24)
        assert outbox.outbox_last("slack", "resolve") is None

    def test_state_survives_reopening_and_shares_the_file(self, tmp_path: Path) -> None:
        """A second instance (another process, a restart) sees the same rows in WAL mode."""
        path = tmp_path / "state.sqlite"
        first = Outbox(path)
        first.outbox_add(_alert())
        second = Outbox(path)
        assert not second.outbox_add(_alert())
        second.outbox_mark_sent("slack:drift:2026-11-26", NOW)
        first.close()
        second.close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert db.execute("SELECT MAX(version) FROM outbox_migrations").fetchone()[0] == 1
        assert Outbox(path).outbox_counts() == {"sent": 1}

    def test_naive_times_are_rejected(self, outbox: Outbox) -> None:
        """A timezone-less time is refused rather than silently misordered."""
        with pytest.raises(ValueError, match="timezone-aware"):
            outbox.outbox_add(_alert(next_attempt_at=datetime(2026, 11, 27)))
