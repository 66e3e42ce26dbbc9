"""Profiling folders: bad files are counted and named, bad folders raise distinct errors."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analyzer import DatasetAnalyzer, DatasetError, EmptyDatasetError, executors
from analyzer.dataset import profile_folder
from analyzer.errors import AnalyzerError
from analyzer.images import FEATURES, read_image
from analyzer.options import AnalyzerOptions
from tests.fixtures.images import write_images


def test_bad_files_are_counted_and_named_while_the_rest_is_analysed(tmp_path: Path) -> None:
    """A corrupt JPEG, a zero-byte file and a text file named .jpg do not stop the run."""
    write_images(tmp_path, 30, seed=0, size=(32, 32))
    good = (tmp_path / "img_00000.jpg").read_bytes()
    (tmp_path / "corrupt.jpg").write_bytes(good[:200] + b"\x00" * 50)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not an image")
    (tmp_path / "copy.jpg").write_bytes(good)
    (tmp_path / "_SUCCESS").write_text("")
    baseline = DatasetAnalyzer(tmp_path, workers=1).analyze()
    report = DatasetAnalyzer(tmp_path, workers=1).detect_drift(baseline)
    quality = report["data_quality"]
    issues = quality["issues"]
    assert baseline["dataset_info"]["image_count"] == 31
    assert quality["total_files"] == 34 and quality["analyzed"] == 31
    assert issues["zero_byte"] == {"count": 1, "examples": ["empty.jpg"]}
    bad = issues["unreadable"]["examples"] + issues["truncated"]["examples"]
    assert sorted(bad) == ["corrupt.jpg", "notes.jpg"]
    assert issues["duplicates"] == {"count": 1, "examples": ["img_00000.jpg"]}
    assert quality["severity"] == "medium"


def test_missing_folder_raises_dataset_error(tmp_path: Path) -> None:
    """A folder that does not exist is a DatasetError naming the path."""
    with pytest.raises(DatasetError, match="does not exist"):
        DatasetAnalyzer(tmp_path / "nope").analyze()


def test_empty_folder_raises_empty_dataset_error(tmp_path: Path) -> None:
    """A folder with no image files is an EmptyDatasetError, not an empty report."""
    (tmp_path / "_SUCCESS").write_text("")
    with pytest.raises(EmptyDatasetError, match="holds no image files"):
        DatasetAnalyzer(tmp_path).analyze()


def test_folder_of_only_unreadable_files_raises_empty_dataset_error(tmp_path: Path) -> None:
    """When no file decodes, the error says how many were bad and names the first."""
    (tmp_path / "a.jpg").write_text("nope")
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(EmptyDatasetError, match=r"none of the 2 image files.*a\.jpg"):
        DatasetAnalyzer(tmp_path).analyze()


def test_unknown_option_is_rejected_with_the_allowed_names(tmp_path: Path) -> None:
    """A misspelt option fails at once and lists what is allowed."""
    with pytest.raises(AnalyzerError, match=r"unknown option\(s\) alpah; allowed: .*alpha"):
        DatasetAnalyzer(tmp_path, alpah=0.01)


def test_symlink_outside_the_folder_is_not_followed(tmp_path: Path) -> None:
    """A symlink to an image outside the data folder is counted as unreadable, not read."""
    data = tmp_path / "data"
    write_images(data, 5, seed=0, size=(16, 16))
    outside = write_images(tmp_path / "elsewhere", 1, seed=9, size=(16, 16))[0]
    os.symlink(outside, data / "link.jpg")
    profile = profile_folder(data, AnalyzerOptions(workers=1))
    assert profile.image_count == 5
    assert profile.issues["unreadable"].examples == ["link.jpg"]


def test_worker_processes_give_the_same_profile_as_one_process(tmp_path: Path) -> None:
    """Parallel profiling (2 workers) yields exactly the single-process profile."""
    write_images(tmp_path, 40, seed=4, size=(24, 24))
    one = profile_folder(tmp_path, AnalyzerOptions(workers=1, chunk_size=8)).to_dict()
    two = profile_folder(tmp_path, AnalyzerOptions(workers=2, chunk_size=8)).to_dict()
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)


def test_fork_server_sets_up_the_workers_before_it_forks_them() -> None:
    """The preload ``_parallel`` names imports, and leaves the process set up as a worker:
    one BLAS thread, the collector frozen. A fresh interpreter stands in for the fork
    server (the preload freezes the collector of whatever process imports it)."""
    source = inspect.getsource(executors._parallel)
    preload = re.search(r'set_forkserver_preload\(\["([\w.]+)"\]\)', source)
    assert preload is not None, "the pool no longer names a fork-server preload"
    probe = (
        f"import gc, importlib; importlib.import_module({preload.group(1)!r}); "
        "from analyzer import worker; from threadpoolctl import threadpool_info; "
        "blas = [i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas']; "
        "print(worker._process_prepared, gc.get_freeze_count() > 0, blas)"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True,
                          text=True, timeout=60, check=True)
    prepared, frozen, blas = done.stdout.split(maxsplit=2)
    assert (prepared, frozen) == ("True", "True")
    assert set(json.loads(blas)) <= {1}


def test_progress_callback_sees_every_file(tmp_path: Path) -> None:
    """The progress callback ends at (total, total)."""
    write_images(tmp_path, 12, seed=0, size=(16, 16))
    seen: list[tuple[int, int]] = []
    DatasetAnalyzer(tmp_path, workers=1, chunk_size=5, progress="off",
                    progress_callback=lambda d, t: seen.append((d, t))).analyze()
    assert seen[-1] == (12, 12) and len(seen) == 3


class TestReadImage:
    """Decoding odd but valid images."""

    def _features(self, path: Path) -> dict[str, float]:
        rec = read_image(str(path))
        assert rec.issue is None, rec.detail
        assert rec.values is not None
        return dict(zip(FEATURES, rec.values.tolist(), strict=True))

    def test_exif_orientation_swaps_width_and_height(self, tmp_path: Path) -> None:
        """A 40×20 JPEG tagged 'rotate 90' is reported as 20 wide, 40 high."""
        img = Image.new("RGB", (40, 20), (200, 10, 10))
        exif = Image.Exif()
        exif[0x0112] = 6
        img.save(tmp_path / "r.jpg", exif=exif)
        f = self._features(tmp_path / "r.jpg")
        assert (f["width"], f["height"]) == (20, 40)

    def test_channel_shares_follow_a_colour_cast_not_exposure_or_framing(
            self, tmp_path: Path) -> None:
        """Shares are each channel's part of the light: a cast moves them, dimming or more
        black background does not."""
        pixels = np.zeros((40, 40, 3), dtype=np.uint8)
        pixels[:20] = (200, 100, 100)  # top half tinted red, bottom half black
        Image.fromarray(pixels).save(tmp_path / "a.png")
        Image.fromarray(pixels // 2).save(tmp_path / "dim.png")
        framed = pixels.copy()
        framed[:10] = 0
        Image.fromarray(framed).save(tmp_path / "framed.png")
        cast = pixels.astype(np.float64) * (1.0, 1.0, 0.5)
        Image.fromarray(cast.astype(np.uint8)).save(tmp_path / "cast.png")
        a, dim, framed_f, c = (self._features(tmp_path / n)
                               for n in ("a.png", "dim.png", "framed.png", "cast.png"))
        shares = ("red_share", "green_share", "blue_share")
        assert [a[k] for k in shares] == pytest.approx([0.5, 0.25, 0.25])
        for other in (dim, framed_f):
            assert [other[k] for k in shares] == pytest.approx([0.5, 0.25, 0.25])
        assert [c[k] for k in shares] == pytest.approx([200 / 350, 100 / 350, 50 / 350])

    def test_luma_p99_sees_highlights(self, tmp_path: Path) -> None:
        """The 99th luma percentile is the level of the brightest 1% of pixels."""
        luma = np.full((20, 50), 40, dtype=np.uint8)
        luma[0, :20] = 250  # 2% of the pixels blown out
        Image.fromarray(luma).save(tmp_path / "h.png")
        f = self._features(tmp_path / "h.png")
        assert f["luma_p99"] == 250 and f["brightness"] == pytest.approx(44.2)

    def test_16_bit_grey_png_is_scaled_not_clipped(self, tmp_path: Path) -> None:
        """A 16-bit grey PNG at half scale reads as mid-grey, not white."""
        Image.fromarray(np.full((8, 8), 32768, dtype=np.uint16)).save(tmp_path / "g.png")
        assert self._features(tmp_path / "g.png")["brightness"] == pytest.approx(127.5, abs=1)

    def test_cmyk_and_one_pixel_images_decode(self, tmp_path: Path) -> None:
        """CMYK JPEGs and 1×1 images give finite features."""
        Image.new("CMYK", (10, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
        Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "p.png")
        for name in ("c.jpg", "p.png"):
            assert all(np.isfinite(v) for v in self._features(tmp_path / name).values())

    def test_decompression_bomb_is_unreadable(self, tmp_path: Path) -> None:
        """An image above max_image_pixels is refused, not decoded."""
        Image.new("L", (100, 100)).save(tmp_path / "big.png")
        rec = read_image(str(tmp_path / "big.png"), max_image_pixels=5000)
        assert rec.issue == "unreadable" and "max_image_pixels" in rec.detail

    def test_truncated_jpeg_is_reported_as_truncated(self, tmp_path: Path) -> None:
        """A JPEG cut in half is a 'truncated' issue."""
        path = write_images(tmp_path, 1, seed=0, size=(64, 64))[0]
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        assert read_image(str(path)).issue == "truncated"

    @pytest.mark.parametrize("name, keep", [("cut.jpg", 300), ("cut.png", 40), ("cut.gif", 20)])
    def test_image_cut_inside_its_headers_is_truncated(self, tmp_path: Path, name: str,
                                                       keep: int) -> None:
        """A file that starts like an image but ends in its headers is 'truncated'."""
        Image.new("RGB", (600, 400), (90, 120, 150)).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[:keep])
        rec = read_image(str(tmp_path / name))
        assert rec.issue == "truncated", rec.detail

    def test_text_named_like_an_image_is_unreadable_not_truncated(self, tmp_path: Path) -> None:
        """A CSV saved as .jpg has no image signature: it is 'unreadable'."""
        (tmp_path / "notes.jpg").write_text("id,label\n1,cat\n")
        assert read_image(str(tmp_path / "notes.jpg")).issue == "unreadable"

    def test_filter_features_match_their_textbook_definitions(self, tmp_path: Path) -> None:
        """Sharpness, noise, Haar detail share and blockiness equal the plain 2-D formulas."""
        rng = np.random.default_rng(3)
        grey = np.clip(rng.normal(120, 40, (45, 67)), 0, 255).astype(np.uint8)
        Image.fromarray(grey).save(tmp_path / "g.png")
        f = self._features(tmp_path / "g.png")
        x = grey.astype(np.float64)
        lap = x[1:-1, :-2] + x[1:-1, 2:] + x[:-2, 1:-1] + x[2:, 1:-1] - 4 * x[1:-1, 1:-1]
        d2x = x[:, :-2] - 2 * x[:, 1:-1] + x[:, 2:]
        second = d2x[:-2] - 2 * d2x[1:-1] + d2x[2:]
        noise = np.sqrt(np.pi / 2) * np.abs(second).sum() / (6 * 43 * 65)
        e = x[:44, :66]
        a, b, c, d = e[0::2, 0::2], e[0::2, 1::2], e[1::2, 0::2], e[1::2, 1::2]
        detail = ((a - b + c - d) ** 2 + (a + b - c - d) ** 2 + (a - b - c + d) ** 2).sum() / 4
        assert f["sharpness"] == pytest.approx(lap.var(), rel=1e-5)
        assert f["noise_level"] == pytest.approx(noise, rel=1e-5)
        assert f["high_freq_energy"] == pytest.approx(detail / ((e - e.mean()) ** 2).sum(),
                                                      rel=1e-6)
        ratios = []
        for steps in (np.abs(np.diff(x, axis=1)).mean(axis=0), np.abs(np.diff(x, axis=0)).mean(1)):
            grid = (np.arange(steps.size) + 1) % 8 == 0
            ratios.append(steps[grid].mean() / steps[~grid].mean())
        assert f["blockiness"] == pytest.approx(np.mean(ratios), rel=1e-6)
