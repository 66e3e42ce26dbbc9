"""Wrap an onnx2tf SavedModel (NHWC, input normalised as (x-127)/128) so that the
TFLite model takes raw RGB pixels and returns softmax probabilities, then write
  <out>_float32.tflite : float32 [1,H,W,3] pixels 0..255 -> float32 [1,1000] probs
  <out>_uint8.tflite   : full-integer (int8 kernels), uint8 [1,H,W,3] pixels -> uint8 [1,1000] probs
Usage: python convert_tflite.py SAVED_MODEL_DIR SIZE OUT_PREFIX [CALIB_DIR]
CALIB_DIR (optional): folder of JPEG/PNG photos for the representative dataset;
default: scikit-image's bundled photos with random crops/flips."""
import sys, glob, os, numpy as np, tensorflow as tf
from PIL import Image
sm_dir, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
calib_dir = sys.argv[4] if len(sys.argv) > 4 else None
MEAN, STD = 127.0, 128.0   # EfficientNet-Lite preprocessing

sig = tf.saved_model.load(sm_dir).signatures['serving_default']
in_name = list(sig.structured_input_signature[1].keys())[0]
out_name = list(sig.structured_outputs.keys())[0]

class Wrapped(tf.Module):
    def __init__(self, f):
        super().__init__(); self.f = f
    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32, name='pixels')])
    def __call__(self, pixels):
        logits = self.f(**{in_name: (pixels - MEAN) / STD})[out_name]
        return {'probs': tf.nn.softmax(logits)}
w = Wrapped(sig)
cf = w.__call__.get_concrete_function()

def center_crop(im):
    W, H = im.size; s = min(W, H)
    return im.crop(((W - s) // 2, (H - s) // 2, (W - s) // 2 + s, (H - s) // 2 + s))

def calib_images(n=200, seed=0):
    rng = np.random.default_rng(seed)
    if calib_dir:
        files = sorted(glob.glob(os.path.join(calib_dir, '**', '*.*'), recursive=True))
        files = [f for f in files if f.lower().endswith(('.jpg', '.jpeg', '.png'))]
        for f in rng.choice(files, size=min(n, len(files)), replace=False):
            yield center_crop(Image.open(f).convert('RGB')).resize((size, size), Image.BILINEAR)
    else:
        import skimage.data as d
        srcs = [Image.fromarray(getattr(d, k)()).convert('RGB') for k in
                ['astronaut', 'chelsea', 'coffee', 'rocket', 'cat', 'immunohistochemistry', 'retina']]
        for i in range(n):
            im = srcs[i % len(srcs)]; W, H = im.size
            s = int(min(W, H) * rng.uniform(0.5, 1.0)); x = rng.integers(0, W - s + 1); y = rng.integers(0, H - s + 1)
            im = im.crop((x, y, x + s, y + s)).resize((size, size), Image.BILINEAR)
            if rng.random() < 0.5: im = im.transpose(Image.FLIP_LEFT_RIGHT)
            yield im

def rep():
    for im in calib_images():
        yield [np.asarray(im, np.float32)[None]]
    # make sure the full 0..255 input range is seen so the uint8 input gets scale 1, zero point 0
    yield [np.zeros((1, size, size, 3), np.float32)]
    yield [np.full((1, size, size, 3), 255.0, np.float32)]

c = tf.lite.TFLiteConverter.from_concrete_functions([cf], w)
open(out + '_float32.tflite', 'wb').write(c.convert())

c = tf.lite.TFLiteConverter.from_concrete_functions([cf], w)
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = rep
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
c.inference_input_type = tf.uint8
c.inference_output_type = tf.uint8
open(out + '_uint8.tflite', 'wb').write(c.convert())
print('wrote', out + '_float32.tflite', out + '_uint8.tflite')
