"""The alert outbox: every alert decision is a row in the local state file before it is sent.

Tables live in ``state_dir/state.sqlite`` next to the run ledger (``daemon.state.ledger``)
and are versioned by their own ``outbox_migrations`` table (``sinks.store.migrations``). The
file is opened with ``sinks.sqlite_file.connect_sqlite`` (WAL mode, a busy timeout) so the
ledger, the outbox and a second process can share it. An alert's ``key``
(``channel:kind:partition``) is unique: adding it again is a no-op, which is what makes
reruns and backfills of a date send nothing twice. Times are stored with
``sinks.times.to_sortable_text``, so that SQL compares them in time order.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from sinks.sqlite_file import connect_sqlite
from sinks.store.migrations import Migration, migrate_sqlite
from sinks.times import from_text, parse_text, to_sortable_text

OutboxStatus = Literal["pending", "sent", "dead", "silenced"]
OUTBOX_STATUSES: tuple[OutboxStatus, ...] = ("pending", "sent", "dead", "silenced")


@dataclass(frozen=True)
class OutboxAlert:
    """One alert for one channel and one folder date, and its delivery state.

    ``status``: ``pending`` (to send at ``next_attempt_at``), ``sent``, ``dead`` (permanent
    failure or attempts exhausted; ``last_error`` says why) or ``silenced`` (suppressed by a
    silence; recorded so that a later rerun does not send it either).
    """

    channel: str
    kind: str
    partition: date
    severity: str
    payload: dict[str, Any]
    created_at: datetime
    next_attempt_at: datetime
    status: OutboxStatus = "pending"
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    key: str = field(default="")

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", alert_key(self.channel, self.kind, self.partition))


def alert_key(channel: str, kind: str, partition: date) -> str:
    """The unique outbox key ``f"{channel}:{kind}:{partition}"`` (ISO date)."""
    return f"{channel}:{kind}:{partition.isoformat()}"


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "outbox alerts",
        (
            """
            CREATE TABLE outbox_alerts (
                key TEXT PRIMARY KEY,
                channel TEXT NOT NULL,
                kind TEXT NOT NULL,
                partition TEXT NOT NULL,
                severity TEXT NOT NULL,
                payload TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at TEXT NOT NULL,
                last_error TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                sent_at TEXT
            )
            """,
            "CREATE INDEX outbox_alerts_due ON outbox_alerts (status, next_attempt_at)",
            "CREATE INDEX outbox_alerts_last ON outbox_alerts (channel, kind, partition)",
        ),
    ),
)
"""The outbox's schema steps, applied by ``migrate_sqlite`` into ``outbox_migrations``."""


class Outbox:
    """The alert outbox in the SQLite file at ``path`` (created with its tables if absent).

    Thread-safe: the dispatcher's per-channel threads share one instance.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = connect_sqlite(self.path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._migrate()

    def _migrate(self) -> None:
        with self._lock:
            migrate_sqlite(self._db, MIGRATIONS, table="outbox_migrations")

    def close(self) -> None:
        """Close the connection; the instance is unusable afterwards."""
        with self._lock:
            self._db.close()

    def outbox_add(self, alert: OutboxAlert) -> bool:
        """Insert ``alert`` unless its key exists; True when inserted, False when it existed."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO outbox_alerts (key, channel, kind, partition, severity,"
                " payload, status, attempts, next_attempt_at, last_error, created_at, updated_at,"
                " sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    alert.key,
                    alert.channel,
                    alert.kind,
                    alert.partition.isoformat(),
                    alert.severity,
                    json.dumps(alert.payload),
                    alert.status,
                    alert.attempts,
                    to_sortable_text(alert.next_attempt_at),
                    alert.last_error,
                    to_sortable_text(alert.created_at),
                    to_sortable_text(alert.created_at),
                    to_sortable_text(alert.sent_at) if alert.sent_at else None,
                ),
            )
            return cursor.rowcount == 1

    def outbox_due(self, now: datetime, channel: str | None = None) -> list[OutboxAlert]:
        """Pending alerts due at ``now`` (``next_attempt_at <= now``), oldest first."""
        sql = "SELECT * FROM outbox_alerts WHERE status = 'pending' AND next_attempt_at <= ?"
        args: list[object] = [to_sortable_text(now)]
        if channel is not None:
            sql += " AND channel = ?"
            args.append(channel)
        return self._select(sql + " ORDER BY next_attempt_at, partition, key", args)

    def outbox_get(self, key: str) -> OutboxAlert | None:
        """The alert stored under ``key``, or None."""
        rows = self._select("SELECT * FROM outbox_alerts WHERE key = ?", [key])
        return rows[0] if rows else None

    def outbox_all(self, partition: date | None = None) -> list[OutboxAlert]:
        """Every stored alert (of one partition when given), by partition then key."""
        if partition is None:
            return self._select("SELECT * FROM outbox_alerts ORDER BY partition, key", [])
        return self._select(
            "SELECT * FROM outbox_alerts WHERE partition = ? ORDER BY key", [partition.isoformat()]
        )

    def outbox_counts(self) -> dict[str, int]:
        """Number of stored alerts per status (``pending``/``sent``/``dead``/``silenced``)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COUNT(*) FROM outbox_alerts GROUP BY status"
            ).fetchall()
        return {str(status): int(count) for status, count in rows}

    def outbox_last(
        self, channel: str, kind: str, statuses: tuple[OutboxStatus, ...] = ("pending", "sent")
    ) -> OutboxAlert | None:
        """The alert of ``channel``/``kind`` with the latest partition among ``statuses``."""
        marks = ", ".join("?" for _ in statuses)
        rows = self._select(
            f"SELECT * FROM outbox_alerts WHERE channel = ? AND kind = ? AND status IN ({marks})"
            " ORDER BY partition DESC LIMIT 1",
            [channel, kind, *statuses],
        )
        return rows[0] if rows else None

    def outbox_mark_sent(self, key: str, now: datetime) -> None:
        """Record a successful delivery (attempts += 1)."""
        self._update(
            key,
            now,
            "status = 'sent', attempts = attempts + 1, sent_at = ?, last_error = NULL",
            [to_sortable_text(now)],
        )

    def outbox_mark_retry(self, key: str, now: datetime, next_at: datetime, error: str) -> None:
        """Record a transient failure at ``now``; the alert is due again at ``next_at``."""
        self._update(
            key,
            now,
            "attempts = attempts + 1, next_attempt_at = ?, last_error = ?",
            [to_sortable_text(next_at), error],
        )

    def outbox_mark_dead(self, key: str, now: datetime, error: str) -> None:
        """Record a permanent failure: never retried; ``last_error`` keeps the reason."""
        self._update(key, now, "status = 'dead', attempts = attempts + 1, last_error = ?", [error])

    def _update(self, key: str, now: datetime, assignments: str, args: list[object]) -> None:
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE outbox_alerts SET {assignments}, updated_at = ? WHERE key = ?",
                [*args, to_sortable_text(now), key],
            )
        if cursor.rowcount != 1:
            raise KeyError(f"outbox has no alert with key {key!r}")

    def _select(self, sql: str, args: list[object]) -> list[OutboxAlert]:
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_from_row(row) for row in rows]


def _from_row(row: sqlite3.Row) -> OutboxAlert:
    return OutboxAlert(
        key=row["key"],
        channel=row["channel"],
        kind=row["kind"],
        partition=date.fromisoformat(row["partition"]),
        severity=row["severity"],
        payload=json.loads(row["payload"]),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=parse_text(row["next_attempt_at"]),
        last_error=row["last_error"],
        created_at=parse_text(row["created_at"]),
        sent_at=from_text(row["sent_at"]),
    )
