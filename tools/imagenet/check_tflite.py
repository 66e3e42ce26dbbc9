"""Top-3 ImageNet classes of scikit-image's photographs through each given .tflite model.

Usage: python check_tflite.py LABELS_TXT MODEL.tflite [MODEL.tflite ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import skimage.data
from ai_edge_litert.interpreter import Interpreter
from PIL import Image

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "cat")


def main(labels_path: str, models: list[str]) -> None:
    names = [line.split(",")[0] for line in Path(labels_path).read_text().splitlines()]
    for path in models:
        interpreter = Interpreter(model_path=path)
        interpreter.allocate_tensors()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        print(f"== {Path(path).name}: in {inp['shape']} {inp['dtype'].__name__}, "
              f"out {out['shape']} {out['dtype'].__name__}")
        height, width = inp["shape"][1:3]
        for photo in PHOTOS:
            image = Image.fromarray(getattr(skimage.data, photo)()).convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            image = image.crop((left, top, left + side, top + side))
            pixels = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
            interpreter.set_tensor(inp["index"], pixels[None].astype(inp["dtype"]))
            interpreter.invoke()
            probs = interpreter.get_tensor(out["index"])[0].astype(np.float32)
            if out["dtype"] != np.float32:
                scale, zero = out["quantization"]
                probs = (probs - zero) * scale
            top3 = np.argsort(-probs)[:3]
            print(f"  {photo:10s}", ", ".join(f"{names[t]} {probs[t]:.2f}" for t in top3))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
