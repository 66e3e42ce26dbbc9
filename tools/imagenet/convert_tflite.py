"""Wrap an onnx2tf SavedModel so the TFLite model takes raw pixels and returns the softmax.

Writes ``<OUT>_float32.tflite`` (float32 [1, H, W, 3] pixels 0..255 → float32 [1, 1000]) and
``<OUT>_uint8.tflite`` (full-integer: uint8 pixels → uint8 probabilities, int8 kernels).

Usage: python convert_tflite.py SAVED_MODEL_DIR SIZE OUT_PREFIX [CALIB_DIR]
CALIB_DIR: photos for the representative dataset (default: random crops of scikit-image's
bundled photographs).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

MEAN, STD = 127.0, 128.0  # EfficientNet-Lite preprocessing, folded into the graph


def centre_square(image: Image.Image) -> Image.Image:
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    return image.crop((left, top, left + side, top + side))


def calibration_images(size: int, calib_dir: str | None, n: int = 200,
                       seed: int = 0) -> Iterator[Image.Image]:
    rng = np.random.default_rng(seed)
    if calib_dir:
        files = sorted(p for p in Path(calib_dir).rglob("*")
                       if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        for f in rng.choice(files, size=min(n, len(files)), replace=False):
            image = centre_square(Image.open(f).convert("RGB"))
            yield image.resize((size, size), Image.Resampling.BILINEAR)
        return
    import skimage.data

    sources = [Image.fromarray(getattr(skimage.data, k)()).convert("RGB") for k in
               ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry",
                "retina")]
    for i in range(n):
        image = sources[i % len(sources)]
        side = int(min(image.size) * rng.uniform(0.5, 1.0))
        left = int(rng.integers(0, image.width - side + 1))
        top = int(rng.integers(0, image.height - side + 1))
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        yield image


def main(saved_model: str, size: int, out: str, calib_dir: str | None) -> None:
    signature = tf.saved_model.load(saved_model).signatures["serving_default"]
    in_name = next(iter(signature.structured_input_signature[1]))
    out_name = next(iter(signature.structured_outputs))

    class Wrapped(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32,
                                                     name="pixels")])
        def __call__(self, pixels: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = signature(**{in_name: (pixels - MEAN) / STD})[out_name]
            return {"probs": tf.nn.softmax(logits)}

    wrapped = Wrapped()
    concrete = wrapped.__call__.get_concrete_function()

    def representative() -> Iterator[list[np.ndarray]]:
        for image in calibration_images(size, calib_dir):
            yield [np.asarray(image, np.float32)[None]]
        # The full 0..255 range, so the uint8 input gets scale 1 and zero point 0.
        yield [np.zeros((1, size, size, 3), np.float32)]
        yield [np.full((1, size, size, 3), 255.0, np.float32)]

    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], wrapped)
    Path(out + "_float32.tflite").write_bytes(converter.convert())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], wrapped)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    Path(out + "_uint8.tflite").write_bytes(converter.convert())
    print("wrote", out + "_float32.tflite", out + "_uint8.tflite")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
