"""Report dicts in the shape docs/ARCHITECTURE.md documents, for the status API tests."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _test(section: str, feature: str, effect: float, p: float, kind: str) -> dict[str, Any]:
    return {
        "feature": feature, "section": section, "test": "ks", "statistic": 0.3,
        "p_value": p, "p_adjusted": min(1.0, p * 4), "effect_size": effect,
        "effect_size_kind": kind, "threshold": 0.1, "significant": p < 0.05,
        "severity": "high" if p < 0.05 else "none", "baseline_mean": 1.0,
        "current_mean": 2.0, "baseline_n": 500, "current_n": 480,
    }


def make_report(report_id: str, severity: str = "high", drift: bool = True) -> dict[str, Any]:
    """A full drift report: pixel drift ``severity``, model sections present, one bad file."""
    return {
        "schema_version": 1,
        "report_id": report_id,
        "timestamp": "2026-11-26T01:15:03+00:00",
        "data_dir": f"/srv/production/{report_id}",
        "overall_drift_detected": drift,
        "overall_severity": severity,
        "drift_summary": f"{severity.capitalize()} drift: brightness shifted",
        "baseline_image_count": 500,
        "current_image_count": 480,
        "settings": {"alpha": 0.05, "correction": "holm"},
        "pixel_distribution_drift": {
            "severity": severity, "drift_detected": drift, "available": True,
            "overall_mean_shift": 0.0832,
            "channel_means": {"baseline": [120, 110, 100], "current": [140, 130, 120]},
            "tests": [
                _test("pixel_distribution_drift", "brightness", 0.42, 1e-9, "wasserstein_norm"),
                _test("pixel_distribution_drift", "sharpness", 0.01, 0.6, "wasserstein_norm"),
            ],
        },
        "confidence_drift": {
            "severity": "medium", "drift_detected": True, "available": True,
            "mean_confidence_shift": -0.12, "baseline_mean_confidence": 0.91,
            "current_mean_confidence": 0.79, "estimated_accuracy_change": -0.1,
            "tests": [_test("confidence_drift", "max_confidence", 0.2, 1e-4, "ks_d")],
        },
        "class_distribution_drift": {
            "severity": "low", "drift_detected": True, "available": True,
            "wasserstein_distance": 0.03, "chi2_statistic": 41.2, "p_value": 1e-6,
            "classes": [{"index": 0, "label": "cat", "baseline_share": 0.1,
                         "current_share": 0.2}],
            "tests": [_test("class_distribution_drift", "predicted_class", 0.15, 1e-6,
                            "cramers_v")],
        },
        "data_quality": {
            "severity": "none", "total_files": 481, "analyzed": 480,
            "issues": {
                "unreadable": {"count": 1, "examples": ["a.jpg"]},
                "zero_byte": {"count": 0, "examples": []},
            },
        },
        "atypical_images": [],
    }


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
