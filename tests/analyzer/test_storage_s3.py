"""Nights read from object storage: a real S3 server (moto) on 127.0.0.1, through fsspec."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer import DatasetError, Profile
from analyzer.dataset import profile_folder
from analyzer.options import AnalyzerOptions
from analyzer.storage import is_remote, local_path
from tests.fixtures.images import write_images
from tests.fixtures.s3 import FaultyProxy, S3Server

BUCKET = "nights"
ROOT = Path(__file__).resolve().parents[2]


def options(endpoint: str, workers: int = 1, **extra: Any) -> AnalyzerOptions:
    """Botocore's own retries off: what is retried here is driftd's doing (and s3fs's for
    SlowDown); read_attempts keeps failing tests short."""
    storage = {"endpoint_url": endpoint,
               "config_kwargs": {"retries": {"max_attempts": 1, "mode": "standard"}}}
    return AnalyzerOptions(workers=workers, progress="off", storage_options=storage,
                           **extra)


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Path:
    """20 images (one in a subfolder), a hidden upload in progress and a text file, on disk
    and below s3://nights/20261126/."""
    folder = tmp_path_factory.mktemp("night")
    write_images(folder, 19, seed=11, size=(48, 32))
    write_images(folder / "cam2", 1, seed=12, size=(48, 32))
    (folder / ".upload").mkdir()
    (folder / ".upload" / "part.jpg").write_bytes(b"\xff\xd8 partial")
    (folder / "notes.txt").write_text("not an image")
    s3_server.put_folder(BUCKET, "20261126", folder)
    return folder


def same_statistics(a: Profile, b: Profile) -> None:
    assert a.image_count == b.image_count
    for name in a.features:
        assert a.moments[name].to_dict() == b.moments[name].to_dict()
    np.testing.assert_array_equal(a.sample_keys, b.sample_keys)
    np.testing.assert_array_equal(a.sample_values, b.sample_values)
    np.testing.assert_array_equal(a.histograms, b.histograms)
    assert {k: v.counts for k, v in a.categories.items()} == {
        k: v.counts for k, v in b.categories.items()}


class TestReadingANightFromS3:
    def test_a_prefix_profiles_like_the_same_local_folder(
            self, night: Path, s3_proxy: FaultyProxy) -> None:
        """Listing (recursive, hidden keys and non-images skipped) and reads give the local
        folder's statistics exactly, and the report names files by their key."""
        local = profile_folder(night, AnalyzerOptions(workers=1, progress="off"))
        remote = profile_folder(f"s3://{BUCKET}/20261126", options(s3_proxy.endpoint))
        assert remote.image_count == 20 and remote.total_files == 20
        same_statistics(local, remote)
        assert remote.data_dir == f"s3://{BUCKET}/20261126"
        assert remote.categories["format"].examples["JPEG"][0] == "cam2/img_00000.jpg"
        assert remote.extremes["brightness"].low[0][1].startswith(f"s3://{BUCKET}/20261126/")
        gets = [p for m, p in s3_proxy.requests if m == "GET" and "?" not in p]
        assert len(gets) == 20  # one GET per image, nothing fetched twice

    def test_pool_workers_read_the_prefix_too(self, night: Path, s3_proxy: FaultyProxy) -> None:
        """With 2 fork-server workers the profile is the same as in one process."""
        one = profile_folder(f"s3://{BUCKET}/20261126", options(s3_proxy.endpoint))
        two = profile_folder(f"s3://{BUCKET}/20261126",
                             options(s3_proxy.endpoint, workers=2, chunk_size=4))
        same_statistics(one, two)

    def test_a_missing_prefix_is_a_dataset_error_naming_it(self, s3_proxy: FaultyProxy) -> None:
        """A night that is not there fails like a missing folder, naming the URL."""
        with pytest.raises(DatasetError, match=r"s3://nights/20991231.*does not exist"):
            profile_folder(f"s3://{BUCKET}/20991231", options(s3_proxy.endpoint))


    def test_credentials_set_after_the_fork_server_started_reach_the_workers(
            self, night: Path, s3_proxy: FaultyProxy, tmp_path: Path) -> None:
        """A fresh process profiles a local folder with 2 workers (the fork server starts
        without AWS credentials), then gets credentials and profiles the S3 night: its
        workers read with them."""
        write_images(tmp_path / "local", 4, seed=1, size=(16, 16))
        code = (
            "import json, os, sys\n"
            "from analyzer.dataset import profile_folder\n"
            "from analyzer.options import AnalyzerOptions\n"
            "opts = lambda **kw: AnalyzerOptions(workers=2, chunk_size=2, progress='off', **kw)\n"
            "for key in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY'):\n"
            "    os.environ.pop(key, None)\n"
            "profile_folder(sys.argv[1], opts())\n"
            "os.environ.update(AWS_ACCESS_KEY_ID='testing', AWS_SECRET_ACCESS_KEY='testing')\n"
            "p = profile_folder(sys.argv[2], opts(storage_options={'endpoint_url': sys.argv[3]}))\n"
            "print(json.dumps({'images': p.image_count,\n"
            "                  'unreadable': p.issues['unreadable'].count}))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "local"), f"s3://{BUCKET}/20261126",
             s3_proxy.endpoint], cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"})
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout.strip().splitlines()[-1]) == {"images": 20,
                                                                    "unreadable": 0}


class TestFaults:
    def test_server_errors_are_retried_and_the_night_is_complete(
            self, night: Path, s3_proxy: FaultyProxy) -> None:
        """Every third GET answered 500: driftd retries them and misses no image."""
        s3_proxy.fail_every(3, 500)
        profile = profile_folder(f"s3://{BUCKET}/20261126", options(s3_proxy.endpoint))
        assert s3_proxy.injected, "the proxy injected no error"
        assert profile.image_count == 20
        assert profile.issues["unreadable"].count == 0

    def test_throttling_is_retried(self, night: Path, s3_proxy: FaultyProxy) -> None:
        """Every second GET answered 503 SlowDown: the night still has every image."""
        s3_proxy.fail_every(2, 503)
        profile = profile_folder(f"s3://{BUCKET}/20261126", options(s3_proxy.endpoint))
        assert len(s3_proxy.injected) >= 10
        assert profile.image_count == 20

    def test_an_object_that_always_fails_is_counted_not_fatal(
            self, night: Path, s3_proxy: FaultyProxy) -> None:
        """One key answering 500 every time: after read_attempts it is one unreadable file,
        named, and the other 19 images are profiled."""
        s3_proxy.fail_key("20261126/img_00003.jpg", 500)
        profile = profile_folder(f"s3://{BUCKET}/20261126",
                                 options(s3_proxy.endpoint, read_attempts=3))
        assert profile.image_count == 19
        assert profile.issues["unreadable"].to_dict() == {"count": 1,
                                                          "examples": ["img_00003.jpg"]}
        assert 3 <= len(s3_proxy.injected) <= 6  # ours x (botocore: one retry of a 500)

    def test_an_object_gone_after_the_listing_is_unreadable_without_retries(
            self, night: Path, s3_proxy: FaultyProxy) -> None:
        """404 for a listed key (deleted meanwhile): counted once, never retried."""
        s3_proxy.fail_key("20261126/img_00005.jpg", 404)
        profile = profile_folder(f"s3://{BUCKET}/20261126", options(s3_proxy.endpoint))
        assert profile.issues["unreadable"].examples == ["img_00005.jpg"]
        assert len(s3_proxy.injected) == 1


class TestLocations:
    def test_file_urls_and_paths_are_local(self, tmp_path: Path) -> None:
        """file:// and plain paths take the local fast path; s3:// does not."""
        assert not is_remote(f"file://{tmp_path}") and not is_remote(str(tmp_path))
        assert is_remote("s3://bucket/x") and is_remote("gs://bucket/x")
        assert local_path(f"file://{tmp_path}") == tmp_path
        write_images(tmp_path, 3, seed=1, size=(16, 16))
        profile = profile_folder(f"file://{tmp_path}", AnalyzerOptions(workers=1,
                                                                       progress="off"))
        assert profile.image_count == 3

    @pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None,
                        reason="gcsfs is installed")
    def test_a_missing_storage_package_names_the_extra_to_install(self) -> None:
        """gs:// without gcsfs: the error says pip install 'driftd[gcs]'."""
        with pytest.raises(DatasetError, match=r"driftd\[gcs\]"):
            profile_folder("gs://bucket/20261126", AnalyzerOptions(workers=1))
