"""The exit-2 contract under hostile configuration: every bad input is a clear error with its
dotted path, exit 2, no traceback and no secret — whatever the source (file, environment,
``$CREDENTIALS_DIRECTORY``)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon.conftest import cli_env, driftd, driftd_unprivileged

EMAIL = """
[alerts.email]
host = "127.0.0.1"
sender = "driftd@example.com"
recipients = ["ml-team@example.com"]
"""

SLACK = """
[alerts.slack]
min_severity = "low"
"""

SECRET = "T0SECRET/B0SECRET/tok3nTOKENtoken"


def _assert_config_accepted(result: object) -> dict[str, object]:
    """The configuration parsed and its effective form was printed (``config check`` may still
    exit 2 for the deployment: these throw-away configs have no baseline)."""
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]
    assert "configuration error" not in result.stderr, result.stderr  # type: ignore[attr-defined]
    printed: dict[str, object] = json.loads(result.stdout)  # type: ignore[attr-defined]
    return printed


def _assert_config_error(result: object, *needles: str) -> None:
    out = result.stdout + result.stderr  # type: ignore[attr-defined]
    assert result.returncode == 2, out  # type: ignore[attr-defined]
    assert "Traceback" not in out
    assert "configuration error" in result.stderr  # type: ignore[attr-defined]
    for needle in needles:
        assert needle in result.stderr, result.stderr  # type: ignore[attr-defined]


class TestEnvironment:
    @pytest.mark.parametrize("value", ["a@b.c", "a@b.c, d@e.f", '["a@b.c", "d@e.f"]'])
    def test_list_valued_variable_takes_one_address_a_comma_list_or_json(
        self, config_file: Callable[..., Path], value: str
    ) -> None:
        """DRIFTD_ALERTS__EMAIL__RECIPIENTS=a@b.c works (as do a comma list and JSON)."""
        config = config_file(EMAIL)
        result = driftd("--config", str(config), "config", "check",
                        env=cli_env(DRIFTD_ALERTS__EMAIL__RECIPIENTS=value))
        _assert_config_accepted(result)
        expected = [v.strip(' "[]') for v in value.split(",")]
        for address in expected:
            assert address in result.stdout

    def test_list_field_given_something_else_names_the_path(
        self, config_file: Callable[..., Path]
    ) -> None:
        """A non-list for a list of argv words is a dotted-path error, not a traceback."""
        result = driftd("--config", str(config_file()), "run", "--once",
                        env=cli_env(DRIFTD_RETRAIN__COMMAND="retrain --now"))
        _assert_config_error(result, "retrain.command", "JSON list")

    def test_table_variable_that_is_not_json_names_the_path(
        self, config_file: Callable[..., Path]
    ) -> None:
        result = driftd("--config", str(config_file()), "run", "--once",
                        env=cli_env(DRIFTD_SCHEDULE="nightly"))
        _assert_config_error(result, "schedule")


class TestFiles:
    def test_config_file_that_is_not_utf8(self, tmp_path: Path) -> None:
        config = tmp_path / "config.toml"
        config.write_bytes(b'[data]\nproduction_root = "caf\xe9"\n')
        result = driftd("--config", str(config), "run", "--once")
        _assert_config_error(result, "not UTF-8", "0xe9")

    def test_binary_credential_file(self, config_file: Callable[..., Path], tmp_path: Path
                                    ) -> None:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "slack_webhook_url").write_bytes(b"\xff\xfe\x00https://hooks.slack.com/x")
        result = driftd("--config", str(config_file(SLACK)), "run", "--once",
                        env=cli_env(CREDENTIALS_DIRECTORY=str(creds)))
        _assert_config_error(result, "alerts.slack.webhook_url", "not UTF-8")

    def test_unreadable_credential_file(self, config_file: Callable[..., Path], tmp_path: Path
                                        ) -> None:
        creds = tmp_path / "creds"
        creds.mkdir()
        secret = creds / "store_password"
        secret.write_text("hunter2-very-secret")
        secret.chmod(0)
        result = driftd_unprivileged("--config", str(config_file()), "run", "--once",
                                     env=cli_env(CREDENTIALS_DIRECTORY=str(creds)))
        _assert_config_error(result, "store.password", "cannot be read")
        assert "hunter2" not in result.stdout + result.stderr

    def test_empty_credential_file_is_refused(
        self, config_file: Callable[..., Path], tmp_path: Path
    ) -> None:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "slack_webhook_url").write_text("\n")
        result = driftd("--config", str(config_file(SLACK)), "run", "--once",
                        env=cli_env(CREDENTIALS_DIRECTORY=str(creds)))
        _assert_config_error(result, "alerts.slack.webhook_url", "is empty")

    def test_empty_secret_in_the_file_is_refused(self, config_file: Callable[..., Path]
                                                 ) -> None:
        config = config_file('\n[alerts.pagerduty]\nrouting_key = "  "\n')
        result = driftd("--config", str(config), "run", "--once")
        _assert_config_error(result, "alerts.pagerduty.routing_key", "empty")

    def test_world_readable_credential_file_is_warned_about(
        self, config_file: Callable[..., Path], tmp_path: Path
    ) -> None:
        """A secret every user can read works, with a warning naming the file and the fix."""
        creds = tmp_path / "creds"
        creds.mkdir()
        secret = creds / "store_password"
        secret.write_text("pw-readable-by-all")
        os.chmod(secret, 0o644)
        result = driftd("--config", str(config_file()), "status",
                        env=cli_env(CREDENTIALS_DIRECTORY=str(creds)))
        assert result.returncode == 0, result.stderr
        assert "driftd: warning: store.password" in result.stderr
        assert "chmod 0600" in result.stderr
        assert "pw-readable-by-all" not in result.stdout + result.stderr


class TestUrls:
    @pytest.mark.parametrize(("url", "needle"), [
        (f"https://hooks.slack.com/services/{SECRET} x", "whitespace"),
        (f"https://hooks.slack.com/services/{SECRET}\tx", "control character"),
        (f"ftp://hooks.slack.com/services/{SECRET}", "https://"),
        (f"http://hooks.slack.com/services/{SECRET}", "non-loopback"),
        (f"https:///services/{SECRET}", "host"),
    ])
    def test_bad_webhook_url_is_refused_without_echoing_it(
        self, config_file: Callable[..., Path], tmp_path: Path, url: str, needle: str
    ) -> None:
        """A Slack URL with a space (or no host, or plain http to the internet) is a config
        error; the message never quotes the secret URL, in `run --once` or `alerts test`."""
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "slack_webhook_url").write_text(url)
        for command in (("run", "--once"), ("alerts", "test")):
            result = driftd("--config", str(config_file(SLACK)), *command,
                            env=cli_env(CREDENTIALS_DIRECTORY=str(creds)))
            _assert_config_error(result, "alerts.slack.webhook_url", needle)
            assert "tok3n" not in result.stdout + result.stderr

    def test_http_to_loopback_is_accepted(self, config_file: Callable[..., Path]) -> None:
        config = config_file('\n[alerts.pagerduty]\nrouting_key = "rk"\n'
                             'events_url = "http://127.0.0.1:9/v2/enqueue"\n')
        result = driftd("--config", str(config), "config", "check")
        _assert_config_accepted(result)
        assert "127.0.0.1:9" in result.stdout
