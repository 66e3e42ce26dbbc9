"""The HTML drift report: a consumer of ``analyzer.contract`` that returns a string.

``render_html(report, history)`` turns a ``DriftReport`` (and the trend points of previous
nights) into one self-contained page; it writes nothing. ``page`` builds the page from the
Jinja2 template in ``templates/``, ``charts`` draws the SVG charts, ``glossary`` names the
features for people. This package imports nothing of the analyzer but ``analyzer.contract``
and ``analyzer.severity`` (tests/test_layering.py), so reports are rendered the same
whether they come from a run or from a file.
"""

from __future__ import annotations

from analyzer.render.page import render_html

__all__ = ["render_html"]
