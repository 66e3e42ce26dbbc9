"""Where a night's images are: a local folder (the default, fast path) or an fsspec URL.

``s3://bucket/production/20261126``, ``gs://…``, ``az://…`` (and any other fsspec protocol)
are read through fsspec, with the matching package installed (``pip install 'driftd[s3]'``,
``[gcs]``, ``[azure]``). Credentials come from the environment, as each library finds them
(``AWS_*`` variables, an instance or IRSA role, ``GOOGLE_APPLICATION_CREDENTIALS``,
workload identity, ``AZURE_STORAGE_*``); driftd never handles them. ``file://`` URLs and
plain paths are local: they never import fsspec and read with ``os`` as before.

Objects are fetched a chunk at a time, concurrently (one GET per key, all of the chunk's in
parallel on fsspec's event loop), and decoded from memory; an object larger than
``STREAM_BYTES`` is streamed instead. A request that fails for any reason but "not found"
or "access denied" (throttling, 5xx, a dropped connection) is retried up to
``RemoteSource.attempts`` times with exponential backoff and jitter; what still fails is one
unreadable file with the reason, never a failed night.
"""

from __future__ import annotations

import asyncio
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from analyzer.errors import DatasetError

STREAM_BYTES = 64 * 1024 * 1024
"""Objects up to this size are fetched whole (concurrently); larger ones are streamed."""

EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure",
          "abfss": "azure"}
"""URL scheme → the driftd extra that installs its fsspec implementation."""

_THREADS = 16
_PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)
_filesystems: dict[tuple[str, str], Any] = {}


def is_remote(location: str | Path) -> bool:
    """Whether ``location`` is a URL read through fsspec (not a local path or ``file://``)."""
    if isinstance(location, Path):
        return False
    scheme = urlsplit(location).scheme
    return "://" in location and len(scheme) > 1 and scheme != "file"


def local_path(location: str | Path) -> Path:
    """``location`` as a local path (``file:///x`` → ``/x``)."""
    if isinstance(location, str) and location.startswith("file://"):
        return Path(urlsplit(location).path)
    return Path(location)


def join(location: str, *parts: str) -> str:
    """``location`` (a URL) with ``parts`` appended as ``/``-separated key parts."""
    return "/".join([location.rstrip("/"), *(p.strip("/") for p in parts)])


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path within it)`` for ``url``; one filesystem per protocol and
    options per process (fsspec caches them too).

    Raises ``DatasetError`` with the install command when the protocol's package is missing.
    """
    scheme = urlsplit(url).scheme
    try:
        import fsspec
        from fsspec.core import split_protocol
    except ImportError as err:
        raise DatasetError(
            f"{url!r} is a {scheme}:// URL, which needs fsspec; install it with "
            f"pip install 'driftd[{EXTRAS.get(scheme, 's3')}]'") from err
    key = (scheme, repr(sorted((storage_options or {}).items())))
    fs = _filesystems.get(key)
    if fs is None:
        try:
            fs = fsspec.filesystem(split_protocol(url)[0], **(storage_options or {}))
        except ImportError as err:
            extra = EXTRAS.get(scheme)
            hint = (f"pip install 'driftd[{extra}]'" if extra
                    else "install the fsspec implementation for it")
            raise DatasetError(f"{url!r}: no {scheme}:// support installed ({err}); {hint}"
                               ) from err
        except ValueError as err:
            raise DatasetError(f"{url!r}: {scheme}:// is not a storage protocol fsspec knows "
                               f"({err}); use s3://, gs://, az:// or a local path") from err
        _filesystems[key] = fs
    return fs, fs._strip_protocol(url)


@dataclass(frozen=True)
class RemoteSource:
    """How workers read the objects of one night: the root URL, fsspec options, retries.

    ``attempts`` includes the first request; the delay before retry ``i`` is
    ``backoff_s * 2**i`` times a random factor in [0.5, 1.5).
    """

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    attempts: int = 5
    backoff_s: float = 0.2

    def fetch(self, items: list[tuple[str, int]]) -> dict[str, bytes | Exception]:
        """The bytes of each ``(name, size)`` below ``url`` (small objects), or the error
        that remained after the retries, keyed by name."""
        fs, root = filesystem(self.url, self.storage_options)
        keys = {f"{root.rstrip('/')}/{name}": name for name, _ in items}
        results: dict[str, bytes | Exception] = {}
        todo = list(keys)
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
            got = dict(zip(todo, _cat_each(fs, todo), strict=True))
            retry = []
            for key in todo:
                value = got[key]
                results[keys[key]] = value
                if isinstance(value, Exception) and not isinstance(value, _PERMANENT):
                    retry.append(key)
            todo = retry
            if not todo:
                break
        return results

    def open(self, name: str) -> IO[bytes]:
        """A seekable stream of the object ``name`` (for objects over ``STREAM_BYTES``)."""
        fs, root = filesystem(self.url, self.storage_options)
        stream: IO[bytes] = fs.open(f"{root.rstrip('/')}/{name}", "rb",
                                            block_size=8 * 1024 * 1024)
        return stream

    def shown(self, name: str) -> str:
        """The URL of ``name`` (what reports and thumbnails name)."""
        return join(self.url, name)


def _cat_each(fs: Any, keys: list[str]) -> list[bytes | Exception]:
    """The bytes of each key, fetched concurrently (one GET each), or its exception.

    Per key, not ``fs.cat(keys)``: that expands glob characters, and ``img[1].jpg`` is a
    file name, not a pattern.
    """
    if getattr(fs, "async_impl", False):
        from fsspec.asyn import sync

        async def gather() -> list[bytes | BaseException]:
            return list(await asyncio.gather(*(fs._cat_file(k) for k in keys),
                                             return_exceptions=True))

        got: list[bytes | BaseException] = sync(fs.loop, gather)
    else:
        def one(key: str) -> bytes | BaseException:
            try:
                data: bytes = fs.cat_file(key)
                return data
            except Exception as err:  # returned, like the async branch: one file's fault
                return err

        with ThreadPoolExecutor(_THREADS) as pool:
            got = list(pool.map(one, keys))
    out: list[bytes | Exception] = []
    for value in got:
        if isinstance(value, BaseException) and not isinstance(value, Exception):
            raise value  # KeyboardInterrupt, CancelledError: not a file's fault
        out.append(value)
    return out


def describe_error(err: Exception) -> str:
    """One line for a failed request (no credentials: fsspec errors carry none)."""
    if isinstance(err, FileNotFoundError):
        return "object not found (deleted after the listing?)"
    if isinstance(err, PermissionError):
        return f"access denied: {err}"
    return f"{type(err).__name__}: {err}"
