"""Decoding one image file and reducing it to per-image features.

``read_image(path, ...)`` never raises for a bad file: it returns an ``ImageRecord`` whose
``issue`` says what was wrong (``zero_byte``, ``unreadable``, ``truncated``). For a good file
it holds the continuous features (``FEATURES``, in that order), the categorical ones
(``CATEGORIES``), a 256-bin histogram per R, G, B channel and an 8-byte content digest.

A file is looked at before it is read: only a regular file is opened (a FIFO, device or
socket named like an image would block or misbehave), and one larger than ``max_file_bytes``
or not starting with an image signature is turned away after its first bytes. Neither the
digest nor the decoder holds the whole file in memory.

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
import math
import os
import stat
import warnings
from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from analyzer.contract import IMAGE_CATEGORIES, IMAGE_FEATURES, ImageFeature, QualityIssue
from analyzer.pixels import PixelSums, pixel_sums

FEATURES = IMAGE_FEATURES
"""The continuous features, in the order of ``ImageRecord.values`` (``analyzer.contract``)."""
CATEGORIES = IMAGE_CATEGORIES
"""The categorical features, in the order of ``ImageRecord.categories``."""

_QUALITY, _WIDTH, _HEIGHT, _ASPECT, _FILE_SIZE = (
    FEATURES.index(name)
    for name in (ImageFeature.JPEG_QUALITY, ImageFeature.WIDTH, ImageFeature.HEIGHT,
                 ImageFeature.ASPECT_RATIO, ImageFeature.FILE_SIZE)
)
_LEVELS = np.arange(256, dtype=np.float64)
_INV_LEVELS = 1.0 / np.maximum(_LEVELS, 1.0)
_AT = {ImageFeature(name): i for i, name in enumerate(FEATURES)}

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
    bytes, a content fingerprint for duplicates and sample keys (None for files turned away
    before they are read: zero-byte, too large, not an image, not a regular file;
    SHA-1 because OpenSSL runs it at about twice BLAKE2b's speed). ``values`` follow
    ``FEATURES``; ``categories`` follow ``CATEGORIES``; ``histogram`` is 3×256 pixel counts
    of the analysis image. ``image`` is the analysis image (RGB), kept only while a model
    still has to see it; ``embedding`` the model's projected embedding
    (``analyzer.projection.project``), when it is read.
    """

    path: str
    issue: str | None = None
    detail: str = ""
    digest: bytes | None = None
    values: npt.NDArray[np.float64] | None = None
    categories: tuple[str, ...] = ()
    histogram: npt.NDArray[np.int64] | None = None
    image: Image.Image | None = field(default=None, repr=False)
    embedding: npt.NDArray[np.float32] | None = field(default=None, repr=False)


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


# Leading bytes of the other formats read here, too weak to call a damaged file "truncated":
# PPM/PGM ("P1".."P6") and the rarer TIFF byte orders and BigTIFF, as Pillow accepts them.
_WEAK_SIGNATURES: tuple[bytes, ...] = (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6",
                                       b"MM*\x00", b"II\x00*", b"II+\x00", b"MM\x00+")
_HEAD_BYTES = 16  # what Pillow itself looks at to pick a format
_HASH_BLOCK = 1 << 20


def has_image_signature(data: bytes) -> bool:
    """Whether ``data`` starts like a JPEG, PNG, GIF, WebP, BMP or TIFF file."""
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def looks_like_image(head: bytes) -> bool:
    """Whether a file starting with ``head`` may be one of the formats read here (JPEG, PNG,
    GIF, WebP, BMP, TIFF, PPM/PGM), whatever its name; anything else is not decoded."""
    return has_image_signature(head) or head.startswith(_WEAK_SIGNATURES)


def file_kind(mode: int) -> str:
    """What a non-regular file is, from its ``st_mode``: ``FIFO``, ``socket``, ..."""
    kinds = ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "folder"),
             (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    return next((name for test, name in kinds if test(mode)), "special file")


def _failure(path: str, head: bytes, err: Exception, digest: bytes) -> ImageRecord:
    """The record of a file Pillow could not open or decode: ``truncated`` when the file
    starts with a known image signature (or the decoder says so), else ``unreadable``."""
    text = str(err) or type(err).__name__
    if isinstance(err, EOFError) or "truncat" in text.lower() or has_image_signature(head):
        return ImageRecord(path, QualityIssue.TRUNCATED,
                           f"truncated or damaged image data: {text}", digest)
    return ImageRecord(path, QualityIssue.UNREADABLE, f"not an image: {text}", digest)


def _digest(fh: IO[bytes]) -> bytes:
    """First 8 bytes of the SHA-1 of the whole file, read in blocks (memory stays flat)."""
    sha = hashlib.sha1(usedforsecurity=False)
    fh.seek(0)
    while block := fh.read(_HASH_BLOCK):
        sha.update(block)
    return sha.digest()[:8]


def read_image(path: str, *, max_side: int = 512, max_image_pixels: int = 89_478_485,
               max_file_bytes: int = 512 * 1024 * 1024, keep_image: bool = False) -> ImageRecord:
    """Decode ``path`` and compute its features; never raises for a bad file (see module doc).

    Before the file is read it must be a regular file (else ``unreadable``, "not a regular
    file (FIFO)"), hold 1 to ``max_file_bytes`` bytes (``zero_byte``; ``unreadable``) and
    start with an image signature (``unreadable``, "not an image"). The digest is computed in
    blocks and Pillow decodes from the open file, so a large file costs no memory of its size.
    """
    opened = _open_checked(path, max_file_bytes)
    if isinstance(opened, ImageRecord):
        return opened
    fh, size, head = opened
    return _decode(path, fh, size, head, max_side, max_image_pixels, keep_image)


def read_image_stream(path: str, fh: IO[bytes], size: int, *, max_side: int = 512,
                      max_image_pixels: int = 89_478_485,
                      max_file_bytes: int = 512 * 1024 * 1024,
                      keep_image: bool = False) -> ImageRecord:
    """``read_image`` for a file that is not a local path: an object fetched from storage
    (``io.BytesIO``) or a seekable stream of it, ``size`` bytes long. ``path`` is what the
    record and the report name (e.g. its URL). Same checks, same features; closes ``fh``.
    """
    if size > max_file_bytes:
        fh.close()
        return ImageRecord(path, "unreadable",
                           f"file is {size:,} bytes, over max_file_bytes={max_file_bytes:,}")
    head = fh.read(_HEAD_BYTES)
    if not head:
        fh.close()
        return ImageRecord(path, "zero_byte", "file is empty")
    if not looks_like_image(head):
        fh.close()
        return ImageRecord(path, "unreadable",
                           f"not an image: no image signature (starts {head[:8]!r})")
    return _decode(path, fh, size, head, max_side, max_image_pixels, keep_image)


def _decode(path: str, fh: IO[bytes], size: int, head: bytes, max_side: int,
            max_image_pixels: int, keep_image: bool) -> ImageRecord:
    """Digest, decode and reduce an opened image file (closes ``fh``)."""
    with fh, warnings.catch_warnings():
        digest = _digest(fh)
        fh.seek(0)
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(fh)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            return ImageRecord(path, QualityIssue.UNREADABLE, f"decompression bomb: {err}", digest)
        except Exception as err:  # Pillow raises many types for garbage input
            return _failure(path, head, err, digest)
        width, height = img.size
        if width * height > max_image_pixels:
            return ImageRecord(
                path, QualityIssue.UNREADABLE,
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
            return _failure(path, head, err, digest)
        except Exception as err:  # a decoder bug on hostile input must not stop the night
            return ImageRecord(path, QualityIssue.UNREADABLE, f"{type(err).__name__}: {err}",
                               digest)
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
        return ImageRecord(path, QualityIssue.UNREADABLE, f"cannot convert mode {mode}: {err}",
                           digest)
    values, histogram = _features(rgb, factor)
    values[_QUALITY] = quality
    values[_WIDTH] = width
    values[_HEIGHT] = height
    values[_ASPECT] = width / height
    values[_FILE_SIZE] = size
    return ImageRecord(
        path, None, "", digest, values, (fmt, mode, f"{width}x{height}"), histogram,
        rgb if keep_image else None,
    )


def _open_checked(path: str, max_file_bytes: int) -> tuple[IO[bytes], int, bytes] | ImageRecord:
    """``(open file, size, first bytes)`` of an image file worth decoding, else the record of
    why it is not (see ``read_image``); only the first bytes have been read."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            return ImageRecord(path, QualityIssue.UNREADABLE,
                               f"not a regular file ({file_kind(info.st_mode)})")
        # O_NONBLOCK: a path swapped for a FIFO since the stat opens at once instead of
        # waiting for a writer (and is turned away below); a regular file reads as usual.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        return ImageRecord(path, QualityIssue.UNREADABLE, f"cannot read: {err.strerror or err}")
    fh = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            record = ImageRecord(path, QualityIssue.UNREADABLE,
                                 f"not a regular file ({file_kind(info.st_mode)})")
        elif info.st_size > max_file_bytes:
            record = ImageRecord(
                path, QualityIssue.UNREADABLE,
                f"file is {info.st_size:,} bytes, over max_file_bytes={max_file_bytes:,}",
            )
        else:
            head = fh.read(_HEAD_BYTES)
            if not head:
                record = ImageRecord(path, QualityIssue.ZERO_BYTE, "file is empty")
            elif not looks_like_image(head):
                record = ImageRecord(path, QualityIssue.UNREADABLE,
                                     f"not an image: no image signature (starts {head[:8]!r})")
            else:
                return fh, info.st_size, head
    except OSError as err:
        record = ImageRecord(path, QualityIssue.UNREADABLE, f"cannot read: {err.strerror or err}")
    fh.close()
    return record


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


def _features(rgb: Image.Image, factor: int) -> tuple[npt.NDArray[np.float64],
                                                     npt.NDArray[np.int64]]:
    """Pixel features of the analysis image, in ``FEATURES`` order (geometry left at 0), and
    its 3×256 R, G, B histogram; both from ``pixel_sums(rgb)``, exact integer sums.

    Brightness, contrast, the luma percentile, entropy, channel means and shares come from the
    luma and channel histograms. Colour statistics (saturation, colourfulness) are
    low-frequency, so they use the image reduced 4× by box means (images of at least 32 px a
    side; smaller ones as they are). The high-frequency ones use the analysis image's luma:

    - sharpness: variance of the 4-neighbour Laplacian over the interior pixels;
    - noise_level: Immerkær (1996) σ = sqrt(π/2) · mean|[1 -2 1] ⊗ [1 -2 1] * I| / 6 over the
      interior (that filter cancels image structure up to second order, leaving mostly noise);
    - high_freq_energy: ``_haar_detail_share``;
    - blockiness: ``_blockiness`` with the block grid at 8 / ``factor`` pixels.
    """
    sums = pixel_sums(rgb)
    out = np.zeros(len(FEATURES), dtype=np.float64)
    luma_hist = sums.luma_hist.astype(np.float64)
    n = luma_hist.sum()
    mean = float(_LEVELS @ luma_hist / n)
    out[_AT[ImageFeature.BRIGHTNESS]] = mean
    out[_AT[ImageFeature.CONTRAST]] = math.sqrt(
        max(0.0, float((_LEVELS - mean) ** 2 @ luma_hist / n)))
    out[_AT[ImageFeature.LUMA_P99]] = float(np.searchsorted(np.cumsum(luma_hist), 0.99 * n))
    channel_means = sums.histogram.astype(np.float64) @ _LEVELS / n
    out[_AT[ImageFeature.MEAN_R]:_AT[ImageFeature.MEAN_B] + 1] = channel_means
    # Channel shares of the light: unlike the channel means they do not move with exposure,
    # and unlike a per-pixel c / (r + g + b) averaged over the image (deepchecks' "relative
    # intensity") they do not move with the share of black pixels, so a colour cast stands
    # out against image-to-image exposure and framing (bench/results/detection-fashion.md).
    light = float(channel_means.sum())
    if light > 0.0:
        out[_AT[ImageFeature.RED_SHARE]:_AT[ImageFeature.BLUE_SHARE] + 1] = channel_means / light
    boxes = sums.boxes
    out[_AT[ImageFeature.SATURATION]] = float(sums.saturation_num @ _INV_LEVELS) / boxes
    # Colourfulness (Hasler & Süsstrunk) of rg = r - g and yb = (r + g) / 2 - b, from the
    # exact sums of rg and of 2 yb.
    rg_mean, yb_mean = sums.rg_sum / boxes, sums.yb_sum / (2 * boxes)
    rg_var = (boxes * sums.rg_sq - sums.rg_sum**2) / boxes**2
    yb_var = (boxes * sums.yb_sq - sums.yb_sum**2) / (4 * boxes**2)
    out[_AT[ImageFeature.COLORFULNESS]] = (math.hypot(math.sqrt(rg_var), math.sqrt(yb_var))
                                + 0.3 * math.hypot(rg_mean, yb_mean))
    p = luma_hist[luma_hist > 0] / n
    out[_AT[ImageFeature.ENTROPY]] = max(0.0, float(-(p * np.log2(p)).sum()))
    h, w = sums.height, sums.width
    if h >= 3 and w >= 3:
        count = (h - 2) * (w - 2)
        out[_AT[ImageFeature.SHARPNESS]] = max(
            0.0, (count * sums.lap_sq - sums.lap_sum**2) / count**2)
        out[_AT[ImageFeature.NOISE_LEVEL]] = (
            math.sqrt(math.pi / 2.0) * sums.noise_abs / (6.0 * count))
    out[_AT[ImageFeature.HIGH_FREQ_ENERGY]] = _haar_detail_share(sums)
    period = max(1, 8 // factor)
    out[_AT[ImageFeature.BLOCKINESS]] = 1.0 if period < 2 else _blockiness(
        sums.col_steps.astype(np.float32) / np.float32(h),
        sums.row_steps.astype(np.float32) / np.float32(w), period)
    return out, sums.histogram


def _haar_detail_share(sums: PixelSums) -> float:
    """Share of the AC energy in the finest (one-level) orthonormal Haar detail bands.

    The transform preserves energy, so detail energy = total energy - approximation energy
    (a quarter of the squared 2×2 block sums), over the even-sized crop.
    """
    size = (sums.height // 2) * (sums.width // 2) * 4
    if size == 0:
        return 0.0
    total, s = sums.haar_sq, sums.haar_sum
    ac = (size * total - s * s) / size
    detail = (4 * total - sums.haar_block_sq) / 4
    return max(0.0, detail / ac) if ac > 1e-6 * size else 0.0


def _mean32(x: npt.NDArray[np.floating[Any]]) -> float:
    """``float(x.mean())`` of a 1-D float array, bit for bit, without ``np.mean``'s wrapper.

    numpy sums in the array's dtype (pairwise), divides in float64 and rounds the mean back
    to the array's dtype.
    """
    return float(x.dtype.type(float(np.add.reduce(x)) / x.size))


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
