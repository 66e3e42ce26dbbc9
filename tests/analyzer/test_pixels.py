"""The compiled pixel kernel and the numpy implementation give the same sums, integer for
integer, and a missing kernel is said once."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pytest
from PIL import Image

from analyzer import pixels
from tests.fixtures import system

needs_kernel = pytest.mark.skipif(
    pixels.KERNEL != "compiled",
    reason="the compiled pixel kernel is not built here: "
           f"`{system.PARTS['c-compiler'].hint}`, then `pip install -e .` again")


def _assert_same(a: pixels.PixelSums, b: pixels.PixelSums) -> None:
    for field in dataclasses.fields(pixels.PixelSums):
        x, y = getattr(a, field.name), getattr(b, field.name)
        if isinstance(x, np.ndarray):
            assert x.shape == y.shape and np.array_equal(x, y), field.name
        else:
            assert x == y, field.name


def _random_images() -> list[Image.Image]:
    rng = np.random.default_rng(7)
    sizes = [(3, 3), (4, 5), (31, 40), (32, 32), (33, 37), (35, 34), (61, 123), (240, 320),
             (97, 513), (5, 1000)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for h, w in sizes]
    # Smooth content with flat runs (equal neighbours), and a photo-like JPEG round trip.
    y, x = np.mgrid[0:120, 0:160]
    smooth = np.stack([x * 1.5, y * 2.0, (x + y) * 0.7], -1).clip(0, 255).astype(np.uint8)
    images.append(Image.fromarray(smooth))
    images.append(Image.fromarray(np.zeros((50, 60, 3), np.uint8)))
    images.append(Image.fromarray(np.full((50, 60, 3), 255, np.uint8)))
    return images


@needs_kernel
def test_compiled_sums_equal_the_numpy_sums() -> None:
    for img in _random_images():
        _assert_same(pixels.pixel_sums(img), pixels.numpy_pixel_sums(img))


@needs_kernel
def test_copied_pixels_give_the_same_sums_as_pillows_own_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Pillow cannot lend its pixel memory (4-byte pixels), the kernel reads a 3-byte
    copy: same sums."""
    images = _random_images()
    lent = [pixels.pixel_sums(img) for img in images]
    assert pixels._rgbx_export(images[0]) is not None
    monkeypatch.setattr(pixels, "_rgbx_export", lambda rgb: None)
    for img, sums in zip(images, lent, strict=True):
        _assert_same(pixels.pixel_sums(img), sums)


@needs_kernel
def test_compiled_luma_is_pillows_for_a_million_colours() -> None:
    """The kernel's RGB -> luma is Pillow's convert("L"), checked through the luma
    histogram on 2**20 random colours plus the corners of the RGB cube."""
    rng = np.random.default_rng(3)
    colours = rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    colours[0, :8] = [[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)]
    img = Image.fromarray(colours)
    expected = np.asarray(img.convert("L").histogram(), dtype=np.int64)
    assert np.array_equal(pixels.pixel_sums(img).luma_hist, expected)


@needs_kernel
def test_images_the_kernel_cannot_take_fall_back_to_numpy() -> None:
    """Slivers (under 3 px a side) and very wide images go through numpy, same as ever."""
    rng = np.random.default_rng(5)
    for h, w in [(1, 1), (2, 50), (50, 2), (3, 8193)]:
        img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        _assert_same(pixels.pixel_sums(img), pixels.numpy_pixel_sums(img))


@needs_kernel
def test_a_declining_kernel_leaves_the_image_to_numpy() -> None:
    """The kernel declines what it cannot sum exactly (here a pixel size it does not know;
    in use, images taller than 2**22 rows or a failed allocation): no sums, no exception."""
    img = _random_images()[5]
    w, h = img.size
    arr = np.ascontiguousarray(img)
    assert pixels._compiled_sums(arr.ctypes.data, 5, h, w, 4) is None
    assert pixels._compiled_sums(arr.ctypes.data, 3, h, w, 4) is not None


def test_kernel_is_built_where_a_compiler_is() -> None:
    """``pip install`` compiles the kernel when a C compiler is present; where one is, a
    missing kernel means the build failed silently (it is optional, so pip goes on)."""
    if system.find("c-compiler") is None:
        system.missing("c-compiler", "no C compiler here: the numpy implementation is the "
                       "one in use")
    if os.environ.get("DRIFTD_PIXEL_KERNEL", "").strip().lower() == "numpy":
        pytest.skip("DRIFTD_PIXEL_KERNEL=numpy asks for the numpy implementation")
    assert pixels.KERNEL == "compiled", (
        "a C compiler is present but analyzer/_pixels.c is not built: reinstall with "
        "`pip install -e .` and read the build output")


def test_a_missing_kernel_is_logged_once(monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(pixels, "_kernel", None)
    monkeypatch.setattr(pixels, "_warned", False)
    monkeypatch.delenv("DRIFTD_PIXEL_KERNEL", raising=False)
    logger = logging.getLogger("analyzer")
    with caplog.at_level(logging.WARNING, logger="analyzer"):
        pixels.warn_if_slow(logger)
        pixels.warn_if_slow(logger)
    messages = [r for r in caplog.records if r.getMessage() == "analysis.pixel_kernel_missing"]
    assert len(messages) == 1
    assert "C compiler" in messages[0].__dict__["detail"]


def test_asking_for_numpy_is_not_warned_about(monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(pixels, "_kernel", None)
    monkeypatch.setattr(pixels, "_warned", False)
    monkeypatch.setenv("DRIFTD_PIXEL_KERNEL", "numpy")
    with caplog.at_level(logging.WARNING, logger="analyzer"):
        pixels.warn_if_slow(logging.getLogger("analyzer"))
    assert not [r for r in caplog.records if r.getMessage() == "analysis.pixel_kernel_missing"]
