"""sd_notify without a dependency: READY/WATCHDOG/STOPPING datagrams to ``$NOTIFY_SOCKET``.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op, so the daemon runs the same way
in a terminal, under tests and under ``Type=notify``.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends sd_notify state strings; addresses starting with ``@`` are abstract sockets."""

    def __init__(self, address: str | None = None, watchdog_usec: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = watchdog_usec if watchdog_usec is not None else os.environ.get("WATCHDOG_USEC", "")
        self.watchdog_interval: float | None = int(usec) / 2e6 if usec.isdigit() else None
        """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when disabled."""

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``"READY=1"``); return False when not under systemd or on error.

        A failed send is never fatal: the daemon's work matters more than its supervisor's view.
        """
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(state.encode())
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")
