"""Where one image's time goes, on one core: decode, features, pixel sums, hashing.

Generates ``--n`` seeded JPEGs (as ``bench/throughput.py`` does) and times each step over all
of them, best of ``--repeat`` passes, in milliseconds per image:

    python bench/per_image.py [--n 300] [--size 640x480] [--dir /tmp/per-image]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PIL import features as pil_features
from threadpoolctl import threadpool_info

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import throughput  # noqa: E402  (this folder's image generator)

from analyzer import pixels  # noqa: E402
from analyzer.images import _features, read_image  # noqa: E402
from analyzer.worker import prepare_worker_process  # noqa: E402


def best_ms(steps: list[tuple[str, Callable[[int], object]]], count: int, repeat: int
            ) -> dict[str, float]:
    """Fastest of ``repeat`` passes of each ``step(i)`` over ``i < count``, in ms per call.

    The steps take turns within each repetition, so a slow spell of a shared machine hits
    all of them alike instead of one step's every pass.
    """
    best = {label: float("inf") for label, _ in steps}
    for _ in range(repeat):
        for label, step in steps:
            start = time.perf_counter()
            for i in range(count):
                step(i)
            best[label] = min(best[label], time.perf_counter() - start)
    return {label: seconds / count * 1e3 for label, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="image folder (default: a temp folder)")
    args = parser.parse_args()
    prepare_worker_process()  # malloc tuning and one BLAS thread, as in the analyzer's workers
    width, height = (int(v) for v in args.size.split("x"))
    folder = args.dir or Path(tempfile.mkdtemp(prefix="driftd-per-image-"))
    throughput.generate(folder, args.n, (width, height), args.quality, os.cpu_count() or 1)
    paths = sorted(str(p) for p in folder.glob("img_*.jpg"))[: args.n]
    data = [Path(p).read_bytes() for p in paths]
    half = []
    for blob in data:
        img = Image.open(io.BytesIO(blob))
        img.draft(None, (img.size[0] // 2, img.size[1] // 2))
        img.load()
        half.append(img.convert("RGB"))

    def full_decode(i: int) -> None:
        Image.open(io.BytesIO(data[i])).load()

    def half_decode(i: int) -> None:
        img = Image.open(io.BytesIO(data[i]))
        img.draft(None, (img.size[0] // 2, img.size[1] // 2))
        img.load()

    steps: list[tuple[str, Callable[[int], object]]] = [
        ("read_image (all below)", lambda i: read_image(paths[i])),
        ("bare full-size decode", full_decode),
        ("half-scale draft decode", half_decode),
        (f"features ({pixels.KERNEL} sums)", lambda i: _features(half[i], 2)),
        ("  numpy pixel sums", lambda i: pixels.numpy_pixel_sums(half[i])),
        ("SHA-1 of the file", lambda i: hashlib.sha1(data[i], usedforsecurity=False).digest()),
    ]
    if pixels.KERNEL == "compiled":
        steps.insert(4, ("  compiled pixel sums", lambda i: pixels.pixel_sums(half[i])))
    blas = [(i["internal_api"], i["version"], i.get("architecture")) for i in threadpool_info()]
    print(f"{len(paths)} images {width}x{height} q={args.quality}; libjpeg-turbo "
          f"{pil_features.version('libjpeg_turbo')}; BLAS {blas}")
    for label, ms in best_ms(steps, len(paths), args.repeat).items():
        print(f"{label:26s} {ms:7.3f} ms")


if __name__ == "__main__":
    main()
