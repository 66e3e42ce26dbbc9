"""Train the bundled demo classifier on Fashion-MNIST and write its TFLite files and samples.

Run from the repository root (needs the `train` extra: `pip install -e .[train]`, and the
Debian package `dataset-fashion-mnist`):

    python -m tools.train_demo_model

It is seeded and runs TensorFlow with deterministic ops on a fixed number of threads, so a
rerun reproduces the same weights. It writes:

- `models/demo_classifier.tflite` (float32 in/out) and `models/demo_classifier_uint8.tflite`
  (full-integer quantised, uint8 input and output), `models/demo_classifier.labels.txt`;
- `models/README.md` with the dataset, licence, command and the test accuracy of both files,
  measured through `analyzer.model.Classifier` (the same path the daemon uses) on the
  held-out 10,000-image test split;
- `daemon/demo/model/` (float model + labels, so `driftd demo` works from an installed
  package), `daemon/demo/images/` (a class-balanced sample of test images as PNG, named
  `<5-digit index>_<class slug>.png`) and `daemon/demo/LICENSE-fashion-mnist.txt`.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from analyzer.model import Classifier

ROOT = Path(__file__).resolve().parent.parent
DATASET_DIR = Path("/usr/share/datasets/fashion-mnist")
LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
SLUGS = [
    "t-shirt-top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle-boot",
]
LICENSE_TEXT = """\
The images in this folder are from Fashion-MNIST (test split), (c) 2017 Zalando SE,
https://github.com/zalandoresearch/fashion-mnist, installed here from the Debian package
dataset-fashion-mnist. They are redistributed under the MIT (Expat) licence:

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.

The demo classifier in ../model/ was trained on the Fashion-MNIST training split by
tools/train_demo_model.py.
"""


@dataclass(frozen=True)
class Split:
    """Images (n, 28, 28) uint8 and labels (n,) int of one Fashion-MNIST split."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]


def read_idx(path: Path) -> npt.NDArray[np.uint8]:
    """Read a gzipped IDX file (the MNIST format) into a uint8 array of its stored shape."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(name: str) -> Split:
    """Load the `train` or `t10k` split from the Debian dataset package."""
    images = read_idx(DATASET_DIR / f"{name}-images-idx3-ubyte.gz")
    labels = read_idx(DATASET_DIR / f"{name}-labels-idx1-ubyte.gz").astype(np.int64)
    return Split(images, labels)


def train(train_split: Split, epochs: int, seed: int, threads: int) -> object:
    """Train a small CNN (two conv blocks, ~57k parameters) and return the Keras model."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x = train_split.images[..., None].astype(np.float32) / 255.0
    model = tf.keras.Sequential([
        tf.keras.Input((28, 28, 1)),
        tf.keras.layers.Conv2D(16, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(32, 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(64, activation="relu"),
        tf.keras.layers.Dense(len(LABELS), activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, train_split.labels, epochs=epochs, batch_size=128, verbose=2, shuffle=True)
    return model


def convert(model: object, train_split: Split, quantise: bool) -> bytes:
    """Convert to TFLite: float32, or full-integer with uint8 input and output."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantise:
        calib = train_split.images[:500, ..., None].astype(np.float32) / 255.0

        def representative() -> object:
            for row in calib:
                yield [row[None]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    return bytes(converter.convert())


def accuracy(model_path: Path, split: Split) -> float:
    """Top-1 accuracy of a .tflite file on a split, through analyzer.model.Classifier."""
    clf = Classifier.load(model_path)
    batch = np.stack([clf.preprocess(Image.fromarray(img, mode="L")) for img in split.images])
    predicted = clf.predict(batch).argmax(axis=1)
    return float((predicted == split.labels).mean())


def sample_indices(labels: npt.NDArray[np.int64], per_class: int, seed: int) -> list[int]:
    """A seeded, class-balanced choice of `per_class` indices per class, in index order."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for k in range(len(LABELS)):
        members = np.flatnonzero(labels == k)
        chosen.extend(int(i) for i in rng.choice(members, size=per_class, replace=False))
    return sorted(chosen)


def write_demo_images(test: Split, out_dir: Path, per_class: int, seed: int) -> Split:
    """Replace the PNGs in `out_dir` with a balanced test sample; return that sample."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    idx = sample_indices(test.labels, per_class, seed)
    for n, i in enumerate(idx, start=1):
        name = f"{n:05d}_{SLUGS[test.labels[i]]}.png"
        Image.fromarray(test.images[i], mode="L").save(out_dir / name, optimize=True)
    return Split(test.images[idx], test.labels[idx])


def write_readme(
    path: Path, sizes: dict[str, int], acc: dict[str, float], demo_acc: dict[str, float],
    n_demo: int, epochs: int, seed: int, seconds: float,
) -> None:
    """Document dataset, licence, command and the measured accuracies."""
    rows = "\n".join(
        f"| `{name}` | {sizes[name] / 1024:.0f} KiB | {acc[name]:.2%} | {demo_acc[name]:.2%} |"
        for name in sizes
    )
    path.write_text(f"""\
# Demo classifier

A small CNN (2 conv blocks + 2 dense layers, ~57k parameters) that classifies 28×28 grayscale
Fashion-MNIST clothing photos into 10 classes (labels in each model's `.labels.txt`
sidecar). It exists so that `driftd demo`, the tests and the benchmarks run a real TFLite model.

| file | size | test accuracy (10,000 images) | {n_demo} bundled demo images |
|---|---|---|---|
{rows}

- `demo_classifier.tflite`: float32 input [0, 1] and float32 softmax output.
- `demo_classifier_uint8.tflite`: full-integer quantised, uint8 input (the raw pixel values)
  and uint8 softmax output (dequantised by `analyzer.model.Classifier`).
- Preprocessing: grayscale, resize to 28×28 (`ModelOptions()` defaults: stretch, auto scale).

Accuracy is measured by the training script itself, running each `.tflite` file through
`analyzer.model.Classifier` on the held-out Fashion-MNIST test split.

**Dataset**: Fashion-MNIST, (c) 2017 Zalando SE, https://github.com/zalandoresearch/fashion-mnist,
MIT (Expat) licence, read from the Debian package `dataset-fashion-mnist`
(`/usr/share/datasets/fashion-mnist`). Trained on the 60,000-image training split.

**Reproduce** (from the repository root, {epochs} epochs, seed {seed}, took {seconds:.0f} s
on 2 threads):

    pip install -e .[train]
    python -m tools.train_demo_model

The script also copies the float model and labels to `daemon/demo/model/` (so the demo works
from an installed package) and writes the class-balanced sample of test images in
`daemon/demo/images/`.
""", encoding="utf-8")


def main() -> None:
    """Parse arguments, train, convert, measure and write every output file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--threads", type=int, default=2, help="TensorFlow CPU threads")
    parser.add_argument("--per-class", type=int, default=80, help="demo images per class")
    parser.add_argument("--models-dir", type=Path, default=ROOT / "models")
    parser.add_argument("--demo-dir", type=Path, default=ROOT / "daemon" / "demo")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.monotonic()
    train_split, test_split = load_split("train"), load_split("t10k")
    model = train(train_split, args.epochs, args.seed, args.threads)
    models_dir: Path = args.models_dir
    models_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "demo_classifier.tflite": convert(model, train_split, quantise=False),
        "demo_classifier_uint8.tflite": convert(model, train_split, quantise=True),
    }
    for name, content in files.items():
        (models_dir / name).write_bytes(content)
    for stem in ("demo_classifier", "demo_classifier_uint8"):
        (models_dir / f"{stem}.labels.txt").write_text("\n".join(LABELS) + "\n")
    seconds = time.monotonic() - started

    demo_dir: Path = args.demo_dir
    (demo_dir / "model").mkdir(parents=True, exist_ok=True)
    for name in ("demo_classifier.tflite", "demo_classifier.labels.txt"):
        shutil.copyfile(models_dir / name, demo_dir / "model" / name)
    demo = write_demo_images(test_split, demo_dir / "images", args.per_class, args.seed)
    (demo_dir / "LICENSE-fashion-mnist.txt").write_text(LICENSE_TEXT, encoding="utf-8")

    acc = {name: accuracy(models_dir / name, test_split) for name in files}
    demo_acc = {name: accuracy(models_dir / name, demo) for name in files}
    sizes = {name: len(content) for name, content in files.items()}
    write_readme(
        models_dir / "README.md", sizes, acc, demo_acc, len(demo.labels),
        args.epochs, args.seed, seconds,
    )
    for name in files:
        print(f"{name}: {sizes[name]} bytes, test accuracy {acc[name]:.4f}, "
              f"demo images {demo_acc[name]:.4f}")


if __name__ == "__main__":
    main()
