"""The end-to-end rig: a real ``driftd`` process, a real config file, real servers.

``nights`` (module) writes the seeded image folders once: a baseline, a normal night, a
strongly drifted night, a recovered night, and a large drifted night for the signal tests.
``deployment`` (per test) is one installation in a temp dir: ``config.toml``, a saved
baseline, secrets in a ``$CREDENTIALS_DIRECTORY``, a fresh PostgreSQL database on the session
server, and the recording Slack / PagerDuty / SMTP servers. ``Deployment.run_once()`` runs
``driftd run --once``; ``Deployment.start()`` the long-running ``driftd run`` as a
``DaemonProcess`` whose JSON log events a test can wait for.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.fixtures.images import write_images
from tests.fixtures.postgres import USER, PostgresServer
from tests.fixtures.servers import RecordingHTTPServer, SMTPServer

ROOT = Path(__file__).resolve().parents[2]
UNIT_FILE = ROOT / "deploy" / "systemd" / "driftd.service"

TODAY = datetime.now(timezone.utc).date()
D1, D2, D3 = (TODAY - timedelta(days=n) for n in (3, 2, 1))
"""The three nights of a test: normal, drifted, recovered (the daemon's timezone is UTC)."""

IMAGE_SIZE = (32, 32)

CONFIG = """
[data]
production_root = "production"
baseline = "{baseline}"
state_dir = "var"

[analysis]
workers = 1

[schedule]
cron = "0 0 1 1 *"
lookback_days = 7
retry_seconds = 1

[store]
url = "postgresql://{user}@127.0.0.1:{port}/{database}"

[alerts]
console = false
backoff_base_s = 0.2
backoff_cap_s = 1.0
send_timeout_s = 30

[alerts.slack]
min_severity = "low"
timeout_s = 5

[alerts.email]
host = "127.0.0.1"
port = {smtp_port}
starttls = false
sender = "driftd@example.com"
recipients = ["ml-team@example.com"]
min_severity = "medium"
timeout_s = 5

[alerts.pagerduty]
events_url = "{pagerduty_url}/v2/enqueue"
min_severity = "high"
timeout_s = 5

[logging]
format = "json"
level = "info"
"""
"""Routing: low → Slack, medium → + email, high → + PagerDuty; secrets come from files."""


@dataclass(frozen=True)
class Nights:
    """Template folders (copied into each deployment's production root) and the baseline."""

    baseline: Path
    normal: Path
    drifted: Path
    recovered: Path
    large_drifted: Path


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> Nights:
    """Seeded folders: 50 images per night; the drift is darker and noisier (high severity)."""
    from analyzer.dataset import DatasetAnalyzer

    base = tmp_path_factory.mktemp("nights")
    shift: dict[str, Any] = {"brightness": 0.6, "noise": 12.0, "size": IMAGE_SIZE}
    write_images(base / "baseline", 60, 0, size=IMAGE_SIZE)
    write_images(base / "normal", 50, 1, size=IMAGE_SIZE)
    write_images(base / "drifted", 50, 2, **shift)
    write_images(base / "recovered", 50, 3, size=IMAGE_SIZE)
    write_images(base / "large_drifted", 400, 4, **shift)
    profile = DatasetAnalyzer(base / "baseline", workers=1, progress="off").analyze()
    (base / "baseline.json").write_text(json.dumps(profile), encoding="utf-8")
    return Nights(base / "baseline.json", base / "normal", base / "drifted",
                  base / "recovered", base / "large_drifted")


def events(text: str) -> list[dict[str, Any]]:
    """The JSON log events in ``text`` (stdout of driftd), in order."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def stop_timeout_s(unit: Path = UNIT_FILE) -> float:
    """``TimeoutStopSec=`` of the systemd unit, in seconds (``90s``, ``2min`` or ``90``)."""
    match = re.search(r"^TimeoutStopSec=(\d+)(s|min)?\s*$", unit.read_text(), re.MULTILINE)
    assert match, f"{unit} has no TimeoutStopSec="
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


class DaemonProcess:
    """A running ``driftd run``; a thread collects its stdout lines."""

    def __init__(self, proc: subprocess.Popen[str], stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, event: str, timeout: float = 120.0, **match: Any) -> dict[str, Any]:
        """Block until the log event ``event`` (with ``match`` fields) appears; return it."""
        deadline = datetime.now().timestamp() + timeout
        while True:
            left = deadline - datetime.now().timestamp()
            if left <= 0:
                raise AssertionError(f"no {event!r} within {timeout} s:\n{self.output}")
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"driftd exited before {event!r}:\n{self.output}")
            for found in events(line):
                if found.get("event") == event and all(found.get(k) == v
                                                       for k, v in match.items()):
                    return found

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float) -> int:
        """Wait for exit (kill after ``timeout``) and the reader; return the exit code."""
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(timeout=10)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    @property
    def output(self) -> str:
        return "".join(self.lines) + self.stderr


_databases = itertools.count(1)


@dataclass
class Deployment:
    """One driftd installation in a temp dir, wired to real servers (see module doc)."""

    root: Path
    config: Path
    credentials: Path
    pg: PostgresServer
    database: str
    slack: RecordingHTTPServer
    pagerduty: RecordingHTTPServer
    smtp: SMTPServer
    secrets: list[str]
    outputs: list[str] = field(default_factory=list)

    # ---- the world ----------------------------------------------------------------------

    def night(self, day: date, template: Path) -> Path:
        """Copy ``template`` to the production folder of ``day`` and mark it complete."""
        folder = self.root / "production" / day.strftime("%Y%m%d")
        shutil.copytree(template, folder)
        (folder / "_SUCCESS").touch()
        return folder

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTD_")}
        env.pop("NOTIFY_SOCKET", None)
        env["CREDENTIALS_DIRECTORY"] = str(self.credentials)
        env["PYTHONPATH"] = str(ROOT)
        return env

    # ---- the process --------------------------------------------------------------------

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "daemon.cli", "--config", str(self.config), *args]

    def run_once(self, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """``driftd run --once`` to completion (secrets checked out of its output)."""
        result = subprocess.run(
            self.command("run", "--once"), cwd=self.root, env=self.env(),
            capture_output=True, text=True, timeout=timeout,
        )
        self.outputs.append(result.stdout + result.stderr)
        return result

    def start(self, **env: str) -> DaemonProcess:
        """The long-running ``driftd run`` (JSON events on stdout, stderr to a file)."""
        stderr = self.root / f"stderr-{len(self.outputs)}.txt"
        with stderr.open("w") as err:
            proc = subprocess.Popen(
                self.command("run"), cwd=self.root, env={**self.env(), **env},
                stdout=subprocess.PIPE, stderr=err, text=True,
            )
        return DaemonProcess(proc, stderr)

    def record(self, daemon: DaemonProcess) -> None:
        """Keep a finished daemon's output for the secrets check."""
        self.outputs.append(daemon.output)

    # ---- what users see -----------------------------------------------------------------

    @property
    def reports(self) -> Path:
        return self.root / "var" / "reports"

    def report_files(self) -> list[str]:
        return sorted(p.name for p in self.reports.iterdir()) if self.reports.is_dir() else []

    def report(self, day: date) -> dict[str, Any]:
        path = self.reports / f"monitor_report_{day:%Y%m%d}.json"
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` on this deployment's database."""
        with closing(psycopg2.connect(self.pg.url(self.database))) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def stored_nights(self) -> list[tuple[date, str]]:
        """``(partition_date, severity)`` of every row in ``monitor_reports``."""
        return [(d, s) for d, s in self.query(
            "SELECT partition_date, severity FROM monitor_reports ORDER BY partition_date")]

    def duplicate_metric_rows(self) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT partition_date, metric_name, count(*) FROM monitoring_metrics "
            "GROUP BY partition_date, metric_name HAVING count(*) > 1")

    def metric(self, name: str) -> list[tuple[date, float]]:
        return [(d, v) for d, v in self.query(
            "SELECT partition_date, value FROM monitoring_metrics WHERE metric_name = %s "
            "ORDER BY partition_date", name)]

    def slack_alerts(self) -> list[str]:
        """Titles of the Slack messages received (failed deliveries included)."""
        return [str(r.json["text"]) for r in self.slack.requests]

    def pagerduty_events(self) -> list[tuple[str, str]]:
        """``(event_action, dedup_key)`` of each PagerDuty event received."""
        return [(r.json["event_action"], r.json["dedup_key"]) for r in self.pagerduty.requests]

    def emails(self) -> list[str]:
        return [str(m.message["Subject"]) for m in self.smtp.received]

    def assert_no_secret_leaked(self) -> None:
        """No secret in any process output or report file."""
        texts = list(self.outputs)
        if self.reports.is_dir():
            texts += [p.read_text(errors="replace") for p in self.reports.iterdir()
                      if p.is_file()]
        for secret in self.secrets:
            leaks = [t[max(0, t.find(secret) - 200):t.find(secret) + 50]
                     for t in texts if secret in t]
            assert not leaks, f"a secret leaked: {leaks[0]!r}"


def title(kind: str, day: date) -> str:
    """The start of the alert title the transports send for ``kind`` of night ``day``."""
    if kind == "resolve":
        return f"Model Drift Resolved - driftd {day.isoformat()}"
    return f"Model Drift Alert - {kind.upper()} - driftd {day.isoformat()}"


@pytest.fixture
def deployment(
    tmp_path: Path,
    nights: Nights,
    postgres_server: PostgresServer,
    slack_server: RecordingHTTPServer,
    pagerduty_server: RecordingHTTPServer,
    smtp_server: SMTPServer,
) -> Iterator[Deployment]:
    """A fresh installation (see module doc); checks no secret leaked at the end."""
    if not postgres_server.running:
        postgres_server.start()
    database = f"driftd_e2e_{os.getpid()}_{next(_databases)}"
    postgres_server.create_database(database)
    webhook_token = f"e2e{secrets.token_hex(12)}"
    routing_key = f"rk{secrets.token_hex(14)}"
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "slack_webhook_url").write_text(
        f"{slack_server.url}/services/T0E2E/B0E2E/{webhook_token}\n")
    (credentials / "pagerduty_routing_key").write_text(routing_key)
    (credentials / "store_password").write_text(postgres_server.password)
    config = tmp_path / "config.toml"
    config.write_text(CONFIG.format(
        baseline=nights.baseline, user=USER, port=postgres_server.port, database=database,
        smtp_port=smtp_server.port, pagerduty_url=pagerduty_server.url,
    ), encoding="utf-8")
    (tmp_path / "production").mkdir()
    deploy = Deployment(
        tmp_path, config, credentials, postgres_server, database, slack_server,
        pagerduty_server, smtp_server, [webhook_token, routing_key, postgres_server.password],
    )
    yield deploy
    if not postgres_server.running:
        postgres_server.start()
    postgres_server.drop_database(database)
    deploy.assert_no_secret_leaked()

