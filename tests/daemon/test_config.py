"""config.toml loading: every error at once with its path, overrides, secrets, paths."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import ConfigError, effective_config, load_settings
from tests.daemon.conftest import cli_env, driftd

BROKEN = """
[data]
settle_seconds = "ten minutes"
colour = "blue"

[schedule]
cron = "61 1 * * *"

[alerts.slack]
min_severity = "hgih"

[alerts.pagerduty]
min_severity = "high"
"""


class TestLoadSettings:
    def test_broken_config_lists_every_error_with_its_path(
        self, config_file: Callable[..., Path]
    ) -> None:
        """Wrong type, unknown key, bad severity and a missing secret are reported together."""
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file(BROKEN, base=""))
        text = str(caught.value)
        for expected in (
            "data.settle_seconds:",
            "data.colour: unknown key",
            "schedule.cron: invalid cron expression '61 1 * * *'",
            "alerts.slack.min_severity: unknown severity 'hgih'",
            "alerts.slack.webhook_url: required",
            "alerts.pagerduty.routing_key: required",
        ):
            assert expected in text

    def test_unknown_analysis_option_is_reported_with_the_section(
        self, config_file: Callable[..., Path]
    ) -> None:
        """An [analysis] key the analyzer does not know is named with its dotted path."""
        with pytest.raises(ConfigError, match=r"analysis\.alpah: unknown key"):
            load_settings(config_file("[analysis]\nalpah = 0.01\n", base=""))

    @pytest.mark.parametrize("listen", ["::1:8000", "localhost", "127.0.0.1:99999"])
    def test_a_listen_address_the_server_cannot_bind_is_a_config_error(
        self, config_file: Callable[..., Path], listen: str
    ) -> None:
        """A malformed [http] listen is reported before start, not as a crash at start."""
        with pytest.raises(ConfigError, match=r"http\.listen:"):
            load_settings(config_file(f'[http]\nlisten = "{listen}"\n'))

    def test_listen_off_disables_the_status_api(self, config_file: Callable[..., Path]) -> None:
        """`listen = "off"` is accepted and means no listener."""
        assert load_settings(config_file('[http]\nlisten = "off"\n')).http.listen == ""

    def test_relative_paths_resolve_against_the_config_folder(
        self, config_file: Callable[..., Path], tmp_path: Path
    ) -> None:
        """Paths and the SQLite url are anchored at the config file, not the working dir."""
        settings = load_settings(config_file())
        assert settings.data.production_root == tmp_path / "production"
        assert settings.data.reports_path == tmp_path / "var" / "reports"
        assert settings.store.url == f"sqlite:///{tmp_path}/var/driftd.sqlite"

    def test_environment_overrides_the_file(
        self, config_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """DRIFTD_SECTION__KEY wins over config.toml."""
        monkeypatch.setenv("DRIFTD_SCHEDULE__LOOKBACK_DAYS", "3")
        assert load_settings(config_file()).schedule.lookback_days == 3

    def test_credentials_directory_fills_secrets_and_they_are_masked(
        self, config_file: Callable[..., Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A LoadCredential file provides the webhook; config check never shows it."""
        creds = tmp_path / "creds"
        creds.mkdir()
        secret = "https://hooks.slack.com/services/T0/B0/topsecret"
        (creds / "slack_webhook_url").write_text(secret + "\n")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        settings = load_settings(config_file("[alerts.slack]\n"))
        assert settings.alerts.slack is not None
        assert settings.alerts.slack.webhook_url.get_secret_value() == secret
        assert "topsecret" not in str(effective_config(settings))


class TestConfigCommand:
    def test_config_check_exits_2_on_a_broken_config(
        self, config_file: Callable[..., Path]
    ) -> None:
        """`driftd config check` prints all errors on stderr and exits 2."""
        result = driftd("--config", str(config_file(BROKEN, base="")), "config", "check")
        assert result.returncode == 2
        assert "data.colour" in result.stderr and "alerts.slack.min_severity" in result.stderr

    def test_run_with_a_broken_config_starts_nothing(
        self, config_file: Callable[..., Path], tmp_path: Path
    ) -> None:
        """The daemon refuses to start: exit 2, no state folder created."""
        result = driftd("--config", str(config_file(BROKEN, base="")), "run")
        assert result.returncode == 2
        assert not (tmp_path / "var").exists()

    def test_config_check_masks_the_store_password(
        self, config_file: Callable[..., Path]
    ) -> None:
        """A DSN password from the environment never reaches the output (the effective config
        is printed whatever the deployment checks find: here, no baseline yet)."""
        env = cli_env(DRIFTD_STORE__URL="postgresql://driftd:hunter2@db:5432/m")
        result = driftd("--config", str(config_file()), "config", "check", env=env)
        assert result.returncode == 2 and "data.baseline:" in result.stderr, result.stderr
        assert "hunter2" not in result.stdout + result.stderr
        assert "postgresql://driftd:***@db:5432/m" in result.stdout
