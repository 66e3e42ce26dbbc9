"""The alert channels, registered once: config name → the channel's config model.

Each module holds one channel whole: its config table (validated, secrets typed as
secrets, defaults from ``daemon.defaults``), how it builds its ``sinks`` transport, which of
its values are secrets and which credential files fill them. ``CHANNELS`` is the one list of
channel names: ``[[alerts.silences]] channels``, outbox keys, ``driftd alerts test
--channel`` and the credential files all come from it.
"""

from __future__ import annotations

from daemon.channels.base import Channel, Transport
from daemon.channels.console import ConsoleChannel
from daemon.channels.email import EmailSettings
from daemon.channels.pagerduty import PagerDutySettings
from daemon.channels.retrain import RetrainSettings
from daemon.channels.slack import SlackSettings

CHANNELS: dict[str, type[Channel]] = {
    channel.NAME: channel
    for channel in (ConsoleChannel, SlackSettings, EmailSettings, PagerDutySettings,
                    RetrainSettings)
}
"""Every channel by its config name, in the order alerts are planned."""

__all__ = [
    "CHANNELS",
    "Channel",
    "ConsoleChannel",
    "EmailSettings",
    "PagerDutySettings",
    "RetrainSettings",
    "SlackSettings",
    "Transport",
]
