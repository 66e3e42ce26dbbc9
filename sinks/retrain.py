"""Retraining trigger: run a command (argv, never a shell) and/or POST a URL.

The command gets the report through placeholders in its argv — ``{report_json}``,
``{severity}``, ``{partition}``, ``{report_url}`` are replaced literally, no other formatting —
and through the environment: ``DRIFTD_REPORT_JSON``, ``DRIFTD_SEVERITY``, ``DRIFTD_PARTITION``,
``DRIFTD_REPORT_URL``. The URL receives the message payload as JSON (with a bearer token when
configured). Delivery is at-least-once: the outbox retries a failed trigger, so the command or
endpoint should tolerate a repeat for the same partition.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field

from sinks.errors import DeliveryError
from sinks.http_delivery import error_for_status, post_json
from sinks.messages import AlertMessage

#: Exit statuses of a shell-less exec that retrying cannot fix (not executable / not found).
_PERMANENT_EXIT = frozenset({126, 127})


@dataclass(frozen=True)
class RetrainConfig:
    """What to trigger: an argv list, a URL, or both (the command runs first)."""

    timeout_s: float
    command: tuple[str, ...] | None = None
    url: str | None = None
    token: str | None = field(default=None, repr=False)
    cwd: str | None = None


class RetrainTransport:
    """Triggers retraining for one ``AlertMessage`` of kind ``retrain``."""

    def __init__(self, config: RetrainConfig) -> None:
        if not config.command and not config.url:
            raise ValueError("retrain: set command (an argv list) or url; both are empty")
        self._config = config

    def send(self, message: AlertMessage) -> None:
        """Run the command and/or POST the URL; return when each succeeded.

        Raises ``DeliveryError``: permanent when the program cannot be executed or the URL
        answers a non-retryable status; transient for a non-zero exit, a timeout, network
        errors, 429 and 5xx.
        """
        if self._config.command:
            self._run(self._config.command, message)
        if self._config.url:
            self._post(self._config.url, message)

    def _run(self, command: tuple[str, ...], message: AlertMessage) -> None:
        values = {
            "{report_json}": message.report_path or "",
            "{severity}": message.severity.value,
            "{partition}": message.partition.isoformat() if message.partition else "",
            "{report_url}": message.report_url or "",
        }
        argv = [_substitute(arg, values) for arg in command]
        env = {
            **os.environ,
            "DRIFTD_REPORT_JSON": values["{report_json}"],
            "DRIFTD_SEVERITY": values["{severity}"],
            "DRIFTD_PARTITION": values["{partition}"],
            "DRIFTD_REPORT_URL": values["{report_url}"],
        }
        program = argv[0]
        try:
            done = subprocess.run(
                argv,
                env=env,
                cwd=self._config.cwd,
                capture_output=True,
                text=True,
                timeout=self._config.timeout_s,
                check=False,
            )
        except (FileNotFoundError, PermissionError, NotADirectoryError) as err:
            raise DeliveryError(
                f"retrain: cannot execute {program!r} ({err.strerror}); "
                "fix retrain.command (an argv list, first item an executable path)",
                permanent=True,
            ) from None
        except subprocess.TimeoutExpired:
            raise DeliveryError(
                f"retrain: {program!r} still running after {self._config.timeout_s:g} s; "
                "killed, will retry (raise retrain.timeout_s if it is slow)",
                permanent=False,
            ) from None
        if done.returncode != 0:
            tail = " ".join(done.stderr.split())[-300:]
            raise DeliveryError(
                f"retrain: {program!r} exited {done.returncode}: {tail!r}",
                permanent=done.returncode in _PERMANENT_EXIT,
            )

    def _post(self, url: str, message: AlertMessage) -> None:
        headers = {"Authorization": f"Bearer {self._config.token}"} if self._config.token else {}
        body = {"event": "driftd.retrain", **message.to_payload()}
        response = post_json(
            url,
            body,
            timeout_s=min(self._config.timeout_s, 30.0),
            channel="retrain",
            headers=headers,
        )
        if not 200 <= response.status < 300:
            raise error_for_status(
                response.status, response.headers, response.body, channel="retrain"
            )


def _substitute(arg: str, values: dict[str, str]) -> str:
    for placeholder, value in values.items():
        arg = arg.replace(placeholder, value)
    return arg
