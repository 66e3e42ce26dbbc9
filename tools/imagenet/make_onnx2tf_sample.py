# onnx2tf looks for ./calibration_image_sample_data_20x128x128x3_float32.npy (else downloads it from GitHub).
# Build it offline from scikit-image's bundled photos (RGB, [0,1] float32).
import numpy as np, skimage.data as d
from PIL import Image
names = ['astronaut','chelsea','coffee','rocket','cat','immunohistochemistry','retina','hubble_deep_field']
imgs = []
for i in range(20):
    a = getattr(d, names[i % len(names)])()
    im = Image.fromarray(a).convert('RGB')
    if i >= len(names): im = im.transpose(Image.FLIP_LEFT_RIGHT)
    imgs.append(np.asarray(im.resize((128, 128), Image.BILINEAR), np.float32) / 255.0)
np.save('calibration_image_sample_data_20x128x128x3_float32.npy', np.stack(imgs))
print(np.stack(imgs).shape)
