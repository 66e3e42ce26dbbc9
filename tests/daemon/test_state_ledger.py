"""The local state database: run ledger, pending store writes, store health."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from daemon.state import StateDB

NOW = datetime(2026, 11, 26, 2, 0, tzinfo=timezone.utc)
DAY = date(2026, 11, 26)


class TestLedger:
    def test_finished_dates_are_done_and_failures_retry_until_max(self, tmp_path: Path) -> None:
        """A done date is skipped; a failed one is retried until it failed max_attempts times."""
        state = StateDB(tmp_path / "state.sqlite")
        ok, flaky = DAY, DAY - timedelta(days=1)
        state.ledger_start(ok, "run-1", NOW)
        state.ledger_finish(ok, "run-1", NOW, "done", None, "high")
        for attempt in range(1, 4):
            state.ledger_start(flaky, f"run-{attempt}", NOW)
            state.ledger_finish(flaky, f"run-{attempt}", NOW, "failed", "boom", None)
            expected = {ok} | ({flaky} if attempt >= 3 else set())
            assert state.ledger_done(since=DAY - timedelta(days=7), max_attempts=3) == expected
        entry = state.ledger_get(flaky)
        assert entry is not None
        assert (entry.status, entry.attempts, entry.error, entry.run_id) == (
            "failed",
            3,
            "boom",
            "run-3",
        )
        assert state.ledger_get(DAY + timedelta(days=1)) is None
        assert [e.partition for e in state.ledger_recent()] == [ok, flaky]

    def test_ledger_survives_reopening(self, tmp_path: Path) -> None:
        """A restarted daemon sees what the previous process recorded."""
        StateDB(tmp_path / "state.sqlite").ledger_start(DAY, "run-1", NOW)
        entry = StateDB(tmp_path / "state.sqlite").ledger_get(DAY)
        assert entry is not None and entry.status == "running" and entry.attempts == 1


class TestPendingWrites:
    def test_pending_writes_are_listed_oldest_first_until_done(self, tmp_path: Path) -> None:
        """Nights waiting for the store are kept, oldest first, until marked done."""
        state = StateDB(tmp_path / "state.sqlite")
        state.pending_writes_add(DAY, "/r/b.json")
        state.pending_writes_add(DAY - timedelta(days=1), "/r/a.json")
        state.pending_writes_add(DAY, "/r/b2.json")
        assert [tuple(p) for p in state.pending_writes()] == [
            (DAY - timedelta(days=1), "/r/a.json"),
            (DAY, "/r/b2.json"),
        ]
        state.pending_writes_done(DAY - timedelta(days=1))
        assert [p.partition for p in state.pending_writes()] == [DAY]
        assert state.store_status().pending == 1

    def test_store_status_shows_the_outage_until_a_write_succeeds(self, tmp_path: Path) -> None:
        """The last store error is shown until the next successful write clears it."""
        state = StateDB(tmp_path / "state.sqlite")
        assert state.store_status().last_error is None
        state.store_failed(NOW, "metric store postgresql://u:***@db/m could not connect")
        status = state.store_status()
        assert status.last_error is not None and "could not connect" in status.last_error
        assert status.last_error_at == NOW
        state.store_ok(NOW + timedelta(days=1))
        status = state.store_status()
        assert (status.last_error, status.last_ok_at) == (None, NOW + timedelta(days=1))


class TestSharedFile:
    def test_another_connection_holding_the_write_lock_only_delays_writes(
        self, tmp_path: Path
    ) -> None:
        """The outbox's connection to the same file does not make ledger writes fail."""
        path = tmp_path / "state.sqlite"
        state = StateDB(path)
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        with closing(other):
            other.execute("CREATE TABLE outbox_like (k TEXT)")
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO outbox_like VALUES ('x')")
            assert state.ledger_get(DAY) is None  # WAL: reads go on during a write
            release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
            release.start()
            state.ledger_start(DAY, "run-1", NOW)  # waits for the lock instead of failing
            release.join()
        entry = state.ledger_get(DAY)
        assert entry is not None and entry.status == "running"
