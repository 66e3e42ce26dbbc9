"""One night at 10k, 100k and 1M images: throughput and peak memory, pool versus Dask, local
versus S3.

On generated 640×480 JPEGs it measures, per ``--n``, in fresh child processes:

- ``pool``: the analyzer with the default executor (fork-server pool of ``--workers``);
- ``dask``: the analyzer with ``executor="dask"`` on a ``LocalCluster`` of ``--workers``
  single-threaded processes (the same cores);
- ``pool-s3`` / ``dask-s3`` (``--s3``, up to ``--s3-max-n`` images): the same, reading the
  night from a local S3 server (moto's server mode on 127.0.0.1; the objects live in its
  memory, which is why the S3 sizes are capped);

and prints images/s, seconds and the peak PSS of the measured process tree (the analyzer
process, its fork server and workers, or the Dask scheduler, nannies and workers; sampled
from /proc every 20 ms). ``--repeat R`` alternates the cases R times and keeps each case's
fastest run, so on a shared machine both sides of a ratio get the same chances.

Images: ``--distinct`` different pictures (smooth colour fields and shapes, one seed each,
~20 KB as JPEG q=90), each written ``n / distinct`` times with its index in a JPEG comment
segment, so every file has different bytes (a different content digest: no duplicates) and
is hashed, decoded and profiled like any image, while generating a million of them takes
minutes, not hours. The free space is checked first; the images are deleted afterwards
unless ``--keep``.

    python bench/scale.py --n 10000 100000 --workers 2 --repeat 2
    python bench/scale.py --n 1000000 --cases pool --workers 2
    python bench/scale.py --n 10000 --s3 --cases pool-s3 dask-s3
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from throughput import PeakSampler  # noqa: E402  (this folder's PSS sampler)

CASES = ("pool", "dask", "pool-s3", "dask-s3")
BUCKET = "driftd-bench"


def _picture(seed: int, size: tuple[int, int], quality: int) -> bytes:
    """A smooth, compressible, seeded picture as JPEG bytes."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x, y = int(rng.integers(0, size[0])), int(rng.integers(0, size[1]))
        r = int(rng.integers(20, 120))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _with_comment(jpeg: bytes, text: bytes) -> bytes:
    """``jpeg`` with a COM segment right after SOI (decoders skip it; the bytes differ)."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def generate(folder: Path, n: int, distinct: int, size: tuple[int, int] = (640, 480),
             quality: int = 90) -> int:
    """Write ``n`` images into ``folder`` (see the module doc); returns the bytes written.

    Exits with a message when the disk lacks the space (with 2 GB to spare).
    """
    bases = [_picture(seed, size, quality) for seed in range(min(distinct, n))]
    need = int(n * np.mean([len(b) for b in bases]) * 1.05) + n * 4096 // 8 + (2 << 30)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < need:
        sys.exit(f"not enough free space in {folder}: {n:,} images need about "
                 f"{need / 2**30:.1f} GiB (with 2 GiB to spare), {free / 2**30:.1f} GiB free; "
                 "pass --dir on a larger disk or a smaller --n")
    written = 0
    for i in range(n):
        path = folder / f"img_{i:07d}.jpg"
        data = _with_comment(bases[i % len(bases)], b"driftd-scale %d" % i)
        path.write_bytes(data)
        written += len(data)
    return written


def _generated(folder: Path, n: int) -> bool:
    """Whether ``folder`` holds exactly the ``n`` images ``generate`` writes."""
    if not folder.is_dir():
        return False
    with os.scandir(folder) as it:
        count = sum(1 for e in it if e.name.startswith("img_") and e.name.endswith(".jpg"))
    return count == n and (folder / f"img_{n - 1:07d}.jpg").is_file()


def child(case: str, location: str, workers: int, model: str | None,
          endpoint: str | None) -> dict[str, Any]:
    """One measurement in this fresh process: images/s and the tree's peak PSS."""
    from analyzer.dataset import profile_folder
    from analyzer.options import AnalyzerOptions

    executor = "dask" if case.startswith("dask") else "local"
    storage = {"endpoint_url": endpoint} if endpoint else None
    options = AnalyzerOptions(workers=workers, progress="off", executor=executor,
                              storage_options=storage)
    with PeakSampler() as sampler:
        start = time.perf_counter()
        profile = profile_folder(location, options, model)
        elapsed = time.perf_counter() - start
    return {"images": profile.image_count, "seconds": elapsed,
            "per_s": profile.image_count / elapsed, "peak_mb": sampler.peak / 2**20,
            "duplicates": profile.issues["duplicates"].count}


def measure(case: str, location: str, workers: int, model: str | None,
            endpoint: str | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", case, "--location", location,
           "--workers", str(workers)]
    cmd += ["--model", model] if model else []
    cmd += ["--endpoint", endpoint] if endpoint else []
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def _s3_server() -> tuple[Any, str]:
    import logging
    import socket

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def _upload(endpoint: str, folder: Path, prefix: str, n: int) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                      aws_secret_access_key="bench", region_name="us-east-1")
    if BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        s3.create_bucket(Bucket=BUCKET)
    from concurrent.futures import ThreadPoolExecutor

    def put(i: int) -> None:
        name = f"img_{i:07d}.jpg"
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=(folder / name).read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(n)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=["pool", "dask"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--distinct", type=int, default=2000,
                        help="different pictures among the images (default 2000)")
    parser.add_argument("--model", help="a .tflite classifier to run as well")
    parser.add_argument("--dir", type=Path, help="where to generate (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated images")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the images a --keep run left in DIR/nN instead of "
                             "generating them again (1M images take ~12 min to write)")
    parser.add_argument("--s3-max-n", type=int, default=20000,
                        help="largest n measured through the S3 server (its memory holds them)")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--location", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.location, args.workers, args.model,
                               args.endpoint)))
        return
    root = args.dir or Path(tempfile.mkdtemp(prefix="driftd-scale-"))
    server: Any = None
    endpoint: str | None = None
    try:
        for n in sorted(args.n):
            folder = root / f"n{n}"
            started = time.perf_counter()
            if args.reuse and _generated(folder, n):
                print(f"n={n}: reusing the images in {folder}", file=sys.stderr, flush=True)
            else:
                size = generate(folder, n, args.distinct)
                print(f"n={n}: generated {size / 2**30:.2f} GiB in "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            cases = [c for c in args.cases if not c.endswith("-s3") or n <= args.s3_max_n]
            if any(c.endswith("-s3") for c in cases):
                if server is None:
                    server, endpoint = _s3_server()
                assert endpoint is not None
                _upload(endpoint, folder, f"n{n}", n)
            runs: dict[str, list[dict[str, Any]]] = {c: [] for c in cases}
            for _ in range(args.repeat):
                for case in cases:
                    s3 = case.endswith("-s3")
                    location = f"s3://{BUCKET}/n{n}" if s3 else str(folder)
                    load = os.getloadavg()[0]
                    r = measure(case, location, args.workers, args.model,
                                endpoint if s3 else None)
                    r["load"] = load
                    runs[case].append(r)
                    print(f"n={n} {case}: {r['per_s']:.0f} img/s, {r['seconds']:.1f} s, "
                          f"peak {r['peak_mb']:.1f} MB, load {load:.2f}", file=sys.stderr,
                          flush=True)
            if not args.keep:
                shutil.rmtree(folder)
            _print(n, runs)
    finally:
        if server is not None:
            server.stop()
        if not args.keep and args.dir is None:
            shutil.rmtree(root, ignore_errors=True)


def _print(n: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    best = {case: max(rs, key=lambda r: r["per_s"]) for case, rs in runs.items()}
    for case, r in best.items():
        print(f"{n:>8} {case:<8} {r['per_s']:>8.0f} img/s {r['seconds']:>9.1f} s "
              f"peak {r['peak_mb']:>7.1f} MB  (runs: "
              + ", ".join(f"{x['per_s']:.0f}" for x in runs[case]) + ")", flush=True)
    if "pool" in best and "dask" in best:
        print(f"{n:>8} dask/pool = {best['dask']['per_s'] / best['pool']['per_s']:.2f} "
              "(target >= 0.9)", flush=True)


if __name__ == "__main__":
    main()
