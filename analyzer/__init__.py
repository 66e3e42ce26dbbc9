"""driftd's analyzer: profile folders of images, compare them, report drift.

``from analyzer import DatasetAnalyzer, generate_html_report`` works as in the seed; see
docs/ARCHITECTURE.md "Analyzer public API". The comparison (``compare``: scipy, ~75 MB) and
the renderer (``generate_html_report``: matplotlib, Jinja2) are imported lazily, so
profiling a folder — in the parent and in every worker — does not pay for them; the report
types (``DriftReport``, ``metric_rows``: ``analyzer.contract``) are plain Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from analyzer.contract import DriftReport, metric_rows
from analyzer.dataset import DatasetAnalyzer, profile_folder
from analyzer.errors import (
    AnalyzerError,
    BaselineError,
    DatasetError,
    EmptyDatasetError,
    ModelError,
)
from analyzer.options import AnalyzerOptions
from analyzer.profile import Profile
from analyzer.severity import Severity

if TYPE_CHECKING:
    from analyzer.html import generate_html_report
    from analyzer.report import compare

__all__ = [
    "AnalyzerError",
    "AnalyzerOptions",
    "BaselineError",
    "DatasetAnalyzer",
    "DatasetError",
    "DriftReport",
    "EmptyDatasetError",
    "ModelError",
    "Profile",
    "Severity",
    "compare",
    "generate_html_report",
    "metric_rows",
    "profile_folder",
]


_LAZY = {
    "generate_html_report": "analyzer.html",
    "compare": "analyzer.report",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
