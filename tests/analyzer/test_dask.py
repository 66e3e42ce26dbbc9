"""The Dask executor: the same profile as the local pool, bit for bit, and workers that die.

One ``LocalCluster`` (2 single-threaded worker processes, Dask's allowed-failures = 1) serves
the module; the executor reaches it by its address, as a deployment reaches its scheduler.
Workers are killed for real (``os._exit`` from a worker plugin when a given shard starts),
so what is tested is Dask's rescheduling and driftd's handling of a shard that never ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions
from analyzer.processes import skip_main_in_workers
from tests.fixtures.images import write_images
from tests.fixtures.s3 import require_module

distributed = require_module("distributed", "needs the dask extra: pip install -e '.[test,dask]'")

SHARD = 8


_WorkerPlugin: Any = distributed.WorkerPlugin


class DieOnShard(_WorkerPlugin):  # type: ignore[misc]  # dask.distributed is untyped here
    """Worker plugin: the worker process exits when shard ``index`` starts on it; with a
    ``marker`` file, only the first time (the marker is created then)."""

    name = "driftd-test-die"

    def __init__(self, index: int, marker: str | None = None) -> None:
        self.index, self.marker = index, marker

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        key = str(key)
        if finish != "executing" or not key.startswith("driftd-shard-"):
            return
        if not key.endswith(f"-{self.index}"):
            return
        if self.marker is not None:
            if os.path.exists(self.marker):
                return
            Path(self.marker).touch()
        os._exit(1)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A LocalCluster of 2 worker processes; a shard whose worker dies twice is given up.
    Worker saturation 1.0: a worker holds only the task it runs, so a killed worker takes
    no queued shard down with it."""
    import dask

    skip_main_in_workers()
    with dask.config.set({"distributed.scheduler.allowed-failures": 1,
                          "distributed.scheduler.worker-saturation": 1.0}):
        local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=40)
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def client(cluster: Any) -> Iterator[Any]:
    """A client of the module's cluster; worker plugins registered by a test are removed."""
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as c:
        yield c
        with contextlib.suppress(ValueError, KeyError):  # the test registered none
            c.unregister_worker_plugin(DieOnShard.name)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 images over 8 shards of 8, a duplicate in another shard, a zero-byte and a
    truncated file."""
    folder = tmp_path_factory.mktemp("dask-night")
    write_images(folder, 60, seed=21, size=(40, 30))
    shutil.copy(folder / "img_00002.jpg", folder / "img_00055_copy.jpg")
    (folder / "img_00030_empty.jpg").write_bytes(b"")
    data = (folder / "img_00040.jpg").read_bytes()
    (folder / "img_00041_cut.jpg").write_bytes(data[: len(data) // 3])
    return folder


def dask_options(cluster: Any, **extra: Any) -> AnalyzerOptions:
    return AnalyzerOptions(workers=2, progress="off", executor="dask",
                           dask_scheduler=cluster.scheduler_address, dask_shard_files=SHARD,
                           dask_split_every=3, chunk_size=3, **extra)


def as_json(profile: Any) -> str:
    return json.dumps(profile.to_dict(), sort_keys=True)


def test_dask_profile_equals_the_local_profile_exactly(night: Path, cluster: Any) -> None:
    """Moments, counts, sample, histograms, issues (the duplicate across shards included):
    the tree-reduced Dask profile is the serial one, byte for byte as JSON."""
    serial = profile_folder(night, AnalyzerOptions(workers=1, progress="off"))
    pool = profile_folder(night, AnalyzerOptions(workers=2, progress="off", chunk_size=5))
    on_dask = profile_folder(night, dask_options(cluster))
    assert serial.issues["duplicates"].to_dict() == {"count": 1,
                                                     "examples": ["img_00055_copy.jpg"]}
    assert serial.issues["zero_byte"].count == 1 and serial.issues["truncated"].count == 1
    assert as_json(on_dask) == as_json(serial) == as_json(pool)


def test_a_worker_killed_mid_night_is_replaced_and_the_night_completes(
        night: Path, cluster: Any, client: Any, tmp_path: Path) -> None:
    """The worker that starts shard 2 dies (once): Dask reruns the shard elsewhere and the
    night's profile is still exactly the serial one."""
    marker = tmp_path / "died"
    client.register_plugin(DieOnShard(2, str(marker)))
    on_dask = profile_folder(night, dask_options(cluster))
    assert marker.exists(), "no worker was killed"
    serial = profile_folder(night, AnalyzerOptions(workers=1, progress="off"))
    assert as_json(on_dask) == as_json(serial)


def test_a_shard_whose_workers_always_die_is_counted_not_fatal(
        night: Path, cluster: Any, client: Any) -> None:
    """Shard 1 kills every worker that runs it: after Dask's allowed failures its files are
    unreadable (named, with the reason), none is lost silently, and the rest is profiled."""
    client.register_plugin(DieOnShard(1))
    on_dask = profile_folder(night, dask_options(cluster))
    serial = profile_folder(night, AnalyzerOptions(workers=1, progress="off"))
    lost = serial.image_count - on_dask.image_count
    unreadable = on_dask.issues["unreadable"]
    assert 0 < lost <= SHARD and unreadable.count == lost
    # Shard 1 follows shard 0: its first file is the one after shard 0's last.
    assert unreadable.examples[0] == f"img_{lost:05d}.jpg"
    assert on_dask.total_files == serial.total_files
