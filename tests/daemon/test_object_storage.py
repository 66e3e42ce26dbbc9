"""The daemon on object storage: dated prefixes in a real S3 server (moto, 127.0.0.1)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from daemon.config import ConfigError, load_settings
from daemon.scheduler import Daemon
from tests.daemon.conftest import cli_env, driftd
from tests.fixtures.images import write_images
from tests.fixtures.s3 import S3Server

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()

CONFIG = """
[data]
production_root = "s3://{bucket}/production"
baseline = "s3://{bucket}/baseline.json"
state_dir = "var"
settle_seconds = 3600
reports_url = "s3://{reports}/driftd"

[data.storage_options]
endpoint_url = "{endpoint}"

[analysis]
workers = 1

[schedule]
lookback_days = 14

[logging]
format = "json"
"""


class Store:
    """One test's bucket on the S3 server, and the config pointing at it."""

    def __init__(self, server: S3Server, root: Path) -> None:
        self.server, self.root = server, root
        self.bucket = f"prod-{uuid.uuid4().hex[:12]}"
        self.reports = f"reports-{uuid.uuid4().hex[:12]}"
        server.client.create_bucket(Bucket=self.bucket)
        server.client.create_bucket(Bucket=self.reports)
        self.config = root / "config.toml"
        self.config.write_text(CONFIG.format(bucket=self.bucket, reports=self.reports,
                                             endpoint=server.endpoint))

    def night(self, day: date, seed: int, ready: bool = True, n: int = 24) -> None:
        folder = self.root / "local" / f"{day:%Y%m%d}"
        write_images(folder, n, seed, size=(32, 32))
        self.server.put_folder(self.bucket, f"production/{day:%Y%m%d}", folder)
        if ready:
            self.put(f"production/{day:%Y%m%d}/_SUCCESS", b"")

    def put(self, key: str, body: bytes, bucket: str | None = None) -> None:
        self.server.client.put_object(Bucket=bucket or self.bucket, Key=key, Body=body)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.server.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def baseline(self) -> None:
        from analyzer.dataset import DatasetAnalyzer

        folder = write_images(self.root / "validation", 40, 0, size=(32, 32))[0].parent
        profile = DatasetAnalyzer(folder, workers=1, progress="off").analyze()
        self.put("baseline.json", json.dumps(profile).encode())


@pytest.fixture
def store(s3_server: S3Server, tmp_path: Path) -> Store:
    return Store(s3_server, tmp_path)


class TestNightsOnS3:
    def test_dated_prefixes_are_processed_in_order_and_reports_copied(
            self, store: Store, tmp_path: Path) -> None:
        """Two ready nights and an unrelated prefix: both nights are profiled from S3
        against the S3 baseline, oldest first, once; reports land locally and in the
        reports bucket."""
        store.baseline()
        days = [TODAY - timedelta(days=2), TODAY - timedelta(days=1)]
        for seed, day in enumerate(days):
            store.night(day, seed + 1)
        store.put("production/exports/readme.txt", b"not a night")
        daemon = Daemon(load_settings(store.config))
        summary = daemon.run_pending(NOW)
        assert [(r.partition, r.status) for r in summary.results] == [(d, "done") for d in days]
        report = json.loads((tmp_path / "var" / "reports" /
                             f"monitor_report_{days[0]:%Y%m%d}.json").read_text())
        assert report["current_image_count"] == 24
        assert store.keys(store.reports) == sorted(
            f"driftd/monitor_report_{d:%Y%m%d}.{ext}" for d in days for ext in ("json", "html"))
        assert daemon.run_pending(NOW).results == []

    def test_a_prefix_still_being_written_waits_for_its_marker(self, store: Store) -> None:
        """Today's prefix without _SUCCESS, its objects just written: not analysed; once the
        marker is there it is."""
        store.baseline()
        store.night(TODAY, 3, ready=False)
        daemon = Daemon(load_settings(store.config))
        waiting = daemon.run_pending(NOW)
        assert waiting.results == [] and waiting.waiting == [TODAY]
        store.put(f"production/{TODAY:%Y%m%d}/_SUCCESS", b"")
        assert [r.status for r in daemon.run_pending(NOW).results] == ["done"]

    def test_without_a_marker_the_settle_time_uses_object_times(self, store: Store) -> None:
        """No marker: the prefix is ready once its newest object is settle_seconds old."""
        store.baseline()
        store.night(TODAY, 4, ready=False)
        written = datetime.now(timezone.utc)  # the objects' last-modified time (at most)
        daemon = Daemon(load_settings(store.config))
        assert daemon.run_pending(written + timedelta(minutes=59)).waiting == [TODAY]
        later = daemon.run_pending(written + timedelta(minutes=61))
        assert [r.status for r in later.results] == ["done"]

    def test_reports_missed_during_an_outage_are_copied_by_the_next_run(
            self, store: Store, tmp_path: Path) -> None:
        """The reports bucket is missing: the night is still done and its report on disk;
        the run after the bucket exists copies it."""
        store.baseline()
        day = TODAY - timedelta(days=1)
        store.night(day, 5)
        store.server.client.delete_bucket(Bucket=store.reports)
        daemon = Daemon(load_settings(store.config))
        assert [r.status for r in daemon.run_pending(NOW).results] == ["done"]
        assert (tmp_path / "var" / "reports" / f"monitor_report_{day:%Y%m%d}.html").is_file()
        store.server.client.create_bucket(Bucket=store.reports)
        daemon.run_pending(NOW)
        assert len(store.keys(store.reports)) == 2

    def test_baseline_command_writes_the_baseline_to_s3(self, store: Store) -> None:
        """`driftd baseline s3://.../validation` profiles a prefix and writes the baseline
        object [data].baseline names."""
        folder = write_images(store.root / "validation", 30, 7, size=(32, 32))[0].parent
        store.server.put_folder(store.bucket, "validation", folder)
        env = cli_env(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
        done = driftd("--config", str(store.config), "baseline",
                      f"s3://{store.bucket}/validation", env=env)
        assert done.returncode == 0, done.stderr
        assert f"s3://{store.bucket}/baseline.json" in done.stdout
        saved = store.server.client.get_object(Bucket=store.bucket, Key="baseline.json")
        assert json.loads(saved["Body"].read())["dataset_info"]["image_count"] == 30


class TestConfig:
    def test_an_unknown_url_scheme_is_a_config_error_with_its_key(
            self, tmp_path: Path, config_file: Callable[..., Path]) -> None:
        """production_root = "nosuch://x": exit-2 config error naming the key."""
        config = config_file(base=CONFIG.replace('"s3://{bucket}/production"', '"nosuch://x"')
                             .format(bucket="b", reports="r", endpoint="http://127.0.0.1:9"))
        with pytest.raises(ConfigError, match=r"data\.production_root: .*nosuch"):
            load_settings(config)
