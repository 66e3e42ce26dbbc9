"""Render a ``DriftReport`` as one self-contained HTML page (a string).

The page answers, in order: did anything drift and how badly (verdict, severity, headline
numbers, a one-paragraph summary naming the features behind the verdict), what changed (per
section: test table, charts), what the images look like (thumbnails of the most atypical
current images), and how tonight compares with previous nights (trend strip).

It is one file with everything inline — CSS, charts (SVG) and thumbnails (JPEG) as ``data:``
URIs — and no JavaScript, so it opens offline, from an email attachment or a Slack link, on a
laptop or a phone. A Content-Security-Policy meta tag forbids any fetch or script, and Jinja2
autoescaping keeps text from the data (file names, labels) text.

Readable on both: each chart comes in a laptop and a phone drawing (``analyzer.render.charts``),
tables turn into one card per row on a phone instead of scrolling sideways, features carry
plain names (``analyzer.render.glossary``) and a glossary at the end says what every column means.
The accuracy estimate (a labelled baseline's calibration applied to tonight's confidence) is
shown with its interval, and night over night when the history carries it; without labels the
section says there is no estimate, and the confidence shift is never shown as one. The
embedding test is a section like the others, with the rows it used.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import jinja2
from PIL import Image

from analyzer.contract import (
    BAD_FILE_ISSUES,
    SCHEMA_VERSION,
    SOFTMAX_PREFIX,
    AccuracySection,
    AtypicalImage,
    ClassSection,
    ConfidenceSection,
    DataQuality,
    DriftReport,
    EmbeddingSection,
    PixelSection,
    QualityIssue,
    Section,
    SectionName,
    Setting,
    SettingValue,
    TestKind,
    TestResult,
    TrendPoint,
    folder_date,
    severity_cutoffs,
)
from analyzer.render import charts
from analyzer.render.glossary import STATISTICS, Term, describe_feature
from analyzer.severity import Severity

THUMBNAIL_PX = 96
"""Longest side of an embedded thumbnail, in pixels."""
THUMBNAILS_PER_FEATURE = 8
"""At most this many atypical images are shown per drifted feature."""
THUMBNAILS_TOTAL = 40
"""At most this many thumbnails in one report (keeps the file small enough to email)."""
CLASS_ROWS = 5
"""The classes whose share moved most are listed in a table, at most this many."""

_TITLES: dict[SectionName, str] = {
    SectionName.PIXEL: "Image properties",
    SectionName.CONFIDENCE: "Model confidence",
    SectionName.CLASSES: "Predicted classes",
    SectionName.EMBEDDING: "What the model sees (embedding)",
    SectionName.DATA_QUALITY: "Data quality",
}
ACCURACY_KEY = "accuracy"
"""The page anchor of the accuracy-estimate panel."""
_ISSUE_NAMES: dict[str, str] = {
    QualityIssue.UNREADABLE: "Unreadable files",
    QualityIssue.TRUNCATED: "Truncated files",
    QualityIssue.ZERO_BYTE: "Zero-byte files",
    QualityIssue.DUPLICATES: "Duplicate files",
    QualityIssue.UNEXPECTED_MODE: "Unexpected colour mode",
    QualityIssue.UNEXPECTED_SIZE: "Unexpected size",
}
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class _Chart:
    title: str
    chart: charts.Chart
    alt: str


@dataclass(frozen=True)
class _TestRow:
    feature: str
    test: str
    statistic: float | None
    p_value: float | None
    p_adjusted: float | None
    effect_size: float | None
    effect_size_kind: str
    threshold: float | None
    significant: bool
    severity: str
    baseline_mean: float | None
    current_mean: float | None
    band: str = ""
    """The severity band the effect reached, as cut-offs ("≥ 0.50"), or why there is none."""

    @property
    def term(self) -> Term:
        """The feature's plain label and meaning."""
        return describe_feature(self.feature)

    @property
    def direction(self) -> str:
        """An arrow for the direction of the mean's change ("" when unknown or unchanged)."""
        if self.baseline_mean is None or self.current_mean is None:
            return ""
        if self.current_mean > self.baseline_mean:
            return "↑"
        return "↓" if self.current_mean < self.baseline_mean else ""


@dataclass(frozen=True)
class _Issue:
    name: str
    count: int
    examples: list[str]


@dataclass(frozen=True)
class _ClassRow:
    label: str
    baseline: float
    current: float


@dataclass
class _Section:
    key: str
    title: str
    severity: str
    available: bool
    reason: str
    headline: list[tuple[str, str]] = field(default_factory=list)
    tests: list[_TestRow] = field(default_factory=list)
    quiet_tests: list[_TestRow] = field(default_factory=list)
    charts: list[_Chart] = field(default_factory=list)
    classes: list[_ClassRow] = field(default_factory=list)
    issues: list[_Issue] = field(default_factory=list)
    badge: str = ""
    """Shown instead of the severity (a panel that grades nothing)."""


@dataclass(frozen=True)
class _Thumb:
    file: str
    value: float | None
    baseline_median: float | None
    uri: str | None


@dataclass(frozen=True)
class _TrendCell:
    label: str
    date: str
    severity: str
    drift_detected: bool
    pixel_mean_shift: float | None
    confidence_shift: float | None
    is_current: bool
    accuracy: str = ""


def render_html(report: DriftReport, history: Sequence[TrendPoint] = ()) -> str:
    """Render ``report`` as one self-contained HTML page and return it.

    Args:
        report: the drift report. Thumbnails are read from each atypical image's ``path``
            now; a file that is gone or unreadable is listed by name only. A section that is
            not available is shown with its reason; an absent one (``Section.absent``, only in
            a report read from a partial dict) is left out, and numbers that are NaN show as
            "—".
        history: trend points of previous nights, oldest first. Tonight's point is appended
            from the report unless a point with its ``report_id`` is already there; an empty
            history leaves the trend out.

    Returns:
        The HTML document as a string (UTF-8 when written).
    """
    settings = report.settings
    trend_points = _trend_points(report, history)
    sections = [
        _test_section(SectionName.PIXEL, report.pixel, settings),
        _test_section(SectionName.CONFIDENCE, report.confidence, settings),
        _test_section(SectionName.CLASSES, report.classes, settings),
    ]
    if report.embedding is not None:
        sections.append(_test_section(SectionName.EMBEDDING, report.embedding, settings))
    if report.accuracy is not None:
        sections.append(_accuracy_section(report.accuracy, trend_points))
    sections.append(_quality_section(report.data_quality))
    present = [s for s in sections if s.available or s.reason]
    severity = report.overall_severity
    drifted = report.overall_drift_detected
    top = sorted(
        (t for s in sections for t in s.tests if t.significant),
        key=lambda t: (Severity.parse(t.severity).rank, t.effect_size or 0.0),
        reverse=True,
    )[:3]
    return _TEMPLATES.get_template("report.html.j2").render(
        report_id=report.report_id,
        folder_date=folder_date(report.report_id),
        analysed_at=_timestamp(report.timestamp),
        data_dir=report.data_dir,
        drifted=drifted,
        severity=severity.value,
        color=charts.SEVERITY_COLORS[severity.value],
        colors=charts.SEVERITY_COLORS,
        summary=report.drift_summary,
        top_tests=top,
        baseline_count=report.baseline_image_count,
        current_count=report.current_image_count,
        headline=_headline(report),
        sections=present,
        thumbs=_thumbnails(report.atypical_images),
        unreadable=_unreadable(report.data_quality),
        trend_cells=[_trend_cell(p, report) for p in trend_points],
        trend_chart=charts.trend(trend_points),
        narrow_max_px=charts.NARROW_MAX_PX,
        describe=describe_feature,
        glossary=_glossary(present),
        statistics=STATISTICS,
        settings=_settings(settings),
        schema_version=SCHEMA_VERSION,
        fmt=_fmt,
        fmt_p=_fmt_p,
        fmt_signed=_fmt_signed,
        fmt_pct=_fmt_pct,
    )


def _num(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing or not finite (shown as "—")."""
    if value is None or isinstance(value, bool):
        return None
    return float(value) if math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    number = _num(value)
    if number is None:
        return "—"
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    if abs(number) >= 1000:
        return f"{number:,.0f}"
    if abs(number) >= 1:
        return f"{number:.2f}"
    return f"{number:.3g}"


def _fmt_signed(value: float | None) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:+.3f}"


def _fmt_pct(value: float | None) -> str:
    number = _num(value)
    return "—" if number is None else f"{100 * number:.1f}%"


def _fmt_p(value: float | None) -> str:
    number = _num(value)
    if number is None:
        return "—"
    if number < 1e-16:
        return "<1e-16"
    return f"{number:.1e}" if number < 1e-3 else f"{number:.3f}"


def _timestamp(moment: datetime) -> str:
    # The offset as the report file writes it (a zone name such as CET is not in the JSON),
    # so a page reads the same whether it is rendered in the run or later from the file.
    written = datetime.fromisoformat(moment.isoformat())
    zone = written.tzname() or ""
    return written.strftime("%Y-%m-%d %H:%M") + (f" {zone}" if zone else "")


def _band(significant: bool, severity: str, threshold: float | None,
          cutoffs: dict[str, float] | None) -> str:
    if not significant:
        return "not significant"
    if cutoffs is None:
        return f"from {_fmt(threshold)}" if severity != "none" and threshold is not None else ""
    low, medium, high = cutoffs["low"], cutoffs["medium"], cutoffs["high"]
    return {
        "high": f"≥ {_fmt(high)}",
        "medium": f"{_fmt(medium)} – {_fmt(high)}",
        "low": f"{_fmt(low)} – {_fmt(medium)}",
    }.get(severity, f"< {_fmt(low)}")


def _test_row(test: TestResult, settings: dict[str, SettingValue]) -> _TestRow:
    # A categorical (chi-squared) test has no meaningful mean: leave the column empty.
    has_means = test.test != TestKind.CHI2
    severity = test.severity.value
    threshold = _num(test.threshold)
    return _TestRow(
        feature=test.feature,
        test=test.test.value,
        statistic=_num(test.statistic),
        p_value=_num(test.p_value),
        p_adjusted=_num(test.p_adjusted),
        effect_size=_num(test.effect_size),
        effect_size_kind=test.effect_size_kind.value,
        threshold=threshold,
        significant=test.significant,
        severity=severity,
        baseline_mean=_num(test.baseline_mean) if has_means else None,
        current_mean=_num(test.current_mean) if has_means else None,
        band=_band(test.significant, severity, threshold,
                   severity_cutoffs(settings, test.effect_size_kind)),
    )


def _test_section(name: SectionName, data: Section, settings: dict[str, SettingValue]
                  ) -> _Section:
    section = _Section(
        key=name.value,
        title=_TITLES[name],
        severity=data.severity.value,
        available=data.available,
        reason=data.reason or "",
    )
    if not data.available:
        return section
    rows = [_test_row(t, settings) for t in data.tests]
    rows.sort(key=lambda t: (t.significant, Severity.parse(t.severity).rank,
                             t.effect_size or 0.0), reverse=True)
    section.tests = [t for t in rows if t.significant]
    section.quiet_tests = [t for t in rows if not t.significant]
    if isinstance(data, PixelSection):
        _pixel_details(section, data)
    elif isinstance(data, ConfidenceSection):
        section.headline = [
            ("Mean confidence", f"{_fmt(data.baseline_mean_confidence)} → "
                                f"{_fmt(data.current_mean_confidence)}"),
            ("Confidence shift", _fmt_signed(data.mean_confidence_shift)),
        ]
    elif isinstance(data, ClassSection):
        _class_details(section, data)
    elif isinstance(data, EmbeddingSection):
        section.headline = [
            ("Probe AUC", f"{_fmt(data.auc)} (0.5 = cannot tell tonight from the baseline)"),
            ("Embedding", f"{data.tensor} ({data.dim} values, projected to "
                          f"{data.components})"),
            ("Rows tested", f"{data.baseline_used} of {data.baseline_rows} baseline, "
                            f"{data.current_used} of {data.current_rows} tonight"),
        ]
        if data.note:
            section.headline.append(("How", data.note))
    significant = [t for t in data.tests if t.significant]
    kinds = {t.effect_size_kind for t in significant}
    shared = severity_cutoffs(settings, kinds.pop()) if len(kinds) == 1 else None
    chart = charts.effect_sizes(significant, shared)
    if chart:
        section.charts.append(_Chart("How far each changed feature moved (effect size)", chart,
                                     "effect size per drifted feature, with the severity "
                                     "cut-offs"))
    return section


def _accuracy_section(data: AccuracySection, points: Sequence[TrendPoint]) -> _Section:
    """The accuracy estimate with its interval, or why there is none; with history, the
    estimate night over night."""
    section = _Section(key=ACCURACY_KEY, title="Estimated accuracy (no labels needed)",
                       severity=Severity.NONE.value, available=data.available,
                       reason=data.reason or "",
                       badge="estimate" if data.available else "no estimate")
    if not data.available:
        return section
    section.headline = [
        ("Tonight", f"{_fmt_pct(data.estimate)} ({_fmt_level(data.level)} interval "
                    f"{_fmt_pct(data.low)} – {_fmt_pct(data.high)})"),
        ("Labelled baseline", f"{_fmt_pct(data.baseline_accuracy)} on "
                              f"{_fmt(data.labelled_images)} images"),
        ("Change", "—" if _num(data.change) is None
         else f"{100 * (_num(data.change) or 0.0):+.1f} pts"),
        ("Method", f"{data.method}: the baseline's share of right answers at each confidence, "
                   f"averaged over tonight's {_fmt(data.images)} images"),
    ]
    chart = charts.accuracy_trend(points, data.level)
    if chart:
        section.charts.append(_Chart("Estimated accuracy per night, with its interval", chart,
                                     "estimated accuracy and interval per night"))
    return section


def _fmt_level(level: float | None) -> str:
    number = _num(level)
    return "—" if number is None else f"{100 * number:.0f}%"


def _pixel_details(section: _Section, data: PixelSection) -> None:
    means = data.channel_means
    section.headline = [("Mean pixel shift", _fmt(data.overall_mean_shift))]
    for name, i in (("Red", 0), ("Green", 1), ("Blue", 2)):
        base, cur = _channel(means.baseline, i), _channel(means.current, i)
        if base is not None or cur is not None:
            section.headline.append((f"{name} mean", f"{_fmt(base)} → {_fmt(cur)}"))
    chart = charts.channel_histograms(data.histograms)
    if chart:
        section.charts.append(_Chart("Pixel values per colour channel, baseline and "
                                     "tonight", chart,
                                     "baseline vs tonight pixel histograms"))


def _class_details(section: _Section, data: ClassSection) -> None:
    section.headline = [
        ("Class mix distance", _fmt(data.wasserstein_distance)),
        ("χ² statistic", _fmt(data.chi2_statistic)),
        ("p", _fmt_p(data.p_value)),
    ]
    shares = [_ClassRow(c.label, _num(c.baseline_share) or 0.0, _num(c.current_share) or 0.0)
              for c in data.classes]
    section.classes = sorted(
        (c for c in shares if c.current != c.baseline),
        key=lambda c: abs(c.current - c.baseline), reverse=True,
    )[:CLASS_ROWS]
    chart = charts.class_shares(data.classes)
    if chart:
        section.charts.append(_Chart("Share of predictions per class, baseline and tonight",
                                     chart, "baseline vs tonight class shares"))


def _quality_section(data: DataQuality) -> _Section:
    # A report read from a partial dict without data quality has no issue entries at all.
    present = bool(data.issues)
    section = _Section(
        key=SectionName.DATA_QUALITY.value,
        title=_TITLES[SectionName.DATA_QUALITY],
        severity=data.severity.value,
        available=present,
        reason="",
    )
    if not present:
        return section
    section.headline = [("Files", _fmt(data.total_files)), ("Analysed", _fmt(data.analyzed))]
    for name, issue in data.issues.items():
        if not issue.count:
            continue
        section.issues.append(_Issue(_ISSUE_NAMES.get(name, name.replace("_", " ")),
                                     issue.count, list(issue.examples)))
    return section


def _channel(values: list[float], index: int) -> float | None:
    return _num(values[index]) if len(values) > index else None


def _headline(report: DriftReport) -> list[tuple[str, str]]:
    out = [("Pixel mean shift", _fmt(report.pixel.overall_mean_shift))]
    if report.confidence.available:
        out.append(("Confidence shift", _fmt_signed(report.confidence.mean_confidence_shift)))
    out.append(("Bad files", str(report.data_quality.count(BAD_FILE_ISSUES))))
    return out


def _thumbnail(path: str) -> str | None:
    if not path:
        return None
    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=70, optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError):
        # A file deleted or corrupted since the analysis is shown by name only.
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnails(atypical: Sequence[AtypicalImage]) -> list[tuple[str, list[_Thumb]]]:
    groups: dict[str, list[_Thumb]] = {}
    total = 0
    for item in atypical:
        if total >= THUMBNAILS_TOTAL:
            continue
        group = groups.setdefault(item.feature, [])
        if len(group) >= THUMBNAILS_PER_FEATURE:
            continue
        name = item.file or Path(item.path).name
        group.append(_Thumb(name, _num(item.value), _num(item.baseline_median),
                            _thumbnail(item.path)))
        total += 1
    return list(groups.items())


def _unreadable(quality: DataQuality) -> list[str]:
    names: list[str] = []
    for key in BAD_FILE_ISSUES:
        issue = quality.issues.get(key)
        if issue is not None:
            names.extend(issue.examples)
    return names


def _trend_points(report: DriftReport, history: Sequence[TrendPoint]) -> list[TrendPoint]:
    if not history:
        return []
    points = list(history)
    if all(p.report_id != report.report_id for p in points):
        points.append(TrendPoint.of_report(report))
    return points


def _trend_cell(point: TrendPoint, report: DriftReport) -> _TrendCell:
    date = point.date or point.report_id or "?"
    return _TrendCell(
        label=date[5:] if len(date) == 10 else date,
        date=date,
        severity=(point.overall_severity or Severity.NONE).value,
        drift_detected=point.drift_detected,
        pixel_mean_shift=_num(point.pixel_mean_shift),
        confidence_shift=_num(point.confidence_shift),
        is_current=point.report_id == report.report_id,
        accuracy=("" if _num(point.accuracy_estimate) is None else
                  f"; estimated accuracy {_fmt_pct(point.accuracy_estimate)} "
                  f"({_fmt_pct(point.accuracy_low)} – {_fmt_pct(point.accuracy_high)})"),
    )


def _glossary(sections: Sequence[_Section]) -> list[tuple[str, Term]]:
    """(feature, term) for every feature in the page's tables that has a meaning to give."""
    seen: dict[str, Term] = {}
    for section in sections:
        for row in (*section.tests, *section.quiet_tests):
            term = row.term
            if term.meaning and row.feature not in seen and not row.feature.startswith(
                    SOFTMAX_PREFIX):
                seen[row.feature] = term
    if any(r.feature.startswith(SOFTMAX_PREFIX) for s in sections for r in s.quiet_tests
           + s.tests):
        seen[f"{SOFTMAX_PREFIX}<class>"] = Term(
            "P(class)", "The model's average probability for that class; moves when the "
            "images or the class mix change.")
    return list(seen.items())


def _settings(settings: dict[str, SettingValue]) -> str:
    parts = []
    if Setting.ALPHA in settings:
        parts.append(f"α = {settings[Setting.ALPHA]}")
    if Setting.CORRECTION in settings:
        parts.append(f"{settings[Setting.CORRECTION]} correction")
    return ", ".join(parts)
