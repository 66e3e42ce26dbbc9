"""The systemd unit: valid directives and a hardening score kept low."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon.conftest import ROOT

UNIT = ROOT / "deploy" / "systemd" / "driftd.service"
MAX_EXPOSURE = 2.0
"""`systemd-analyze security --offline=yes` scored the unit 1.3 when written; keep it below 2."""



@pytest.fixture
def unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointed at an executable that exists on this machine."""
    text = UNIT.read_text().replace("/opt/driftd/venv/bin/driftd", sys.executable)
    copy = tmp_path / "driftd.service"
    copy.write_text(text)
    return copy


def test_unit_verifies_without_errors(unit: Path, needs_systemd_analyze: str) -> None:
    """`systemd-analyze verify` finds no unknown directive or bad value."""
    result = subprocess.run(
        [needs_systemd_analyze, "verify", "--recursive-errors=no", str(unit)],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "driftd.service" not in result.stderr, result.stderr


def test_unit_exposure_score_is_low(unit: Path, needs_systemd_analyze: str) -> None:
    """The hardening directives keep systemd's exposure score below the measured threshold."""
    result = subprocess.run(
        [needs_systemd_analyze, "security", "--offline=yes", str(unit)],
        capture_output=True, text=True,
    )
    found = re.search(r"Overall exposure level for driftd\.service: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) < MAX_EXPOSURE


def test_unit_is_type_notify_with_watchdog_and_credentials() -> None:
    """The unit uses sd_notify readiness, a watchdog, restarts, a config check before start,
    its own user and state folder (secrets: tests/daemon/test_deploy.py)."""
    text = UNIT.read_text()
    for line in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ExecStartPre=",
                 "User=driftd", "ProtectSystem=strict", "StateDirectory=driftd"):
        assert line in text
