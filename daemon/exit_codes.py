"""The exit codes of every ``driftd`` command (README, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
"""Success (``check``: no drift)."""
EXIT_DRIFT = 1
"""``check`` only: drift detected."""
EXIT_CONFIG = 2
"""Usage or configuration error: nothing was started."""
EXIT_RUNTIME = 3
"""Runtime error; for ``run --once``, ``backfill`` and ``retry`` also a run-level fault or any
folder that failed."""
EXIT_PIPE = 141
"""stdout was closed by its reader (128 + SIGPIPE, as a shell reports it for other tools)."""
