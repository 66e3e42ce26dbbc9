"""Each thing has one home: channels are registered once, defaults live in daemon/defaults.py,
and one masker spells a DSN safely."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import ValidationError

from daemon import defaults
from daemon.alert_settings import Silence
from daemon.channels import CHANNELS
from daemon.config import CREDENTIAL_FILES, Settings, StoreSettings
from daemon.redact import Redactor
from sinks.redact import mask_dsn

ROOT = Path(__file__).resolve().parents[2]
CONFIG_MODULES = [
    ROOT / "daemon" / "config.py", ROOT / "daemon" / "alert_settings.py",
    *sorted((ROOT / "daemon" / "channels").glob("*.py")),
]


class TestChannels:
    def test_each_channel_is_registered_once_by_its_config_name(self) -> None:
        """The registry holds every channel, each under the name of its config table."""
        assert list(CHANNELS) == ["console", "slack", "email", "pagerduty", "retrain"]
        assert all(name == channel.NAME for name, channel in CHANNELS.items())

    def test_credential_files_come_from_the_channels(self) -> None:
        """The systemd credential files are the channels' secrets (and the store's)."""
        assert CREDENTIAL_FILES == {
            "slack_webhook_url": ("alerts", "slack", "webhook_url"),
            "smtp_password": ("alerts", "email", "password"),
            "pagerduty_routing_key": ("alerts", "pagerduty", "routing_key"),
            "retrain_token": ("retrain", "token"),
            "store_password": ("store", "password"),
        }

    def test_a_silence_names_only_registered_channels(self) -> None:
        """A silence for a channel that does not exist is refused, listing the real ones."""
        with pytest.raises(ValidationError, match="unknown channel"):
            Silence.model_validate({"start": "2026-12-01", "end": "2026-12-02",
                                    "channels": ["sms"]})

    def test_secrets_of_every_configured_channel_are_masked(self) -> None:
        """The redactor built from the settings masks each channel's secret, switched on
        or not."""
        settings = Settings.model_validate({
            "alerts": {"pagerduty": {"routing_key": "PDkey0123456789", "enabled": False},
                       "slack": {"webhook_url": "https://hooks.slack.com/services/T1/B2/xyzSECRET"}},
            "retrain": {"url": "https://ci.example/hook", "token": "tok-abcdef"},
        })
        secrets = settings.alerts.secrets(settings.retrain)
        text = Redactor(secrets).text("PDkey0123456789 tok-abcdef /services/T1/B2/xyzSECRET")
        assert "PDkey" not in text and "tok-abc" not in text and "xyzSECRET" not in text


class TestDefaults:
    def test_every_default_has_a_docstring(self) -> None:
        """Each constant in daemon/defaults.py says what it is (the string under it)."""
        body = ast.parse((ROOT / "daemon" / "defaults.py").read_text(encoding="utf-8")).body
        names = []
        missing = []
        for i, node in enumerate(body):
            target = (node.targets[0] if isinstance(node, ast.Assign)
                      else node.target if isinstance(node, ast.AnnAssign) else None)
            if not isinstance(target, ast.Name):
                continue
            names.append(target.id)
            following = body[i + 1] if i + 1 < len(body) else None
            if not (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                missing.append(target.id)
        assert len(names) > 40 and not missing, missing

    @pytest.mark.parametrize("path", CONFIG_MODULES, ids=lambda p: p.name)
    def test_config_models_take_defaults_from_the_defaults_module(self, path: Path) -> None:
        """No config model writes a number or a text as a default (an empty text means
        "not set"); it names a constant of daemon/defaults.py."""
        literals = []
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if not isinstance(item, ast.AnnAssign) or "ClassVar" in ast.unparse(
                            item.annotation):
                        continue
                    value = item.value
                    if isinstance(value, ast.Call) and getattr(value.func, "id", "") == "Field":
                        value = next((k.value for k in value.keywords if k.arg == "default"),
                                     None)
                    if (isinstance(value, ast.Constant) and value.value != ""
                            and isinstance(value.value, int | float | str)
                            and not isinstance(value.value, bool)):
                        literals.append(f"{node.name}:{item.lineno}")
        assert not literals, literals

    def test_defaults_reach_the_settings(self) -> None:
        """A config without the keys gets the documented defaults."""
        settings = Settings.model_validate({})
        assert settings.schedule.cron == defaults.CRON
        assert settings.schedule.max_attempts == defaults.MAX_ATTEMPTS
        assert settings.store.options().compress_after_days == defaults.COMPRESS_AFTER_DAYS
        assert settings.alerts.backoff_cap_s == defaults.BACKOFF_CAP_S


class TestDsn:
    @pytest.mark.parametrize("url", [
        "postgresql://driftd:hunter2@db:5432/metrics",
        "postgresql://driftd@db/metrics?password=hunter2&sslmode=require",
    ])
    def test_the_store_url_is_shown_as_the_store_masks_it(self, url: str) -> None:
        """`driftd status` and `config check` show the URL with any password form masked,
        exactly as the store's own messages do."""
        masked = StoreSettings(url=url).masked_url
        assert "hunter2" not in masked
        assert masked == mask_dsn(url)
