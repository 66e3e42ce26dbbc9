"""Secrets never reach stdout or stderr, whichever logger prints them.

A real process configures driftd's logging, then slack_sdk (at DEBUG, where it prints the
webhook URL on every request and response) posts to a real loopback server that answers
errors; stdout and stderr are captured whole.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from tests.daemon.conftest import ROOT, cli_env, driftd
from tests.fixtures.servers import RecordingHTTPServer, Reply

TOKEN = "xoxTOKENs3cr3tW3bh00k"

SCRIPT = """
import logging, sys
from daemon.logs import configure_logging
from slack_sdk.webhook import WebhookClient

url = sys.argv[1]
configure_logging("debug", "json", secrets=[url, "pw-5ecret-Db"])
# A library that logs secrets at DEBUG, the way slack_sdk does when its logger allows it.
logging.getLogger("slack_sdk").setLevel(logging.DEBUG)
client = WebhookClient(url)
client.logger.setLevel(logging.DEBUG)
response = client.send(text="hello")
print("status", response.status_code, file=sys.stderr)
logging.getLogger("psycopg2.pool").error("connect to postgresql://driftd:pw-5ecret-Db@db/m")
logging.getLogger("some.library").warning("retrying POST %s", url)
logging.getLogger("other").error("token=%s", "abc123-not-configured")
"""


def _run_script(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "leak.py"
    script.write_text(textwrap.dedent(SCRIPT))
    return subprocess.run([sys.executable, str(script), url], cwd=ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=60)


class TestLibraryLoggers:
    def test_slack_sdk_debug_lines_are_masked(
        self, tmp_path: Path, slack_server: RecordingHTTPServer
    ) -> None:
        """slack_sdk logs the full URL and the error body; both arrive masked."""
        url = f"{slack_server.url}/services/T0AAA/B0BBB/{TOKEN}"
        slack_server.default = Reply(500, body=f"no route to /services/T0AAA/B0BBB/{TOKEN}")
        result = _run_script(tmp_path, url)
        out = result.stdout + result.stderr
        assert result.returncode == 0, out
        assert [r.path for r in slack_server.requests] == [f"/services/T0AAA/B0BBB/{TOKEN}"]
        assert "Sending a request" in out and "Received the following response" in out
        assert "status 500" in result.stderr
        assert TOKEN not in out
        assert "pw-5ecret-Db" not in out and "abc123-not-configured" not in out
        assert "retrying POST" in out and "***" in out


class TestDriftdCommands:
    def test_alerts_test_against_a_failing_webhook_prints_no_secret(
        self, config_file: Callable[..., Path], tmp_path: Path,
        slack_server: RecordingHTTPServer,
    ) -> None:
        """`alerts test` at debug level with Slack answering 500 (echoing the path)."""
        slack_server.default = Reply(500, body=f"upstream failed for /services/T1/B1/{TOKEN}")
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "slack_webhook_url").write_text(f"{slack_server.url}/services/T1/B1/{TOKEN}\n")
        config = config_file('\n[alerts.slack]\nmin_severity = "low"\n')
        config.write_text(config.read_text().replace('format = "json"', 'format = "json"\n'
                                                     'level = "debug"'))
        result = driftd("--config", str(config), "alerts", "test", "--channel", "slack",
                        env=cli_env(CREDENTIALS_DIRECTORY=str(creds)))
        out = result.stdout + result.stderr
        assert result.returncode == 3, out
        assert "slack: failed: slack: HTTP 500" in result.stdout
        assert len(slack_server.requests) == 1
        assert TOKEN not in out
