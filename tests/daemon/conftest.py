"""Helpers for the daemon tests: a config file in a temp dir and the CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MINIMAL_CONFIG = """
[data]
production_root = "production"
baseline = "var/baseline.json"
state_dir = "var"
settle_seconds = 3600

[analysis]
workers = 1

[schedule]
lookback_days = 14

[logging]
format = "json"
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Callable[..., Path]:
    """Write ``MINIMAL_CONFIG`` plus extra TOML to ``tmp_path/config.toml``; returns its path."""

    def write(extra: str = "", base: str = MINIMAL_CONFIG) -> Path:
        (tmp_path / "production").mkdir(exist_ok=True)
        path = tmp_path / "config.toml"
        path.write_text(base + extra, encoding="utf-8")
        return path

    return write


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a ``driftd`` subprocess (no inherited DRIFTD_* overrides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTD_")}
    env.pop("NOTIFY_SOCKET", None)
    env.pop("CREDENTIALS_DIRECTORY", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def driftd(*args: str, env: dict[str, str] | None = None, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m daemon.cli ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args], cwd=ROOT, env=env or cli_env(),
        capture_output=True, text=True, timeout=timeout,
    )


def without_file_privileges() -> list[str]:
    """A command prefix under which file permissions apply to this user: as root (which
    reads anything), ``setpriv`` drops the capabilities that bypass them, so a mode-000 file
    or folder really is unreadable; otherwise nothing. Skips the test when root has no
    ``setpriv``."""
    if os.geteuid() != 0:
        return []
    import shutil

    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", "--"]


def driftd_unprivileged(*args: str, env: dict[str, str] | None = None, timeout: float = 120
                        ) -> subprocess.CompletedProcess[str]:
    """``driftd ARGS`` as ``driftd`` but with file permissions enforced (see above)."""
    return subprocess.run(
        [*without_file_privileges(), sys.executable, "-m", "daemon.cli", *args], cwd=ROOT,
        env=env or cli_env(), capture_output=True, text=True, timeout=timeout,
    )
