"""Exact integer sums over an 8-bit RGB analysis image: what the pixel features are made of.

``pixel_sums(rgb)`` returns a ``PixelSums``: the R, G, B and luma histograms, the sums behind
the luma filters (Laplacian, Immerkær noise, the steps across rows and columns, the 2×2
Haar blocks) and the colour sums over 4×4 box means. ``analyzer.images`` turns them into
features.

There are two implementations with the same results, integer for integer:

- a compiled one, ``_pixels.c``: one pass per quantity over the image, built at install time
  when a C compiler is present (``pip install`` builds it; without a compiler the install
  goes on without it) and loaded with ctypes;
- numpy and Pillow passes, used when the compiled one is missing, for images narrower than
  3 pixels or wider than 8,192, and when ``DRIFTD_PIXEL_KERNEL=numpy`` is set.

``KERNEL`` says which one this process uses (``"compiled"`` or ``"numpy"``). Every sum is an
integer small enough to be exact in float64, so the order of additions does not matter and
both give identical features (tests/analyzer/test_pixels.py).
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

_ENV = "DRIFTD_PIXEL_KERNEL"
_MAX_WIDTH = 8192  # _pixels.c's MAX_WIDTH (it declines taller than MAX_HEIGHT itself)
_LEVELS = np.arange(256, dtype=np.int64)
# _pixels.c's ints[] layout
(_LAP_SUM, _LAP_SQ, _NOISE_ABS, _HAAR_SUM, _HAAR_SQ, _HAAR_BLOCK_SQ, _RG_SUM, _RG_SQ, _YB_SUM,
 _YB_SQ, _BOXES, _N_INTS) = range(12)


@dataclass
class PixelSums:
    """Exact sums over one analysis image of ``height`` × ``width`` pixels.

    ``histogram``: R, G, B pixel counts (3×256); ``luma_hist``: luma (Pillow's RGB → L)
    counts. ``lap_sum``, ``lap_sq``: sum and sum of squares of the 4-neighbour Laplacian of
    luma over the interior pixels; ``noise_abs``: sum of |[1 -2 1] ⊗ [1 -2 1] * luma| over the
    interior (all 0 when there is no interior). ``col_steps[j]``: sum over rows of
    |luma[i, j+1] − luma[i, j]|; ``row_steps[i]``: sum over columns of
    |luma[i+1, j] − luma[i, j]|. ``haar_sum``, ``haar_sq``, ``haar_block_sq``: over the
    even-sized crop, the sums of luma, luma² and (2×2 block sum)². Colour, over the
    ``boxes`` box means of the image reduced 4× as ``Image.reduce(4)`` does (as it is when a
    side is under 32 pixels), with r, g, b the box means: the sums of r − g, (r − g)²,
    r + g − 2b, (r + g − 2b)², and ``saturation_num[v]`` = the sum of max − min over the
    boxes whose max is v.
    """

    height: int
    width: int
    histogram: npt.NDArray[np.int64]
    luma_hist: npt.NDArray[np.int64]
    lap_sum: int
    lap_sq: int
    noise_abs: int
    col_steps: npt.NDArray[np.int64]
    row_steps: npt.NDArray[np.int64]
    haar_sum: int
    haar_sq: int
    haar_block_sq: int
    rg_sum: int
    rg_sq: int
    yb_sum: int
    yb_sq: int
    boxes: int
    saturation_num: npt.NDArray[np.int64]


def colour_box(width: int, height: int) -> int:
    """The box size of the colour statistics: 4, or 1 when a side is under 32 pixels."""
    return 4 if min(width, height) >= 32 else 1


def _numpy_asked() -> bool:
    return os.environ.get(_ENV, "").strip().lower() == "numpy"


def _load_kernel() -> ctypes.CDLL | None:
    if _numpy_asked():
        return None
    here = Path(__file__).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = here / f"_pixels{suffix}"
        if path.is_file():
            try:
                lib = ctypes.CDLL(str(path))
                fn = lib.driftd_pixel_sums
            except (OSError, AttributeError):
                return None
            u8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
            i64 = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
            fn.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                           ctypes.c_int64, u8, i64, i64, i64, i64, i64]
            fn.restype = ctypes.c_int
            return lib
    return None


_kernel = _load_kernel()
KERNEL = "compiled" if _kernel is not None else "numpy"
_warned = False


def warn_if_slow(logger: logging.Logger) -> None:
    """Once per process, log a warning when the compiled kernel is missing (not when
    ``DRIFTD_PIXEL_KERNEL=numpy`` asked for numpy): profiling then takes about 1.3 times as
    long, and a reinstall where a C compiler is present fixes it."""
    global _warned
    if _kernel is None and not _warned and not _numpy_asked():
        _warned = True
        logger.warning("analysis.pixel_kernel_missing", extra={
            "detail": "analyzer/_pixels.c was not compiled at install time (no C compiler?); "
                      "using numpy, same results, slower; reinstall driftd where cc/gcc is "
                      "available to build it"})


class _Scratch(threading.local):
    """Per-thread work buffers, one set per use, reused from image to image of the same size
    (so a night's images do not each allocate and page-fault their own ~2 MB); per thread,
    because the daemon may profile in a thread."""

    def __init__(self) -> None:
        self.sets: dict[str, tuple[tuple[int, int], dict[str, npt.NDArray[Any]]]] = {}

    def get(self, use: str, h: int, w: int,
            make: dict[str, tuple[tuple[int, ...], type[np.generic]]]
            ) -> dict[str, npt.NDArray[Any]]:
        """Buffers named in ``make`` (shape, dtype) for an (h, w) image; ``ones`` is filled
        with ones, the others are left as they are."""
        held = self.sets.get(use)
        if held is None or held[0] != (h, w):
            bufs = {name: (np.ones if name == "ones" else np.empty)(shape, dtype)
                    for name, (shape, dtype) in make.items()}
            held = self.sets[use] = ((h, w), bufs)
        return held[1]


_scratch = _Scratch()


def pixel_sums(rgb: Image.Image) -> PixelSums:
    """``PixelSums`` of an RGB image, by the compiled kernel when it can, else by numpy."""
    w, h = rgb.size
    if _kernel is None or h < 3 or not 3 <= w <= _MAX_WIDTH:
        return numpy_pixel_sums(rgb)
    box = colour_box(w, h)
    exported = _rgbx_export(rgb)
    if exported is not None:
        address, _export = exported  # _export holds Pillow's pixel memory while the kernel runs
        sums = _compiled_sums(address, 4, h, w, box)
    else:
        arr = np.ascontiguousarray(rgb)  # a copy, (h, w, 3)
        sums = _compiled_sums(arr.ctypes.data, 3, h, w, box)
    return sums if sums is not None else numpy_pixel_sums(rgb)


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ``struct ArrowArray`` (a stable ABI)."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p), ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _rgbx_export(rgb: Image.Image) -> tuple[int, object] | None:
    """The address of ``rgb``'s pixels as Pillow stores them (4 bytes a pixel: R, G, B and a
    pad byte; rows back to back), without a copy, and the export that keeps them alive.

    Uses Pillow's Arrow export (a list of 4-byte pixels whose one child array holds the
    bytes). None where Pillow cannot export the image in one piece (before Pillow 11.2, or
    an image bigger than one memory block); the caller copies the pixels instead.
    """
    try:
        schema, array = rgb.__arrow_c_array__()
    except (AttributeError, ValueError, TypeError):
        return None
    arr = ctypes.cast(_capsule_pointer(array, b"arrow_array"),
                      ctypes.POINTER(_ArrowArray)).contents
    w, h = rgb.size
    if arr.n_children != 1 or arr.length != h * w or arr.offset != 0:
        return None
    child = arr.children[0].contents
    if child.n_buffers != 2 or child.length != 4 * h * w or child.offset != 0:
        return None
    return int(child.buffers[1]), (schema, array)


def _compiled_sums(address: int, pixel_size: int, h: int, w: int, box: int
                   ) -> PixelSums | None:
    """Run the kernel over ``h`` rows of ``w`` pixels of ``pixel_size`` bytes at ``address``;
    None if it declines (it cannot get its row-sized work space)."""
    assert _kernel is not None
    bufs = _scratch.get("c", h, w, {
        "luma": ((h * w,), np.uint8), "hist": ((1024,), np.int64),
        "ints": ((_N_INTS,), np.int64), "col": ((w - 1,), np.int64),
        "row": ((h - 1,), np.int64), "sat": ((256,), np.int64),
    })
    hist, ints = bufs["hist"], bufs["ints"]
    status = _kernel.driftd_pixel_sums(address, pixel_size, h, w, box, bufs["luma"], hist,
                                       ints, bufs["col"], bufs["row"], bufs["sat"])
    if status != 0:
        return None
    v = [int(x) for x in ints]
    return PixelSums(
        h, w, hist[:768].reshape(3, 256).copy(), hist[768:].copy(), v[_LAP_SUM], v[_LAP_SQ],
        v[_NOISE_ABS], bufs["col"].copy(), bufs["row"].copy(), v[_HAAR_SUM], v[_HAAR_SQ],
        v[_HAAR_BLOCK_SQ], v[_RG_SUM], v[_RG_SQ], v[_YB_SUM], v[_YB_SQ], v[_BOXES],
        bufs["sat"].copy(),
    )


def _exact_sum(x: npt.NDArray[np.float32]) -> int:
    """Sum of a float32 array of integers, in float64 (exact below 2**53)."""
    return int(np.add.reduce(x, dtype=np.float64))


def numpy_pixel_sums(rgb: Image.Image) -> PixelSums:
    """``PixelSums`` by numpy and Pillow passes (any size, 1×1 included)."""
    w, h = rgb.size
    histogram = np.asarray(rgb.histogram(), dtype=np.int64).reshape(3, 256)
    luma_img = rgb.convert("L")
    luma_hist = np.asarray(luma_img.histogram(), dtype=np.int64)
    luma8 = np.asarray(luma_img)
    sums = PixelSums(h, w, histogram, luma_hist, 0, 0, 0, np.zeros(0, np.int64),
                     np.zeros(0, np.int64), 0, 0, 0, 0, 0, 0, 0, 0, np.zeros(256, np.int64))
    if h >= 3 and w >= 3:
        _filter_sums(luma8, sums)
    else:  # a sliver: no interior pixel for the second-order filters
        luma = luma8.astype(np.int64)
        sums.col_steps = np.abs(np.diff(luma, axis=1)).sum(axis=0)
        sums.row_steps = np.abs(np.diff(luma, axis=0)).sum(axis=1)
    _haar_sums(luma8, sums)
    box = colour_box(w, h)
    small = rgb.reduce(box) if box > 1 else rgb
    r, g, b = np.asarray(small, dtype=np.int64).reshape(-1, 3).T
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    sums.saturation_num = np.bincount(high, weights=high - low, minlength=256).astype(np.int64)
    rg, yb = r - g, r + g - 2 * b
    sums.rg_sum, sums.rg_sq = int(rg.sum()), int(rg @ rg)
    sums.yb_sum, sums.yb_sq = int(yb.sum()), int(yb @ yb)
    sums.boxes = int(r.size)
    return sums


def _filter_sums(luma8: npt.NDArray[np.uint8], sums: PixelSums) -> None:
    """The Laplacian, noise and step sums of an (h, w) luma, h, w >= 3.

    Every filter is a difference of the *flattened* image with a shifted copy of itself
    (shift 1 = the right neighbour, shift w = the one below), one contiguous pass each. The
    horizontal ones also pair the last pixel of a row with the first of the next: those
    wrapped columns are zeroed before summing. Every value is an integer of at most 4080 in
    magnitude, exact in float32; sums are taken in float64, exact too.
    """
    h, w = luma8.shape
    size = h * w
    m = size - 2 * w
    bufs = _scratch.get("numpy", h, w, {"all": ((6, size), np.float32),
                                        "ones": ((size,), np.float32)})
    img, dx, d2x, dy, tmp, lap = bufs["all"]
    ones = bufs["ones"]
    np.copyto(img, luma8.reshape(-1))
    # dx[k] = I[k+1] - I[k]: row i's column w-1 wraps (garbage).
    np.subtract(img[1:], img[:-1], out=dx[:-1])
    dx[-1] = 0.0
    # d2x[k] = I[k] - 2 I[k+1] + I[k+2], centred on k+1: columns w-2, w-1 wrap.
    np.subtract(dx[1:], dx[:-1], out=d2x[:-1])
    d2x[-1] = 0.0
    # dy[k] = I[k+w] - I[k]; d2y[k] = dy[k+w] - dy[k], centred on k+w (kept in tmp).
    np.subtract(img[w:], img[:-w], out=dy[:size - w])
    d2y = np.subtract(dy[w:size - w], dy[:m], out=tmp[:m])
    # Laplacian centred on c = w..size-w-1 (rows 1..h-2): d2x[c-1] + d2y[c-w].
    np.add(d2x[w - 1:size - w - 1], d2y, out=lap[:m])
    lap2d = lap[:m].reshape(h - 2, w)
    lap2d[:, 0] = 0.0  # column 0 and w-1 are not interior
    lap2d[:, -1] = 0.0
    sums.lap_sum = _exact_sum(lap[:m])
    np.multiply(lap[:m], lap[:m], out=lap[:m])  # <= 1020², still exact in float32
    sums.lap_sq = _exact_sum(lap[:m])
    # Immerkær: the vertical [1 -2 1] of d2x, centred on d2x[c-1] for c in rows 1..h-2.
    np.subtract(d2x[w:], d2x[:-w], out=tmp[:size - w])
    second = np.subtract(tmp[w:size - w], tmp[:m], out=lap[:m])
    np.abs(second, out=second)
    second.reshape(h - 2, w)[:, -2:] = 0.0  # d2x's wrapped columns
    sums.noise_abs = _exact_sum(second)
    np.abs(dx, out=dx)
    np.abs(dy[:size - w], out=dy[:size - w])
    # Column and row sums of at most 255 * side: exact in float32 below 2**24.
    exact32 = 255 * max(h, w) < 2**24
    cols = ones[:h] @ dx.reshape(h, w) if exact32 else dx.reshape(h, w).sum(0, np.float64)
    rows = (dy[:size - w].reshape(h - 1, w) @ ones[:w] if exact32
            else dy[:size - w].reshape(h - 1, w).sum(1, np.float64))
    sums.col_steps = cols[:-1].astype(np.int64)
    sums.row_steps = rows.astype(np.int64)


def _haar_sums(luma8: npt.NDArray[np.uint8], sums: PixelSums) -> None:
    """Luma sum, sum of squares and sum of squared 2×2 block sums over the even-sized crop."""
    h, w = (luma8.shape[0] // 2) * 2, (luma8.shape[1] // 2) * 2
    if h == 0 or w == 0:
        return
    if (h, w) == luma8.shape:
        sums.haar_sum = int(_LEVELS @ sums.luma_hist)
        sums.haar_sq = int((_LEVELS * _LEVELS) @ sums.luma_hist)
    else:
        crop = luma8[:h, :w].astype(np.int64)
        sums.haar_sum = int(crop.sum())
        sums.haar_sq = int((crop * crop).sum())
    bufs = _scratch.get("haar", h, w, {"pairs": ((h // 2, w), np.float32),
                                       "blocks": ((h // 2, w // 2), np.float32),
                                       "blocks64": (((h // 2) * (w // 2),), np.float64)})
    pairs, blocks, block = bufs["pairs"], bufs["blocks"], bufs["blocks64"]
    # 2×2 block sums are integers <= 1020, exact in float32; squares summed in float64.
    np.add(luma8[0:h:2, :w], luma8[1:h:2, :w], out=pairs, dtype=np.float32)
    np.add(pairs[:, 0::2], pairs[:, 1::2], out=blocks)
    np.copyto(block, blocks.reshape(-1))
    sums.haar_block_sq = int(np.dot(block, block))
