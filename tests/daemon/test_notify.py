"""sd_notify: the daemon talks to systemd over a plain AF_UNIX datagram socket."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.notify import Notifier
from tests.daemon.conftest import ROOT, cli_env


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A bound datagram socket standing in for systemd's $NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(60)
        yield path, sock


def _receive_until(sock: socket.socket, wanted: str) -> list[str]:
    messages: list[str] = []
    while not any(wanted in m for m in messages):
        messages.append(sock.recv(4096).decode())
    return messages


class TestNotifier:
    def test_messages_arrive_on_the_socket(self, notify_socket: tuple[str, socket.socket]
                                           ) -> None:
        """READY, WATCHDOG and STOPPING are sent as sd_notify datagrams."""
        path, sock = notify_socket
        notifier = Notifier(path, watchdog_usec="2000000")
        assert notifier.ready() and notifier.watchdog() and notifier.stopping()
        assert [sock.recv(100).decode() for _ in range(3)] == [
            "READY=1", "WATCHDOG=1", "STOPPING=1",
        ]
        assert notifier.watchdog_interval == 1.0

    def test_abstract_socket_address(self) -> None:
        """An address starting with '@' reaches an abstract-namespace socket."""
        name = f"driftd-test-{id(self)}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind("\0" + name)
            assert Notifier("@" + name).ready()
            assert sock.recv(100) == b"READY=1"

    def test_outside_systemd_nothing_is_sent(self) -> None:
        """Without $NOTIFY_SOCKET every call is a harmless no-op."""
        assert Notifier("", "").ready() is False


class TestDaemonProcess:
    def test_daemon_notifies_ready_watchdog_and_stopping(
        self, notify_socket: tuple[str, socket.socket], config_file: Callable[..., Path]
    ) -> None:
        """`driftd run` sends READY, pings the watchdog, and on SIGTERM sends STOPPING, exit 0."""
        path, sock = notify_socket
        env = cli_env(NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
        proc = subprocess.Popen(
            [sys.executable, "-m", "daemon.cli", "--config", str(config_file()), "run"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            received = _receive_until(sock, "READY=1")
            received += _receive_until(sock, "WATCHDOG=1")
            proc.send_signal(signal.SIGTERM)
            received += _receive_until(sock, "STOPPING=1")
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert '"event": "daemon.stopped"' in out
