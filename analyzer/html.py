"""Render a drift report dict as one self-contained HTML page.

The page answers, in order: did anything drift and how badly (verdict, severity, headline
numbers, a one-paragraph summary naming the features behind the verdict), what changed (per
section: test table, charts), what the images look like (thumbnails of the most atypical
current images), and how tonight compares with previous nights (trend strip).

It is one file with everything inline — CSS, charts (SVG) and thumbnails (JPEG) as ``data:``
URIs — and no JavaScript, so it opens offline, from an email attachment or a Slack link, on a
laptop or a phone. A Content-Security-Policy meta tag forbids any fetch or script, and Jinja2
autoescaping keeps text from the data (file names, labels) text.

Readable on both: each chart comes in a laptop and a phone drawing (``analyzer.charts``),
tables turn into one card per row on a phone instead of scrolling sideways, features carry
plain names (``analyzer.glossary``) and a glossary at the end says what every column means.
The report's ``estimated_accuracy_change`` is not shown: it is the confidence shift under
another name, not an estimate of accuracy.
"""

from __future__ import annotations

import base64
import io
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from PIL import Image

from analyzer import charts
from analyzer.errors import AnalyzerError
from analyzer.glossary import STATISTICS, Term, describe_feature
from analyzer.severity import Severity

THUMBNAIL_PX = 96
"""Longest side of an embedded thumbnail, in pixels."""
THUMBNAILS_PER_FEATURE = 8
"""At most this many atypical images are shown per drifted feature."""
THUMBNAILS_TOTAL = 40
"""At most this many thumbnails in one report (keeps the file small enough to email)."""
CLASS_ROWS = 5
"""The classes whose share moved most are listed in a table, at most this many."""
REPORT_MODE = 0o644
"""The page's file mode: what the daemon's report files get (``sinks.files``), so a web
server or another user can read every report alike."""
_BAND_PREFIX = {"wasserstein_norm": "wasserstein", "tvd": "tvd"}
"""Effect-size kind → the prefix of its severity cut-offs in the report's ``settings``."""

_SECTIONS: tuple[tuple[str, str], ...] = (
    ("pixel_distribution_drift", "Image properties"),
    ("confidence_drift", "Model confidence"),
    ("class_distribution_drift", "Predicted classes"),
    ("data_quality", "Data quality"),
)
_ISSUE_NAMES = {
    "unreadable": "Unreadable files",
    "truncated": "Truncated files",
    "zero_byte": "Zero-byte files",
    "duplicates": "Duplicate files",
    "unexpected_mode": "Unexpected colour mode",
    "unexpected_size": "Unexpected size",
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


@dataclass
class _Section:
    key: str
    title: str
    severity: str
    drift_detected: bool
    available: bool
    reason: str
    headline: list[tuple[str, str]] = field(default_factory=list)
    tests: list[_TestRow] = field(default_factory=list)
    quiet_tests: list[_TestRow] = field(default_factory=list)
    charts: list[_Chart] = field(default_factory=list)
    classes: list[dict[str, Any]] = field(default_factory=list)
    issues: list[_Issue] = field(default_factory=list)


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


def render_html_report(
    drift_report: Mapping[str, Any], history: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """Render ``drift_report`` as one self-contained HTML page and return it.

    Args:
        drift_report: a ``DriftReport.to_dict()`` dict (docs/ARCHITECTURE.md, "Drift report
            dict"), or an object with such a ``to_dict()``. Optional parts may be missing: a
            section that is absent or has ``"available": false`` is shown with its reason, and
            missing numbers show as "—". Thumbnails are read from ``atypical_images[*].path``
            now; a file that is gone or unreadable is listed by name only.
        history: trend points for previous nights, oldest first, as the daemon keeps them::

                {"report_id": "20261125", "date": "2026-11-25", "overall_severity": "low",
                 "pixel_mean_shift": 0.01, "confidence_shift": -0.02,
                 "drift_detected": false}

            Tonight's point is appended from the report unless a point with its
            ``report_id`` is already in the list. ``None`` or ``[]`` leaves the trend out.

    Returns:
        The HTML document as a string (UTF-8 when written).

    Raises:
        AnalyzerError: ``drift_report`` is neither a mapping nor has ``to_dict()``.
    """
    report = _as_dict(drift_report)
    raw_settings = report.get("settings")
    settings: Mapping[str, Any] = raw_settings if isinstance(raw_settings, Mapping) else {}
    sections = [_section(key, title, report.get(key), settings) for key, title in _SECTIONS]
    present = [s for s in sections if s.available or s.key in report]
    severity = _severity(report.get("overall_severity"), [s.severity for s in present])
    drifted = bool(report.get("overall_drift_detected", severity != Severity.NONE))
    top = sorted(
        (t for s in sections for t in s.tests if t.significant),
        key=lambda t: (Severity.parse(t.severity).rank, t.effect_size or 0.0),
        reverse=True,
    )[:3]
    trend_points = _trend_points(report, severity, drifted, history)
    return _TEMPLATES.get_template("report.html.j2").render(
        report_id=str(report.get("report_id") or ""),
        folder_date=_folder_date(report),
        analysed_at=_timestamp(report.get("timestamp")),
        data_dir=str(report.get("data_dir") or ""),
        drifted=drifted,
        severity=severity.value,
        color=charts.SEVERITY_COLORS[severity.value],
        colors=charts.SEVERITY_COLORS,
        summary=str(report.get("drift_summary") or ""),
        top_tests=top,
        baseline_count=_int(report.get("baseline_image_count")),
        current_count=_int(report.get("current_image_count")),
        headline=_headline(report),
        sections=present,
        thumbs=_thumbnails(report.get("atypical_images")),
        unreadable=_unreadable(report.get("data_quality")),
        trend_cells=[_trend_cell(p, report) for p in trend_points],
        trend_chart=charts.trend(trend_points),
        narrow_max_px=charts.NARROW_MAX_PX,
        describe=describe_feature,
        glossary=_glossary(present),
        statistics=STATISTICS,
        settings=_settings(report.get("settings")),
        schema_version=report.get("schema_version"),
        fmt=_fmt,
        fmt_p=_fmt_p,
        fmt_signed=_fmt_signed,
        fmt_pct=_fmt_pct,
    )


def generate_html_report(
    drift_report: Mapping[str, Any],
    html_path: str | os.PathLike[str],
    history: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``render_html_report(drift_report, history)`` to ``html_path`` atomically.

    The page is written to a temporary file in the same folder, flushed to disk and moved
    over ``html_path`` with ``os.replace``, so a reader sees the old page or the new one,
    never a torn file. Missing parent folders are created. The file is readable by all
    (mode 0644, as the daemon's report files are).

    Returns:
        The path written, as a ``Path``.

    Raises:
        AnalyzerError: ``drift_report`` is not a report (see ``render_html_report``).
        OSError: the folder cannot be created or written.
    """
    path = Path(html_path)
    html = render_html_report(drift_report, history)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(html)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, REPORT_MODE)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _as_dict(drift_report: object) -> dict[str, Any]:
    if isinstance(drift_report, Mapping):
        return dict(drift_report)
    to_dict = getattr(drift_report, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    raise AnalyzerError(
        f"drift_report must be a dict from DriftReport.to_dict() or detect_drift(); "
        f"got {type(drift_report).__name__}"
    )


def _severity(value: object, fallback: Sequence[str]) -> Severity:
    try:
        return Severity.parse(str(value)) if value is not None else Severity.highest(fallback)
    except ValueError:
        return Severity.highest(fallback)


def _safe_severity(value: object) -> str:
    try:
        return Severity.parse(str(value)).value
    except ValueError:
        return Severity.NONE.value


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: object) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


def _fmt(value: object) -> str:
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


def _fmt_signed(value: object) -> str:
    number = _num(value)
    return "—" if number is None else f"{number:+.3f}"


def _fmt_pct(value: object) -> str:
    number = _num(value)
    return "—" if number is None else f"{100 * number:.1f}%"


def _fmt_p(value: object) -> str:
    number = _num(value)
    if number is None:
        return "—"
    if number < 1e-16:
        return "<1e-16"
    return f"{number:.1e}" if number < 1e-3 else f"{number:.3f}"


def _folder_date(report: Mapping[str, Any]) -> str:
    report_id = str(report.get("report_id") or "")
    if len(report_id) == 8 and report_id.isdigit():
        return f"{report_id[:4]}-{report_id[4:6]}-{report_id[6:]}"
    return report_id


def _timestamp(value: object) -> str:
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value or "")
    zone = moment.tzname() or ""
    return moment.strftime("%Y-%m-%d %H:%M") + (f" {zone}" if zone else "")


def _cutoffs(kind: str, settings: Mapping[str, Any]) -> dict[str, float] | None:
    """The low/medium/high cut-offs of effect-size ``kind`` from the report's settings."""
    prefix = _BAND_PREFIX.get(kind)
    values = {lvl: _num(settings.get(f"{prefix}_{lvl}")) for lvl in ("low", "medium", "high")}
    if prefix is None or any(v is None for v in values.values()):
        return None
    return {k: float(v) for k, v in values.items() if v is not None}


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


def _test_row(test: Mapping[str, Any], settings: Mapping[str, Any]) -> _TestRow:
    # A categorical (chi-squared) test has no meaningful mean: leave the column empty.
    has_means = test.get("test") != "chi2"
    significant = bool(test.get("significant", False))
    severity = _safe_severity(test.get("severity", "none"))
    threshold = _num(test.get("threshold"))
    kind = str(test.get("effect_size_kind", ""))
    return _TestRow(
        feature=str(test.get("feature", "?")),
        test=str(test.get("test", "")),
        statistic=_num(test.get("statistic")),
        p_value=_num(test.get("p_value")),
        p_adjusted=_num(test.get("p_adjusted")),
        effect_size=_num(test.get("effect_size")),
        effect_size_kind=kind,
        threshold=threshold,
        significant=significant,
        severity=severity,
        baseline_mean=_num(test.get("baseline_mean")) if has_means else None,
        current_mean=_num(test.get("current_mean")) if has_means else None,
        band=_band(significant, severity, threshold, _cutoffs(kind, settings)),
    )


def _section(key: str, title: str, data: object, settings: Mapping[str, Any]) -> _Section:
    if not isinstance(data, Mapping):
        return _Section(key, title, "none", False, False, "not in this report")
    available = bool(data.get("available", True))
    section = _Section(
        key=key,
        title=title,
        severity=_safe_severity(data.get("severity", "none")),
        drift_detected=bool(data.get("drift_detected", False)),
        available=available,
        reason=str(data.get("reason") or ("" if available else "not available")),
    )
    if not available:
        return section
    rows = [_test_row(t, settings) for t in data.get("tests") or [] if isinstance(t, Mapping)]
    rows.sort(key=lambda t: (t.significant, Severity.parse(t.severity).rank,
                             t.effect_size or 0.0), reverse=True)
    section.tests = [t for t in rows if t.significant]
    section.quiet_tests = [t for t in rows if not t.significant]
    raw_tests = [t for t in data.get("tests") or [] if isinstance(t, Mapping)]
    _add_section_details(section, data, raw_tests, settings)
    return section


def _add_section_details(
    section: _Section, data: Mapping[str, Any], raw_tests: list[Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> None:
    if section.key == "pixel_distribution_drift":
        means = data.get("channel_means") or {}
        section.headline = [("Mean pixel shift", _fmt(data.get("overall_mean_shift")))]
        for name, i in (("Red", 0), ("Green", 1), ("Blue", 2)):
            base, cur = _channel(means, "baseline", i), _channel(means, "current", i)
            if base is not None or cur is not None:
                section.headline.append((f"{name} mean", f"{_fmt(base)} → {_fmt(cur)}"))
        hist = data.get("histograms")
        chart = charts.channel_histograms(hist) if isinstance(hist, Mapping) else None
        if chart:
            section.charts.append(_Chart("Pixel values per colour channel, baseline and "
                                         "tonight", chart,
                                         "baseline vs tonight pixel histograms"))
    elif section.key == "confidence_drift":
        section.headline = [
            ("Mean confidence", f"{_fmt(data.get('baseline_mean_confidence'))} → "
                                f"{_fmt(data.get('current_mean_confidence'))}"),
            ("Confidence shift", _fmt_signed(data.get("mean_confidence_shift"))),
        ]
    elif section.key == "class_distribution_drift":
        section.headline = [
            ("Class mix distance", _fmt(data.get("wasserstein_distance"))),
            ("χ² statistic", _fmt(data.get("chi2_statistic"))),
            ("p", _fmt_p(data.get("p_value"))),
        ]
        classes = [c for c in data.get("classes") or [] if isinstance(c, Mapping)]
        shares: list[dict[str, Any]] = [{"label": str(c.get("label", c.get("index", "?"))),
                   "baseline": _num(c.get("baseline_share")) or 0.0,
                   "current": _num(c.get("current_share")) or 0.0} for c in classes]
        section.classes = sorted(
            (c for c in shares if c["current"] != c["baseline"]),
            key=lambda c: abs(c["current"] - c["baseline"]), reverse=True,
        )[:CLASS_ROWS]
        chart = charts.class_shares(classes)
        if chart:
            section.charts.append(_Chart("Share of predictions per class, baseline and tonight",
                                         chart, "baseline vs tonight class shares"))
    elif section.key == "data_quality":
        section.headline = [("Files", _fmt(data.get("total_files"))),
                            ("Analysed", _fmt(data.get("analyzed")))]
        issues = data.get("issues") or {}
        for name, issue in issues.items() if isinstance(issues, Mapping) else ():
            if isinstance(issue, Mapping):
                if not _int(issue.get("count")):
                    continue
                section.issues.append(_Issue(
                    _ISSUE_NAMES.get(str(name), str(name).replace("_", " ")),
                    _int(issue.get("count")) or 0,
                    [str(e) for e in issue.get("examples") or []],
                ))
    significant = [t for t in raw_tests if t.get("significant")]
    kinds = {str(t.get("effect_size_kind", "")) for t in significant}
    shared = _cutoffs(kinds.pop(), settings) if len(kinds) == 1 else None
    chart = charts.effect_sizes(significant, shared)
    if chart:
        section.charts.append(_Chart("How far each changed feature moved (effect size)", chart,
                                     "effect size per drifted feature, with the severity "
                                     "cut-offs"))


def _channel(means: object, side: str, index: int) -> float | None:
    values = means.get(side) if isinstance(means, Mapping) else None
    if isinstance(values, Sequence) and len(values) > index:
        return _num(values[index])
    return None


def _headline(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    pixel = report.get("pixel_distribution_drift") or {}
    confidence = report.get("confidence_drift") or {}
    quality = report.get("data_quality") or {}
    out = [("Pixel mean shift", _fmt(pixel.get("overall_mean_shift")))]
    if confidence.get("available", True) and confidence:
        out.append(("Confidence shift", _fmt_signed(confidence.get("mean_confidence_shift"))))
    bad = sum(
        _int(issue.get("count")) or 0
        for name, issue in (quality.get("issues") or {}).items()
        if name in ("unreadable", "truncated", "zero_byte") and isinstance(issue, Mapping)
    )
    out.append(("Bad files", str(bad)))
    return out


def _thumbnail(path: object) -> str | None:
    if not path:
        return None
    try:
        with Image.open(str(path)) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
            small = image.convert("RGB")
            small.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buf = io.BytesIO()
            small.save(buf, format="JPEG", quality=70, optimize=True)
    except (OSError, ValueError, Image.DecompressionBombError):
        # A file deleted or corrupted since the analysis is shown by name only.
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnails(atypical: object) -> list[tuple[str, list[_Thumb]]]:
    groups: dict[str, list[_Thumb]] = {}
    total = 0
    for item in atypical if isinstance(atypical, Sequence) else ():
        if not isinstance(item, Mapping) or total >= THUMBNAILS_TOTAL:
            continue
        feature = str(item.get("feature", "?"))
        group = groups.setdefault(feature, [])
        if len(group) >= THUMBNAILS_PER_FEATURE:
            continue
        name = str(item.get("file") or Path(str(item.get("path", "?"))).name)
        group.append(_Thumb(name, _num(item.get("value")), _num(item.get("baseline_median")),
                            _thumbnail(item.get("path"))))
        total += 1
    return list(groups.items())


def _unreadable(quality: object) -> list[str]:
    issues = quality.get("issues") if isinstance(quality, Mapping) else None
    names: list[str] = []
    for key in ("unreadable", "truncated", "zero_byte"):
        issue = issues.get(key) if isinstance(issues, Mapping) else None
        if isinstance(issue, Mapping):
            names.extend(str(e) for e in issue.get("examples") or [])
    return names


def _trend_points(
    report: Mapping[str, Any],
    severity: Severity,
    drifted: bool,
    history: Sequence[Mapping[str, Any]] | None,
) -> list[Mapping[str, Any]]:
    if not history:
        return []
    points = [p for p in history if isinstance(p, Mapping)]
    report_id = report.get("report_id")
    if report_id is None or all(p.get("report_id") != report_id for p in points):
        confidence = report.get("confidence_drift") or {}
        points.append({
            "report_id": report_id,
            "date": _folder_date(report),
            "overall_severity": severity.value,
            "pixel_mean_shift": (report.get("pixel_distribution_drift") or {}).get(
                "overall_mean_shift"),
            # Without a model the section holds 0.0 placeholders; a gap reads truer than 0.
            "confidence_shift": confidence.get("mean_confidence_shift")
            if confidence.get("available", True) else None,
            "drift_detected": drifted,
        })
    return points


def _trend_cell(point: Mapping[str, Any], report: Mapping[str, Any]) -> _TrendCell:
    date = str(point.get("date") or point.get("report_id") or "?")
    return _TrendCell(
        label=date[5:] if len(date) == 10 else date,
        date=date,
        severity=_safe_severity(point.get("overall_severity")),
        drift_detected=bool(point.get("drift_detected", False)),
        pixel_mean_shift=_num(point.get("pixel_mean_shift")),
        confidence_shift=_num(point.get("confidence_shift")),
        is_current=point.get("report_id") == report.get("report_id"),
    )


def _glossary(sections: Sequence[_Section]) -> list[tuple[str, Term]]:
    """(feature, term) for every feature in the page's tables that has a meaning to give."""
    seen: dict[str, Term] = {}
    for section in sections:
        for row in (*section.tests, *section.quiet_tests):
            term = row.term
            if term.meaning and row.feature not in seen and not row.feature.startswith(
                    "softmax."):
                seen[row.feature] = term
    if any(r.feature.startswith("softmax.") for s in sections for r in s.quiet_tests
           + s.tests):
        seen["softmax.<class>"] = Term("P(class)", "The model's average probability for that "
                                       "class; moves when the images or the class mix change.")
    return list(seen.items())


def _settings(settings: object) -> str:
    if not isinstance(settings, Mapping):
        return ""
    parts = []
    if "alpha" in settings:
        parts.append(f"α = {settings['alpha']}")
    if "correction" in settings:
        parts.append(f"{settings['correction']} correction")
    return ", ".join(parts)
