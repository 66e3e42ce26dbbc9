"""Log lines: JSON on stdout, with the fields of library (stdlib) log records kept."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from daemon.logs import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    """Put logging back as it was: the handlers built here hold pytest's captured stdout."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


class TestJsonLogs:
    def test_stdlib_records_keep_their_extra_fields(self, capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
        """The analyzer's progress records reach the journal with their done/total counts."""
        configure_logging("info", "json")
        logging.getLogger("analyzer").info("analysis.progressed", extra={"done": 5, "total": 10})
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert (line["event"], line["done"], line["total"]) == ("analysis.progressed", 5, 10)

    def test_slack_sdk_info_is_not_logged(self, capsys: pytest.CaptureFixture[str]) -> None:
        """slack_sdk's INFO lines (which carry the webhook URL) never reach the output."""
        configure_logging("debug", "json")
        logging.getLogger("slack_sdk.webhook").info("POST https://hooks.slack.com/services/T/B/X")
        structlog.get_logger("driftd").info("run.finished")
        out = capsys.readouterr().out
        assert "hooks.slack.com" not in out and "run.finished" in out
