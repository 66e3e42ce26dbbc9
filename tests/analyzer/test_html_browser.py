"""The HTML drift report opened in headless Chromium: loads clean, offline, readable on a phone."""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from analyzer.html import generate_html_report
from tests.analyzer.test_html import make_history, make_report
from tests.fixtures import system
from tools.report_screenshot import BrowserError, HeadlessChromium

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def browser() -> Iterator[HeadlessChromium]:
    """One headless Chromium shared by this module's tests (a fresh profile in a temp dir);
    skips them, with the install command, where Chromium is missing."""
    binary = system.require("chromium")
    try:
        with HeadlessChromium(binary, timeout=60) as chromium:
            yield chromium
    except BrowserError as err:  # pragma: no cover - depends on the machine
        system.missing("chromium", f"chromium is installed but could not be started: {err}")


def _check_page(browser: HeadlessChromium, html: Path, width: int, shot: Path) -> str:
    """Load ``html``, assert it is clean and offline, save a screenshot; return the verdict."""
    page = browser.load(html, width=width)
    assert page.console_errors == []
    assert page.foreign_requests == []
    assert browser.evaluate("document.scripts.length") == 0
    broken = browser.evaluate(
        "[...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).length")
    assert broken == 0
    png = browser.screenshot()
    assert png.startswith(PNG_MAGIC)
    shot.write_bytes(png)
    verdict: str = browser.evaluate("document.getElementById('verdict').innerText")
    return verdict


def test_high_drift_report_loads_clean_and_offline(browser: HeadlessChromium,
                                                    tmp_path: Path) -> None:
    """A high-drift page with thumbnails and a trend shows its verdict, fetches nothing, logs
    no error."""
    html = generate_html_report(make_report(tmp_path / "imgs"), tmp_path / "high.html",
                                history=make_history())
    assert _check_page(browser, html, 1280, tmp_path / "high.png") == "Drift detected"
    assert browser.evaluate("document.images.length") >= 6 + 4


def test_no_drift_report_fits_a_phone(browser: HeadlessChromium, tmp_path: Path) -> None:
    """At phone width a quiet night reads "No drift" and the page does not scroll sideways."""
    html = generate_html_report(make_report(drift=False), tmp_path / "none.html")
    assert _check_page(browser, html, 390, tmp_path / "none-phone.png") == "No drift"
    assert browser.evaluate("document.documentElement.scrollWidth") <= 390


def test_hostile_file_names_run_no_script(browser: HeadlessChromium, tmp_path: Path) -> None:
    """A file named like a script tag is shown as text in the browser and never runs."""
    evil = "<script>alert(1)</script>.jpg"
    report = make_report()
    report["atypical_images"] = [{"path": str(tmp_path / evil), "file": evil,
                                  "feature": "sharpness", "value": 1.0, "baseline_median": 2.0}]
    html = generate_html_report(report, tmp_path / "evil.html")
    _check_page(browser, html, 1280, tmp_path / "evil.png")
    assert evil in browser.evaluate("document.body.innerText")


def test_harness_sees_network_requests(browser: HeadlessChromium, tmp_path: Path) -> None:
    """The offline check is real: a page that loads an image over HTTP is caught."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/tracker.png"
        page_file = tmp_path / "leaky.html"
        page_file.write_text(f'<!doctype html><title>x</title><img src="{url}">')
        page = browser.load(page_file)
    finally:
        server.shutdown()
        server.server_close()
    assert url in page.foreign_requests
    assert hits == ["/tracker.png"]


def test_real_analyzer_report_renders(browser: HeadlessChromium, tmp_path: Path) -> None:
    """A report from a real DatasetAnalyzer run on a darkened, noisy folder renders clean."""
    dataset = pytest.importorskip("analyzer.dataset")
    from tests.fixtures.images import write_images

    write_images(tmp_path / "baseline", 80, seed=1)
    write_images(tmp_path / "20261126", 80, seed=2, brightness=0.6, noise=12.0)
    now = datetime(2026, 11, 26, 1, 15, tzinfo=timezone.utc)
    baseline = dataset.DatasetAnalyzer(tmp_path / "baseline", now=now, workers=1).analyze()
    report = dataset.DatasetAnalyzer(tmp_path / "20261126", now=now, report_id="20261126",
                                     workers=1).detect_drift(baseline)
    html = generate_html_report(report, tmp_path / "real.html", history=make_history())
    assert _check_page(browser, html, 1280, tmp_path / "real.png") == "Drift detected"
    text = browser.evaluate("document.body.innerText")
    assert "brightness" in text
    assert browser.evaluate("document.querySelectorAll('.thumb img').length") > 0


def _charts_as_shown(browser: HeadlessChromium) -> list[dict[str, Any]]:
    """Each chart image: the drawing the page chose, its shown width and its panel's
    content width (CSS px)."""
    shown: list[dict[str, Any]] = browser.evaluate("""
        [...document.querySelectorAll('figure img')].map(img => {
          const panel = img.closest('.panel');
          const style = getComputedStyle(panel);
          return {src: img.currentSrc, width: img.getBoundingClientRect().width,
                  column: panel.clientWidth - parseFloat(style.paddingLeft)
                          - parseFloat(style.paddingRight)};
        })""")
    return shown


def _smallest_text_px(chart: dict[str, Any]) -> float:
    """The smallest font in the chart's SVG as shown: its size in SVG units × shown scale."""
    svg = base64.b64decode(chart["src"].split(",", 1)[1]).decode("utf-8")
    view_width = float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1))  # type: ignore[union-attr]
    smallest = min(float(s) for s in re.findall(r"font-size: ([\d.]+)px", svg))
    return smallest * chart["width"] / view_width


@pytest.fixture(scope="module")
def real_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A page from a real analyzer run (the demo model on a darkened, noisy night of the
    bundled Fashion-MNIST images), with a trend of previous nights."""
    dataset = pytest.importorskip("analyzer.dataset")
    from PIL import Image, ImageFilter

    root = tmp_path_factory.mktemp("real")
    images = sorted((Path(__file__).parents[2] / "daemon" / "demo" / "images").glob("*.png"))
    (root / "baseline").mkdir()
    (root / "20261126").mkdir()
    for i, path in enumerate(images[:300]):
        Image.open(path).save(root / "baseline" / path.name)
        if i < 120:
            night = Image.open(images[300 + i]).point(lambda v: int(v * 0.6))
            night.filter(ImageFilter.GaussianBlur(1)).save(root / "20261126" / path.name)
    model = Path(__file__).parents[2] / "models" / "demo_classifier.tflite"
    now = datetime(2026, 11, 26, 1, 15, tzinfo=timezone.utc)
    baseline = dataset.DatasetAnalyzer(root / "baseline", model_path=model, now=now,
                                       workers=1, progress="off").analyze()
    report = dataset.DatasetAnalyzer(root / "20261126", model_path=model, now=now,
                                     report_id="20261126", workers=1,
                                     progress="off").detect_drift(baseline)
    return generate_html_report(report, root / "report.html", history=make_history())


@pytest.mark.parametrize("width", [1280, 390])
def test_chart_text_is_readable_where_shown(browser: HeadlessChromium, real_report: Path,
                                            tmp_path: Path, width: int) -> None:
    """No chart text is shown smaller than 11 px, on a laptop or a phone (it was ~7 px)."""
    assert _check_page(browser, real_report, width, tmp_path / "shot.png") == "Drift detected"
    charts = _charts_as_shown(browser)
    assert len(charts) >= 4
    smallest = min(_smallest_text_px(c) for c in charts)
    assert smallest >= 11, f"{smallest:.1f} px at {width} px"


def test_charts_use_the_width_of_the_page_at_1280(browser: HeadlessChromium,
                                                  real_report: Path, tmp_path: Path) -> None:
    """At 1280 px each chart spans its section's column (they took half of it before)."""
    _check_page(browser, real_report, 1280, tmp_path / "shot.png")
    for chart in _charts_as_shown(browser):
        assert chart["width"] >= 0.95 * chart["column"], chart["width"]
        assert chart["column"] > 900


def test_tables_fit_a_phone_without_sideways_scrolling(browser: HeadlessChromium,
                                                       real_report: Path,
                                                       tmp_path: Path) -> None:
    """At 390 px neither the page nor any table scrolls sideways: test rows become cards."""
    _check_page(browser, real_report, 390, tmp_path / "shot.png")
    assert browser.evaluate("document.documentElement.scrollWidth") <= 390
    overflowing = browser.evaluate(
        "[...document.querySelectorAll('.table-wrap')]"
        ".filter(w => w.scrollWidth > w.clientWidth + 1).length")
    assert browser.evaluate("document.querySelectorAll('.table-wrap').length") >= 3
    assert overflowing == 0
