"""Charts for the HTML drift report, rendered with matplotlib to compact SVG data URIs.

Each function takes plain data pulled from a drift report dict and returns a
``data:image/svg+xml;base64,...`` URI to put in an ``<img src>``, or ``None`` when there is
nothing to draw. Charts are embedded as images rather than inline ``<svg>`` so that text
from the data (class labels, feature names) can never become markup in the page.

Figures are built with ``matplotlib.figure.Figure`` directly, never pyplot, so rendering
keeps no global figure state and needs no interactive backend.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from itertools import pairwise
from typing import Any

import matplotlib
from matplotlib.figure import Figure

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

# Text stays text (not glyph paths) and ids are stable, so the SVG is small and the
# same report renders to the same bytes.
_RC: dict[Any, Any] = {
    "svg.fonttype": "none",
    "svg.hashsalt": "driftd",
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def _to_data_uri(fig: Figure) -> str:
    with matplotlib.rc_context(_RC):
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(width: float, height: float) -> Figure:
    # Callers hold rc_context(_RC) while building and saving: artists read rcParams then.
    return Figure(figsize=(width, height), layout="constrained")


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [float(c) / total for c in counts] if total > 0 else [0.0 for _ in counts]


def channel_histograms(histograms: Mapping[str, object]) -> str | None:
    """Baseline vs current pixel-intensity histogram per colour channel.

    Args:
        histograms: the report's ``pixel_distribution_drift.histograms``:
            ``{"bins": n, "baseline": {"r": [...], ...}, "current": {"r": [...], ...}}``;
            counts or shares (each channel is normalised to shares).

    Returns:
        An SVG data URI, or ``None`` when no channel has data on both sides.
    """
    baseline = histograms.get("baseline")
    current = histograms.get("current")
    if not isinstance(baseline, Mapping) or not isinstance(current, Mapping):
        return None
    channels = [c for c in ("r", "g", "b") if baseline.get(c) and current.get(c)]
    if not channels:
        return None
    with matplotlib.rc_context(_RC):
        fig = _figure(5.2, 2.0)
        axes = fig.subplots(1, len(channels), sharey=True, squeeze=False)[0]
        for ax, channel in zip(axes, channels, strict=True):
            base = _shares(baseline[channel])
            cur = _shares(current[channel])
            n = len(base)
            xs = [255.0 * (i + 0.5) / n for i in range(n)]
            ax.fill_between(xs, base, step="mid", color=BASELINE_COLOR, alpha=0.45,
                            label="baseline")
            ax.step(xs, cur, where="mid", color=_CHANNEL_COLORS[channel], linewidth=1.6,
                    label="current")
            ax.set_title({"r": "Red", "g": "Green", "b": "Blue"}[channel])
            ax.set_xlim(0, 255)
            ax.set_xlabel("pixel value")
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel("share of pixels")
        axes[0].legend(loc="upper right")
        return _to_data_uri(fig)


def effect_sizes(tests: Sequence[Mapping[str, object]], limit: int = 12) -> str | None:
    """Horizontal bars of effect size for the strongest tests, coloured by severity.

    Each bar carries a tick at its test's threshold, so a reader sees how far past the line
    a feature moved. Bars are labelled with the feature name.

    Args:
        tests: TestResult dicts (``feature``, ``effect_size``, ``threshold``, ``severity``).
        limit: at most this many bars, strongest first.

    Returns:
        An SVG data URI, or ``None`` when no test has a numeric effect size.
    """
    rows = [t for t in tests if isinstance(t.get("effect_size"), int | float)]
    rows.sort(key=lambda t: float(t["effect_size"]), reverse=True)  # type: ignore[arg-type]
    rows = rows[:limit]
    if not rows:
        return None
    rows.reverse()  # barh draws bottom-up; strongest goes on top
    with matplotlib.rc_context(_RC):
        fig = _figure(5.2, 0.28 * len(rows) + 0.75)
        ax = fig.subplots()
        ys = range(len(rows))
        values = [float(t["effect_size"]) for t in rows]  # type: ignore[arg-type]
        colors = [SEVERITY_COLORS.get(str(t.get("severity")), BASELINE_COLOR) for t in rows]
        ax.barh(ys, values, color=colors, height=0.65)
        for y, t in zip(ys, rows, strict=True):
            threshold = t.get("threshold")
            if isinstance(threshold, int | float):
                ax.plot([threshold, threshold], [y - 0.42, y + 0.42], color="#222",
                        linewidth=1.2)
        ax.set_yticks(list(ys), [str(t.get("feature", "?")) for t in rows])
        ax.set_xlabel("effect size (black tick = threshold)")
        ax.set_xlim(left=0)
        return _to_data_uri(fig)


def feature_histogram(feature: str, histogram: Mapping[str, Sequence[float]]) -> str | None:
    """Baseline vs current distribution of one feature, from its binned histogram.

    Args:
        feature: the feature name, used as the chart title.
        histogram: ``{"edges": [n+1 floats], "baseline": [n], "current": [n]}``
            (counts or shares; each side is normalised to shares).

    Returns:
        An SVG data URI, or ``None`` when the histogram is empty or its lengths disagree.
    """
    edges = [float(e) for e in histogram.get("edges", [])]
    base = list(histogram.get("baseline", []))
    cur = list(histogram.get("current", []))
    if len(edges) < 2 or len(base) != len(edges) - 1 or len(cur) != len(base):
        return None
    mids = [(a + b) / 2 for a, b in pairwise(edges)]
    with matplotlib.rc_context(_RC):
        fig = _figure(5.2, 2.2)
        ax = fig.subplots()
        ax.fill_between(mids, _shares(base), step="mid", color=BASELINE_COLOR, alpha=0.45,
                        label="baseline")
        ax.step(mids, _shares(cur), where="mid", color=CURRENT_COLOR, linewidth=1.6,
                label="current")
        ax.set_title(feature)
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper right")
        return _to_data_uri(fig)


def class_shares(classes: Sequence[Mapping[str, object]], limit: int = 20) -> str | None:
    """Grouped bars of baseline vs current share of predictions per class.

    Args:
        classes: the report's ``class_distribution_drift.classes``
            (``index``, ``label``, ``baseline_share``, ``current_share``).
        limit: with more classes than this, only those whose share moved most are drawn.

    Returns:
        An SVG data URI, or ``None`` when there are no classes.
    """
    rows = [c for c in classes if isinstance(c, Mapping)]
    if not rows:
        return None

    def share(c: Mapping[str, object], key: str) -> float:
        value = c.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    if len(rows) > limit:
        rows = sorted(rows, key=lambda c: abs(share(c, "current_share")
                                                - share(c, "baseline_share")), reverse=True)
        rows = rows[:limit]
    rows.sort(key=lambda c: share(c, "index"), reverse=True)
    with matplotlib.rc_context(_RC):
        fig = _figure(5.2, 0.26 * len(rows) + 0.8)
        ax = fig.subplots()
        ys = list(range(len(rows)))
        ax.barh([y + 0.2 for y in ys], [share(c, "baseline_share") for c in rows], height=0.38,
                color=BASELINE_COLOR, label="baseline")
        ax.barh([y - 0.2 for y in ys], [share(c, "current_share") for c in rows], height=0.38,
                color=CURRENT_COLOR, label="current")
        ax.set_yticks(ys, [str(c.get("label", c.get("index", "?"))) for c in rows])
        ax.set_xlabel("share of predictions")
        ax.legend(loc="lower right")
        return _to_data_uri(fig)


def trend(points: Sequence[Mapping[str, object]]) -> str | None:
    """Sparkline of pixel mean shift and confidence shift over nights, dots coloured by severity.

    Args:
        points: trend points, oldest first (``date``, ``overall_severity``,
            ``pixel_mean_shift``, ``confidence_shift``).

    Returns:
        An SVG data URI, or ``None`` with fewer than two points.
    """
    if len(points) < 2:
        return None
    xs = list(range(len(points)))

    def series(key: str) -> list[float]:
        out = []
        for p in points:
            value = p.get(key)
            out.append(float(value) if isinstance(value, int | float) else float("nan"))
        return out

    with matplotlib.rc_context(_RC):
        fig = _figure(10.4, 1.6)
        ax = fig.subplots()
        ax.axhline(0, color="#ccc", linewidth=0.8)
        ax.plot(xs, series("pixel_mean_shift"), color=CURRENT_COLOR, linewidth=1.4,
                label="pixel mean shift")
        ax.plot(xs, series("confidence_shift"), color="#7b3fb8", linewidth=1.4,
                linestyle="--", label="confidence shift")
        colors = [SEVERITY_COLORS.get(str(p.get("overall_severity")), BASELINE_COLOR)
                  for p in points]
        ax.scatter(xs, series("pixel_mean_shift"), c=colors, s=22, zorder=3)
        step = max(1, math.ceil(len(points) / 10))
        dates = [str(p.get("date", "")) for p in points]
        # Month-day is enough on a strip of recent nights and keeps labels from overlapping.
        labels = [d[5:] if len(d) == 10 else d for d in dates]
        ax.set_xticks(xs[::step], labels[::step])
        ax.tick_params(labelsize=7)
        ax.legend(loc="upper left", ncols=2)
        return _to_data_uri(fig)
