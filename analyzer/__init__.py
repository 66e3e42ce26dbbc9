"""driftd's analyzer: profile folders of images, compare them, report drift.

``from analyzer import DatasetAnalyzer, generate_html_report`` works as in the seed; see
docs/ARCHITECTURE.md "Analyzer public API". The comparison (``compare``, ``DriftReport``,
``metric_rows``: scipy, ~75 MB) and the renderer (``generate_html_report``: matplotlib,
Jinja2) are imported lazily, so profiling a folder — in the parent and in every worker —
does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
    from analyzer.report import DriftReport, compare, metric_rows

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
    "DriftReport": "analyzer.report",
    "compare": "analyzer.report",
    "metric_rows": "analyzer.report",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
