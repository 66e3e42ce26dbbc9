"""Charts for the HTML drift report, rendered with matplotlib to compact SVG data URIs.

Each function takes a part of a ``DriftReport`` (or trend points) and returns a :class:`Chart`
(two renderings of the same chart) or ``None`` when there is nothing worth drawing. Charts are
embedded as images rather than inline ``<svg>`` so that text from the data (class labels,
feature names) can never become markup in the page.

An SVG image scales with its box, text included, so one drawing cannot be readable both on
a laptop and on a phone: drawn for a phone it is blown up on a laptop, drawn for a laptop its
text shrinks to ~7 px on a phone. Each chart is therefore drawn twice, at the width it is
shown at: ``wide`` for screens wider than :data:`NARROW_MAX_PX` (about 1:1 in the report's
1030 px content column) and ``narrow`` for phones (about 1:1 at 345 px); the page picks one
with ``<picture>``. No text in either is smaller than :data:`MIN_FONT_PT` points, i.e. about
13 px where it is shown.

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot, so rendering
keeps no global figure state and needs no interactive backend.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analyzer.contract import RGB_CHANNELS, ClassShare, Histograms, TestResult, TrendPoint
from analyzer.render.glossary import describe_feature

SEVERITY_COLORS: dict[str, str] = {
    "none": "#36a64f",
    "low": "#ffaa00",
    "medium": "#ff6600",
    "high": "#ff0000",
}
"""The seed's Slack colour per severity; the report uses the same colours."""

BASELINE_COLOR = "#8a94a6"
CURRENT_COLOR = "#1f5fbf"
_CHANNEL_COLORS = {"r": "#d62728", "g": "#2ca02c", "b": "#1f77b4"}

NARROW_MAX_PX = 700
"""Viewports up to this width (CSS px) get the ``narrow`` drawing."""
WIDE_IN, NARROW_IN = 10.0, 3.75
"""Figure widths in inches: an SVG inch is 96 CSS px, so 960 px and 360 px."""
MIN_FONT_PT = 10.0
"""The smallest text in any chart (SVG units of 1 pt; ~13 px at 1:1)."""

# Text stays text (not glyph paths) and ids are stable, so the SVG is small and the
# same report renders to the same bytes.
_RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "driftd",
    "font.size": 11,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 11,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.frameon": False,
    "legend.fontsize": MIN_FONT_PT,
}


@dataclass(frozen=True)
class Chart:
    """One chart drawn twice: ``wide`` (laptop) and ``narrow`` (phone) SVG data URIs."""

    wide: str
    narrow: str


Draw = Callable[[Figure, bool], None]
"""Draws a chart on an empty figure; the flag is True for the narrow (phone) drawing."""


def _render(draw: Draw, height_in: Callable[[bool], float]) -> Chart:
    uris = []
    for narrow in (False, True):
        with matplotlib.rc_context(_RC):
            fig = Figure(figsize=(NARROW_IN if narrow else WIDE_IN, height_in(narrow)),
                         layout="constrained")
            draw(fig, narrow)
            buf = io.BytesIO()
            fig.savefig(buf, format="svg", metadata={"Date": None})
        uris.append("data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode())
    return Chart(wide=uris[0], narrow=uris[1])


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [float(c) / total for c in counts] if total > 0 else [0.0 for _ in counts]


def _percent_axis(ax: Axes, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0, 0))


def channel_histograms(histograms: Histograms) -> Chart | None:
    """Baseline vs current pixel-intensity histogram per colour channel.

    Args:
        histograms: the pixel section's histograms; counts or shares (each channel is
            normalised to shares).

    Returns:
        A :class:`Chart` (side by side when wide, stacked when narrow), or ``None`` when no
        channel has data on both sides.
    """
    baseline, current = histograms.baseline, histograms.current
    channels = [c for c in RGB_CHANNELS if baseline.get(c) and current.get(c)]
    if not channels:
        return None

    def draw(fig: Figure, narrow: bool) -> None:
        shape = (len(channels), 1) if narrow else (1, len(channels))
        axes = fig.subplots(*shape, sharey=True, squeeze=False).ravel()
        for ax, channel in zip(axes, channels, strict=True):
            base = _shares(baseline[channel])
            cur = _shares(current[channel])
            n = len(base)
            xs = [255.0 * (i + 0.5) / n for i in range(n)]
            ax.fill_between(xs, base, step="mid", color=BASELINE_COLOR, alpha=0.45,
                            label="baseline")
            ax.step(xs, cur, where="mid", color=_CHANNEL_COLORS[channel], linewidth=2,
                    label="tonight")
            ax.set_title({"r": "Red", "g": "Green", "b": "Blue"}[channel], loc="left")
            ax.set_xlim(0, 255)
            ax.set_xticks([0, 64, 128, 192, 255])
            _percent_axis(ax)
        axes[-1 if narrow else 0].set_xlabel("pixel value (0 dark – 255 bright)")
        axes[0].set_ylabel("share of pixels")
        axes[0].legend(loc="upper right")

    return _render(draw, lambda narrow: 1.9 * len(channels) + 0.5 if narrow else 3.0)


def effect_sizes(
    tests: Sequence[TestResult],
    cutoffs: Mapping[str, float] | None = None,
    limit: int = 12,
) -> Chart | None:
    """Horizontal bars of effect size for the strongest tests, coloured by severity.

    With ``cutoffs`` (``{"low": 0.1, "medium": 0.25, "high": 0.5}``, the cut-offs every
    bar shares) each severity band is shaded in its colour behind the bars; without, each
    bar has a tick at its own ``threshold`` (the ``low`` cut-off). Bars are labelled with the plain
    feature names of ``analyzer.glossary``.

    Args:
        tests: the tests to draw (``feature``, ``effect_size``, ``threshold``, ``severity``).
        cutoffs: the severity cut-offs shared by all ``tests``, or None.
        limit: at most this many bars, strongest first.

    Returns:
        A :class:`Chart`, or ``None`` with fewer than two bars (one bar compares nothing;
        its numbers are in the table).
    """
    rows = sorted(tests, key=lambda t: float(t.effect_size), reverse=True)[:limit]
    if len(rows) < 2:
        return None
    rows.reverse()  # barh draws bottom-up; strongest goes on top

    def draw(fig: Figure, narrow: bool) -> None:
        ax = fig.subplots()
        ys = range(len(rows))
        values = [float(t.effect_size) for t in rows]
        colors = [SEVERITY_COLORS[t.severity.value] for t in rows]
        ax.barh(ys, values, color=colors, height=0.65, zorder=2)
        top = max(values)
        if cutoffs:
            # Each severity band as a faint background in its colour, so a bar reads as
            # "reaches the orange band" without a legend to decode.
            top = max(top, *cutoffs.values())
            edges = [*sorted(cutoffs.items(), key=lambda kv: kv[1]), ("", top * 1.12)]
            for (name, start), (_, stop) in itertools.pairwise(edges):
                ax.axvspan(start, stop, color=SEVERITY_COLORS.get(name, "#ccc"), alpha=0.13,
                           linewidth=0, zorder=0)
            bands = " · ".join(f"{name} ≥ {value:g}" for name, value in edges[:-1])
            ax.set_xlabel(f"effect size{chr(10) if narrow else ' — '}bands: {bands}")
        else:
            for y, t in zip(ys, rows, strict=True):
                ax.plot([t.threshold, t.threshold], [y - 0.42, y + 0.42], color="#222",
                        linewidth=1.5, zorder=3)
            ax.set_xlabel("effect size (black tick: the smallest that counts)")
        labels = [describe_feature(t.feature).label for t in rows]
        ax.set_yticks(list(ys), labels)
        ax.set_xlim(0, top * 1.12)
        ax.set_ylim(-0.6, len(rows) - 0.4)

    return _render(draw, lambda narrow: (0.36 if narrow else 0.3) * len(rows) + 1.2)


def class_shares(classes: Sequence[ClassShare], limit: int = 20) -> Chart | None:
    """Grouped bars of baseline vs current share of predictions per class.

    Args:
        classes: the class section's shares.
        limit: with more classes than this, only those whose share moved most are drawn.

    Returns:
        A :class:`Chart` (columns when wide, rows when narrow), or ``None`` with fewer than
        two classes.
    """
    rows = list(classes)
    if len(rows) < 2:
        return None

    def share(value: float) -> float:
        return float(value) if math.isfinite(value) else 0.0

    if len(rows) > limit:
        rows = sorted(rows, key=lambda c: abs(share(c.current_share)
                                              - share(c.baseline_share)), reverse=True)
        rows = rows[:limit]
    rows.sort(key=lambda c: c.index)
    labels = [c.label for c in rows]
    base = [share(c.baseline_share) for c in rows]
    cur = [share(c.current_share) for c in rows]

    def draw(fig: Figure, narrow: bool) -> None:
        ax = fig.subplots()
        pos = list(range(len(rows)))
        if narrow:
            pos.reverse()  # first class on top
            ax.barh([p + 0.2 for p in pos], base, height=0.38, color=BASELINE_COLOR,
                    label="baseline")
            ax.barh([p - 0.2 for p in pos], cur, height=0.38, color=CURRENT_COLOR,
                    label="tonight")
            ax.set_yticks(pos, labels)
            _percent_axis(ax, "x")
            ax.set_xlabel("share of predictions")
            ax.legend(loc="lower right")
        else:
            ax.bar([p - 0.2 for p in pos], base, width=0.38, color=BASELINE_COLOR,
                   label="baseline")
            ax.bar([p + 0.2 for p in pos], cur, width=0.38, color=CURRENT_COLOR,
                   label="tonight")
            ax.set_xticks(pos, labels, rotation=30 if len(rows) > 8 else 0, ha="right"
                          if len(rows) > 8 else "center")
            _percent_axis(ax)
            ax.set_ylabel("share of predictions")
            ax.legend(loc="upper right", ncols=2)

    return _render(draw, lambda narrow: 0.34 * len(rows) + 1.0 if narrow else 3.2)


def trend(points: Sequence[TrendPoint]) -> Chart | None:
    """Pixel mean shift and confidence shift over nights, dots coloured by severity.

    Args:
        points: trend points, oldest first.

    Returns:
        A :class:`Chart`, or ``None`` with fewer than two points.
    """
    if len(points) < 2:
        return None
    xs = list(range(len(points)))

    def series(values: Sequence[float | None]) -> list[float]:
        return [float("nan") if value is None else float(value) for value in values]

    pixel = series([p.pixel_mean_shift for p in points])
    confidence = series([p.confidence_shift for p in points])
    dates = [p.date or "" for p in points]
    # Month-day is enough on a strip of recent nights and keeps labels from overlapping.
    labels = [d[5:] if len(d) == 10 else d for d in dates]
    colors = [BASELINE_COLOR if p.overall_severity is None
              else SEVERITY_COLORS[p.overall_severity.value] for p in points]

    def draw(fig: Figure, narrow: bool) -> None:
        ax = fig.subplots()
        ax.axhline(0, color="#ccc", linewidth=0.8)
        ax.plot(xs, pixel, color=CURRENT_COLOR, linewidth=2, label="pixel mean shift")
        ax.plot(xs, confidence, color="#7b3fb8", linewidth=2, linestyle="--",
                label="confidence shift")
        ax.scatter(xs, pixel, c=colors, s=40, zorder=3)
        step = max(1, math.ceil(len(points) / (4 if narrow else 10)))
        ax.set_xticks(xs[::step], labels[::step])
        ax.legend(loc="upper left", ncols=1 if narrow else 2)

    return _render(draw, lambda narrow: 2.8 if narrow else 2.4)


def accuracy_trend(points: Sequence[TrendPoint], level: float) -> Chart | None:
    """Estimated accuracy per night with its ``level`` interval as a band.

    Args:
        points: trend points, oldest first; nights without an estimate are gaps.
        level: the interval's coverage, for the legend (0.9 = 90%).

    Returns:
        A :class:`Chart`, or ``None`` when fewer than two nights have an estimate.
    """
    if sum(p.accuracy_estimate is not None for p in points) < 2:
        return None
    xs = list(range(len(points)))

    def series(values: Sequence[float | None]) -> list[float]:
        return [float("nan") if value is None else float(value) for value in values]

    estimate = series([p.accuracy_estimate for p in points])
    low = series([p.accuracy_low for p in points])
    high = series([p.accuracy_high for p in points])
    dates = [p.date or "" for p in points]
    labels = [d[5:] if len(d) == 10 else d for d in dates]

    def draw(fig: Figure, narrow: bool) -> None:
        ax = fig.subplots()
        ax.fill_between(xs, low, high, color=CURRENT_COLOR, alpha=0.18, linewidth=0,
                        label=f"{level:.0%} interval")
        ax.plot(xs, estimate, color=CURRENT_COLOR, linewidth=2, marker="o",
                label="estimated accuracy")
        step = max(1, math.ceil(len(points) / (4 if narrow else 10)))
        ax.set_xticks(xs[::step], labels[::step])
        ax.legend(loc="lower left", ncols=1 if narrow else 2)

    return _render(draw, lambda narrow: 2.8 if narrow else 2.4)
