"""The HTML drift report: what the on-call engineer sees, checked as text and in Chromium."""

from __future__ import annotations

import copy
import html as htmllib
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from analyzer.html import generate_html_report, render_html_report

SIZE_BUDGET = 1_500_000
"""Bytes: the report must stay small enough to attach to an email."""

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]


def _test(feature: str, section: str, effect: float, severity: str = "none",
          base: float | None = 1.0, cur: float | None = 1.0, test: str = "ks",
          kind: str = "wasserstein_norm", threshold: float = 0.1) -> dict[str, Any]:
    significant = severity != "none"
    p = 1e-12 if significant else 0.41
    return {
        "feature": feature, "section": section, "test": test, "statistic": effect * 1.7,
        "p_value": p, "p_adjusted": min(1.0, p * 30), "effect_size": effect,
        "effect_size_kind": kind, "threshold": threshold, "alpha": 0.05,
        "significant": significant,
        "severity": severity, "baseline_mean": base, "current_mean": cur,
        "baseline_n": 500, "current_n": 480,
    }


def _histogram(rng: np.random.Generator, centre: float) -> dict[str, list[int]]:
    values = rng.normal(centre, 40, size=(3, 5000)).clip(0, 255)
    return {c: np.histogram(v, bins=32, range=(0, 256))[0].tolist()
            for c, v in zip("rgb", values, strict=True)}


def _picture(rng: np.random.Generator, noisy: bool) -> np.ndarray:
    """A dim 160×120 gradient with a bright block (and sensor noise when ``noisy``)."""
    x = np.mgrid[0:120, 0:160][1]
    start, stop = rng.uniform(20, 120, size=(2, 3))
    img = start + (stop - start) * (x / 160.0)[..., None]
    top, left = rng.integers(10, 60), rng.integers(10, 90)
    img[top:top + 50, left:left + 60] = rng.uniform(120, 240, size=3)
    if noisy:
        img = img + rng.normal(0, 25, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _quality(unreadable: list[str]) -> dict[str, Any]:
    issues = {name: {"count": 0, "examples": []} for name in
              ("unreadable", "truncated", "zero_byte", "duplicates", "unexpected_mode",
               "unexpected_size")}
    issues["unreadable"] = {"count": len(unreadable), "examples": unreadable}
    return {"severity": "none", "total_files": 480 + len(unreadable), "analyzed": 480,
            "issues": issues}


def make_report(image_dir: Path | None = None, drift: bool = True) -> dict[str, Any]:
    """A report dict in the docs/ARCHITECTURE.md shape: a high-drift night, or a quiet one."""
    rng = np.random.default_rng(7)
    px = "pixel_distribution_drift"
    pixel_tests = [
        _test("sharpness", px, 0.46, "high", 812.0, 95.0),
        _test("noise_level", px, 0.31, "high", 2.1, 6.8),
        _test("brightness", px, 0.18, "medium", 121.0, 84.0),
        _test("high_freq_energy", px, 0.12, "low", 0.21, 0.12),
        _test("contrast", px, 0.03, base=51.0, cur=50.2),
        _test("saturation", px, 0.02, base=0.31, cur=0.30),
        _test("entropy", px, 0.01, base=7.1, cur=7.1),
        _test("jpeg_quality", px, 0.02, base=88.0, cur=87.0),
        _test("width", px, 0.0, base=640, cur=640),
    ]
    conf_tests = [
        _test("max_confidence", "confidence_drift", 0.22, "medium", 0.91, 0.79),
        _test("entropy_softmax", "confidence_drift", 0.19, "medium", 0.3, 0.62),
        _test("margin", "confidence_drift", 0.15, "low", 0.82, 0.61),
        *(_test(f"softmax_{label}", "confidence_drift", 0.02, base=0.1, cur=0.1)
          for label in FASHION),
    ]
    base_shares = [0.1] * 10
    cur_shares = [0.06, 0.1, 0.1, 0.08, 0.1, 0.1, 0.22, 0.1, 0.08, 0.06]
    atypical = []
    if image_dir is not None:
        image_dir.mkdir(parents=True, exist_ok=True)
        for i in range(6):
            path = image_dir / f"img_{i:03d}.jpg"
            Image.fromarray(_picture(rng, noisy=i >= 4)).save(path, quality=85)
            atypical.append({"path": str(path), "file": path.name,
                             "feature": "sharpness" if i < 4 else "noise_level",
                             "value": 40.0 + i, "baseline_median": 800.0})
        atypical.append({"path": str(image_dir / "gone.jpg"), "file": "gone.jpg",
                         "feature": "sharpness", "value": 3.0, "baseline_median": 800.0})
    report: dict[str, Any] = {
        "schema_version": 1,
        "report_id": "20261126",
        "timestamp": "2026-11-26T01:15:03+00:00",
        "data_dir": "/srv/production/20261126",
        "overall_drift_detected": True,
        "overall_severity": "high",
        "drift_summary": "High drift: sharpness, noise_level and 2 more image features shifted; "
                         "model confidence fell by 0.12.",
        "baseline_image_count": 500,
        "current_image_count": 480,
        "settings": {"alpha": 0.05, "correction": "holm"},
        px: {
            "severity": "high", "drift_detected": True, "available": True,
            "overall_mean_shift": 0.0832,
            "channel_means": {"baseline": [121.0, 118.0, 110.0], "current": [98.0, 92.0, 88.0]},
            "histograms": {"bins": 32, "baseline": _histogram(rng, 120),
                           "current": _histogram(rng, 95)},
            "tests": pixel_tests,
        },
        "confidence_drift": {
            "severity": "medium", "drift_detected": True, "available": True,
            "mean_confidence_shift": -0.12, "baseline_mean_confidence": 0.91,
            "current_mean_confidence": 0.79, "estimated_accuracy_change": -0.1,
            "tests": conf_tests,
        },
        "class_distribution_drift": {
            "severity": "low", "drift_detected": True, "available": True,
            "wasserstein_distance": 0.03, "chi2_statistic": 41.2, "p_value": 1e-6,
            "classes": [{"index": i, "label": label, "baseline_share": b, "current_share": c}
                        for i, (label, b, c) in enumerate(
                            zip(FASHION, base_shares, cur_shares, strict=True))],
            "tests": [_test("predicted_class", "class_distribution_drift", 0.14, "low",
                            None, None, test="chi2", kind="tvd")],
        },
        "data_quality": _quality(["corrupt_001.jpg", "empty.jpg"]),
        "atypical_images": atypical,
    }
    if not drift:
        report.update(overall_drift_detected=False, overall_severity="none",
                      drift_summary="No drift: all 23 tests within thresholds.",
                      atypical_images=[], data_quality=_quality([]))
        for key in (px, "confidence_drift", "class_distribution_drift"):
            section = report[key]
            section.update(severity="none", drift_detected=False)
            section["tests"] = [
                {**t, "severity": "none", "significant": False, "p_value": 0.5,
                 "p_adjusted": 1.0, "effect_size": 0.01} for t in section["tests"]]
        report[px]["overall_mean_shift"] = 0.002
        report[px]["histograms"]["current"] = report[px]["histograms"]["baseline"]
        report["confidence_drift"]["mean_confidence_shift"] = 0.003
        report["class_distribution_drift"]["classes"] = [
            {**c, "current_share": c["baseline_share"]}
            for c in report["class_distribution_drift"]["classes"]]
    return report


def make_history() -> list[dict[str, Any]]:
    """Thirteen previous nights, quiet until drift creeps in over the last four."""
    severities = ["none"] * 9 + ["none", "low", "low", "medium"]
    return [{"report_id": f"202611{13 + i:02d}", "date": f"2026-11-{13 + i:02d}",
             "overall_severity": s, "pixel_mean_shift": 0.004 + 0.006 * max(0, i - 8),
             "confidence_shift": -0.005 - 0.02 * max(0, i - 8), "drift_detected": s != "none"}
            for i, s in enumerate(severities)]


def _text(page: str) -> str:
    """The page's visible-ish text: tags stripped, entities decoded, spaces collapsed."""
    body = re.sub(r"<style>.*?</style>", " ", page, flags=re.S)
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", body)).split())


@pytest.fixture(scope="module")
def high_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The high-drift night with thumbnails on disk and 13 nights of history, rendered once."""
    images = tmp_path_factory.mktemp("atypical")
    return render_html_report(make_report(images), history=make_history())


class TestContent:
    def test_high_drift_page_states_verdict_severity_and_drivers(self, high_page: str) -> None:
        """A high-drift night opens with the verdict, severity colour and the features behind it."""
        page = high_page
        text = _text(page)
        assert "Drift detected" in text
        assert "#ff0000" in page
        assert "2026-11-26" in text
        summary = text[text.index("High drift:"):text.index("Image properties")]
        assert "sharpness" in summary and "noise_level" in summary and "max_confidence" in summary

    def test_no_drift_page_says_so(self) -> None:
        """A quiet night reads "No drift" with the green severity and no alarm wording."""
        text = _text(render_html_report(make_report(drift=False)))
        assert "No drift" in text
        assert "Drift detected" not in text
        assert "Largest changes" not in text

    def test_thumbnails_embed_images_and_name_missing_files(self, high_page: str) -> None:
        """Atypical images appear as inline JPEGs; a file deleted since shows by name only."""
        page = high_page
        assert page.count("data:image/jpeg;base64,") == 6
        assert "gone.jpg" in _text(page)
        assert "corrupt_001.jpg" in _text(page) and "empty.jpg" in _text(page)

    def test_sections_without_model_show_reason(self) -> None:
        """A report made without a model shows the model sections as not available, with why."""
        report = make_report(drift=False)
        for key in ("confidence_drift", "class_distribution_drift"):
            report[key] = {"available": False, "severity": "none", "drift_detected": False,
                           "reason": "no model configured (model.path)",
                           "mean_confidence_shift": 0.0, "wasserstein_distance": 0.0}
        del report["atypical_images"], report["settings"]
        text = _text(render_html_report(report))
        assert text.count("no model configured (model.path)") == 2
        assert "Confidence shift" not in text

    def test_minimal_report_renders(self) -> None:
        """A report with only the seed's keys still renders instead of failing."""
        minimal = {"timestamp": "2026-11-26T01:15:03+00:00", "overall_drift_detected": False,
                   "drift_summary": "No drift", "baseline_image_count": 10,
                   "current_image_count": 10,
                   "pixel_distribution_drift": {"severity": "none", "overall_mean_shift": 0.0}}
        assert "No drift" in _text(render_html_report(minimal))

    def test_trend_strip_shows_previous_nights_and_tonight(self, high_page: str) -> None:
        """With history the page shows one coloured cell per night, tonight's included."""
        page = high_page
        assert "Previous nights" in page
        cells = re.findall(r'<span class="sev-(\w+)( current)?" title="([\d-]+)', page)
        assert len(cells) == 14
        assert cells[-1] == ("high", " current", "2026-11-26")


class TestSafety:
    def test_file_names_from_data_are_text(self, tmp_path: Path) -> None:
        """A file named like a script tag shows as text and adds no script element."""
        report = make_report()
        evil = "<script>alert(1)</script>.jpg"
        report["atypical_images"] = [{"path": str(tmp_path / evil), "file": evil,
                                      "feature": "<i>sharpness</i>", "value": 1.0,
                                      "baseline_median": 2.0}]
        report["data_quality"]["issues"]["unreadable"]["examples"] = [evil]
        report["class_distribution_drift"]["classes"][0]["label"] = evil
        report["drift_summary"] = f'Drift in "{evil}"'
        page = render_html_report(report)
        assert "<script" not in page.lower()
        assert "<i>" not in page and "&lt;i&gt;sharpness&lt;/i&gt;" in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;.jpg" in page
        assert evil in _text(page)

    def test_page_forbids_fetches_and_scripts(self, high_page: str) -> None:
        """The page carries a CSP that blocks any network fetch or script, and links nothing."""
        page = high_page
        assert "default-src 'none'" in page
        assert not re.search(r'(src|href)="(?!data:|#)', page)


class TestFile:
    def test_write_replaces_the_page_and_returns_path(self, tmp_path: Path) -> None:
        """The report lands at the given path, replacing the old one, and nothing else is left
        in the folder (the daemon's own atomic writes are sinks.files')."""
        target = tmp_path / "out" / "monitor_report_20261126.html"
        target.parent.mkdir()
        target.write_text("old")
        written = generate_html_report(make_report(drift=False), target)
        assert written == target
        assert target.read_text(encoding="utf-8").startswith("<!doctype html>")
        assert [p.name for p in target.parent.iterdir()] == [target.name]

    def test_high_drift_report_fits_email_budget(self, tmp_path: Path) -> None:
        """A full high-drift report with thumbnails and history stays under the size budget."""
        report = make_report(tmp_path / "imgs")
        many = copy.deepcopy(report["atypical_images"][0])
        big = tmp_path / "big.jpg"
        Image.fromarray(np.random.default_rng(1).integers(0, 255, (1200, 1600, 3),
                                                          dtype=np.uint8)).save(big)
        report["atypical_images"] = [{**many, "path": str(big), "feature": f"f{i % 5}"}
                                     for i in range(100)]
        path = generate_html_report(report, tmp_path / "r.html", history=make_history() * 4)
        assert path.stat().st_size < SIZE_BUDGET
