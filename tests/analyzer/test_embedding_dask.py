"""Embeddings and the labelled calibration through the Dask executor: the same profile as the
serial run, byte for byte (shards' embedding samples and calibration counts merge exactly)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from analyzer.accuracy import read_label_rows
from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions
from analyzer.processes import skip_main_in_workers
from tests.fixtures.s3 import require_module

distributed = require_module("distributed", "dask")
ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "demo_classifier.tflite"
IMAGES = sorted((ROOT / "daemon" / "demo" / "images").glob("*.png"))[:120]
SLUGS = ("t-shirt-top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
         "bag", "ankle-boot")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    skip_main_in_workers()
    local = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=40)
    try:
        yield local
    finally:
        local.close()


def test_dask_embeddings_and_calibration_equal_the_serial_run(cluster: Any,
                                                              tmp_path: Path) -> None:
    """120 labelled demo images in shards of 16: embeddings (bottom-64 sample) and the
    calibration counts are the serial run's exactly."""
    folder = tmp_path / "night"
    folder.mkdir()
    rows = []
    for path in IMAGES:
        shutil.copy(path, folder / path.name)
        rows.append(f"{path.name},{SLUGS.index(path.stem.split('_', 1)[1])}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    labels = read_label_rows(tmp_path / "labels.csv")
    serial = profile_folder(folder, AnalyzerOptions(workers=1, progress="off",
                                                    embedding_sample=64), MODEL, None, labels)
    on_dask = profile_folder(folder, AnalyzerOptions(
        workers=2, progress="off", executor="dask", dask_scheduler=cluster.scheduler_address,
        dask_shard_files=16, chunk_size=8, embedding_sample=64), MODEL, None, labels)
    assert serial.embeddings is not None and serial.embeddings.count == 64
    assert serial.calibration is not None and serial.calibration.images == 120
    one, other = serial.to_dict(), on_dask.to_dict()
    assert json.dumps(other["embeddings"]) == json.dumps(one["embeddings"])
    assert other["accuracy_calibration"] == one["accuracy_calibration"]
