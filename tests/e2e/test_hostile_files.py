"""Hostile files in a night folder, against the real ``driftd run`` process: a FIFO named
``x.jpg`` (opening it waits for a writer for ever) and a 3 GB sparse ``huge.jpg`` (no disk
used). The night completes with both named as unreadable, the process stays small, and
SIGTERM ends the daemon whether or not a run is under way.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.conftest import D2, D3, Deployment, Nights, events, stop_timeout_s

pytestmark = pytest.mark.slow

HUGE_BYTES = 3 * 1024**3


def add_hostile_files(folder: Path, fifo_name: str = "x.jpg") -> None:
    """A FIFO and a 3 GB sparse file of zeros, both named like images."""
    os.mkfifo(folder / fifo_name)
    with (folder / "huge.jpg").open("wb") as fh:
        fh.truncate(HUGE_BYTES)


def peak_rss_bytes(pid: int) -> int:
    """The process's peak resident set size (``VmHWM``), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "worker-processes"])
def test_fifo_and_huge_file_are_named_unreadable_and_the_night_completes(
    deployment: Deployment, nights: Nights, workers: int
) -> None:
    """The night is analysed and reported; both files are named; SIGTERM then exits 0."""
    d = deployment
    add_hostile_files(d.night(D3, nights.normal))
    daemon = d.start(DRIFTD_ANALYSIS__WORKERS=str(workers))
    finished = daemon.wait_for("run.finished")
    # With one worker the daemon reads every file itself: reading huge.jpg whole would
    # show here as a 3 GB peak.
    peak = peak_rss_bytes(daemon.proc.pid)
    daemon.signal(signal.SIGTERM)
    assert daemon.finish(timeout=stop_timeout_s()) == 0, daemon.output
    d.record(daemon)

    assert (finished["processed"], finished["failed"]) == (1, 0), daemon.output
    quality = d.report(D3)["data_quality"]
    unreadable = quality["issues"]["unreadable"]
    assert (unreadable["count"], sorted(unreadable["examples"])) == (2, ["huge.jpg", "x.jpg"])
    assert quality["analyzed"] == 50 and quality["total_files"] == 52
    assert peak < HUGE_BYTES // 3, f"peak RSS {peak / 2**20:.0f} MiB"
    rejected = [e for e in events("".join(daemon.lines))
                if e["event"] == "dataset.entries_rejected"]
    assert [(e["reason"], e["count"]) for e in rejected] == [("not a regular file (FIFO)", 1)]


def test_sigterm_during_a_night_with_a_fifo_first_exits_zero(
    deployment: Deployment, nights: Nights
) -> None:
    """SIGTERM while the night is being read (the FIFO is the first file): exit 0 within the
    unit's stop timeout, and the folder is either finished or left pending, never failed."""
    d = deployment
    add_hostile_files(d.night(D2, nights.large_drifted), fifo_name="a.jpg")
    daemon = d.start(DRIFTD_ANALYSIS__WORKERS="2", DRIFTD_ANALYSIS__CHUNK_SIZE="4")
    daemon.wait_for("partition.started", partition=D2.isoformat())
    daemon.signal(signal.SIGTERM)
    assert daemon.finish(timeout=stop_timeout_s()) == 0, daemon.output
    d.record(daemon)
    names = [e["event"] for e in events("".join(daemon.lines))]
    assert "daemon.stopped" in names
    assert "partition.failed" not in names
    assert "partition.abandoned" in names or "partition.analyzed" in names
