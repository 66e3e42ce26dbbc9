"""The ordered severity scale shared by every drift verdict."""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Severity(str, enum.Enum):
    """Drift severity, ordered none < low < medium < high.

    The values are the seed's strings, so ``Severity.HIGH == "high"`` and the enum
    serialises to JSON as the plain string. Compare members with ``<``/``max()``:
    unlike the raw strings, they order by rank, not alphabetically.
    """

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        """Return the member for ``value``; raise ``ValueError`` naming the allowed values."""
        try:
            return cls(str(value).lower()) if not isinstance(value, Severity) else value
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ValueError(f"unknown severity {value!r}; expected one of {allowed}") from None

    @classmethod
    def highest(cls, values: Iterable[str | Severity]) -> Severity:
        """The highest of ``values`` (``NONE`` when empty)."""
        return max((cls.parse(v) for v in values), default=cls.NONE)


_RANK = {Severity.NONE: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3}
