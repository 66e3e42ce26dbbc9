"""Instants as driftd stores them, and the night's instant: the one place for both.

SQLite has no time type, so the state file, the alert outbox and the SQLite metric store keep
instants as ISO 8601 text in UTC. Two spellings are in use and both stay as they are, so
files written by earlier driftd versions keep reading and sorting the same:

- ``to_text``: ``isoformat()`` of the instant in UTC (run ledger, store health, metric store);
- ``to_sortable_text``: the same with microseconds always written, so that text order is
  time order in SQL (the outbox compares ``next_attempt_at <= ?``).

``from_text`` reads either back. ``night_start`` is the instant a night's rows carry.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone, tzinfo


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def to_text(moment: datetime) -> str:
    """``moment`` as stored text: ISO 8601 in UTC (naive means UTC)."""
    return as_utc(moment).isoformat()


def to_sortable_text(moment: datetime) -> str:
    """``moment`` as fixed-width ISO 8601 text in UTC, so that string order is time order.

    Raises ``ValueError`` for a naive datetime: where text is compared, a guessed zone
    would reorder rows silently.
    """
    if moment.tzinfo is None:
        raise ValueError(f"stored times must be timezone-aware; got naive {moment.isoformat()}")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_text(text: str) -> datetime:
    """The instant of stored text (either spelling); raises ``ValueError`` for other text."""
    return datetime.fromisoformat(text)


def from_text(text: str | None) -> datetime | None:
    """``parse_text`` for a column that may be empty: None for None or empty text."""
    return parse_text(text) if text else None


def night_start(day: date, tz: tzinfo = timezone.utc) -> datetime:
    """Midnight at the start of ``day`` in ``tz`` (the schedule's timezone): the instant a
    night's metric rows carry, whenever the night was analysed."""
    return datetime.combine(day, time(), tz)
