"""The daemon's durable work state, in one SQLite file under ``state_dir``.

What the daemon still has to do survives restarts here, whatever else is down: the run
ledger (which folder dates are done or given up on, ``ledger``), the nights still to be
written to the metric store (``ledger`` and ``pending``) and the alert outbox (``outbox``).
Every connection is opened with ``sinks.sqlite_file.connect_sqlite`` and every instant is
stored with ``sinks.times``, like the SQLite metric store's.
"""

from __future__ import annotations

from pathlib import Path

from daemon.defaults import STATE_DB_NAME
from daemon.state.ledger import (
    LedgerEntry,
    PendingWrite,
    RunStatus,
    StateDB,
    StateError,
    StoreStatus,
)
from daemon.state.outbox import OUTBOX_STATUSES, Outbox, OutboxAlert, OutboxStatus, alert_key
from daemon.state.pending import FlushResult, flush_pending, night_from_payload, store_or_defer

__all__ = [
    "OUTBOX_STATUSES",
    "FlushResult",
    "LedgerEntry",
    "Outbox",
    "OutboxAlert",
    "OutboxStatus",
    "PendingWrite",
    "RunStatus",
    "StateDB",
    "StateError",
    "StoreStatus",
    "alert_key",
    "flush_pending",
    "night_from_payload",
    "state_file",
    "store_or_defer",
]


def state_file(state_dir: Path) -> Path:
    """The state file in ``state_dir``."""
    return state_dir / STATE_DB_NAME
