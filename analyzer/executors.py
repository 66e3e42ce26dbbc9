"""Who runs the per-image work of a night: this process, a local process pool, or Dask.

An ``Executor`` takes a ``Job`` (the worker config, the empty profile's template, the chunk
size) and the night's ``FileTable``, and returns the night as one ``Shard``. All three run
the same worker code (``analyzer.worker.process_files``) and fold records with the same
``ShardBuilder``, so they give the same profile, bit for bit:

- ``InProcess`` (``workers = 1``): everything in the calling process.
- ``LocalPool`` (the default): ``workers`` processes forked by a fork server
  (``analyzer.processes``); chunks of records come back in file order and are folded here.
- ``DaskExecutor`` (``executor = "dask"``, the ``driftd[dask]`` extra): shards of
  ``shard_files`` files are profiled on a ``dask.distributed`` cluster (a ``LocalCluster``
  of ``workers`` processes when no scheduler address is given) and their profiles
  tree-reduced there, ``split_every`` at a time, in listing order. A worker that dies is
  replaced and its shard rerun by Dask; a shard given up by Dask (its workers died
  ``allowed-failures`` times, 3 by default — a shard queued on a dying worker is charged too)
  runs once more with nothing else in flight, and if its worker dies again it is counted:
  each of its files unreadable with the reason, and the night goes on.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import secrets
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Protocol

from analyzer.builder import (
    ProfileTemplate,
    Shard,
    ShardBuilder,
    failed_shard,
    merge_shards,
)
from analyzer.errors import AnalyzerError
from analyzer.listing import FileTable
from analyzer.processes import (
    die_with_parent,
    skip_main_in_workers,
    stop_workers,
    worker_context,
)
from analyzer.worker import (
    Batch,
    WorkerConfig,
    prepare_worker_process,
    process_files,
    worker_classifier,
)

logger = logging.getLogger("analyzer")

POLL_S = 0.5
"""While waiting for workers, ``waiting()`` is called this often (seconds)."""

EXECUTORS = ("local", "dask")
"""Names of the executors ``make_executor`` builds (the ``executor`` option)."""

Advance = Callable[[int], None]
"""Called with the number of files just done."""
Waiting = Callable[[], None]
"""Called every ``POLL_S`` seconds while waiting; what it raises stops the run."""


@dataclass(frozen=True)
class Job:
    """One night's work: how to read files, what profile to build, how big a chunk is."""

    config: WorkerConfig
    template: ProfileTemplate
    chunk_size: int
    rejected: tuple[tuple[str, str], ...] = ()

    @property
    def root(self) -> str:
        """The prefix of every record's path (local folder or URL)."""
        return self.config.remote.url if self.config.remote else self.config.root

    def start(self, size: int) -> ShardBuilder:
        """A builder for the whole night, holding the listing's rejected entries."""
        builder = ShardBuilder(self.template, self.root, 0, size)
        for path, reason in self.rejected:
            builder.add_rejected(path, reason)
        return builder


class Executor(Protocol):
    """Profiles every file of a ``FileTable``; returns the night as one ``Shard``."""

    def run(self, job: Job, table: FileTable, advance: Advance, waiting: Waiting) -> Shard:
        """Raises ``AnalyzerError`` when the engine itself fails (not for bad files)."""
        ...


class InProcess:
    """Everything in the calling process (``workers = 1``)."""

    def run(self, job: Job, table: FileTable, advance: Advance, waiting: Waiting) -> Shard:
        builder = job.start(table.count)
        classifier = worker_classifier(job.config)
        for chunk in table.chunks(job.chunk_size):
            builder.add_batch(process_files(chunk, job.config, classifier))
            advance(len(chunk))
        return builder.finish()


_pool_config: WorkerConfig | None = None


def _init_pool_worker(config: WorkerConfig, environ: dict[str, str]) -> None:
    global _pool_config
    # The fork server was started with the environment of its first use (say, the
    # daemon's first night) and forks every worker with it: take the caller's current one,
    # where the object store's credentials may have been set since.
    os.environ.clear()
    os.environ.update(environ)
    die_with_parent()
    prepare_worker_process()
    _pool_config = config
    worker_classifier(config)


def _process_chunk(chunk: list[tuple[str, int]]) -> Batch:
    assert _pool_config is not None
    return process_files(chunk, _pool_config, worker_classifier(_pool_config))


@dataclass(frozen=True)
class LocalPool:
    """``workers`` fork-server processes; records come back in file order."""

    workers: int

    def run(self, job: Job, table: FileTable, advance: Advance, waiting: Waiting) -> Shard:
        builder = job.start(table.count)
        chunks = table.chunks(job.chunk_size)
        with closing(_parallel(chunks, self.workers, job.config, waiting)) as batches:
            for batch in batches:
                builder.add_batch(batch)
                advance(len(batch.records))
        return builder.finish()


def _parallel(chunks: Iterator[list[tuple[str, int]]], workers: int, config: WorkerConfig,
              waiting: Waiting) -> Generator[Batch, None, None]:
    """Chunks of records in file order, computed by ``workers`` processes.

    At most two chunks per worker are in flight, so memory stays bounded however many files
    there are. While it waits for a chunk, ``waiting()`` is called every ``POLL_S`` seconds;
    whatever it raises (the daemon's stop request) ends the pool at once, killing workers
    that are still busy, as does closing this generator early. A worker that dies (e.g.
    killed by the OOM killer) raises ``AnalyzerError`` instead of hanging the run.
    """
    # forkserver: workers do not inherit the caller's threads (the daemon's scheduler), and
    # (worker_context) do not run the caller's __main__ again.
    ctx = worker_context()
    # Import and set up the analyzer once in the fork server: workers share those pages
    # (start-up time and memory), instead of each importing numpy/Pillow again.
    ctx.set_forkserver_preload(["analyzer.forkserver"])
    pending: deque[Future[Batch]] = deque()
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_pool_worker,
                               initargs=(config, dict(os.environ)))
    finished = False
    try:
        for part in chunks:
            pending.append(pool.submit(_process_chunk, part))
            if len(pending) >= 2 * workers:
                yield _result(pending.popleft(), waiting)
        while pending:
            yield _result(pending.popleft(), waiting)
        finished = True
    except BrokenProcessPool as err:
        raise AnalyzerError(
            f"a worker process died while profiling ({err}); check memory limits, or run "
            "with workers=1 to see the failing file"
        ) from err
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            stop_workers(pool)


def _result(future: Future[Batch], waiting: Waiting) -> Batch:
    """``future.result()``, calling ``waiting()`` every ``POLL_S`` seconds until it is done."""
    while True:
        try:
            return future.result(timeout=POLL_S)
        except FutureTimeout:
            waiting()


def profile_shard(chunk: list[tuple[str, int]], start: int, job: Job) -> Shard:
    """The shard of the files ``chunk`` at listing positions ``start ..`` (a Dask task)."""
    prepare_worker_process()
    classifier = worker_classifier(job.config)
    builder = ShardBuilder(job.template, job.root, start, len(chunk))
    for offset in range(0, len(chunk), job.chunk_size):
        builder.add_batch(process_files(chunk[offset:offset + job.chunk_size], job.config,
                                        classifier))
    return builder.finish()


def merge_shard_results(*shards: Shard) -> Shard:
    """``merge_shards`` as a Dask task (its arguments arrive as separate values)."""
    return merge_shards(shards)


@dataclass(frozen=True)
class DaskExecutor:
    """Shards on a Dask cluster, tree-reduced there (see the module doc).

    ``scheduler``: a ``tcp://host:8786`` address, or None for a ``LocalCluster`` of
    ``workers`` single-threaded processes on this machine, started for the night.
    """

    scheduler: str | None = None
    workers: int = 1
    shard_files: int = 2048
    split_every: int = 8

    def run(self, job: Job, table: FileTable, advance: Advance, waiting: Waiting) -> Shard:
        try:
            # Imported as Any: dask.distributed is only partly typed.
            dd: Any = importlib.import_module("distributed")
        except ImportError as err:
            raise AnalyzerError(f"the Dask executor needs dask.distributed ({err}); install "
                                "it with pip install 'driftd[dask]'") from err
        cluster: Any = None
        try:
            if self.scheduler:
                client = dd.Client(self.scheduler, timeout=30, set_as_default=False)
            else:
                skip_main_in_workers()
                # Saturation 1.0: a worker is sent only the shard it runs, so a worker that
                # dies takes no queued shard's attempt down with it.
                with importlib.import_module("dask").config.set(
                        {"distributed.scheduler.worker-saturation": 1.0}):
                    cluster = dd.LocalCluster(n_workers=self.workers, threads_per_worker=1,
                                              processes=True, dashboard_address=None,
                                              silence_logs=logging.WARNING)
                client = dd.Client(cluster, set_as_default=False)
        except OSError as err:
            if cluster is not None:
                cluster.close()
            where = self.scheduler or "a local cluster"
            raise AnalyzerError(f"cannot reach the Dask scheduler at {where} ({err}); check "
                                "[analysis] dask_scheduler and that the scheduler runs") from err
        try:
            with client.as_current():  # distributed.wait finds the client this way
                return _DaskRun(client, job, table, self, advance, waiting).run()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


class _DaskRun:
    """One night on a Dask client: bounded submission, ordered tree reduction."""

    def __init__(self, client: Any, job: Job, table: FileTable, options: DaskExecutor,
                 advance: Advance, waiting: Waiting) -> None:
        self.client, self.job, self.table, self.options = client, job, table, options
        self.advance, self.waiting = advance, waiting
        self.token = secrets.token_hex(4)
        self.levels: list[list[Any]] = [[]]
        """levels[0]: finished shard futures in order; levels[i]: merges of level i - 1."""

    def run(self) -> Shard:
        wait: Any = importlib.import_module("distributed").wait
        threads = max(1, sum(self.client.nthreads().values()))
        window = 2 * threads
        # At least 8 shards per worker thread: with fewer, the last shards run while other
        # workers idle (10,000 files in shards of 2048 are 5 shards for 2 workers, 3 + 2).
        even = math.ceil(self.table.count / (8 * threads))
        shard_files = max(self.job.chunk_size, min(self.options.shard_files, even))
        in_flight: dict[Any, tuple[int, int, list[tuple[str, int]]]] = {}
        done: dict[int, Any] = {}
        suspects: dict[int, tuple[int, list[tuple[str, int]]]] = {}
        next_done = 0
        start = 0
        chunks = enumerate(self.table.chunks(shard_files))
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < window:
                    item = next(chunks, None)
                    if item is None:
                        exhausted = True
                        break
                    index, chunk = item
                    future = self.client.submit(profile_shard, chunk, start, self.job,
                                                key=f"driftd-shard-{self.token}-{index}",
                                                pure=False)
                    in_flight[future] = (index, start, chunk)
                    start += len(chunk)
                if not in_flight:
                    break
                try:
                    finished, _ = wait(list(in_flight), timeout=POLL_S,
                                       return_when="FIRST_COMPLETED")
                except TimeoutError:  # distributed.wait raises rather than returning empty
                    self.waiting()
                    continue
                for future in finished:
                    index, first, chunk = in_flight.pop(future)
                    if self._killed(future):
                        # Perhaps only a bystander: a task queued on a worker that another
                        # shard killed is charged with that death too. Retried alone below.
                        suspects[index] = (first, chunk)
                        continue
                    done[index] = future
                    self.advance(len(chunk))
                while next_done in done:
                    self._push(0, done.pop(next_done))
                    next_done += 1
            for index, (first, chunk) in sorted(suspects.items()):
                done[index] = self._alone(index, first, chunk)
                self.advance(len(chunk))
                while next_done in done:
                    self._push(0, done.pop(next_done))
                    next_done += 1
            result: Shard = self._reduce_rest().result()
        except BaseException:  # a stop request, a model error: nothing more to compute
            self.client.cancel(list(in_flight))
            raise
        builder = self.job.start(0)
        return merge_shards([builder.finish(), result])

    @staticmethod
    def _killed(future: Any) -> bool:
        """Whether the shard was given up because its workers kept dying. Any other error
        is the engine's or the model's: raised."""
        if future.status != "error":
            return False
        err = future.exception()
        if not isinstance(err, importlib.import_module("distributed").KilledWorker):
            raise err
        return True

    def _alone(self, index: int, start: int, chunk: list[tuple[str, int]]) -> Any:
        """Run a shard given up with KilledWorker again with nothing else in flight: a shard
        that only shared a dying worker now succeeds; one that kills its worker every time
        is counted unreadable (``_settled``)."""
        wait: Any = importlib.import_module("distributed").wait
        future = self.client.submit(profile_shard, chunk, start, self.job,
                                    key=f"driftd-shard-{self.token}-alone-{index}", pure=False)
        while True:
            try:
                wait([future], timeout=POLL_S)
                break
            except TimeoutError:
                self.waiting()
        return self._settled(future, start, chunk)

    def _settled(self, future: Any, start: int, chunk: list[tuple[str, int]]) -> Any:
        """``future`` when its shard was profiled; else (its workers kept dying) a future of
        the shard counted unreadable."""
        if not self._killed(future):
            return future
        err = future.exception()
        reason = (f"its worker died on every attempt ({type(err).__name__}); the files of "
                  "this shard were not profiled")
        logger.error("analysis.shard_failed", extra={"first": chunk[0][0], "files": len(chunk),
                                                     "error": str(err)})
        shard = failed_shard(self.job.template, self.job.root, start, chunk, reason)
        return self.client.scatter(shard)

    def _push(self, level: int, future: Any) -> None:
        """Add a finished node at ``level``; merge a full group into the level above."""
        if len(self.levels) == level:
            self.levels.append([])
        group = self.levels[level]
        group.append(future)
        if len(group) >= self.options.split_every:
            self.levels[level] = []
            self._push(level + 1, self._merge(level, group))

    def _merge(self, level: int, group: list[Any]) -> Any:
        if len(group) == 1:
            return group[0]
        return self.client.submit(merge_shard_results, *group, pure=False,
                                  key=f"driftd-merge-{self.token}-{level}-{secrets.token_hex(4)}")

    def _reduce_rest(self) -> Any:
        """Merge what is left at every level, lowest first: a level's leftovers come after
        every node of the levels above it in file order."""
        carry: Any = None
        for level in range(len(self.levels)):
            group = self.levels[level]
            nodes = group if carry is None else [*group, carry]
            carry = self._merge(level, nodes) if nodes else carry
        if carry is None:
            return self.client.scatter(failed_shard(self.job.template, self.job.root, 0, [], ""))
        return carry


def make_executor(name: str, workers: int, scheduler: str | None = None,
                  shard_files: int = 2048, split_every: int = 8) -> Executor:
    """The executor called ``name`` (``EXECUTORS``). Raises ``AnalyzerError`` otherwise."""
    if name == "dask":
        return DaskExecutor(scheduler, workers, shard_files, split_every)
    if name != "local":
        raise AnalyzerError(f"option executor={name!r} is unknown; use 'local' or 'dask'")
    return InProcess() if workers <= 1 else LocalPool(workers)
