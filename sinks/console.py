"""Console transport: one paragraph per alert on stdout (the default when no channel is set)."""

from __future__ import annotations

import sys
from typing import TextIO

from sinks.messages import AlertMessage


class ConsoleTransport:
    """Prints each alert as one paragraph; used by ``driftd demo`` and unconfigured installs."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    def send(self, message: AlertMessage) -> None:
        """Write the paragraph and flush; never raises ``DeliveryError`` (stdout is local)."""
        stream = self._stream if self._stream is not None else sys.stdout
        parts = [f"[driftd] {message.title}."]
        if message.summary:
            parts.append(message.summary.rstrip(".") + ".")
        if message.kind in ("drift", "retrain"):
            parts.append(
                f"Pixel mean shift {message.pixel_mean_shift:.4f}, confidence shift "
                f"{message.confidence_shift:+.4f}, class drift {message.class_drift_distance:.4f}"
                f" over {message.current_image_count} images."
            )
        if message.top_features:
            parts.append("Top drifted features: " + ", ".join(message.top_features) + ".")
        if message.report_url or message.report_path:
            parts.append(f"Report: {message.report_url or message.report_path}")
        stream.write(" ".join(parts) + "\n\n")
        stream.flush()
