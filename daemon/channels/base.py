"""What every alert channel is: a config table that knows how to build its transport.

A channel's config model (``[alerts.slack]`` …) is also the channel: ``transport()`` builds
the ``sinks`` transport from it, ``secrets()`` lists what must never be printed, and
``threshold()`` says from which severity it gets drift alerts. ``daemon.channels.CHANNELS``
registers each one once, by the name used in config, outbox keys and silences.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Mapping
from typing import ClassVar, Protocol, TextIO

from analyzer.severity import Severity
from daemon.config_types import ConfigSection
from sinks.messages import AlertMessage


class Transport(Protocol):
    """An alert channel's sender: ``send`` returns on delivery or raises
    ``sinks.errors.DeliveryError`` (``permanent`` says whether retrying can help)."""

    def send(self, message: AlertMessage) -> None: ...


class Channel(ConfigSection):
    """One alert channel's config table and what it is for (see the module docstring)."""

    NAME: ClassVar[str]
    """The channel's name: its ``[alerts.<NAME>]`` table, outbox keys, silences, CLI."""
    CREDENTIALS: ClassVar[Mapping[str, str]] = {}
    """Secret files in ``$CREDENTIALS_DIRECTORY`` → the key of this table each one fills."""
    TESTABLE: ClassVar[bool] = True
    """``driftd alerts test`` sends this channel a test message."""
    FALLBACK: ClassVar[bool] = False
    """Used only while no other channel gets drift alerts (the console)."""

    @classmethod
    def table(cls) -> tuple[str, ...]:
        """Where this channel's table is in the config: ``("alerts", NAME)``."""
        return ("alerts", cls.NAME)

    def active(self) -> bool:
        """True when the channel is switched on (a table may say ``enabled = false``)."""
        return True

    def threshold(self) -> Severity | None:
        """The lowest severity sent to this channel as a drift alert (never below low);
        None for a channel not alerted by severity (the retraining trigger)."""
        return None

    def secrets(self) -> list[str]:
        """The secret values of this table, to mask wherever driftd prints or stores text."""
        return []

    @abstractmethod
    def transport(self, stream: TextIO | None = None) -> Transport:
        """The transport for this table (``stream``: where a console channel prints)."""
