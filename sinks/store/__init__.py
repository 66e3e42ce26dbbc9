"""The metric store: one interface (``MetricStore``), SQLite or PostgreSQL chosen by URL.

``open_store(url, options)`` builds the store; ``store_or_defer`` writes a night or leaves it
pending in the state database; ``flush_pending`` writes the nights that waited, so a night
that ran while the database was down reaches it on a later run and nothing is lost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinks.errors import StoreUnavailable
from sinks.store.base import (
    MetricPoint,
    MetricStore,
    NightRecord,
    ReportRow,
    StoreOptions,
    mask_dsn,
    night_from_json,
    night_start,
    night_to_json,
)
from sinks.store.postgres import PostgresStore
from sinks.store.sqlite import SQLiteStore, sqlite_path, sqlite_url

if TYPE_CHECKING:
    from sinks.state import StateDB

__all__ = [
    "FlushResult",
    "MetricPoint",
    "MetricStore",
    "NightRecord",
    "PostgresStore",
    "ReportRow",
    "SQLiteStore",
    "StoreOptions",
    "flush_pending",
    "mask_dsn",
    "night_from_json",
    "night_from_payload",
    "night_start",
    "night_to_json",
    "open_store",
    "sqlite_url",
    "store_or_defer",
]

MetricRows = Callable[[dict[str, Any]], list[tuple[str, float]]]


def open_store(url: str, options: StoreOptions | None = None) -> MetricStore:
    """The store for ``url``: ``sqlite:///path`` (``sqlite:////abs/path``) or ``postgresql://…``.

    Connects lazily: nothing is contacted until the first call. Raises ``ValueError`` (with
    the password masked) for any other scheme.
    """
    options = options or StoreOptions()
    if url.startswith("sqlite:"):
        return SQLiteStore(sqlite_path(url), options)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, options)
    raise ValueError(
        f"store url {mask_dsn(url)!r} has an unknown scheme; use sqlite:///path.sqlite or "
        "postgresql://user@host:5432/db"
    )


def night_from_payload(
    partition: date,
    raw: dict[str, Any],
    *,
    run_id: str,
    labels: dict[str, str] | None = None,
    metric_rows: MetricRows | None = None,
    tz: tzinfo = timezone.utc,
) -> NightRecord:
    """The ``NightRecord`` of a pending-write payload.

    ``raw`` is either a ``night_to_json`` dict, or a bare drift report (the JSON report file),
    whose rows are rebuilt with ``metric_rows`` (default ``analyzer.report.metric_rows``),
    plotted at the night (``night_start(partition, tz)``) and whose analysis time is its
    ``timestamp``; ``run_id`` and ``labels`` fill what a report lacks.
    """
    if "report" in raw and "metrics" in raw:
        return night_from_json(raw)
    if metric_rows is None:
        from analyzer.report import metric_rows as analyzer_rows

        metric_rows = analyzer_rows
    return NightRecord(
        partition=partition,
        run_id=run_id,
        time=night_start(partition, tz),
        report=raw,
        metrics=metric_rows(raw),
        labels=dict(labels or {}),
        analysed_at=datetime.fromisoformat(str(raw["timestamp"])),
    )


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class FlushResult:
    """What ``flush_pending`` did: dates ``written``, nights ``still_pending``, the store
    ``error`` that stopped it (masked), and ``dropped`` nights whose payload was unreadable."""

    written: list[date] = field(default_factory=list)
    still_pending: int = 0
    error: str | None = None
    dropped: list[str] = field(default_factory=list)


def flush_pending(
    state: StateDB,
    store: MetricStore,
    now: datetime | None = None,
    *,
    labels: dict[str, str] | None = None,
    metric_rows: MetricRows | None = None,
    tz: tzinfo = timezone.utc,
) -> FlushResult:
    """Write every pending night to ``store``, oldest first; call at the start of each run.

    A written night leaves the pending list (its payload file is kept: it may be the report
    itself). The first ``StoreUnavailable`` stops the flush (the database is down; the rest
    waits for the next run) and is recorded with ``state.store_failed``. A payload that is
    missing or not valid JSON can never be written: it is dropped and named in ``dropped``.
    ``now`` is the time recorded with the outcome (default: the clock when it happens, so
    ``driftd status`` shows when the error occurred, not when the run started); ``tz`` is
    the schedule's timezone, for the nights rebuilt from a bare report.
    """
    written: list[date] = []
    dropped: list[str] = []
    pending = state.pending_writes()
    for index, (partition, payload_path) in enumerate(pending):
        try:
            raw = json.loads(Path(payload_path).read_text(encoding="utf-8"))
            entry = state.ledger_get(partition)
            night = night_from_payload(
                partition,
                raw,
                run_id=entry.run_id if entry else "backfill",
                labels=labels,
                metric_rows=metric_rows,
                tz=tz,
            )
        except (OSError, ValueError, KeyError, TypeError) as err:
            dropped.append(f"{partition}: payload {payload_path} is unusable ({err})")
            state.pending_writes_done(partition)
            continue
        try:
            store.write_night(night)
        except StoreUnavailable as err:
            state.store_failed(now or _utcnow(), str(err))
            return FlushResult(written, len(pending) - index, str(err), dropped)
        state.pending_writes_done(partition)
        written.append(partition)
    if written:
        state.store_ok(now or _utcnow())
    return FlushResult(written, 0, None, dropped)


def store_or_defer(
    state: StateDB,
    store: MetricStore,
    night: NightRecord,
    payload_path: Path | str,
    now: datetime | None = None,
) -> bool:
    """Record ``night`` as pending, write it, and clear it; ``False`` when the store is down.

    ``payload_path`` is a file ``flush_pending`` can rebuild the night from: the JSON report,
    or a file holding ``night_to_json(night)``. The outcome is recorded in ``state`` at
    ``now`` (default: the clock when the write succeeded or failed).
    """
    state.pending_writes_add(night.partition, payload_path)
    try:
        store.write_night(night)
    except StoreUnavailable as err:
        state.store_failed(now or _utcnow(), str(err))
        return False
    state.pending_writes_done(night.partition)
    state.store_ok(now or _utcnow())
    return True
