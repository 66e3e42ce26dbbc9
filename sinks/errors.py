"""Exceptions raised by sinks; a delivery error says whether retrying can help."""

from __future__ import annotations


class SinkError(Exception):
    """Base class for every error a sink raises on purpose."""


class StoreUnavailable(SinkError):
    """Raised when the metric store cannot be reached (the write is retried on a later run)."""


class DeliveryError(SinkError):
    """Raised by an alert transport when a message was not delivered.

    ``permanent`` is True when retrying cannot help (400, 401/403, 404, a refused recipient);
    ``retry_after`` is the delay in seconds the receiver asked for (HTTP ``Retry-After``).
    """

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
