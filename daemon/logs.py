"""Logging setup (only the daemon configures logging): structlog JSON lines or console.

Events are ``noun.past_verb``; the run binds ``run_id`` and ``partition`` with
``structlog.contextvars``. Every line — driftd's own events and the records of any library
logger that reach the root handler — passes through a ``daemon.redact.Redactor`` holding the
configured secrets before it is rendered. Library loggers that are noisy (or, like slack_sdk,
known to log secrets) are also raised to WARNING.

Where logs go: ``driftd run`` (the daemon) logs to stdout, the stream journald and process
supervisors read (journald stores stdout and stderr alike, so the choice is about the
terminal, not the journal). Every other command logs to stderr, so that what it prints on
stdout — a table, a summary, ``--json`` — can be piped and parsed.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from typing import Literal, TextIO

import structlog

from daemon.redact import Redactor

#: Third-party loggers that log secrets (slack_sdk logs the webhook URL at INFO/DEBUG) or noise.
QUIET_LOGGERS = ("slack_sdk", "urllib3", "apscheduler", "PIL", "matplotlib", "asyncio")


def configure_logging(
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    secrets: Iterable[str | None] = (),
    stream: TextIO | None = None,
) -> Redactor:
    """Route structlog and stdlib logging to ``stream`` (default: stdout), as JSON lines or
    console text.

    ``auto`` renders for humans when ``stream`` is a TTY and JSON lines otherwise (journald).
    ``secrets`` are masked in every line from every logger (see ``daemon.redact``); Python
    warnings and uncaught exceptions in threads are routed through the same path. Returns
    the redactor, for text printed outside logging (the CLI's error line on stderr).
    """
    redactor = Redactor(secrets)
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
    # Tracebacks are rendered to text *before* redaction so that they are masked too.
    finish: list[structlog.typing.Processor] = [
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        redactor,
        renderer,
    ]
    structlog.configure(
        processors=[*shared, *finish],
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
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *finish],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, numeric))
    logging.captureWarnings(True)
    threading.excepthook = _log_thread_exception
    return redactor


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """Uncaught exceptions in threads go to the (redacted) log instead of raw stderr."""
    if args.exc_type is SystemExit:
        return
    exc = args.exc_value if args.exc_value is not None else args.exc_type()
    structlog.get_logger("driftd").error(
        "thread.crashed",
        thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, exc, args.exc_traceback),
    )


def get_logger(name: str = "driftd") -> structlog.stdlib.BoundLogger:
    """The daemon's logger (events ``noun.past_verb``)."""
    return structlog.stdlib.get_logger(name)
