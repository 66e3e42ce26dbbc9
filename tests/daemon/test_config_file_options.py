"""The ``[analysis]`` keys that decide which files of a night are read at all:
``follow_symlinks_outside`` and ``max_file_bytes`` reach the analyzer, typed and checked."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.config import ConfigError, analyzer_kwargs, load_settings


def test_file_options_reach_the_analyzer(config_file: Callable[..., Path]) -> None:
    """Both keys, set in the file, are passed to ``DatasetAnalyzer`` with their types."""
    settings = load_settings(config_file(
        "[analysis]\nfollow_symlinks_outside = true\nmax_file_bytes = 1073741824\n", base=""))
    kwargs = analyzer_kwargs(settings)
    assert kwargs["follow_symlinks_outside"] is True
    assert kwargs["max_file_bytes"] == 1024**3


def test_file_options_can_come_from_the_environment(
    config_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``DRIFTD_ANALYSIS__FOLLOW_SYMLINKS_OUTSIDE=true`` turns link following on."""
    monkeypatch.setenv("DRIFTD_ANALYSIS__FOLLOW_SYMLINKS_OUTSIDE", "true")
    kwargs = analyzer_kwargs(load_settings(config_file("", base="")))
    assert kwargs["follow_symlinks_outside"] is True


def test_a_max_file_bytes_below_one_is_reported_with_its_section(
    config_file: Callable[..., Path]
) -> None:
    """A zero cap is a configuration error before anything starts."""
    with pytest.raises(ConfigError, match=r"analysis: option max_file_bytes=0 must be >= 1"):
        load_settings(config_file("[analysis]\nmax_file_bytes = 0\n", base=""))
