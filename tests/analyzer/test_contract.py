"""The report contract: reports driftd wrote read back and write out unchanged, a dict that is
no report is refused naming the key, and metric rows are the ones the stores always got."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from analyzer.contract import (
    IMAGE_FEATURES,
    SCHEMA_VERSION,
    DriftReport,
    SectionName,
    metric_rows,
)
from analyzer.errors import AnalyzerError, ReportFormatError
from analyzer.severity import Severity
from sinks.files import dumps_json
from tests.fixtures.report_roundtrip import round_trip_problem, unchecked
from tests.fixtures.reports import make_report

DATA = Path(__file__).parents[1] / "data" / "reports"
WRITTEN_BEFORE = sorted(p.name for p in DATA.glob("demo_*.json"))
"""Report files written by driftd before the contract existed (tests/data/reports/README.md)."""


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DATA / name).read_text(encoding="utf-8"))
    return loaded


class TestReportsWrittenBefore:
    @pytest.mark.parametrize("name", WRITTEN_BEFORE)
    def test_read_back_and_written_out_byte_for_byte(self, name: str) -> None:
        """A report file from before the typed contract reads, and writes out the same bytes."""
        text = (DATA / name).read_text(encoding="utf-8")
        report = DriftReport.from_dict(json.loads(text))
        assert dumps_json(report.to_dict(), indent=2) + "\n" == text
        assert DriftReport.from_dict(report.to_dict()) == report

    @pytest.mark.parametrize("name", WRITTEN_BEFORE)
    def test_metric_rows_are_the_ones_the_store_got_before(self, name: str) -> None:
        """metric_rows of the typed report equals, row for row, what the dict-reading
        metric_rows of c5907de computed from the same file (tests/data/reports)."""
        before = json.loads((DATA / "metric_rows.json").read_text(encoding="utf-8"))[name]
        rows = metric_rows(DriftReport.from_dict(_load(name)))
        assert [[n, v] for n, v in rows] == before

    def test_the_files_cover_a_model_a_quiet_night_and_no_model(self) -> None:
        """The pinned files hold what the contract must keep: model sections with tests, a
        night with no drift, and unavailable sections with their reason."""
        high, none, no_model = (DriftReport.from_dict(_load(n)) for n in WRITTEN_BEFORE)
        assert high.overall_severity == Severity.HIGH and high.confidence.tests
        assert none.overall_severity == Severity.NONE
        assert not no_model.confidence.available and no_model.confidence.reason
        assert [t.feature for t in high.pixel.tests][:len(IMAGE_FEATURES)] == list(
            IMAGE_FEATURES)


class TestRefused:
    def test_a_missing_key_is_named(self) -> None:
        """A report without a required key is refused with the key's path."""
        data = make_report().to_dict()
        del data[SectionName.PIXEL.value]["overall_mean_shift"]  # type: ignore[attr-defined]
        with pytest.raises(ReportFormatError, match=r"pixel_distribution_drift: "
                                                    r"overall_mean_shift is missing"):
            DriftReport.from_dict(data)

    def test_a_derived_key_that_disagrees_is_refused(self) -> None:
        """overall_severity must be what the sections say, or the file was edited wrongly."""
        data = make_report().to_dict()
        data["overall_severity"] = "low"
        with pytest.raises(ReportFormatError, match="overall_severity is 'low' but the "
                                                    "sections say 'high'"):
            DriftReport.from_dict(data)

    def test_an_unknown_schema_version_says_upgrade(self) -> None:
        """A report from a newer driftd is refused with what to do."""
        data = make_report().to_dict() | {"schema_version": SCHEMA_VERSION + 1}
        with pytest.raises(ReportFormatError, match="upgrade driftd"):
            DriftReport.from_dict(data)

    def test_errors_are_analyzer_errors_and_value_errors(self) -> None:
        """Callers catching AnalyzerError or ValueError both see a bad report."""
        with pytest.raises(AnalyzerError):
            DriftReport.from_dict([])
        with pytest.raises(ValueError, match="must be a JSON object"):
            DriftReport.from_dict("report")


class TestPartial:
    def test_a_dict_with_only_the_seeds_keys_reads_as_partial(self) -> None:
        """The seed's keys are enough with partial=True: missing sections are absent, their
        numbers the seed's 0, missing numbers NaN."""
        minimal = {"timestamp": "2026-11-26T01:15:03+00:00", "overall_drift_detected": False,
                   "drift_summary": "No drift", "baseline_image_count": 10,
                   "current_image_count": 10,
                   "pixel_distribution_drift": {"severity": "none", "overall_mean_shift": 0.0}}
        report = DriftReport.from_dict(minimal, partial=True)
        assert report.overall_severity == Severity.NONE
        assert report.confidence.absent and report.confidence.mean_confidence_shift == 0.0
        assert report.classes.absent and report.data_quality.issues == {}
        with pytest.raises(ReportFormatError, match="schema_version"):
            DriftReport.from_dict(minimal)

    def test_partial_still_checks_the_values_it_gets(self) -> None:
        """A severity that is not one stays an error in a partial dict."""
        data = make_report().to_dict() | {"overall_severity": "critical"}
        with pytest.raises(ReportFormatError, match="critical"):
            DriftReport.from_dict(data, partial=True)


class TestRoundTripCheck:
    def test_the_check_passes_a_report_and_fails_one_that_changes(self) -> None:
        """The suite-wide round-trip check (tests/fixtures/report_roundtrip.py) can fail: a
        setting that JSON turns from a tuple into a list does not come back equal."""
        report = make_report()
        assert round_trip_problem(report) is None
        with unchecked():
            odd = DriftReport(**{**report.__dict__, "settings": {"alpha": (0.05,)}})
            with pytest.raises(ReportFormatError, match=r"settings\.alpha"):
                round_trip_problem(odd)
