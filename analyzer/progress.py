"""Progress reporting for a profiling run: a tqdm bar on a TTY, log events otherwise.

The analyzer never configures logging: it only emits ``analysis.progressed`` records on the
stdlib logger ``"analyzer"`` (with ``done``/``total`` as record attributes) and calls the
optional ``progress_callback(done, total)``, which the daemon can hook.
"""

from __future__ import annotations

import logging
import sys
from types import TracebackType
from typing import Any

from analyzer.options import ProgressCallback

logger = logging.getLogger("analyzer")

#: Log a progress event each time another tenth of the files is done.
_LOG_STEPS = 10


class Progress:
    """Context manager counting processed files toward ``total``."""

    def __init__(self, total: int, mode: str, callback: ProgressCallback | None,
                 label: str) -> None:
        self.total = total
        self.done = 0
        self._callback = callback
        self._label = label
        use_bar = mode == "bar" or (mode == "auto" and sys.stderr.isatty())
        self._log = mode == "log" or (mode == "auto" and not use_bar)
        self._next_log = 0
        self._bar: Any = None
        if use_bar:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="img", desc=label, leave=False)

    def advance(self, n: int) -> None:
        """Record ``n`` more files done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._log and self.done >= self._next_log:
            logger.info("analysis.progressed", extra={"done": self.done, "total": self.total,
                                                      "folder": self._label})
            self._next_log = self.done + max(1, self.total // _LOG_STEPS)
        if self._callback is not None:
            self._callback(self.done, self.total)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
