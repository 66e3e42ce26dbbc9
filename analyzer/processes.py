"""The profiling worker processes: how they start, how they end, and that they end with us.

Workers are forked by a fork server (``multiprocessing``'s ``forkserver`` method): they do not
inherit the caller's threads (the daemon's scheduler), and they share what the server
preloaded (``analyzer.forkserver``). Three things the standard library does not give:

- **The caller's ``__main__`` is not run again in each worker.** ``multiprocessing`` sends a
  new process the path (or module name) of the caller's main script, and the child runs it
  as ``__mp_main__`` before it starts: a script that calls the analyzer at its top level,
  without ``if __name__ == "__main__":``, starts over inside every worker and dies with the
  "bootstrapping phase" RuntimeError. Workers need nothing from ``__main__`` (their function,
  initializer and arguments all live in ``analyzer``), so the processes of
  ``worker_context()`` are sent their preparation data without it. Other processes the
  caller starts are untouched.
- **Workers end with the process that asked for them** (``die_with_parent``). A pool worker
  waits on a task queue whose write end it holds itself, so a parent killed with SIGKILL
  left its workers waiting for ever, and they kept the fork server and the resource tracker
  alive (each exits only once every holder of its pipe is gone).
- **An abandoned pool is ended without waiting for its tasks** (``stop_workers``): a worker
  blocked in a read or busy with a long decode is killed, not joined.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import spawn
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import Any

WORKER_NAME = "analyzer-worker"
"""Name prefix of the worker processes (what ``multiprocessing.current_process().name``
says inside one); the preparation data of processes so named carries no ``__main__``."""

_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")
_MAIN_FREE = (WORKER_NAME, "Dask Worker process")
"""Names of the processes that are sent no ``__main__``: ours, and the workers a Dask
``LocalCluster``'s nannies spawn for the Dask executor (they import what a task needs)."""


class WorkerProcess(ForkServerProcess):
    """A fork-server process named ``analyzer-worker-<n>`` (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name = f"{WORKER_NAME}-{':'.join(str(i) for i in self._identity)}"


class WorkerContext(ForkServerContext):
    """The ``forkserver`` context whose ``Process`` is ``WorkerProcess``."""

    Process = WorkerProcess


_stdlib_preparation_data = spawn.get_preparation_data
_install_lock = threading.Lock()


def _preparation_data(name: str) -> dict[str, Any]:
    """``spawn.get_preparation_data``, less the caller's main module for analyzer workers."""
    data: dict[str, Any] = _stdlib_preparation_data(name)
    if name.startswith(_MAIN_FREE):
        for key in _MAIN_KEYS:
            data.pop(key, None)
    return data


def worker_context() -> WorkerContext:
    """The context the analyzer's process pool starts its workers with.

    Every start method that launches a fresh interpreter builds the preparation data with
    ``multiprocessing.spawn.get_preparation_data(process_name)``; it is wrapped here, once,
    so that only ``WorkerProcess`` names lose the main-module entries.
    """
    skip_main_in_workers()
    return WorkerContext()


def skip_main_in_workers() -> None:
    """Install, once, the wrapper that sends the processes named in ``_MAIN_FREE`` no
    ``__main__`` (also for Dask's spawned workers, before a ``LocalCluster`` starts)."""
    with _install_lock:
        if spawn.get_preparation_data is not _preparation_data:
            spawn.get_preparation_data = _preparation_data


def die_with_parent() -> None:
    """Make this worker end when the process that started it ends, however it ends.

    A daemon thread waits on the parent's sentinel (a pipe whose write end only the parent
    holds; ``multiprocessing`` hands its read end to every child) and exits the process when
    it closes. The parent here is the caller, not the fork server that forked the worker:
    ``PR_SET_PDEATHSIG`` would watch the fork server, which outlives the caller for as long
    as any worker does. The fork server and the resource tracker need no care: each exits
    by itself once the caller and every worker are gone. A worker blocked in a system call
    is ended too (the call releases the GIL the thread needs).
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        multiprocessing.connection.wait([sentinel])
        os._exit(1)  # no clean-up: whoever wanted this worker's results is gone

    threading.Thread(target=watch, name="analyzer-parent-watch", daemon=True).start()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """End ``pool`` at once: kill its workers, drop queued tasks, reap the processes.

    For a pool whose work is abandoned (stop requested, error): ``shutdown(wait=True)`` alone
    would wait for the tasks running, which never end when a worker is stuck.
    """
    kill = getattr(pool, "kill_workers", None)  # Python 3.14+
    if kill is not None:
        kill()
    else:
        # Before 3.14 the worker processes are only reachable through this attribute.
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            if process.is_alive():
                process.kill()
    pool.shutdown(wait=True, cancel_futures=True)
