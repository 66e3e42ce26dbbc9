"""A PostgreSQL metric store whose table is locked by someone else: the write gives up after
``lock_timeout`` and the night waits as a pending write, exactly as in an outage."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from daemon.state import StateDB, flush_pending, store_or_defer
from sinks.errors import StoreUnavailable
from sinks.store import night_to_json, open_store
from tests.sinks.test_store import OPTIONS, make_night

LIVENESS_S = 120.0
"""How long the test waits before calling the write hung (far above lock_timeout)."""


@contextmanager
def table_locked(url: str, table: str = "monitoring_metrics") -> Iterator[None]:
    """Another session holds ACCESS EXCLUSIVE on ``table`` until the block ends."""
    with closing(psycopg2.connect(url)) as conn:
        with conn.cursor() as cur:
            cur.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def _in_thread(call: Any) -> Any:
    """Run ``call`` in a thread; fail (instead of hanging the suite) if it never returns."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as err:
            outcome["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(LIVENESS_S)
    assert not thread.is_alive(), "the store call waited on the lock without a timeout"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


class TestLockedTable:
    def test_write_against_a_locked_table_gives_up_and_is_deferred(
        self, pg_url: str, tmp_path: Path
    ) -> None:
        """lock_timeout cancels the write; the night is pending and lands once unlocked."""
        store = open_store(pg_url, replace(OPTIONS, lock_timeout_s=1, statement_timeout_s=5))
        store.migrate()
        state = StateDB(tmp_path / "state.sqlite")
        night = make_night(date(2026, 11, 26), severity="high")
        payload = tmp_path / "night.json"
        payload.write_text(json.dumps(night_to_json(night)))
        with table_locked(pg_url):
            with pytest.raises(StoreUnavailable, match="lock timeout"):
                _in_thread(lambda: store.write_night(night))
            assert _in_thread(lambda: store_or_defer(state, store, night, payload)) is False
        assert [p.partition for p in state.pending_writes()] == [date(2026, 11, 26)]
        assert state.store_status().last_error is not None
        result = flush_pending(state, store)
        assert result.written == [date(2026, 11, 26)] and state.pending_writes() == []
        assert [r.partition for r in store.latest_reports()] == [date(2026, 11, 26)]

    def test_slow_statement_is_cancelled_by_statement_timeout(self, pg_url: str) -> None:
        """A read blocked behind the lock is cancelled too (metric history for the HTML)."""
        store = open_store(pg_url, replace(OPTIONS, lock_timeout_s=30, statement_timeout_s=1))
        store.migrate()
        with table_locked(pg_url), pytest.raises(StoreUnavailable, match="statement timeout"):
            _in_thread(lambda: store.metric_history(["drift_detected"], date(2026, 11, 26), 7))
