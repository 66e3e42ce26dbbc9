"""driftd's analyzer: profile folders of images, compare them, report drift.

``from analyzer import DatasetAnalyzer, generate_html_report`` works as in the seed; see
docs/ARCHITECTURE.md "Analyzer public API". ``generate_html_report`` is imported lazily from
``analyzer.html`` so the rest of the package does not pay for (or depend on) the renderer.
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
from analyzer.report import DriftReport, compare, metric_rows
from analyzer.severity import Severity

if TYPE_CHECKING:
    from analyzer.html import generate_html_report

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


def __getattr__(name: str) -> Any:
    if name == "generate_html_report":
        from analyzer.html import generate_html_report

        return generate_html_report
    raise AttributeError(f"module 'analyzer' has no attribute {name!r}")
