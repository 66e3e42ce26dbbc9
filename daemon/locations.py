"""Local folders or object-store URLs: the dated nights, the baseline file.

``[data].production_root`` and ``[data].baseline`` are local paths (the default, handled
with ``os`` as before) or fsspec URLs (``s3://bucket/production``, ``gs://…``, ``az://…``;
``analyzer.storage`` opens them). ``DatedRoot`` lists the dated folders under a root the
same way for both: on object storage a "folder" is a key prefix, the ready marker is an
object (``20261126/_SUCCESS``), and the settle rule uses the newest object's last-modified
time. Listings are never cached between calls: a long-running daemon must see a night that
appeared since the last run. (``analyzer.storage`` is imported only where a URL needs it:
the analyzer package pulls in numpy and Pillow, which ``driftd status`` does not need.)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

Location = Path | str
"""A local path (``Path``) or an fsspec URL (``str``)."""

_MTIME_KEYS = ("LastModified", "last_modified", "mtime", "updated", "creation_time")


def parse_location(value: Any) -> Location:
    """A config value as a ``Location``: URLs stay text, everything else becomes a ``Path``.

    Raises ``ValueError`` (the config error's message) for a URL whose protocol driftd cannot
    read here, naming the extra to install.
    """
    from analyzer.storage import filesystem, is_remote

    if isinstance(value, Path):
        return value
    text = str(value)
    if text.startswith("file://"):
        return Path(text.removeprefix("file://"))
    if not is_remote(text):
        return Path(text)
    try:
        filesystem(text)
    except Exception as err:  # DatasetError from the analyzer: worded for the config
        raise ValueError(str(err).replace(f"{text!r}: ", "")) from None
    return text.rstrip("/")


def _mtime(info: Mapping[str, Any]) -> float:
    for key in _MTIME_KEYS:
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return math.inf  # unknown: treat as just changed, so the settle rule waits


def newest_mtime(folder: Path) -> float:
    """The newest modification time of ``folder`` and anything under it."""
    newest = folder.stat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:  # removed while we looked: the folder is still changing
                return float("inf")
    return newest


class DatedRoot:
    """The folders (or key prefixes) directly under ``root``."""

    def __init__(self, root: Location, storage_options: Mapping[str, Any] | None = None
                 ) -> None:
        self.root = root
        self.storage_options = dict(storage_options or {})

    @property
    def remote(self) -> bool:
        return isinstance(self.root, str)

    def _fs(self, url: str) -> tuple[Any, str]:
        from analyzer.storage import filesystem

        fs, path = filesystem(url, self.storage_options)
        fs.invalidate_cache()
        return fs, path

    def children(self) -> list[tuple[str, Location]]:
        """``(name, location)`` of every folder directly under the root (none when the root
        does not exist). Raises ``OSError`` when the root cannot be listed."""
        if isinstance(self.root, Path):
            if not self.root.is_dir():
                return []
            return [(e.name, e) for e in self.root.iterdir() if e.is_dir()]
        fs, path = self._fs(self.root)
        try:
            entries = fs.ls(path, detail=True)
        except FileNotFoundError:
            return []
        out: list[tuple[str, Location]] = []
        for info in entries:
            if info.get("type") == "directory":
                name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
                out.append((name, f"{self.root.rstrip('/')}/{name}"))
        return out

    def child(self, name: str) -> Location:
        if isinstance(self.root, Path):
            return self.root / name
        return f"{self.root.rstrip('/')}/{name}"

    def exists(self, folder: Location) -> bool:
        """Whether ``folder`` is a folder (for a URL: a prefix holding at least one object)."""
        if isinstance(folder, Path):
            return folder.is_dir()
        fs, path = self._fs(folder)
        try:
            return bool(fs.ls(path))
        except FileNotFoundError:
            return False

    def is_ready(self, folder: Location, marker: str, settle_seconds: float,
                 now: datetime) -> bool:
        """True when ``folder`` holds ``marker`` or nothing in it changed for
        ``settle_seconds``. Raises ``OSError`` when it cannot be looked into."""
        if isinstance(folder, Path):
            if marker:
                try:
                    os.stat(folder / marker)
                    return True
                except FileNotFoundError:
                    pass
            os.listdir(folder)  # an unreadable folder is an error, not "not ready"
            return now.timestamp() - newest_mtime(folder) >= settle_seconds
        fs, path = self._fs(folder)
        found = fs.find(path, detail=True)
        if marker and f"{path.rstrip('/')}/{marker}" in found:
            return True
        if not found:
            return False
        newest = max(_mtime(info) for info in found.values())
        return now.timestamp() - newest >= settle_seconds


def read_bytes(location: Location, storage_options: Mapping[str, Any] | None = None) -> bytes:
    """The content of a file or object. Raises ``FileNotFoundError``/``OSError``."""
    from analyzer.storage import filesystem

    if isinstance(location, Path):
        return location.read_bytes()
    fs, path = filesystem(location, dict(storage_options or {}))
    data: bytes = fs.cat_file(path)
    return data


def write_bytes(location: Location, data: bytes,
                storage_options: Mapping[str, Any] | None = None) -> str:
    """Write ``data`` atomically (a local temp file renamed over, or one object PUT, which
    readers see whole or not at all); returns where it went."""
    if isinstance(location, Path):
        from sinks.files import atomic_write_bytes

        return str(atomic_write_bytes(location, data))
    from analyzer.storage import filesystem

    fs, path = filesystem(location, dict(storage_options or {}))
    fs.pipe_file(path, data)
    return location
