"""``AlertMessage``: what every alert transport renders, built from a ``DriftReport``.

The message is the only thing a transport sees: it never reads the report or settings. It is
stored in the alert outbox as ``to_payload()`` and rebuilt with ``from_payload()`` when the
dispatcher delivers it, so a message queued tonight renders the same when retried tomorrow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from analyzer.contract import DriftReport
from analyzer.severity import Severity

AlertKind = Literal["drift", "resolve", "retrain", "test", "failed", "run_failed"]
ALERT_KINDS: tuple[AlertKind, ...] = (
    "drift", "resolve", "retrain", "test", "failed", "run_failed",
)
FAILURE_KINDS: tuple[AlertKind, ...] = ("failed", "run_failed")
"""Kinds that say the monitor is blind (no report behind them)."""

#: Slack attachment colour per severity (the seed's colour map).
SEVERITY_COLOURS: dict[Severity, str] = {
    Severity.NONE: "#36a64f",
    Severity.LOW: "#ffaa00",
    Severity.MEDIUM: "#ff6600",
    Severity.HIGH: "#ff0000",
}

#: How many drifted features a message names (largest effect size first).
TOP_FEATURES = 5


@dataclass(frozen=True)
class AlertMessage:
    """One alert about one monitored model and one folder date, ready to render.

    ``kind`` is ``drift`` (a night at or above a channel's threshold), ``resolve`` (a later
    night back to ``none`` after a drift alert), ``retrain`` (the retraining trigger),
    ``failed`` (a folder that could not be analysed and was given up on: the monitor is blind
    for that night), ``run_failed`` (a run-level fault — no baseline, a broken model, a full
    disk — stopped every folder; ``partition`` is the day it happened) or ``test``
    (``driftd alerts test``). ``monitor`` names the monitored
    model; PagerDuty's ``dedup_key`` is derived from it.
    """

    kind: AlertKind
    partition: date | None
    severity: Severity
    drift_detected: bool
    summary: str
    monitor: str = "driftd"
    pixel_mean_shift: float = 0.0
    confidence_shift: float = 0.0
    class_drift_distance: float = 0.0
    baseline_image_count: int = 0
    current_image_count: int = 0
    top_features: tuple[str, ...] = ()
    report_id: str | None = None
    report_url: str | None = None
    report_path: str | None = None

    @classmethod
    def from_report(
        cls,
        report: DriftReport,
        partition: date,
        kind: AlertKind,
        report_url: str | None = None,
        *,
        monitor: str = "driftd",
        report_path: str | None = None,
    ) -> AlertMessage:
        """Build the message from ``report``. Raises ``ValueError`` for an unknown ``kind``."""
        if kind not in ALERT_KINDS:
            raise ValueError(f"unknown alert kind {kind!r}; expected one of {ALERT_KINDS}")
        return cls(
            kind=kind,
            partition=partition,
            severity=report.overall_severity,
            drift_detected=report.overall_drift_detected,
            summary=report.drift_summary,
            monitor=monitor,
            pixel_mean_shift=float(report.pixel.overall_mean_shift),
            confidence_shift=float(report.confidence.mean_confidence_shift),
            class_drift_distance=float(report.classes.wasserstein_distance),
            baseline_image_count=report.baseline_image_count,
            current_image_count=report.current_image_count,
            top_features=_top_features(report),
            report_id=report.report_id or None,
            report_url=report_url,
            report_path=report_path,
        )

    @classmethod
    def test(cls, monitor: str = "driftd", report_url: str | None = None) -> AlertMessage:
        """A clearly labelled test message (``driftd alerts test``): no real report behind it."""
        return cls(
            kind="test",
            partition=None,
            severity=Severity.NONE,
            drift_detected=False,
            summary="Test alert from driftd: channel wiring works. No drift was measured.",
            monitor=monitor,
            report_url=report_url,
        )

    @classmethod
    def failure(cls, partition: date, error: str, *, attempts: int, monitor: str = "driftd"
                ) -> AlertMessage:
        """A ``failed`` message: the folder of ``partition`` could not be analysed ``attempts``
        times (empty, all files broken, baseline missing, ...). Sent at high severity."""
        return cls(
            kind="failed",
            partition=partition,
            severity=Severity.HIGH,
            drift_detected=False,
            summary=(f"driftd gave up on the folder of {partition.isoformat()} after {attempts} "
                     f"attempts, so this night is not monitored: {error}"),
            monitor=monitor,
        )

    @classmethod
    def run_failure(cls, day: date, error: str, *, monitor: str = "driftd") -> AlertMessage:
        """A ``run_failed`` message: on ``day`` driftd could not analyse any folder because of
        ``error`` (a run-level fault). Sent at high severity; folders keep their attempts."""
        return cls(
            kind="run_failed",
            partition=day,
            severity=Severity.HIGH,
            drift_detected=False,
            summary=(f"driftd could not analyse any folder on {day.isoformat()}, so nights "
                     f"are not monitored until this is fixed: {error}. The folders are kept "
                     "and processed by the first run after the fix."),
            monitor=monitor,
        )

    @property
    def has_metrics(self) -> bool:
        """True when the message carries a report's numbers (not a test or a failure)."""
        return self.kind not in ("test", *FAILURE_KINDS)

    @property
    def title(self) -> str:
        """A one-line headline: the seed's ``Model Drift Alert - HIGH`` for drift alerts."""
        day = f" {self.partition.isoformat()}" if self.partition else ""
        if self.kind == "test":
            return f"[TEST] driftd alert test - {self.monitor}"
        if self.kind == "resolve":
            return f"Model Drift Resolved - {self.monitor}{day}"
        if self.kind == "failed":
            return f"Monitoring Failed - {self.monitor}{day}"
        if self.kind == "run_failed":
            return f"Monitoring Halted - {self.monitor}{day}"
        if self.kind == "retrain":
            return f"Retraining Triggered - {self.monitor}{day} ({self.severity.value.upper()})"
        return f"Model Drift Alert - {self.severity.value.upper()} - {self.monitor}{day}"

    @property
    def colour(self) -> str:
        """The seed's colour for this severity (green for tests and resolves)."""
        if self.kind in ("test", "resolve"):
            return SEVERITY_COLOURS[Severity.NONE]
        return SEVERITY_COLOURS[self.severity]

    def metric_rows(self) -> list[tuple[str, str]]:
        """The headline numbers as (label, formatted value) rows, in the seed's order."""
        rows = [
            ("Drift Detected", str(self.drift_detected)),
            ("Severity", self.severity.value),
            ("Pixel Mean Shift", f"{self.pixel_mean_shift:.4f}"),
            ("Confidence Shift", f"{self.confidence_shift:+.4f}"),
            ("Class Drift (Wasserstein)", f"{self.class_drift_distance:.4f}"),
            (
                "Images Analyzed",
                f"{self.current_image_count} (baseline {self.baseline_image_count})",
            ),
        ]
        if self.top_features:
            rows.append(("Top Drifted Features", ", ".join(self.top_features)))
        return rows

    def to_payload(self) -> dict[str, Any]:
        """The JSON-serialisable dict stored in the outbox; ``from_payload`` inverts it."""
        payload = dataclasses.asdict(self)
        payload["partition"] = self.partition.isoformat() if self.partition else None
        payload["severity"] = self.severity.value
        payload["top_features"] = list(self.top_features)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AlertMessage:
        """Rebuild a message from ``to_payload()`` output (raises ``KeyError``/``ValueError``)."""
        values = dict(payload)
        values["partition"] = (
            date.fromisoformat(values["partition"]) if values.get("partition") else None
        )
        values["severity"] = Severity.parse(values["severity"])
        values["top_features"] = tuple(values.get("top_features", ()))
        return cls(**values)


def _top_features(report: DriftReport) -> tuple[str, ...]:
    """Names of the significant tests with the largest effect sizes, across all sections."""
    significant = sorted((t for t in report.tests if t.significant),
                         key=lambda t: t.effect_size, reverse=True)
    names: list[str] = []
    for test in significant:
        if test.feature not in names:
            names.append(test.feature)
    return tuple(names[:TOP_FEATURES])
