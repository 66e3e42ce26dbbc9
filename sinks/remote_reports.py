"""Report files copied to object storage (``[data].reports_url``), e.g. for a dashboard.

The reports are always written to the local reports folder first (atomically; the status
API serves them from there). ``RemoteReports.sync(files, ids)`` then copies each report
whose remote copy is missing or of another size: one PUT per file, which readers of the
bucket see whole or not at all. A failed upload is raised as ``RemoteReportError``; the
caller logs it and the next run's ``sync`` copies what is still missing, so an outage of
the store delays the copies but loses none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sinks.errors import SinkError
from sinks.files import REPORT_EXTENSIONS, ReportFiles


class RemoteReportError(SinkError):
    """Raised when report files could not be copied to ``reports_url``."""


class RemoteReports:
    """The reports prefix at ``url`` (fsspec; credentials from the environment)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})

    def _fs(self) -> tuple[Any, str]:
        try:
            import fsspec
        except ImportError as err:
            raise RemoteReportError(f"reports_url {self.url} needs fsspec and the package for "
                                    "its protocol (pip install 'driftd[s3]')") from err
        fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, str(path).rstrip("/")

    def sync(self, files: ReportFiles, ids: Iterable[str]) -> list[str]:
        """Copy the JSON and HTML of each of ``ids`` whose remote copy is missing or differs
        in size; returns the URLs written. Raises ``RemoteReportError`` naming the first
        file that failed (the others are still tried)."""
        try:
            fs, root = self._fs()
            fs.invalidate_cache(root)
            remote = {str(info["name"]).rsplit("/", 1)[-1]: int(info.get("size") or 0)
                      for info in _list(fs, root)}
        except RemoteReportError:
            raise
        except Exception as err:  # any client error: the whole copy waits for the next run
            raise RemoteReportError(f"cannot list {self.url}: {type(err).__name__}: {err}"
                                    ) from err
        written, failed = [], []
        for report_id in ids:
            for ext in REPORT_EXTENSIONS:
                local = files.path(report_id, ext)
                if not local.is_file() or remote.get(local.name) == local.stat().st_size:
                    continue
                target = f"{root}/{local.name}"
                try:
                    fs.pipe_file(target, local.read_bytes())
                except Exception as err:  # one file: try the others, report the first
                    failed.append(f"{local.name}: {type(err).__name__}: {err}")
                    continue
                written.append(f"{self.url}/{local.name}")
        if failed:
            raise RemoteReportError(f"cannot copy {len(failed)} report file(s) to {self.url} "
                                    f"(first: {failed[0]}); the next run tries again")
        return written


def _list(fs: Any, root: str) -> list[dict[str, Any]]:
    try:
        entries: list[dict[str, Any]] = fs.ls(root, detail=True)
    except FileNotFoundError:
        return []
    return [e for e in entries if e.get("type") != "directory"]
