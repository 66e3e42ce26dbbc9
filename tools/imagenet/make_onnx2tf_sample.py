"""Write the calibration sample onnx2tf reads (it downloads it from GitHub when missing).

onnx2tf looks for ./calibration_image_sample_data_20x128x128x3_float32.npy: 20 RGB images in
[0, 1]. This builds it offline from scikit-image's bundled photographs.
"""

from __future__ import annotations

import numpy as np
import skimage.data
from PIL import Image

NAMES = ("astronaut", "chelsea", "coffee", "rocket", "cat", "immunohistochemistry", "retina",
         "hubble_deep_field")


def main() -> None:
    images = []
    for i in range(20):
        image = Image.fromarray(getattr(skimage.data, NAMES[i % len(NAMES)])()).convert("RGB")
        if i >= len(NAMES):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        resized = image.resize((128, 128), Image.Resampling.BILINEAR)
        images.append(np.asarray(resized, np.float32) / 255.0)
    np.save("calibration_image_sample_data_20x128x128x3_float32.npy", np.stack(images))


if __name__ == "__main__":
    main()
