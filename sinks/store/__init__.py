"""The metric store: one interface (``MetricStore``), SQLite or PostgreSQL chosen by URL.

``open_store(url, options)`` builds the store. Deferring a night while the database is down
is the daemon's work state, not the store's: see ``daemon.state.pending``.
"""

from __future__ import annotations

from sinks.redact import mask_dsn
from sinks.store.base import (
    MetricPoint,
    MetricStore,
    NightRecord,
    ReportRow,
    StoreOptions,
    night_from_json,
    night_to_json,
)
from sinks.store.postgres import PostgresStore
from sinks.store.sqlite import SQLiteStore, sqlite_path, sqlite_url

__all__ = [
    "MetricPoint",
    "MetricStore",
    "NightRecord",
    "PostgresStore",
    "ReportRow",
    "SQLiteStore",
    "StoreOptions",
    "night_from_json",
    "night_to_json",
    "open_store",
    "sqlite_url",
]


def open_store(url: str, options: StoreOptions) -> MetricStore:
    """The store for ``url``: ``sqlite:///path`` (``sqlite:////abs/path``) or ``postgresql://…``.

    Connects lazily: nothing is contacted until the first call. Raises ``ValueError`` (with
    the password masked) for any other scheme.
    """
    if url.startswith("sqlite:"):
        return SQLiteStore(sqlite_path(url), options)
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresStore(url, options)
    raise ValueError(
        f"store url {mask_dsn(url)!r} has an unknown scheme; use sqlite:///path.sqlite or "
        "postgresql://user@host:5432/db"
    )
