"""RetrainTransport: a real subprocess (argv, no shell) and a real loopback HTTP endpoint."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import pytest

from analyzer.severity import Severity
from sinks.errors import DeliveryError
from sinks.messages import AlertMessage
from sinks.retrain import RetrainConfig, RetrainTransport
from tests.fixtures.servers import RecordingHTTPServer

MESSAGE = AlertMessage(
    kind="retrain",
    partition=date(2026, 11, 26),
    severity=Severity.HIGH,
    drift_detected=True,
    summary="High drift",
    report_path="/srv/reports/monitor_report_20261126.json",
)

RECORDER = (
    "import json, os, sys; "
    "json.dump({'argv': sys.argv[1:], 'severity': os.environ['DRIFTD_SEVERITY'], "
    "'report': os.environ['DRIFTD_REPORT_JSON']}, open(sys.argv[1], 'w'))"
)


class TestRetrainTransport:
    def test_command_gets_report_path_and_severity_without_a_shell(self, tmp_path: Path) -> None:
        """Placeholders become argv items verbatim (no shell expansion) and env vars are set."""
        out = tmp_path / "called.json"
        command = (
            sys.executable,
            "-c",
            RECORDER,
            str(out),
            "{report_json}",
            "{severity}",
            "$HOME;x",
        )
        RetrainTransport(RetrainConfig(timeout_s=60, command=command)).send(MESSAGE)
        called = json.loads(out.read_text())
        assert called["argv"] == [str(out), MESSAGE.report_path, "high", "$HOME;x"]
        assert called["severity"] == "high"
        assert called["report"] == MESSAGE.report_path

    def test_failing_command_is_retryable_and_reports_stderr(self) -> None:
        """A non-zero exit is retried later and its stderr is kept as the reason."""
        command = (sys.executable, "-c", "import sys; sys.exit('queue unavailable')")
        with pytest.raises(DeliveryError) as err:
            RetrainTransport(RetrainConfig(timeout_s=60, command=command)).send(MESSAGE)
        assert not err.value.permanent
        assert "queue unavailable" in str(err.value)

    def test_missing_program_is_permanent(self, tmp_path: Path) -> None:
        """A command that cannot be executed is a config error, not retried."""
        with pytest.raises(DeliveryError) as err:
            missing = RetrainConfig(timeout_s=60, command=(str(tmp_path / "nope"),))
            RetrainTransport(missing).send(MESSAGE)
        assert err.value.permanent

    def test_url_receives_the_summary_with_bearer_token(
        self, http_server: RecordingHTTPServer
    ) -> None:
        """The retraining endpoint gets the report summary as JSON and the token as Bearer."""
        config = RetrainConfig(timeout_s=60, url=http_server.url + "/retrain", token="tok-123")
        RetrainTransport(config).send(MESSAGE)
        (request,) = http_server.requests
        assert request.json["event"] == "driftd.retrain"
        assert request.json["severity"] == "high"
        assert request.json["partition"] == "2026-11-26"
        assert request.headers["authorization"] == "Bearer tok-123"
        assert "tok-123" not in repr(config)
