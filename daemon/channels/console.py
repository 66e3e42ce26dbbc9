"""The console channel: alerts as paragraphs on stdout when no other channel is set."""

from __future__ import annotations

from typing import ClassVar, TextIO

from analyzer.severity import Severity
from daemon.channels.base import Channel, Transport
from daemon.defaults import CONSOLE_MIN_SEVERITY
from sinks.console import ConsoleTransport


class ConsoleChannel(Channel):
    """``[alerts] console = true``: print alerts (the embedded default, ``driftd demo``)."""

    NAME: ClassVar[str] = "console"
    FALLBACK: ClassVar[bool] = True

    def threshold(self) -> Severity | None:
        return CONSOLE_MIN_SEVERITY

    def transport(self, stream: TextIO | None = None) -> Transport:
        return ConsoleTransport(stream)
