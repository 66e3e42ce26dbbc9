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

import hashlib
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

FEATURES: tuple[str, ...] = (
    "brightness",  # mean luma (ITU-R 601), 0..255
    "contrast",  # RMS contrast: standard deviation of luma, 0..~128
    "mean_r",  # mean of the red channel, 0..255
    "mean_g",
    "mean_b",
    "saturation",  # mean HSV saturation, 0..1
    "colorfulness",  # Hasler & Süsstrunk colourfulness
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

    ``path`` is the file's path as found; ``digest`` the 8-byte BLAKE2b of its bytes (None for
    zero-byte files). ``values`` follow ``FEATURES``; ``categories`` follow ``CATEGORIES``;
    ``histogram`` is 3×256 pixel counts of the analysis image. ``image`` is the analysis image
    (RGB), kept only while a model still has to see it.
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


def read_image(path: str, *, max_side: int = 512, max_image_pixels: int = 89_478_485,
               keep_image: bool = False) -> ImageRecord:
    """Decode ``path`` and compute its features; never raises for a bad file (see module doc)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        return ImageRecord(path, "unreadable", f"cannot read: {err.strerror or err}")
    if not data:
        return ImageRecord(path, "zero_byte", "file is empty")
    digest = hashlib.blake2b(data, digest_size=8).digest()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            return ImageRecord(path, "unreadable", f"decompression bomb: {err}", digest)
        except Exception as err:  # Pillow raises many types for garbage input
            return ImageRecord(path, "unreadable", f"not an image: {err}", digest)
        width, height = img.size
        if width * height > max_image_pixels:
            return ImageRecord(
                path, "unreadable",
                f"{width}x{height} exceeds max_image_pixels={max_image_pixels}", digest,
            )
        fmt = (img.format or "unknown").upper()
        mode = img.mode
        quality = jpeg_quality(getattr(img, "quantization", None)) if fmt == "JPEG" else 100.0
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
        factor = reduction_factor(width, height, max_side)
        try:
            if fmt == "JPEG" and factor > 1:
                img.draft(None, (math.ceil(width / factor), math.ceil(height / factor)))
            img.load()
        except (EOFError, OSError, SyntaxError, ValueError) as err:
            text = str(err)
            kind = "truncated" if isinstance(err, EOFError) or "truncat" in text else "unreadable"
            return ImageRecord(path, kind, text or type(err).__name__, digest)
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
    values = _features(rgb, factor)
    values[FEATURES.index("jpeg_quality")] = quality
    values[FEATURES.index("width")] = width
    values[FEATURES.index("height")] = height
    values[FEATURES.index("aspect_ratio")] = width / height
    values[FEATURES.index("file_size")] = len(data)
    histogram = np.asarray(rgb.histogram(), dtype=np.int64)
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


def _features(rgb: Image.Image, factor: int) -> npt.NDArray[np.float64]:
    """Pixel features of the analysis image, in ``FEATURES`` order (geometry left at 0).

    Colour statistics (saturation, colourfulness) are low-frequency, so they are computed on
    a further 4× box-reduced copy; the high-frequency ones use the analysis image itself.
    """
    out = np.zeros(len(FEATURES), dtype=np.float64)
    levels = np.arange(256, dtype=np.float64)
    luma_img = rgb.convert("L")
    luma_hist = np.asarray(luma_img.histogram(), dtype=np.float64)
    n = luma_hist.sum()
    mean = float(levels @ luma_hist / n)
    out[0] = mean
    out[1] = math.sqrt(max(0.0, float((levels - mean) ** 2 @ luma_hist / n)))
    channel_hist = np.asarray(rgb.histogram(), dtype=np.float64).reshape(3, 256)
    out[2:5] = channel_hist @ levels / n
    small = rgb.reduce(4) if min(rgb.size) >= 32 else rgb
    r, g, b = (np.asarray(c, dtype=np.float32) for c in small.split())
    high = np.maximum(np.maximum(r, g), b)
    low = np.minimum(np.minimum(r, g), b)
    out[5] = float(np.mean((high - low) / np.maximum(high, 1.0)))
    rg = r - g
    yb = 0.5 * (r + g) - b
    out[6] = math.hypot(float(rg.std()), float(yb.std())) + 0.3 * math.hypot(
        float(rg.mean()), float(yb.mean())
    )
    p = luma_hist[luma_hist > 0] / n
    out[8] = max(0.0, float(-(p * np.log2(p)).sum()))
    luma = np.asarray(luma_img, dtype=np.float32)
    h, w = luma.shape
    dx = np.diff(luma, axis=1)
    dy = np.diff(luma, axis=0)
    if h >= 3 and w >= 3:
        d2x = np.diff(dx, axis=1)
        d2y = np.diff(dy, axis=0)
        lap = d2x[1:-1] + d2y[:, 1:-1]
        mean_lap = float(lap.sum()) / lap.size
        out[7] = max(0.0, float(np.vdot(lap, lap)) / lap.size - mean_lap * mean_lap)
        # Immerkær (1996): the separable [1 -2 1] ⊗ [1 -2 1] filter cancels image structure
        # up to second order, leaving mostly noise.
        second = d2x[:-2] - 2.0 * d2x[1:-1] + d2x[2:]
        out[9] = math.sqrt(math.pi / 2.0) * float(np.abs(second).sum()) / (6.0 * (w - 2) * (h - 2))
    out[10] = _haar_detail_share(luma)
    out[11] = _blockiness(dx, dy, max(1, 8 // factor))
    return out


def _haar_detail_share(luma: npt.NDArray[np.float32]) -> float:
    """Share of the AC energy in the finest (one-level) orthonormal Haar detail bands.

    The transform preserves energy, so detail energy = total energy - approximation energy.
    """
    h, w = (luma.shape[0] // 2) * 2, (luma.shape[1] // 2) * 2
    if h == 0 or w == 0:
        return 0.0
    x = np.ascontiguousarray(luma[:h, :w])
    pairs = x[0::2] + x[1::2]
    approx = (pairs[:, 0::2] + pairs[:, 1::2]) * np.float32(0.5)
    total = float(np.vdot(x, x))
    ac = total - x.size * (float(x.sum()) / x.size) ** 2
    detail = total - float(np.vdot(approx, approx))
    return max(0.0, detail / ac) if ac > 1e-6 * x.size else 0.0


def _blockiness(dx: npt.NDArray[np.float32], dy: npt.NDArray[np.float32], period: int) -> float:
    """Mean |step| across the (scaled) 8×8 block grid over the mean |step| elsewhere.

    ``dx``/``dy`` are the horizontal/vertical first differences of luma; ``period`` is the
    block size at analysis scale (1 = the grid is not resolvable: returns 1.0).
    """
    if period < 2:
        return 1.0
    ratios = []
    for steps in (np.abs(dx).mean(axis=0), np.abs(dy).mean(axis=1)):
        if steps.size < period:
            continue
        on_grid = (np.arange(steps.size) + 1) % period == 0
        off = float(steps[~on_grid].mean())
        ratios.append(float(steps[on_grid].mean()) / off if off > 1e-6 else 1.0)
    return float(np.mean(ratios)) if ratios else 1.0
