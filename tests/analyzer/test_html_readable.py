"""The HTML report reads right for a person: honest columns, plain words, legible charts,
and a file anyone can read. (Layout in a real browser: test_html_browser.py.)"""

from __future__ import annotations

import base64
import re
import stat
from pathlib import Path
from typing import Any

import pytest

from analyzer.contract import DriftReport
from analyzer.html import generate_html_report, render_html_report
from analyzer.render import charts
from tests.analyzer.test_html import _text, make_report

CUTOFFS = {"wasserstein_low": 0.1, "wasserstein_medium": 0.25, "wasserstein_high": 0.5,
           "tvd_low": 0.05, "tvd_medium": 0.1, "tvd_high": 0.2}


def _report(**changes: Any) -> dict[str, Any]:
    report = make_report()
    report["settings"] = {"alpha": 0.05, "correction": "holm", **CUTOFFS}
    report.update(changes)
    return report


def _rows(page: str) -> dict[str, str]:
    """Feature code → the text of its test-table row."""
    out = {}
    for row in re.findall(r"<tr class=\"[^\"]*\">(.*?)</tr>", page, flags=re.S):
        code = re.search(r"<code>([^<]+)</code>", row)
        if code:
            out[code.group(1)] = _text(row)
    return out


def _svgs(page: str) -> list[str]:
    return [base64.b64decode(b).decode("utf-8")
            for b in re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)", page)]


class TestColumns:
    def test_band_shows_the_cut_offs_the_severity_reached(self) -> None:
        """A high row shows "≥ 0.5", a medium one "0.25 – 0.5", a quiet one "not
        significant"; no row offers the low cut-off 0.1 as if it were the line crossed."""
        page = render_html_report(_report())
        rows = _rows(page)
        assert "≥ 0.5" in rows["sharpness"] and " 0.1 " not in f" {rows['sharpness']} "
        assert "0.25 – 0.5" in rows["brightness"]
        assert "0.1 – 0.25" in rows["high_freq_energy"]
        assert "not significant" in rows["contrast"]
        assert ">Threshold<" not in page

    def test_accuracy_change_that_is_the_confidence_shift_is_not_shown(self) -> None:
        """`estimated_accuracy_change` equals the confidence shift: shown once, as that."""
        text = _text(render_html_report(_report()))
        assert "accuracy" not in text.lower()
        assert "Confidence shift: -0.120" in text

    def test_features_and_columns_are_explained_in_plain_words(self) -> None:
        """luma_p99 reads "Highlights", `p adj.` is "p (corrected)", and the glossary says
        what the effect size, the band and each shown feature mean."""
        page = render_html_report(_report(**{"pixel_distribution_drift": {
            **make_report()["pixel_distribution_drift"],
            "tests": [*make_report()["pixel_distribution_drift"]["tests"],
                      {**make_report()["pixel_distribution_drift"]["tests"][0],
                       "feature": "luma_p99"}]}}))
        text = _text(page)
        assert "Highlights luma_p99" in text
        assert "p adj." not in text and "p (corrected)" in text
        glossary = text[text.index("What the terms mean"):]
        assert "Effect size How far the night's distribution moved" in glossary
        assert "Highlights luma_p99 Lightness of the brightest 1% of pixels" in glossary


class TestCharts:
    def test_every_chart_has_a_phone_drawing_and_no_small_text(self) -> None:
        """Each chart is a <picture> with a narrow drawing for phones; no text in any SVG is
        under MIN_FONT_PT (the old charts had 7 pt ticks)."""
        page = render_html_report(_report())
        pictures = re.findall(r"<picture>.*?</picture>", page, flags=re.S)
        assert len(pictures) >= 4
        assert all(f'media="(max-width: {charts.NARROW_MAX_PX}px)"' in p for p in pictures)
        sizes = [float(s) for svg in _svgs(page) for s in re.findall(r"font-size: ([\d.]+)px",
                                                                      svg)]
        assert sizes and min(sizes) >= charts.MIN_FONT_PT

    def test_one_changed_feature_gets_no_bar_chart(self) -> None:
        """Predicted classes has one significant test: its numbers are in the table, and no
        one-bar effect chart is drawn; two bars are."""
        tests = DriftReport.from_dict(make_report()).pixel.tests
        assert charts.effect_sizes([t for t in tests if t.significant][:1]) is None
        assert charts.effect_sizes([t for t in tests if t.significant][:2]) is not None
        page = render_html_report(_report())
        section = page[page.index('id="class_distribution_drift"'):page.index(
            'id="data_quality"')]
        assert "How far each changed feature moved" not in section
        assert "How far each changed feature moved" in page  # the image section has one

    def test_per_feature_histograms_are_not_read_from_tests(self) -> None:
        """No chart comes from a `histogram` key the report never writes (dead path gone)."""
        report = _report()
        plain = render_html_report(report)
        for test in report["pixel_distribution_drift"]["tests"]:
            test["histogram"] = {"edges": [0, 1, 2], "baseline": [1, 2], "current": [2, 1]}
        assert render_html_report(report).count("<picture>") == plain.count("<picture>")
        assert not hasattr(charts, "feature_histogram")


class TestFile:
    @pytest.mark.parametrize("umask", [0o077, 0o022])
    def test_the_page_is_written_readable_by_all_like_the_daemons(
        self, tmp_path: Path, umask: int
    ) -> None:
        """generate_html_report writes mode 0644, as sinks.files does for the daemon."""
        import os

        old = os.umask(umask)
        try:
            path = generate_html_report(make_report(drift=False), tmp_path / "r.html")
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_readme_screenshots_exist() -> None:
    """Every image README shows or links is in the repository."""
    root = Path(__file__).parents[2]
    readme = (root / "README.md").read_text(encoding="utf-8")
    paths = re.findall(r"\]\((docs/[^)]+\.png)\)", readme)
    assert "docs/report-example.png" in paths and "docs/report-example-phone.png" in paths
    assert all((root / p).is_file() for p in paths), paths
