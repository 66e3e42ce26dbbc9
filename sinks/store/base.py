"""Types shared by the metric stores: the protocol, the records and the options.

A ``MetricStore`` keeps one night per folder date (``partition``): its metric rows, its
report, and a mirror of its run-ledger entry. Writing a night again replaces it, so reruns
and backfills never duplicate rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from analyzer.contract import DriftReport
from sinks.files import report_id_for


@dataclass(frozen=True)
class StoreOptions:
    """How to open a store.

    ``password`` is the database password when it comes from a secret rather than the URL
    (it wins over one in the URL). ``retention_days``: metric rows and reports whose folder
    date is older are deleted by ``apply_retention`` (and, on TimescaleDB, by a retention
    policy); ``None`` keeps everything. ``compress_after_days``: TimescaleDB compression
    policy on the metrics hypertable (ignored without TimescaleDB). ``connect_timeout_s``
    bounds how long an unreachable server can stall a night; ``statement_timeout_s`` and
    ``lock_timeout_s`` (PostgreSQL) how long a slow query or a lock held by someone else
    can: the statement is cancelled and the store reports itself unavailable, so the
    night is deferred like in an outage.
    """

    retention_days: int | None
    compress_after_days: int | None
    connect_timeout_s: int
    statement_timeout_s: float
    lock_timeout_s: float
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class NightRecord:
    """One night to persist.

    ``partition``: the folder date (the idempotency key); ``time``: the instant the metric
    rows are plotted at — the night itself, ``sinks.times.night_start(partition, tz)``, so
    that a catch-up or a backfill puts each night at its own date; ``metrics``: ``(name,
    value)`` pairs as ``analyzer.contract.metric_rows`` returns them (a repeated name keeps
    its last value); ``labels``: constant tags stored beside every row (e.g. model name).
    ``started_at``: when the run began, for the runs mirror (defaults to ``time``);
    ``analysed_at``: when the night was analysed (the report's ``timestamp``; defaults to
    ``time``), stored as the report's ``created_at``.
    """

    partition: date
    run_id: str
    time: datetime
    report: DriftReport
    metrics: list[tuple[str, float]]
    labels: dict[str, str] = field(default_factory=dict)
    started_at: datetime | None = None
    analysed_at: datetime | None = None

    @property
    def report_id(self) -> str:
        """The report's id, else the folder date as ``YYYYMMDD``."""
        return self.report.report_id or report_id_for(self.partition)

    @property
    def severity(self) -> str:
        """The report's overall severity."""
        return self.report.overall_severity.value

    @property
    def drift_detected(self) -> bool:
        return self.report.overall_drift_detected


@dataclass(frozen=True)
class ReportRow:
    """A stored report: its summary columns and the full report."""

    report_id: str
    partition: date
    severity: str
    drift_detected: bool
    created_at: datetime
    run_id: str
    report: DriftReport


@dataclass(frozen=True)
class MetricPoint:
    """One stored metric value of one night."""

    partition: date
    name: str
    value: float
    time: datetime


class MetricStore(Protocol):
    """Where nights' metric rows and reports are kept (SQLite or PostgreSQL/TimescaleDB).

    Every method raises ``sinks.errors.StoreUnavailable`` when the database cannot be
    reached or refuses the operation; its message names the store with the password masked.
    """

    url: str
    """The store's URL with the password masked (safe to log)."""

    def migrate(self) -> None:
        """Bring the schema to the latest version; idempotent and safe from two processes."""

    def write_night(self, night: NightRecord) -> None:
        """Store ``night`` in one transaction, replacing whatever that folder date had."""

    def latest_reports(self, limit: int = 14) -> list[ReportRow]:
        """The newest ``limit`` reports, newest folder date first."""

    def metric_history(self, names: Sequence[str], until: date, days: int) -> list[MetricPoint]:
        """Values of ``names`` for folder dates in ``(until - days, until]``, oldest first."""

    def apply_retention(self, now: datetime) -> int:
        """Delete metric rows and reports older than ``retention_days``; returns rows deleted."""

    def ping(self) -> None:
        """Return when the database answers; raise ``StoreUnavailable`` otherwise."""

    def close(self) -> None:
        """Release connections (the store reconnects on the next call)."""


def unique_metrics(metrics: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """``metrics`` with one value per name (the last one), in first-seen order, as floats.

    Non-finite values (NaN, infinities) are left out: they are "no value", and SQLite would
    store NaN as NULL.
    """
    merged: dict[str, float] = {}
    for name, value in metrics:
        number = float(value)
        if math.isfinite(number):
            merged[str(name)] = number
    return list(merged.items())


def night_to_json(night: NightRecord) -> dict[str, object]:
    """``night`` as a JSON-serialisable dict (the pending-write payload format)."""
    return {
        "partition": night.partition.isoformat(),
        "run_id": night.run_id,
        "time": night.time.isoformat(),
        "report": night.report.to_dict(),
        "metrics": [[name, value] for name, value in night.metrics],
        "labels": night.labels,
        "started_at": night.started_at.isoformat() if night.started_at else None,
        "analysed_at": night.analysed_at.isoformat() if night.analysed_at else None,
    }


def night_from_json(raw: dict[str, Any]) -> NightRecord:
    """The ``NightRecord`` of a ``night_to_json`` dict; raises ``KeyError``, ``TypeError`` or
    ``ValueError`` (``ReportFormatError`` for the report) when it is not one."""
    return NightRecord(
        partition=date.fromisoformat(raw["partition"]),
        run_id=str(raw["run_id"]),
        time=datetime.fromisoformat(raw["time"]),
        report=DriftReport.from_dict(raw["report"]),
        metrics=[(str(n), float(v)) for n, v in raw["metrics"]],
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        started_at=datetime.fromisoformat(raw["started_at"]) if raw.get("started_at") else None,
        analysed_at=(
            datetime.fromisoformat(raw["analysed_at"]) if raw.get("analysed_at") else None
        ),
    )
