"""The run ledger, the pending store writes and the store's health, in the state file.

``state_dir/state.sqlite`` is always writable, even when the metric store is down, so it is
the source of truth for which folder dates are done and which nights still have to reach
the metric store. ``daemon.state.outbox.Outbox`` keeps the alert outbox in the same file, in
its own tables; both open their connections with ``sinks.sqlite_file.connect_sqlite`` (WAL
mode, a busy timeout), so they coexist (and a second process, e.g. ``driftd status``, can
read while the daemon writes).
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Literal, NamedTuple

from daemon.defaults import MAX_ATTEMPTS
from sinks.sqlite_file import sqlite_connection
from sinks.store.migrations import Migration, migrate_sqlite
from sinks.times import from_text, parse_text, to_text

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "run ledger, pending store writes, store health",
        (
            """CREATE TABLE driftd_ledger (
                partition_date TEXT PRIMARY KEY,
                run_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
                attempts INTEGER NOT NULL,
                started_at TEXT NOT NULL,
                finished_at TEXT,
                error TEXT,
                severity TEXT
            )""",
            """CREATE TABLE driftd_pending_writes (
                partition_date TEXT PRIMARY KEY,
                payload_path TEXT NOT NULL,
                added_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            )""",
            """CREATE TABLE driftd_store_status (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                last_ok_at TEXT,
                last_error TEXT,
                last_error_at TEXT
            )""",
        ),
    ),
)
"""The state tables' migrations (recorded in ``state_migrations``; the outbox has its own)."""

RunStatus = Literal["running", "done", "failed"]


class StateError(Exception):
    """Raised when the state database cannot be opened or written (disk full, permissions)."""


@dataclass(frozen=True)
class LedgerEntry:
    """The run ledger's record of one folder date."""

    partition: date
    run_id: str
    status: RunStatus
    attempts: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    severity: str | None


class PendingWrite(NamedTuple):
    """A night whose store write has not succeeded yet: its date and payload file."""

    partition: date
    payload_path: str


@dataclass(frozen=True)
class StoreStatus:
    """The metric store's health as the daemon last saw it (for ``driftd status``).

    ``last_error`` is set when the latest attempt failed and cleared by the next success;
    ``pending`` counts nights waiting to be written.
    """

    last_ok_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    pending: int


class StateDB:
    """The state database at ``path`` (created with its tables on first use)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        with self._connect() as conn:
            migrate_sqlite(conn, MIGRATIONS, table="state_migrations")

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return sqlite_connection(self.path, lambda err: StateError(
            f"state database {self.path} failed: {err}; check that the state directory "
            "is writable by driftd and the disk is not full"))

    def ledger_get(self, partition: date) -> LedgerEntry | None:
        """The ledger entry of ``partition``, ``None`` when it never ran."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT partition_date, run_id, status, attempts, started_at, finished_at, error, "
                "severity FROM driftd_ledger WHERE partition_date = ?",
                (partition.isoformat(),),
            ).fetchone()
        return _entry(row) if row else None

    def ledger_recent(self, limit: int = 30) -> list[LedgerEntry]:
        """The ``limit`` newest ledger entries, newest folder date first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT partition_date, run_id, status, attempts, started_at, finished_at, error, "
                "severity FROM driftd_ledger ORDER BY partition_date DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [_entry(r) for r in rows]

    def ledger_start(self, partition: date, run_id: str, now: datetime) -> None:
        """Mark ``partition`` running under ``run_id``; counts one more attempt."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO driftd_ledger (partition_date, run_id, status, attempts, started_at) "
                "VALUES (?, ?, 'running', 1, ?) ON CONFLICT (partition_date) DO UPDATE SET "
                "run_id = excluded.run_id, status = 'running', attempts = attempts + 1, "
                "started_at = excluded.started_at, finished_at = NULL, error = NULL",
                (partition.isoformat(), run_id, to_text(now)),
            )

    def ledger_finish(
        self,
        partition: date,
        run_id: str,
        now: datetime,
        status: RunStatus,
        error: str | None,
        severity: str | None,
    ) -> None:
        """Record how the run of ``partition`` ended (``done`` or ``failed``)."""
        if status not in ("done", "failed"):
            raise ValueError(f"ledger status {status!r} is not a final status; use done or failed")
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO driftd_ledger (partition_date, run_id, status, attempts, started_at, "
                "finished_at, error, severity) VALUES (?, ?, ?, 1, ?, ?, ?, ?) "
                "ON CONFLICT (partition_date) DO UPDATE SET run_id = excluded.run_id, "
                "status = excluded.status, finished_at = excluded.finished_at, "
                "error = excluded.error, severity = excluded.severity",
                (partition.isoformat(), run_id, status, to_text(now), to_text(now), error,
                 severity),
            )

    def ledger_restore(self, partition: date, previous: LedgerEntry | None) -> None:
        """Undo an attempt that must not count: put back ``previous`` (the entry
        ``ledger_get`` returned before ``ledger_start``), or forget the date when it had none.

        Used when the daemon was stopped mid-folder (SIGTERM) and when a run-level fault (no
        baseline, broken model, full disk) stopped the run: neither is the folder's fault.
        """
        with self._connect() as conn:
            if previous is None:
                conn.execute(
                    "DELETE FROM driftd_ledger WHERE partition_date = ?", (partition.isoformat(),)
                )
                return
            conn.execute(
                "INSERT OR REPLACE INTO driftd_ledger (partition_date, run_id, status, attempts, "
                "started_at, finished_at, error, severity) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    partition.isoformat(), previous.run_id, previous.status, previous.attempts,
                    to_text(previous.started_at),
                    to_text(previous.finished_at) if previous.finished_at else None,
                    previous.error, previous.severity,
                ),
            )

    def ledger_reset(self, partition: date) -> LedgerEntry | None:
        """Forget the ledger entry of ``partition`` so that runs pick it up again with a fresh
        set of attempts (``driftd retry``); returns the entry it removed (None: there was none).
        """
        entry = self.ledger_get(partition)
        if entry is not None:
            with self._connect() as conn:
                conn.execute(
                    "DELETE FROM driftd_ledger WHERE partition_date = ?", (partition.isoformat(),)
                )
        return entry

    def ledger_done(self, since: date, max_attempts: int = MAX_ATTEMPTS) -> set[date]:
        """Folder dates from ``since`` on needing no run: done, or failed ``max_attempts`` times."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT partition_date FROM driftd_ledger WHERE partition_date >= ? AND "
                "(status = 'done' OR (status = 'failed' AND attempts >= ?))",
                (since.isoformat(), max_attempts),
            ).fetchall()
        return {date.fromisoformat(r[0]) for r in rows}

    def pending_writes_add(self, partition: date, payload_path: Path | str) -> None:
        """Remember that the night of ``partition`` (payload at ``payload_path``) must be stored."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO driftd_pending_writes (partition_date, payload_path) VALUES (?, ?) "
                "ON CONFLICT (partition_date) DO UPDATE SET payload_path = excluded.payload_path",
                (partition.isoformat(), str(payload_path)),
            )

    def pending_writes(self) -> list[PendingWrite]:
        """Nights still waiting for the metric store, oldest folder date first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT partition_date, payload_path FROM driftd_pending_writes "
                "ORDER BY partition_date"
            ).fetchall()
        return [PendingWrite(date.fromisoformat(r[0]), r[1]) for r in rows]

    def pending_writes_done(self, partition: date) -> None:
        """Forget the pending write of ``partition`` (it reached the store)."""
        with self._connect() as conn:
            conn.execute(
                "DELETE FROM driftd_pending_writes WHERE partition_date = ?",
                (partition.isoformat(),),
            )

    def store_ok(self, now: datetime) -> None:
        """Record a successful store write at ``now`` (clears the last error)."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO driftd_store_status (id, last_ok_at) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_ok_at = excluded.last_ok_at, "
                "last_error = NULL, last_error_at = NULL",
                (to_text(now),),
            )

    def store_failed(self, now: datetime, error: str) -> None:
        """Record a failed store write at ``now``; ``error`` must already be free of secrets."""
        with self._connect() as conn:
            conn.execute(
                "INSERT INTO driftd_store_status (id, last_error, last_error_at) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET last_error = excluded.last_error, "
                "last_error_at = excluded.last_error_at",
                (error, to_text(now)),
            )

    def store_status(self) -> StoreStatus:
        """The metric store's last success, last error and the number of pending nights."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT last_ok_at, last_error, last_error_at FROM driftd_store_status WHERE id = 1"
            ).fetchone()
            pending = conn.execute("SELECT count(*) FROM driftd_pending_writes").fetchone()[0]
        last_ok, last_error, last_error_at = row if row else (None, None, None)
        return StoreStatus(from_text(last_ok), last_error, from_text(last_error_at), int(pending))


def _entry(
    row: tuple[str, str, RunStatus, int, str, str | None, str | None, str | None],
) -> LedgerEntry:
    partition, run_id, status, attempts, started, finished, error, severity = row
    return LedgerEntry(
        partition=date.fromisoformat(partition),
        run_id=run_id,
        status=status,
        attempts=int(attempts),
        started_at=parse_text(started),
        finished_at=from_text(finished),
        error=error,
        severity=severity,
    )
