"""Report files as the daemon writes them, for the status API and CLI tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.fixtures import reports


def make_report(report_id: str, severity: str = "high", **changes: Any) -> dict[str, Any]:
    """A full drift report dict as the daemon writes it: pixel drift ``severity``, model
    sections present (confidence medium, classes low), one bad file; ``changes`` go to
    ``tests.fixtures.reports.make_report``."""
    return reports.make_report(report_id, severity, **changes).to_dict()


def write_report(reports_dir: Path, report: dict[str, Any], mtime: float | None = None) -> Path:
    """Write ``monitor_report_<id>.json`` and ``.html`` as the daemon does; return the JSON path."""
    report_id = report["report_id"]
    path = reports_dir / f"monitor_report_{report_id}.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    html = reports_dir / f"monitor_report_{report_id}.html"
    html.write_text(f"<html><body><h1>Report {report_id}</h1></body></html>", encoding="utf-8")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path
