"""Logging setup (only the daemon configures logging): structlog JSON lines or console.

Events are ``noun.past_verb``; the run binds ``run_id`` and ``partition`` with
``structlog.contextvars``. Library loggers that may print secrets are raised to WARNING.

Where logs go: ``driftd run`` (the daemon) logs to stdout, the stream journald and process
supervisors read (journald stores stdout and stderr alike, so the choice is about the
terminal, not the journal). Every other command logs to stderr, so that what it prints on
stdout — a table, a summary, ``--json`` — can be piped and parsed.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

#: Third-party loggers that log secrets (slack_sdk logs the webhook URL at INFO/DEBUG) or noise.
QUIET_LOGGERS = ("slack_sdk", "urllib3", "apscheduler", "PIL", "matplotlib", "asyncio")


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to ``stream`` (default: stdout), as JSON lines or
    console text.

    ``auto`` renders for humans when ``stream`` is a TTY and JSON lines otherwise (journald).
    """
    out = stream if stream is not None else sys.stdout
    numeric = logging.getLevelName(level.upper())
    tty = out.isatty()
    console = fmt == "console" or (fmt == "auto" and tty)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=tty)
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info if not console else _identity,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder()
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))


def _identity(
    logger: object, method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return event


def get_logger(name: str = "driftd") -> structlog.stdlib.BoundLogger:
    """The daemon's logger (events ``noun.past_verb``)."""
    return structlog.get_logger(name)
