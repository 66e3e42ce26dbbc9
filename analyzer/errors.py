"""Exceptions raised by the analyzer; each says what was wrong and how to fix it."""

from __future__ import annotations


class AnalyzerError(Exception):
    """Base class for every error the analyzer raises on purpose."""


class DatasetError(AnalyzerError):
    """Raised when a data folder is missing, is not a folder, or holds no image files."""


class EmptyDatasetError(DatasetError):
    """Raised when a data folder exists but holds no readable image."""


class BaselineError(AnalyzerError):
    """Raised when a baseline is malformed, of an unknown version, or too small to compare."""


class ModelError(AnalyzerError):
    """Raised when a model file is missing, is not a TFLite model, or has an unusable input."""


class ReportFormatError(AnalyzerError, ValueError):
    """Raised when a dict (a report file, a stored row) is not a drift report this driftd reads."""
