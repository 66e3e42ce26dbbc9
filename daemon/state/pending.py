"""Nights that still have to reach the metric store: deferred while it is down, written later.

``store_or_defer`` records a night as a pending write in the state file, then writes it;
``flush_pending`` writes the nights that waited, rebuilding each from its payload file (the
report JSON, or a ``night_to_json`` file), so a night that ran while the database was down
reaches it on a later run and nothing is lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from typing import Any

from analyzer.contract import DriftReport, metric_rows
from daemon.state.ledger import StateDB
from sinks.errors import StoreUnavailable
from sinks.store import MetricStore, NightRecord, night_from_json
from sinks.times import night_start

_NIGHT_KEYS = ("report", "metrics")
"""The keys that tell a ``night_to_json`` payload from a bare report file."""


def night_from_payload(
    partition: date,
    raw: dict[str, Any],
    *,
    run_id: str,
    labels: dict[str, str] | None = None,
    tz: tzinfo = timezone.utc,
) -> NightRecord:
    """The ``NightRecord`` of a pending-write payload.

    ``raw`` is either a ``night_to_json`` dict, or a bare drift report (the JSON report file),
    whose rows are rebuilt with ``analyzer.contract.metric_rows``, plotted at the night
    (``night_start(partition, tz)``) and whose analysis time is its ``timestamp``; ``run_id``
    and ``labels`` fill what a report lacks. Raises ``KeyError``, ``TypeError`` or
    ``ValueError`` (``ReportFormatError``) when ``raw`` is neither.
    """
    if all(key in raw for key in _NIGHT_KEYS):
        return night_from_json(raw)
    report = DriftReport.from_dict(raw)
    return NightRecord(
        partition=partition,
        run_id=run_id,
        time=night_start(partition, tz),
        report=report,
        metrics=metric_rows(report),
        labels=dict(labels or {}),
        analysed_at=report.timestamp,
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
