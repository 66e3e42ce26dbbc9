"""The deployment files agree: deploy/config.toml, the systemd unit and README's steps.

A config whose relative paths resolve under /etc/driftd, a unit that only lets the service
write /var/lib/driftd, and a LoadCredential= line per secret whether or not its file exists
each made a deployment that "config check" passed and systemd could not run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.config import load_settings
from tests.daemon.conftest import ROOT

UNIT = ROOT / "deploy" / "systemd" / "driftd.service"
DEPLOY_CONFIG = ROOT / "deploy" / "config.toml"
README = ROOT / "README.md"
HIDDEN = (Path("/home"), Path("/root"), Path("/run/user"), Path("/tmp"), Path("/var/tmp"))
"""Folders the unit hides from the service (ProtectHome=yes, PrivateTmp=yes)."""


def _directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit (comments skipped), each key's values in order."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


@pytest.fixture
def unit() -> dict[str, list[str]]:
    return _directives(UNIT.read_text(encoding="utf-8"))


class TestConfigAndUnit:
    def test_every_path_in_the_deploy_config_is_absolute(self) -> None:
        """No path in deploy/config.toml resolves against /etc/driftd by accident."""
        import tomllib

        raw = tomllib.loads(DEPLOY_CONFIG.read_text(encoding="utf-8"))
        paths = [raw["data"][k] for k in ("production_root", "baseline", "state_dir")]
        paths.append(raw["model"]["path"])
        assert all(p.startswith("/") for p in paths), paths
        assert raw["store"]["url"].startswith("sqlite:////"), raw["store"]["url"]

    def test_the_service_may_write_where_the_config_writes(
        self, unit: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """state_dir, the reports and the SQLite store are in the unit's StateDirectory=;
        ProtectSystem=strict leaves every other path read-only."""
        for key in [k for k in os.environ if k.startswith("DRIFTD_")]:
            monkeypatch.delenv(key)
        settings = load_settings(DEPLOY_CONFIG)
        state = Path("/var/lib") / unit["StateDirectory"][0]
        assert unit["ProtectSystem"] == ["strict"]
        assert settings.data.state_dir == state
        assert settings.data.reports_path.is_relative_to(state)
        assert Path(settings.store.url.removeprefix("sqlite:///")).is_relative_to(state)
        assert Path(unit["WorkingDirectory"][0]) == state
        assert not any(k.startswith("Environment") and "DRIFTD_DATA" in " ".join(v)
                       for k, v in unit.items()), "the unit must not override the config's paths"

    def test_the_service_can_see_what_the_config_reads(
        self, unit: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The config the unit names holds the baseline and model beside it; the production
        folder is not one the unit hides."""
        for key in [k for k in os.environ if k.startswith("DRIFTD_")]:
            monkeypatch.delenv(key)
        settings = load_settings(DEPLOY_CONFIG)
        configs = {re.search(r"--config (\S+)", line).group(1)  # type: ignore[union-attr]
                   for line in unit["ExecStart"] + unit["ExecStartPre"]}
        assert len(configs) == 1, configs
        etc = Path(configs.pop()).parent
        assert settings.data.baseline.parent == etc
        assert settings.model.path is not None and settings.model.path.parent == etc
        assert unit["ProtectHome"] == ["yes"] and unit["PrivateTmp"] == ["yes"]
        assert not any(settings.data.production_root.is_relative_to(h) for h in HIDDEN)

    def test_the_unit_checks_the_deployment_before_it_starts(
        self, unit: dict[str, list[str]]
    ) -> None:
        """ExecStartPre= runs `config check`, and a config error (exit 2) is not restarted."""
        assert unit["ExecStartPre"][0].endswith("config check --quiet")
        assert "2" in unit["RestartPreventExitStatus"][0].split()
        assert unit["User"] == ["driftd"]


class TestCredentials:
    def test_the_unit_loads_no_credential_file_itself(self, unit: dict[str, list[str]]) -> None:
        """systemd refuses to start a unit whose LoadCredential= file is missing, so the
        shipped unit names none; README's drop-in names the files that exist."""
        assert "LoadCredential" not in unit

    def test_readme_drop_in_has_one_line_per_secret_file(self, tmp_path: Path) -> None:
        """README's command, run against a credentials folder with two secrets, writes a
        drop-in with exactly those two LoadCredential= lines (and it verifies)."""
        script = _readme_dropin_script()
        assert script in (ROOT / "deploy" / "systemd" / "credentials.example").read_text()
        creds = tmp_path / "credentials"
        creds.mkdir()
        for name in ("slack_webhook_url", "store_password"):
            (creds / name).write_text("secret")
        units = tmp_path / "units"
        (units / "driftd.service.d").mkdir(parents=True)
        script = script.replace("/etc/driftd/credentials", str(creds)).replace(
            "/etc/systemd/system", str(units))
        subprocess.run(["sh", "-c", script], check=True)
        dropin = (units / "driftd.service.d" / "credentials.conf").read_text().splitlines()
        assert dropin == [
            "[Service]",
            f"LoadCredential=slack_webhook_url:{creds}/slack_webhook_url",
            f"LoadCredential=store_password:{creds}/store_password",
        ]

    def test_readme_drop_in_with_its_unit_verifies(self, tmp_path: Path,
                                                  needs_systemd_analyze: str) -> None:
        """`systemd-analyze verify` accepts the unit with the drop-in README writes."""
        creds = tmp_path / "credentials"
        creds.mkdir()
        (creds / "slack_webhook_url").write_text("secret")
        script = _readme_dropin_script().replace("/etc/driftd/credentials", str(creds)).replace(
            "/etc/systemd/system", str(tmp_path))
        (tmp_path / "driftd.service.d").mkdir()
        subprocess.run(["sh", "-c", script], check=True)
        (tmp_path / "driftd.service").write_text(
            UNIT.read_text().replace("/opt/driftd/venv/bin/driftd", sys.executable))
        result = subprocess.run(
            [needs_systemd_analyze, "verify", "--recursive-errors=no",
             str(tmp_path / "driftd.service")], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "driftd.service" not in result.stderr, result.stderr


def _readme_dropin_script() -> str:
    """The shell script inside README's `sudo sh -c '…credentials.conf'` line."""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("sudo sh -c '") and "credentials.conf" in line:
            return line.removeprefix("sudo sh -c '").removesuffix("'")
    raise AssertionError("README has no `sudo sh -c '…credentials.conf'` line")


class TestReadmeSteps:
    def test_the_files_the_steps_install_exist(self) -> None:
        """Every repository file README's deployment steps copy is in the repository."""
        section = README.read_text(encoding="utf-8").split("## Deployment under systemd")[1]
        section = section.split("\n## ")[0]
        sources = re.findall(r"install -m 0644 (\S+) /", section)
        sources += re.findall(r"cp (?:\$\(ls )?(daemon/\S+?)/\*", section)
        assert {"deploy/config.toml", "deploy/systemd/driftd.service",
                "models/demo_classifier.tflite"} <= set(sources), sources
        for source in sources:
            assert (ROOT / source).exists(), source
        assert "driftd --config /etc/driftd/config.toml baseline /srv/validation" in section
        assert "config check" in section and "systemctl status driftd" in section
