"""Decoding one image file and reducing it to per-image features.

``read_image(path, ...)`` never raises for a bad file: it returns an ``ImageRecord`` whose
``issue`` says what was wrong (``zero_byte``, ``unreadable``, ``truncated``). For a good file
it holds the continuous features (``FEATURES``, in that order), the categorical ones
(``CATEGORIES``), a 256-bin histogram per R, G, B channel and an 8-byte content digest.

Features are computed on the *analysis image*: the file reduced by the smallest power of two
(1, 2, 4 or 8) that brings its longest side to at most ``max_side`` (for JPEG the reduction
happens in the DCT domain while decoding, which is what makes large photos cheap), after EXIF
orientation, converted to 8-bit RGB. The same rule applies to baseline and current images, so
their features compare like with like; a change of resolution moves the high-frequency
features, which is drift worth reporting. ``width``, ``height`` and ``file_size`` are the
file's true values.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

FEATURES: tuple[str, ...] = (
    "brightness",  # mean luma (ITU-R 601), 0..255
    "contrast",  # RMS contrast: standard deviation of luma, 0..~128
    "luma_p99",  # 99th percentile of luma, 0..255: the highlights (over-exposure moves it)
    "mean_r",  # mean of the red channel, 0..255
    "mean_g",
    "mean_b",
    "saturation",  # mean HSV saturation, 0..1
    "colorfulness",  # Hasler & Süsstrunk colourfulness
    "red_share",  # share of the image's light in red: sum(r) / sum(r + g + b), 0..1
    "green_share",  # (the three sum to 1; 1/3 each for a grey image, 0 for an all-black one)
    "blue_share",
    "sharpness",  # variance of the 4-neighbour Laplacian of luma
    "entropy",  # Shannon entropy of the luma histogram, bits (0..8)
    "noise_level",  # Immerkær's fast noise sigma estimate, luma units
    "high_freq_energy",  # share of luma AC energy in the finest Haar detail bands, 0..1
    "blockiness",  # mean |step| on the 8x8 JPEG grid / mean |step| elsewhere (1 = none)
    "jpeg_quality",  # libjpeg quality estimated from the luma quantisation table; 100 if lossless
    "width",  # true width in pixels after EXIF orientation
    "height",
    "aspect_ratio",  # width / height
    "file_size",  # bytes on disk
)

_QUALITY, _WIDTH, _HEIGHT, _ASPECT, _FILE_SIZE = (
    FEATURES.index(name)
    for name in ("jpeg_quality", "width", "height", "aspect_ratio", "file_size")
)
_LEVELS = np.arange(256, dtype=np.float64)
_AT = {name: i for i, name in enumerate(FEATURES)}

CATEGORIES: tuple[str, ...] = ("format", "mode", "size")

ISSUES: tuple[str, ...] = (
    "unreadable",
    "truncated",
    "zero_byte",
    "duplicates",
    "unexpected_mode",
    "unexpected_size",
)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

# libjpeg's standard luminance quantisation table (quality 50), natural order.
_STD_LUMA_QT = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
     14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
     18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
     49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip
_ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


@dataclass
class ImageRecord:
    """What one file contributed: either an ``issue`` or features.

    ``path`` is the file's path as found; ``digest`` the first 8 bytes of the SHA-1 of its
    bytes, a content fingerprint for duplicates and sample keys (None for zero-byte files;
    SHA-1 because OpenSSL runs it at about twice BLAKE2b's speed). ``values`` follow
    ``FEATURES``; ``categories`` follow ``CATEGORIES``; ``histogram`` is 3×256 pixel counts
    of the analysis image. ``image`` is the analysis image (RGB), kept only while a model
    still has to see it.
    """

    path: str
    issue: str | None = None
    detail: str = ""
    digest: bytes | None = None
    values: npt.NDArray[np.float64] | None = None
    categories: tuple[str, ...] = ()
    histogram: npt.NDArray[np.int64] | None = None
    image: Image.Image | None = field(default=None, repr=False)


def reduction_factor(width: int, height: int, max_side: int) -> int:
    """Smallest power of two in 1..8 that brings ``max(width, height)`` to ``<= max_side``."""
    factor = 1
    while factor < 8 and max(width, height) > max_side * factor:
        factor *= 2
    return factor


def jpeg_quality(quantization: dict[int, list[int]] | None) -> float:
    """libjpeg quality (1..100) estimated from the luma quantisation table; 100.0 if none."""
    if not quantization or 0 not in quantization:
        return 100.0
    table = np.asarray(quantization[0], dtype=np.float64)
    if table.size != 64:
        return 100.0
    # libjpeg scales the standard table by S = 5000/q (q < 50) or 200 - 2q (q >= 50).
    scale = float(np.mean(table * 100.0 / _STD_LUMA_QT))
    quality = 5000.0 / scale if scale > 100.0 else (200.0 - scale) / 2.0
    return float(min(100.0, max(1.0, quality)))


@functools.lru_cache(maxsize=64)
def _jpeg_quality_cached(luma_table: tuple[int, ...]) -> float:
    """``jpeg_quality`` memoised on the luma table (a night's files share a few encoders)."""
    return jpeg_quality({0: list(luma_table)} if luma_table else None)


# Leading bytes of the formats Pillow decodes here. A file that starts with one of them but
# does not decode was cut off (or damaged) on its way: ``truncated``, not "not an image".
_SIGNATURES: tuple[bytes, ...] = (
    b"\xff\xd8",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
)


def has_image_signature(data: bytes) -> bool:
    """Whether ``data`` starts like a JPEG, PNG, GIF, WebP, BMP or TIFF file."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _failure(path: str, data: bytes, err: Exception, digest: bytes) -> ImageRecord:
    """The record of a file Pillow could not open or decode: ``truncated`` when the file
    starts with a known image signature (or the decoder says so), else ``unreadable``."""
    text = str(err) or type(err).__name__
    if isinstance(err, EOFError) or "truncat" in text.lower() or has_image_signature(data):
        return ImageRecord(path, "truncated", f"truncated or damaged image data: {text}", digest)
    return ImageRecord(path, "unreadable", f"not an image: {text}", digest)


def read_image(path: str, *, max_side: int = 512, max_image_pixels: int = 89_478_485,
               keep_image: bool = False) -> ImageRecord:
    """Decode ``path`` and compute its features; never raises for a bad file (see module doc).

    The file is read once: the digest, the decoder and ``file_size`` all use those bytes.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return ImageRecord(path, "unreadable", f"cannot read: {err.strerror or err}")
    if not data:
        return ImageRecord(path, "zero_byte", "file is empty")
    digest = hashlib.sha1(data, usedforsecurity=False).digest()[:8]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            return ImageRecord(path, "unreadable", f"decompression bomb: {err}", digest)
        except Exception as err:  # Pillow raises many types for garbage input
            return _failure(path, data, err, digest)
        width, height = img.size
        if width * height > max_image_pixels:
            return ImageRecord(
                path, "unreadable",
                f"{width}x{height} exceeds max_image_pixels={max_image_pixels}", digest,
            )
        fmt = (img.format or "unknown").upper()
        mode = img.mode
        quality = 100.0
        if fmt == "JPEG":
            tables = getattr(img, "quantization", None)
            quality = _jpeg_quality_cached(tuple(tables.get(0, ())) if tables else ())
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
        factor = reduction_factor(width, height, max_side)
        try:
            if fmt == "JPEG" and factor > 1:
                img.draft(None, (math.ceil(width / factor), math.ceil(height / factor)))
            img.load()
        except (EOFError, OSError, SyntaxError, ValueError) as err:
            return _failure(path, data, err, digest)
        except Exception as err:  # a decoder bug on hostile input must not stop the night
            return ImageRecord(path, "unreadable", f"{type(err).__name__}: {err}", digest)
    try:
        factor = max(1, round(width / img.size[0]))
        rgb = to_rgb8(img)
        rest = reduction_factor(*rgb.size, max_side)
        if rest > 1:
            rgb = rgb.reduce(rest)
            factor *= rest
        if orientation in (5, 6, 7, 8):
            width, height = height, width
        if orientation in _TRANSPOSE:
            rgb = rgb.transpose(_TRANSPOSE[orientation])
    except Exception as err:
        return ImageRecord(path, "unreadable", f"cannot convert mode {mode}: {err}", digest)
    histogram = np.asarray(rgb.histogram(), dtype=np.int64)
    values = _features(rgb, factor, histogram)
    values[_QUALITY] = quality
    values[_WIDTH] = width
    values[_HEIGHT] = height
    values[_ASPECT] = width / height
    values[_FILE_SIZE] = len(data)
    return ImageRecord(
        path, None, "", digest, values, (fmt, mode, f"{width}x{height}"), histogram,
        rgb if keep_image else None,
    )


def to_rgb8(img: Image.Image) -> Image.Image:
    """8-bit RGB version of ``img``: 16-bit and float greys are scaled, not clipped."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        arr = np.asarray(img).astype(np.float64)
        peak = float(arr.max()) if arr.size else 0.0
        if img.mode == "F" and peak <= 1.0:
            arr = arr * 255.0
        elif peak > 255.0:
            arr = arr * (255.0 / 65535.0)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return img if img.mode == "RGB" else img.convert("RGB")


class _Scratch(threading.local):
    """Per-thread float32 work buffers for one analysis-image shape.

    Reused from image to image, so the feature code does not allocate (and page-fault in)
    ~2 MB of temporaries per image; per thread, because the daemon may profile in a thread.
    """

    shape: tuple[int, int] = (0, 0)
    bufs: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
    ones: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)

    def get(self, h: int, w: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Six flat buffers of ``h * w`` float32 (as rows of one array) and a ones vector."""
        if self.shape != (h, w):
            self.shape = (h, w)
            self.bufs = np.empty((6, h * w), dtype=np.float32)
            self.ones = np.ones(h * w, dtype=np.float32)
        return self.bufs, self.ones

    haar_shape: tuple[int, int] = (0, 0)
    pairs: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
    blocks: npt.NDArray[np.float32] = np.zeros((0, 0), dtype=np.float32)
    blocks64: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)

    def haar(self, h: int, w: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32],
                                            npt.NDArray[np.float64]]:
        """Buffers for the 2×2 block sums of an even (h, w) crop: row pairs (h/2, w),
        blocks (h/2, w/2) and the blocks again as flat float64."""
        if self.haar_shape != (h, w):
            self.haar_shape = (h, w)
            self.pairs = np.empty((h // 2, w), dtype=np.float32)
            self.blocks = np.empty((h // 2, w // 2), dtype=np.float32)
            self.blocks64 = np.empty((h // 2) * (w // 2), dtype=np.float64)
        return self.pairs, self.blocks, self.blocks64


_scratch = _Scratch()


def _features(rgb: Image.Image, factor: int, histogram: npt.NDArray[np.int64]
              ) -> npt.NDArray[np.float64]:
    """Pixel features of the analysis image, in ``FEATURES`` order (geometry left at 0).

    ``histogram`` is ``rgb.histogram()`` (3×256). Brightness, contrast, the luma percentile,
    entropy, channel means and shares come exactly from the luma and channel histograms.
    Colour statistics (saturation, colourfulness) are low-frequency, so they are computed on
    a further 4× box-reduced copy (images of at least 32 px a side; smaller ones as they are).
    The high-frequency ones (sharpness, noise, Haar detail, blockiness) use the analysis
    image's luma, with every filter done as one contiguous pass over the flattened image
    (see ``_luma_filters``).
    """
    out = np.zeros(len(FEATURES), dtype=np.float64)
    luma_img = rgb.convert("L")
    luma_hist = np.asarray(luma_img.histogram(), dtype=np.float64)
    n = luma_hist.sum()
    mean = float(_LEVELS @ luma_hist / n)
    out[_AT["brightness"]] = mean
    out[_AT["contrast"]] = math.sqrt(max(0.0, float((_LEVELS - mean) ** 2 @ luma_hist / n)))
    out[_AT["luma_p99"]] = float(np.searchsorted(np.cumsum(luma_hist), 0.99 * n))
    channel_means = histogram.reshape(3, 256).astype(np.float64) @ _LEVELS / n
    out[_AT["mean_r"]:_AT["mean_b"] + 1] = channel_means
    # Channel shares of the light: unlike the channel means they do not move with exposure,
    # and unlike a per-pixel c / (r + g + b) averaged over the image (deepchecks' "relative
    # intensity") they do not move with the share of black pixels, so a colour cast stands
    # out against image-to-image exposure and framing (bench/results/detection.md).
    light = float(channel_means.sum())
    if light > 0.0:
        out[_AT["red_share"]:_AT["blue_share"] + 1] = channel_means / light
    small = rgb.reduce(4) if min(rgb.size) >= 32 else rgb
    # One uint8 -> float32 conversion; the channels are strided views of it.
    r, g, b = np.asarray(small, dtype=np.float32).reshape(-1, 3).T
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    np.subtract(high, low, out=low)
    np.maximum(high, 1.0, out=high)
    out[_AT["saturation"]] = _mean32(np.divide(low, high, out=low))
    rg = r - g
    yb = np.add(r, g, out=high)
    np.multiply(yb, 0.5, out=yb)
    np.subtract(yb, b, out=yb)
    out[_AT["colorfulness"]] = math.hypot(_std32(rg), _std32(yb)) + 0.3 * math.hypot(
        _mean32(rg), _mean32(yb)
    )
    p = luma_hist[luma_hist > 0] / n
    out[_AT["entropy"]] = max(0.0, float(-(p * np.log2(p)).sum()))
    filtered = (_AT["sharpness"], _AT["noise_level"], _AT["high_freq_energy"], _AT["blockiness"])
    w, h = luma_img.size
    period = max(1, 8 // factor)
    if h >= 3 and w >= 3:
        out[list(filtered)] = _luma_filters(np.asarray(luma_img), luma_hist, period)
    else:  # a sliver: no interior pixel for the second-order filters
        luma = np.asarray(luma_img, dtype=np.float32)
        out[_AT["high_freq_energy"]] = _haar_detail_share(luma, luma_hist)
        out[_AT["blockiness"]] = 1.0 if period < 2 else _blockiness(
            np.abs(np.diff(luma, axis=1)).mean(axis=0), np.abs(np.diff(luma, axis=0)).mean(axis=1),
            period)
    return out


def _mean32(x: npt.NDArray[np.floating[Any]]) -> float:
    """``float(x.mean())`` of a 1-D float array, bit for bit, without ``np.mean``'s wrapper.

    numpy sums in the array's dtype (pairwise), divides in float64 and rounds the mean back
    to the array's dtype.
    """
    return float(x.dtype.type(float(np.add.reduce(x)) / x.size))


def _std32(x: npt.NDArray[np.float32]) -> float:
    """``float(x.std())`` of a 1-D float32 array, bit for bit (numpy's rounding steps)."""
    d = x - np.float32(_mean32(x))
    return float(np.float32(math.sqrt(np.float32(float(np.add.reduce(d * d)) / x.size))))


def _luma_filters(luma8: npt.NDArray[np.uint8], luma_hist: npt.NDArray[np.float64],
                  period: int) -> tuple[float, float, float, float]:
    """(sharpness, noise_level, high_freq_energy, blockiness) of an (h, w) luma, h, w >= 3.

    Every filter is a difference of the *flattened* image with a shifted copy of itself
    (shift 1 = the right neighbour, shift w = the one below), a single contiguous pass. The
    horizontal ones also pair the last pixel of a row with the first of the next: those
    wrapped columns are zeroed (or dropped) before summing, so each sum covers exactly the
    pixels where the 2-D filter is defined, as in the textbook definitions:

    - sharpness: variance of the 4-neighbour Laplacian over the interior pixels;
    - noise_level: Immerkær (1996) σ = sqrt(π/2) · mean|[1 -2 1] ⊗ [1 -2 1] * I| / 6 over the
      interior (that filter cancels image structure up to second order, leaving mostly noise);
    - high_freq_energy: ``_haar_detail_share``;
    - blockiness: ``_blockiness`` with the block grid at ``period`` pixels.
    """
    h, w = luma8.shape
    size = h * w
    m = size - 2 * w
    bufs, ones = _scratch.get(h, w)
    img, dx, d2x, dy, tmp, lap = bufs
    np.copyto(img, luma8.reshape(-1))
    # Every value below is an integer of at most 4080 in magnitude, exact in float32, so the
    # order of the differences does not change any result; only the sums round.
    # dx[k] = I[k+1] - I[k]: row i's column w-1 wraps (garbage).
    np.subtract(img[1:], img[:-1], out=dx[:-1])
    dx[-1] = 0.0
    # d2x[k] = I[k] - 2 I[k+1] + I[k+2], centred on k+1: columns w-2, w-1 wrap.
    np.subtract(dx[1:], dx[:-1], out=d2x[:-1])
    d2x[-1] = 0.0
    # dy[k] = I[k+w] - I[k]; d2y[k] = dy[k+w] - dy[k] = I[k] - 2 I[k+w] + I[k+2w], centred
    # on k+w (kept in tmp).
    np.subtract(img[w:], img[:-w], out=dy[:size - w])
    d2y = np.subtract(dy[w:size - w], dy[:m], out=tmp[:m])
    # Laplacian centred on c = w..size-w-1 (rows 1..h-2): d2x[c-1] + d2y[c-w].
    np.add(d2x[w - 1:size - w - 1], d2y, out=lap[:m])
    lap2d = lap[:m].reshape(h - 2, w)
    lap2d[:, 0] = 0.0  # column 0 and w-1 are not interior
    lap2d[:, -1] = 0.0
    count = (h - 2) * (w - 2)
    lap_mean = float(np.dot(lap[:m], ones[:m])) / count
    sharpness = max(0.0, float(np.dot(lap[:m], lap[:m])) / count - lap_mean * lap_mean)
    # Immerkær: the vertical [1 -2 1] of d2x, as a difference of vertical differences,
    # centred on d2x[c-1] for c in rows 1..h-2.
    np.subtract(d2x[w:], d2x[:-w], out=tmp[:size - w])
    second = np.subtract(tmp[w:size - w], tmp[:m], out=lap[:m])
    np.abs(second, out=second)
    second2d = second.reshape(h - 2, w)
    second2d[:, -2:] = 0.0  # d2x's wrapped columns
    noise = math.sqrt(math.pi / 2.0) * float(np.dot(second, ones[:m])) / (6.0 * count)
    detail_share = _haar_detail_share(img.reshape(h, w), luma_hist)
    blockiness = 1.0
    if period >= 2:
        np.abs(dx, out=dx)
        np.abs(dy[:size - w], out=dy[:size - w])
        col_steps = ones[:h] @ dx.reshape(h, w)
        row_steps = dy[:size - w].reshape(h - 1, w) @ ones[:w]
        blockiness = _blockiness(col_steps[:-1] / h, row_steps / w, period)
    return sharpness, noise, detail_share, blockiness


def _haar_detail_share(luma: npt.NDArray[np.float32], luma_hist: npt.NDArray[np.float64]
                       ) -> float:
    """Share of the AC energy in the finest (one-level) orthonormal Haar detail bands.

    The transform preserves energy, so detail energy = total energy - approximation energy;
    over the even-sized crop. ``luma_hist`` gives the total and mean exactly when no row or
    column is cropped.
    """
    h, w = (luma.shape[0] // 2) * 2, (luma.shape[1] // 2) * 2
    if h == 0 or w == 0:
        return 0.0
    if (h, w) == luma.shape:
        size = float(luma_hist.sum())
        total = float(_LEVELS**2 @ luma_hist)
        mean = float(_LEVELS @ luma_hist) / size
    else:
        x = np.ascontiguousarray(luma[:h, :w])
        size = float(x.size)
        x64 = x.astype(np.float64).reshape(-1)
        total = float(np.dot(x64, x64))
        mean = float(x64.sum()) / size
    # 2×2 block sums are integers <= 1020, exact in float32; their squares are summed in
    # float64 because detail = total - approximation is a small difference of large sums.
    pairs, blocks, block = _scratch.haar(h, w)
    np.add(luma[0:h:2, :w], luma[1:h:2, :w], out=pairs)
    np.add(pairs[:, 0::2], pairs[:, 1::2], out=blocks)
    np.copyto(block, blocks.reshape(-1))
    ac = total - size * mean * mean
    detail = total - 0.25 * float(np.dot(block, block))
    return max(0.0, detail / ac) if ac > 1e-6 * size else 0.0


def _blockiness(col_steps: npt.NDArray[np.float32], row_steps: npt.NDArray[np.float32],
                period: int) -> float:
    """Mean |step| across the (scaled) 8×8 block grid over the mean |step| elsewhere.

    ``col_steps[j]`` is the mean |I[:, j+1] - I[:, j]|, ``row_steps[i]`` the mean
    |I[i+1] - I[i]|; ``period`` is the block size at analysis scale (>= 2).
    """
    ratios = []
    for steps in (col_steps, row_steps):
        if steps.size < period:
            continue
        on_grid, off_grid = _grid_masks(steps.size, period)
        off = _mean32(steps[off_grid])
        ratios.append(_mean32(steps[on_grid]) / off if off > 1e-6 else 1.0)
    return sum(ratios) / len(ratios) if ratios else 1.0


@functools.lru_cache(maxsize=16)
def _grid_masks(size: int, period: int) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Boolean masks of the steps on and off a ``period``-pixel grid, for ``size`` steps."""
    on_grid = (np.arange(size) + 1) % period == 0
    return on_grid, ~on_grid
