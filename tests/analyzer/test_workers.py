"""The profiling worker processes: safe from a script's top level, stoppable when stuck, and
gone when their caller is killed.

Each test drives a real child interpreter (under a timeout, so a regression fails instead of
hanging the suite) that profiles a real folder with two worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fixtures.images import write_images

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 120
"""Generous: a child that has not finished by then is stuck, not slow."""

TOP_LEVEL_SCRIPT = """\
import sys
from analyzer import DatasetAnalyzer

print("top level ran")
baseline = DatasetAnalyzer(sys.argv[1], workers=2, chunk_size=4, progress="off").analyze()
print(baseline["dataset_info"]["image_count"])
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


class TestTopLevelScript:
    """Workers never run the caller's main module: no ``if __name__ == "__main__":`` needed."""

    def test_script_file_without_main_guard_runs_once(self, tmp_path: Path) -> None:
        """``python nightly.py``: the script's top level runs once, the workers do the work."""
        write_images(tmp_path / "night", 20, seed=0, size=(16, 16))
        (tmp_path / "nightly.py").write_text(TOP_LEVEL_SCRIPT, encoding="utf-8")
        done = subprocess.run([sys.executable, "nightly.py", "night"], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["top level ran", "20"]

    def test_module_run_with_dash_m_without_main_guard_runs_once(self, tmp_path: Path) -> None:
        """``python -m nightly`` (the main module sent by name) is not imported again either."""
        write_images(tmp_path / "night", 20, seed=0, size=(16, 16))
        (tmp_path / "nightly.py").write_text(TOP_LEVEL_SCRIPT, encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "nightly", "night"], cwd=tmp_path,
                              env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == ["top level ran", "20"]


STUCK_WORKERS = """\
import json, multiprocessing, os, signal, sys
from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions

class Stop(Exception):
    pass

frozen = []

def progress(done, total):
    if not frozen:  # freeze every worker: from now on no chunk ever finishes
        frozen.extend(p.pid for p in multiprocessing.active_children())
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        return
    raise Stop  # the caller's stop request, as the daemon's SIGTERM handler makes it

try:
    profile_folder(sys.argv[1], AnalyzerOptions(workers=2, chunk_size=1, progress="off",
                                                progress_callback=progress))
except Stop:
    pass

def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False

print(json.dumps({"frozen": len(frozen), "left": [p for p in frozen if running(p)]}))
"""


def test_stop_request_ends_a_run_whose_workers_are_stuck(tmp_path: Path) -> None:
    """Workers that never answer (stopped, like one stuck in a read) do not keep the run:
    the caller's callback still gets its say, and the workers are killed, not awaited."""
    write_images(tmp_path, 60, seed=0, size=(16, 16))
    done = subprocess.run([sys.executable, "-c", STUCK_WORKERS, str(tmp_path)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"frozen": 2, "left": []}


SLOW_CALLER = """\
import sys, time
from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions

def progress(done, total):
    if done == 1:
        print("working", flush=True)
    time.sleep(0.05)  # a slow consumer: the run lasts long enough to be killed mid-way

profile_folder(sys.argv[1], AnalyzerOptions(workers=2, chunk_size=1, progress="off",
                                            progress_callback=progress))
print("finished", flush=True)
"""


def _process_table() -> dict[int, tuple[int, str]]:
    """``pid -> (parent pid, state)`` of every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            table[int(entry)] = (int(fields[1]), fields[0])
    return table


def _descendants(root: int) -> set[int]:
    table = _process_table()
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def _running(pids: set[int]) -> set[int]:
    table = _process_table()
    return {pid for pid in pids if pid in table and table[pid][1] not in "ZX"}


def test_sigkill_of_the_caller_leaves_no_process_behind(tmp_path: Path) -> None:
    """SIGKILL of a profiling process: its workers, the fork server and the resource tracker
    all end within seconds (none is left waiting, re-parented to init)."""
    write_images(tmp_path, 400, seed=0, size=(16, 16))
    caller = subprocess.Popen([sys.executable, "-c", SLOW_CALLER, str(tmp_path)], cwd=ROOT,
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        assert caller.stdout is not None
        assert caller.stdout.readline().strip() == "working"
        tree = _descendants(caller.pid)
        # Two workers, the fork server and the resource tracker: the test has something to see.
        assert len(tree) >= 4, _process_table()
        caller.kill()
        caller.wait(timeout=HANG_GUARD_S)
        deadline = time.monotonic() + 20  # a liveness deadline, not a speed requirement
        while _running(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = _running(tree)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
    for pid in left:  # do not leak them into the rest of the suite
        os.kill(pid, signal.SIGKILL)
    assert left == set(), f"still running after SIGKILL of their caller: {sorted(left)}"
