"""Opening the SQLite files driftd writes (state, outbox, embedded metric store): the one
connection policy.

Every connection is autocommit (callers open their own ``BEGIN IMMEDIATE`` transactions), in
WAL mode and with a busy timeout, so the daemon's run, its retry job and its HTTP thread can
share one file: a writer holding the lock delays the others instead of failing them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

BUSY_TIMEOUT_MS = 30_000
"""How long a connection waits for another writer before ``database is locked``."""


def connect_sqlite(path: str | Path, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open ``path`` (creating its folder) as described above; raises ``sqlite3.Error`` or
    ``OSError``. ``check_same_thread=False`` for a connection shared by threads under a lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
        check_same_thread=check_same_thread,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    return conn


@contextmanager
def sqlite_connection(path: str | Path, failed: Callable[[Exception], Exception]
                      ) -> Iterator[sqlite3.Connection]:
    """A short-lived ``connect_sqlite`` connection, closed on exit. A database or file error,
    opening it or inside the block, is raised as ``failed(err)`` (the caller's own error,
    saying what could not be done and how to fix it), chained to ``err``."""
    try:
        with closing(connect_sqlite(path)) as conn:
            yield conn
    except (sqlite3.Error, OSError) as err:
        raise failed(err) from err
