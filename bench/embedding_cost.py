"""What reading the embedding costs: plain inference, the rewritten model, preserve-all-tensors.

Each mode runs in its own process (so its resident memory is its own), on the same batch of
real images (random crops of the food photographs when installed, else the bundled
Fashion-MNIST demo images), ``--batch`` images per interpreter call, one thread:

- ``plain``: ``analyzer.model.Classifier.predict`` (what driftd runs today);
- ``rewrite``: ``analyzer.embeddings.EmbeddingModel.embed`` (probabilities + embedding from
  the model with the embedding appended as an output);
- ``preserve``: the original model with ``experimental_preserve_all_tensors=True``, reading the
  embedding tensor after each invoke (the no-rewrite alternative).

Reports ms per image (median of ``--repeats`` timed passes after one warm-up) and the
process's resident memory after the run (VmRSS) and its peak (VmHWM), in MiB.

    python bench/embedding_cost.py [--model models/imagenet/efficientnet_lite0_uint8.tflite]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_sources import REPO_ROOT, load_food

MODES = ("plain", "rewrite", "preserve")


def _images(count: int) -> list[Image.Image]:
    try:
        crops = load_food().draw("baseline", count, np.random.default_rng(0))
        return [Image.fromarray(c) for c in crops]
    except FileNotFoundError:
        files = sorted((REPO_ROOT / "daemon" / "demo" / "images").glob("*.png"))[:count]
        return [Image.open(f).convert("RGB") for f in files]


def _memory() -> dict[str, float]:
    status = Path("/proc/self/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("VmRSS", "VmHWM")}


def measure(mode: str, model: Path, batch: int, images: int, repeats: int) -> dict[str, float]:
    """Time ``mode`` on ``images`` images in batches of ``batch``; this process's memory."""
    sys.path.insert(0, str(REPO_ROOT))
    from analyzer.embeddings import EmbeddingModel, locate_embedding
    from analyzer.model import Classifier, Interpreter, ModelOptions

    options = ModelOptions(batch_size=batch, num_threads=1)
    classifier = Classifier.load(model, options)
    pixels = np.stack([classifier.preprocess(im) for im in _images(images)])
    if mode == "plain":
        def run(chunk: np.ndarray) -> None:
            classifier.predict(chunk)
    elif mode == "rewrite":
        embedder = EmbeddingModel.load(model, options=options)

        def run(chunk: np.ndarray) -> None:
            embedder.embed(chunk)
    else:
        info = locate_embedding(model.read_bytes(), None, str(model))
        interpreter = Interpreter(model_path=str(model), num_threads=1,
                                  experimental_preserve_all_tensors=True)
        index = interpreter.get_input_details()[0]["index"]
        interpreter.resize_tensor_input(index, [batch, *pixels.shape[1:]])
        interpreter.allocate_tensors()

        def run(chunk: np.ndarray) -> None:
            interpreter.set_tensor(index, chunk)
            interpreter.invoke()
            info.read(interpreter, len(chunk))

    def one_pass() -> float:
        start = time.perf_counter()
        for i in range(0, len(pixels) - batch + 1, batch):
            run(pixels[i : i + batch])
        return time.perf_counter() - start

    one_pass()
    seconds = statistics.median(one_pass() for _ in range(repeats))
    done = (len(pixels) // batch) * batch
    return {"ms_per_image": 1000 * seconds / done, **_memory()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", type=Path,
                        default=REPO_ROOT / "models/imagenet/efficientnet_lite0_uint8.tflite")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.model, args.batch, args.images, args.repeats)))
        return 0
    print(f"model {args.model}, batch {args.batch}, {args.images} images, 1 thread\n")
    print("| mode | ms/image | RSS MiB | peak RSS MiB |\n|---|---:|---:|---:|")
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--model", str(args.model),
                              "--batch", str(args.batch), "--images", str(args.images),
                              "--repeats", str(args.repeats)],
                             check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(f"| {mode} | {row['ms_per_image']:.2f} | {row['VmRSS']:.0f} | {row['VmHWM']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
