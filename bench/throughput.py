"""Profiling throughput and memory versus the machine's bare decode limit.

On one set of generated images (640×480 JPEG q=90 by default) it measures, over all cores:

(a) bare decode: a multiprocessing loop that only does ``Image.open(p).load()``;
(b) the analyzer without a model (``analyzer.profile_folder``);
(c) with ``--model``: bare decode + preprocess + batched ``Classifier.predict``;
(d) with ``--model``: the analyzer with the model;

and prints images/s (with ``--repeat R``, the fastest of R alternated runs), the ratios
(targets: b/a ≥ 0.7, d/c ≥ 0.8) and the analyzer's peak RSS
of the whole process tree (PSS, sampled from /proc every 20 ms; target: at the largest ``--n``
≤ 1.2 × at the smallest, and < 200 MB). Each measurement runs in a fresh child process so
peaks do not carry over.

    python bench/throughput.py --n 1000 10000 [--model models/demo_classifier.tflite]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# The analyzer is imported inside the functions that use it: the bare-decode workers
# re-import this module (forkserver) and must stay bare, without the analyzer's imports.


def _write_one(args: tuple[Path, int, int, int, int]) -> None:
    path, seed, width, height, quality = args
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(40, 200, 3) + 60 * np.sin(x[..., None] / rng.uniform(20, 80)
                                                 + y[..., None] / rng.uniform(20, 80))
    pixels = base + rng.normal(0, 6, (height, width, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=quality)


def generate(folder: Path, n: int, size: tuple[int, int], quality: int, workers: int) -> None:
    """Write ``n`` seeded JPEGs into ``folder`` (skips files that already exist)."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"img_{i:06d}.jpg", i, size[0], size[1], quality) for i in range(n)
            if not (folder / f"img_{i:06d}.jpg").exists()]
    with multiprocessing.Pool(workers) as pool:
        pool.map(_write_one, jobs, chunksize=64)


def _tree_rss(root: int) -> int:
    """Proportional resident bytes (PSS) of ``root`` and all its descendants.

    PSS splits shared pages (numpy, Pillow, the forked interpreter) among the processes that
    map them, so the sum is the tree's real footprint; summed RSS would count them per worker.
    """
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f
                              if line.startswith("Pss:"))
        except (OSError, StopIteration):
            pass
        stack.extend(children.get(pid, []))
    return total


class PeakSampler:
    """Samples this process tree's RSS in a thread; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss(os.getpid()))
            self._stop.wait(0.02)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


_classifier = None


def _bare_init(model: str | None) -> None:
    global _classifier
    if model:
        from analyzer.model import Classifier

        _classifier = Classifier.load(model)


def _bare_chunk(paths: list[str]) -> int:
    images = []
    for p in paths:
        with Image.open(p) as img:
            img.load()
            if _classifier is not None:
                images.append(_classifier.preprocess(img))
    if _classifier is not None and images:
        _classifier.predict(np.stack(images))
    return len(paths)


def child(kind: str, folder: Path, workers: int, model: str | None) -> dict[str, float]:
    """One measurement in this (fresh) process: images/s and peak tree RSS."""
    paths = sorted(str(p) for p in folder.glob("*.jpg"))
    # The analyzer is imported before the clock starts, as numpy and Pillow are for the bare
    # side: a daemon imports once; what is timed is a night's work, pool start-up included.
    from analyzer.dataset import profile_folder
    from analyzer.options import AnalyzerOptions

    with PeakSampler() as sampler:
        start = time.perf_counter()
        if kind == "bare":
            ctx = multiprocessing.get_context("forkserver")
            chunks = [paths[i:i + 32] for i in range(0, len(paths), 32)]
            with ctx.Pool(workers, initializer=_bare_init, initargs=(model,)) as pool:
                done = sum(pool.imap_unordered(_bare_chunk, chunks))
        else:
            options = AnalyzerOptions(workers=workers, progress="off")
            done = profile_folder(folder, options, model).image_count
        elapsed = time.perf_counter() - start
    return {"images": done, "seconds": elapsed, "per_s": done / elapsed,
            "peak_rss_mb": sampler.peak / 2**20}


def measure(kind: str, folder: Path, workers: int, model: str | None) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", kind, "--dir", str(folder),
           "--workers", str(workers)] + (["--model", model] if model else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 10000],
                        help="image counts to measure (default: 1000 10000)")
    parser.add_argument("--size", default="640x480", help="WxH of generated JPEGs")
    parser.add_argument("--quality", type=int, default=90)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--model", help="a .tflite classifier: also measure (c) and (d)")
    parser.add_argument("--dir", type=Path, help="image folder (default: a temp folder)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each case, alternated; the fastest is reported")
    parser.add_argument("--child", choices=("bare", "analyzer"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dir, args.workers, args.model)))
        return
    width, height = (int(v) for v in args.size.split("x"))
    root = args.dir or Path(tempfile.mkdtemp(prefix="driftd-bench-"))
    ns = sorted(args.n)
    generate(root / "all", ns[-1], (width, height), args.quality, args.workers)
    rows = []
    for n in ns:
        folder = root / f"n{n}"
        folder.mkdir(exist_ok=True)
        for i in range(n):
            link = folder / f"img_{i:06d}.jpg"
            if not link.exists():
                os.link(root / "all" / f"img_{i:06d}.jpg", link)
        cases = [("(a) bare decode", "bare", None), ("(b) analyzer", "analyzer", None)]
        if args.model:
            cases += [("(c) decode+model", "bare", args.model),
                      ("(d) analyzer+model", "analyzer", args.model)]
        # Round-robin over the cases, keeping each case's fastest run: on a shared machine
        # the other jobs' load moves between runs, and alternating gives both sides of a
        # ratio the same chances of a quiet moment.
        runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in cases}
        for _ in range(args.repeat):
            for label, kind, model in cases:
                runs[label].append(measure(kind, folder, args.workers, model))
        for label, measured in runs.items():
            print(f"n={n} {label}: img/s " + ", ".join(f"{r['per_s']:.0f}" for r in measured),
                  file=sys.stderr)
        results = {label: max(measured, key=lambda r: r["per_s"])
                   for label, measured in runs.items()}
        rows.append((n, results))
    print(f"images {width}x{height} JPEG q={args.quality}, workers={args.workers}, "
          f"cpu_count={os.cpu_count()}")
    print(f"{'n':>7} {'case':<20} {'img/s':>9} {'seconds':>8} {'peak RSS MB':>12}")
    for n, results in rows:
        for label, r in results.items():
            print(f"{n:>7} {label:<20} {r['per_s']:>9.0f} {r['seconds']:>8.2f} "
                  f"{r['peak_rss_mb']:>12.1f}")
        ratio = results["(b) analyzer"]["per_s"] / results["(a) bare decode"]["per_s"]
        print(f"{n:>7} ratio b/a = {ratio:.2f} (target >= 0.7)")
        if args.model:
            ratio = (results["(d) analyzer+model"]["per_s"]
                     / results["(c) decode+model"]["per_s"])
            print(f"{n:>7} ratio d/c = {ratio:.2f} (target >= 0.8)")
    if len(rows) > 1:
        small, large = rows[0][1]["(b) analyzer"], rows[-1][1]["(b) analyzer"]
        growth = large["peak_rss_mb"] / small["peak_rss_mb"]
        print(f"analyzer peak RSS n={rows[-1][0]} / n={rows[0][0]} = {growth:.2f} "
              f"(target <= 1.2); at n={rows[-1][0]}: {large['peak_rss_mb']:.0f} MB "
              "(target < 200)")


if __name__ == "__main__":
    main()
