"""Ruff and mypy run clean over the three packages (the project's style gate)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_reports_nothing() -> None:
    """`ruff check` finds no problem in the code or the tests."""
    result = subprocess.run(
        ["ruff", "check", "analyzer", "sinks", "daemon", "tests", "bench", "tools"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_reports_nothing() -> None:
    """`mypy` type-checks analyzer, sinks and daemon without errors."""
    pytest.importorskip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
