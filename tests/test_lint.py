"""Ruff and mypy run clean over the three packages (the project's style gate).

Both come with the ``[test]`` extra, so they are run from the interpreter running the tests
(``python -m ruff``, ``python -m mypy``): a venv that is not activated, where neither is on
PATH, still runs them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module_or_skip(name: str) -> None:
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed in {sys.prefix}: `pip install -e '.[test]'`")


def test_ruff_reports_nothing() -> None:
    """`ruff check` finds no problem in the code or the tests."""
    _module_or_skip("ruff")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "analyzer", "sinks", "daemon", "tests", "bench",
         "tools"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_reports_nothing() -> None:
    """`mypy` type-checks analyzer, sinks and daemon without errors."""
    _module_or_skip("mypy")
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
