"""The seed's ``generate_html_report(drift_report, html_path)``: render and write one page.

A thin façade over ``analyzer.render.render_html`` for callers that hold the report as a
dict (``detect_drift()``'s, or one read from a report file) and the trend as the documented
list of dicts. driftd itself renders typed reports and writes them with ``sinks.files``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from analyzer.contract import DriftReport, TrendPoint
from analyzer.errors import AnalyzerError
from analyzer.render import render_html

REPORT_MODE = 0o644
"""The page's file mode: what the daemon's report files get (``sinks.files``), so a web
server or another user can read every report alike."""


def render_html_report(
    drift_report: Mapping[str, object] | DriftReport,
    history: Sequence[Mapping[str, object]] | None = None,
) -> str:
    """Render ``drift_report`` as one self-contained HTML page and return it.

    Args:
        drift_report: a ``DriftReport``, or its ``to_dict()`` dict (docs/ARCHITECTURE.md,
            "Drift report dict"). A dict may lack everything but the seed's keys
            (``DriftReport.from_dict(..., partial=True)``): a missing section is left out,
            missing numbers show as "—".
        history: trend points for previous nights, oldest first, as the daemon keeps them::

                {"report_id": "20261125", "date": "2026-11-25", "overall_severity": "low",
                 "pixel_mean_shift": 0.01, "confidence_shift": -0.02,
                 "drift_detected": false}

            Tonight's point is appended from the report unless a point with its
            ``report_id`` is already in the list. ``None`` or ``[]`` leaves the trend out.

    Returns:
        The HTML document as a string (UTF-8 when written).

    Raises:
        AnalyzerError: ``drift_report`` is neither a report nor a mapping;
            ``ReportFormatError`` (an ``AnalyzerError``) when the mapping lacks a seed key.
    """
    if isinstance(drift_report, DriftReport):
        report = drift_report
    elif isinstance(drift_report, Mapping):
        report = DriftReport.from_dict(drift_report, partial=True)
    else:
        raise AnalyzerError(
            f"drift_report must be a dict from DriftReport.to_dict() or detect_drift(); "
            f"got {type(drift_report).__name__}"
        )
    points = [TrendPoint.from_dict(p) for p in history or () if isinstance(p, Mapping)]
    return render_html(report, points)


def generate_html_report(
    drift_report: Mapping[str, object] | DriftReport,
    html_path: str | os.PathLike[str],
    history: Sequence[Mapping[str, object]] | None = None,
) -> Path:
    """Write ``render_html_report(drift_report, history)`` to ``html_path``.

    Missing parent folders are created; the file is readable by all (mode 0644, as the
    daemon's report files are). The write is a plain one: the daemon's own report files go
    through ``sinks.files``, which replaces them atomically.

    Returns:
        The path written, as a ``Path``.

    Raises:
        AnalyzerError: ``drift_report`` is not a report (see ``render_html_report``).
        OSError: the folder cannot be created or written.
    """
    path = Path(html_path)
    html = render_html_report(drift_report, history)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    os.chmod(path, REPORT_MODE)
    return path
