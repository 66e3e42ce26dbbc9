"""Build the tiny TFLite models tests/analyzer/test_model.py uses (needs tensorflow-cpu).

Run from the repository root: `python -m tests.analyzer.data.make_test_models`. The outputs
are committed so the tests run without TensorFlow.

- `logits_rgb.tflite`: float32 8×8×3 input, float32 *logits* output (no softmax) with known
  weights: for an image whose pixels all have the value x after unit scaling, the logits are
  `[4x, 1, -4x]`.
- `logits_rgb_int8.tflite`: the same network, full-integer quantised with int8 input/output.
- `input_2d.tflite`: a (batch, 4) input, not an image.
- `input_4ch.tflite`: an 8×8×4 NHWC input (four channels).
- `two_inputs.tflite`: two image inputs.
- `dynamic_hw.tflite`: an image input of any height and width (None × None × 3).
- `single_output.tflite`: one output value per image (a sigmoid-style head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

HERE = Path(__file__).resolve().parent


def logits_model() -> tf.keras.Model:
    """8×8×3 → 3 logits: mean pixel × [4, 0, -4] + [0, 1, 0]."""
    inp = tf.keras.Input((8, 8, 3))
    dense = tf.keras.layers.Dense(3)
    out = dense(tf.keras.layers.Flatten()(inp))
    n = 8 * 8 * 3
    kernel = np.zeros((n, 3), dtype=np.float32)
    kernel[:, 0], kernel[:, 2] = 4.0 / n, -4.0 / n
    dense.set_weights([kernel, np.array([0.0, 1.0, 0.0], dtype=np.float32)])
    return tf.keras.Model(inp, out)


def to_tflite(model: tf.keras.Model, int8: bool = False) -> bytes:
    """Convert a Keras model; optionally full-integer int8 with int8 input and output."""
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(0)

        def representative() -> object:
            for value in np.linspace(0.0, 1.0, 64):
                noise = rng.uniform(-0.02, 0.02, (1, 8, 8, 3))
                yield [np.clip(value + noise, 0.0, 1.0).astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return bytes(converter.convert())


def main() -> None:
    """Write every test model next to this file."""
    tf.keras.utils.set_random_seed(0)
    (HERE / "logits_rgb.tflite").write_bytes(to_tflite(logits_model()))
    (HERE / "logits_rgb_int8.tflite").write_bytes(to_tflite(logits_model(), int8=True))

    flat = tf.keras.Input((4,))
    two_d = tf.keras.Model(flat, tf.keras.layers.Dense(3)(flat))
    (HERE / "input_2d.tflite").write_bytes(to_tflite(two_d))

    four = tf.keras.Input((8, 8, 4))
    four_ch = tf.keras.Model(four, tf.keras.layers.Dense(3)(tf.keras.layers.Flatten()(four)))
    (HERE / "input_4ch.tflite").write_bytes(to_tflite(four_ch))

    a, b = tf.keras.Input((8, 8, 3)), tf.keras.Input((8, 8, 3))
    merged = tf.keras.layers.Flatten()(tf.keras.layers.Add()([a, b]))
    two = tf.keras.Model([a, b], tf.keras.layers.Dense(3)(merged))
    (HERE / "two_inputs.tflite").write_bytes(to_tflite(two))

    anysize = tf.keras.Input((None, None, 3))
    pooled = tf.keras.layers.GlobalAveragePooling2D()(anysize)
    dynamic = tf.keras.Model(anysize, tf.keras.layers.Dense(3)(pooled))
    (HERE / "dynamic_hw.tflite").write_bytes(to_tflite(dynamic))

    rgb = tf.keras.Input((8, 8, 3))
    single = tf.keras.Model(rgb, tf.keras.layers.Dense(1)(tf.keras.layers.Flatten()(rgb)))
    (HERE / "single_output.tflite").write_bytes(to_tflite(single))


if __name__ == "__main__":
    main()
