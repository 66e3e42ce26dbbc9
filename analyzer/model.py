"""TFLite image classifier: load a `.tflite` file, preprocess images for it, and predict.

This is the only module in the project that imports the TFLite runtime. It accepts any
single-input NHWC image classifier: float32, uint8 or int8 input and output, any input size,
1 or 3 channels. Quantised outputs are dequantised and logits are turned into probabilities,
so `Classifier.predict` always returns float64 probability rows that sum to 1.

Runtime: `ai-edge-litert` (works with numpy 1 and 2); `tflite_runtime` is used only when it is
what is installed (it needs numpy < 2, see PITFALLS.md). What the runtime's C++ code prints
while a model loads ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") is written
straight to file descriptor 2, past Python's logging, and ai-edge-litert ignores
`TF_CPP_MIN_LOG_LEVEL` for it: `Classifier.load` captures that descriptor and re-emits each
line as a debug record (`model.runtime_printed`) of the `analyzer` logger.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from analyzer.errors import ModelError

try:
    from ai_edge_litert.interpreter import Interpreter as Interpreter
except ImportError:  # pragma: no cover - depends on what is installed
    from tflite_runtime.interpreter import Interpreter as Interpreter

logger = logging.getLogger("analyzer")

TFLITE_IDENTIFIER = b"TFL3"
"""Flatbuffer file identifier every TFLite model carries at bytes 4..8."""

RESIZE_MODES = ("stretch", "crop", "pad")
SCALE_MODES = ("auto", "unit", "mean_std", "raw")
COLOR_MODES = ("auto", "rgb", "grayscale")
_INPUT_DTYPES = (np.float32, np.uint8, np.int8)
_OUTPUT_DTYPES = (np.float32, np.uint8, np.int8)

BATCH_INPUT_VALUES = 1 << 17
"""Most input values one invoke is given (batch × H × W × C): 32 images of a 28×28 model,
one of a 224×224×3 one. The interpreter's arena grows with the batch (EfficientNet-lite0:
about 2 MB per image, 85 MB per worker at a batch of 32), while batching only pays for
tiny models: EfficientNet-lite0 took 3.2-3.6 ms per image at every batch from 1 to 32."""


@dataclass(frozen=True)
class ModelOptions:
    """How images must be prepared for the model: match how the model was trained.

    Attributes:
        labels_path: text file with one class label per line, in output order. None looks for
            `<model stem>.labels.txt`, then `labels.txt`, next to the model; without either the
            labels are `class_0`, `class_1`, ...
        input_resize: how an image is brought to the model's input size. `stretch` resizes
            to H×W ignoring the aspect ratio; `crop` centre-crops to the input's aspect ratio,
            then resizes; `pad` letterboxes (fits the whole image, pads with black).
        input_scale: how pixel values (0..255) become input values. `unit` gives [0, 1];
            `mean_std` gives `(x/255 - input_mean) / input_std` per channel; `raw` gives
            0..255 unchanged. `auto` is `unit` for a float input and, for a quantised input,
            maps 0..255 linearly onto the range the input's quantisation covers (a uint8 input
            receives the pixel values themselves, an int8 input `pixel - 128`), which is what
            full-integer converters produce for a model trained on any linear pixel scaling.
            For a quantised input, every other mode's values are quantised with the input's
            scale and zero point.
        input_mean: per-channel mean for `mean_std`: one value, or one per input channel.
        input_std: per-channel standard deviation for `mean_std`: one value or one per channel.
        input_color: `auto` takes the model's channel count (1 → grayscale, 3 → RGB); `rgb`
            requires a 3-channel input; `grayscale` converts to luminance and, for a 3-channel
            input, repeats it into all three channels.
        batch_size: images per interpreter call when the model's batch dimension can be resized,
            at most `BATCH_INPUT_VALUES` input values (so 1 for a 224×224 RGB model); a
            model with a fixed batch of 1 is run one image at a time.
        num_threads: interpreter threads (CPU kernels).
    """

    labels_path: str | None = None
    input_resize: str = "stretch"
    input_scale: str = "auto"
    input_mean: tuple[float, ...] = (0.0,)
    input_std: tuple[float, ...] = (1.0,)
    input_color: str = "auto"
    batch_size: int = 32
    num_threads: int = 1

    def __post_init__(self) -> None:
        """Reject unknown modes and non-positive sizes, naming the option and the fix.

        `input_mean` / `input_std` given as lists (as TOML config gives them) become tuples.
        """
        for name in ("input_mean", "input_std"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        for name, value, allowed in (
            ("input_resize", self.input_resize, RESIZE_MODES),
            ("input_scale", self.input_scale, SCALE_MODES),
            ("input_color", self.input_color, COLOR_MODES),
        ):
            if value not in allowed:
                raise ModelError(f"model option {name}={value!r} is unknown; use one of {allowed}")
        if self.batch_size < 1:
            raise ModelError(f"model option batch_size={self.batch_size} must be at least 1")
        if self.num_threads < 1:
            raise ModelError(f"model option num_threads={self.num_threads} must be at least 1")
        if any(s == 0 for s in self.input_std):
            raise ModelError(f"model option input_std={self.input_std} contains 0; use values > 0")


@dataclass(frozen=True)
class _Quant:
    """Affine quantisation of one tensor: real = (q - zero_point) * scale; scale 0 = none."""

    scale: float
    zero_point: int

    @classmethod
    def of(cls, detail: dict[str, Any]) -> _Quant:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return cls(float(scale), int(zero_point))


class Classifier:
    """A loaded TFLite image classifier; build it with `Classifier.load`.

    Attributes:
        path: the model file.
        options: the preprocessing options it was loaded with.
        labels: one label per class, in output order.
        num_classes: the number of outputs per image.
        input_shape: (H, W, C) of one input image.

    One instance serialises its interpreter calls with a lock; for parallel inference give each
    worker its own instance (pickling a Classifier reloads it from `path` in the new process).
    """

    path: Path
    options: ModelOptions
    labels: list[str]
    num_classes: int
    input_shape: tuple[int, int, int]

    def __init__(
        self,
        path: Path,
        options: ModelOptions,
        interpreter: Any,
        batch_capacity: int,
    ) -> None:
        """Wrap an allocated interpreter; use `Classifier.load` instead of calling this."""
        self.path = path
        self.options = options
        self._interpreter = interpreter
        self._batch_capacity = batch_capacity
        self._lock = threading.Lock()
        inp = interpreter.get_input_details()[0]
        out = interpreter.get_output_details()[0]
        self._input_index: int = inp["index"]
        self._output_index: int = out["index"]
        self._input_dtype: np.dtype[Any] = np.dtype(inp["dtype"])
        self._output_dtype: np.dtype[Any] = np.dtype(out["dtype"])
        self._input_quant = _Quant.of(inp)
        self._output_quant = _Quant.of(out)
        _, h, w, c = (int(d) for d in inp["shape"])
        self.input_shape = (h, w, c)
        self.num_classes = int(np.prod(out["shape"][1:]))
        self.labels = _load_labels(path, options.labels_path, self.num_classes)
        self._mean = np.asarray(options.input_mean, dtype=np.float32)
        self._std = np.asarray(options.input_std, dtype=np.float32)
        self._outputs_probabilities = self._probe_outputs()

    @classmethod
    def load(cls, path: str | Path, options: ModelOptions | None = None) -> Classifier:
        """Load and validate a `.tflite` image classifier.

        Raises:
            ModelError: the file is missing or unreadable, is not a TFLite model, its input
                cannot be fed with images (not one 4-D NHWC tensor with 1 or 3 channels of
                float32/uint8/int8), its output is not one (batch, classes) tensor, the options
                do not fit the input, or the labels file's line count differs from the number
                of classes. The message names the file.
        """
        path = Path(path)
        options = options or ModelOptions()
        _check_model_file(path)
        # The runtime prints while it allocates tensors (the delegate is created then), which
        # happens in each of these steps; the probe in __init__ invokes the model.
        with runtime_output_logged(path):
            interpreter = _make_interpreter(path, options.num_threads)
            _check_signature(path, interpreter, options)
            interpreter, capacity = _fit_batch(path, interpreter, options)
            return cls(path, options, interpreter, capacity)

    def __reduce__(self) -> tuple[Any, tuple[Path, ModelOptions]]:
        """Pickle as (path, options): the interpreter is rebuilt by loading the file again."""
        return (Classifier.load, (self.path, self.options))

    @property
    def batch_capacity(self) -> int:
        """Images per interpreter call (larger batches given to `predict` are split)."""
        return self._batch_capacity

    def preprocess(self, image: Image.Image) -> npt.NDArray[Any]:
        """Turn one decoded image into one input tensor (H, W, C) in the input's dtype.

        Converts the colour mode, resizes per `options.input_resize`, scales per
        `options.input_scale` and, for a uint8/int8 input, quantises with its scale and zero
        point. Any Pillow mode is accepted (palette, alpha and 16-bit images are converted).
        """
        h, w, c = self.input_shape
        gray = c == 1 or self.options.input_color == "grayscale"
        image = _to_mode(image, "L" if gray else "RGB")
        image = _resize(image, w, h, self.options.input_resize)
        pixels = np.asarray(image, dtype=np.float32)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.shape[2] != c:
            pixels = np.repeat(pixels, c, axis=2)
        return self._scale(pixels)

    def predict(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Class probabilities for a batch of preprocessed inputs.

        Args:
            batch: (n, H, W, C) array of `preprocess` outputs (n may be 0).

        Returns:
            (n, num_classes) float64 probabilities; each row sums to 1. Quantised outputs are
            dequantised; a model whose outputs are not a probability simplex (logits, decided
            once at load) gets a softmax.

        Raises:
            ModelError: the batch does not have shape (n, H, W, C).
        """
        batch = np.asarray(batch)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != self.input_shape:
            raise ModelError(
                f"model {self.path}: predict() got an array of shape {batch.shape}; expected "
                f"(n, {', '.join(map(str, self.input_shape))}) from preprocess()"
            )
        batch = batch.astype(self._input_dtype, copy=False)
        return self._to_probabilities(self._dequantise(self._invoke(batch)))

    def _scale(self, pixels: npt.NDArray[np.float32]) -> npt.NDArray[Any]:
        """Map 0..255 pixel values to the input tensor's values and dtype."""
        mode = self.options.input_scale
        quant = self._input_quant
        quantised = self._input_dtype != np.float32
        if mode == "auto" and quantised:
            # 0..255 spans the whole quantised range: uint8 gets pixels, int8 gets pixels - 128.
            offset = 128.0 if self._input_dtype == np.int8 else 0.0
            return (pixels - offset).astype(self._input_dtype)
        if mode in ("auto", "unit"):
            real = pixels / 255.0
        elif mode == "mean_std":
            real = (pixels / 255.0 - self._mean) / self._std
        else:
            real = pixels
        if not quantised:
            return real.astype(np.float32)
        if quant.scale > 0:
            real = real / quant.scale + quant.zero_point
        info = np.iinfo(self._input_dtype)
        clipped: npt.NDArray[np.floating[Any]] = np.clip(np.rint(real), info.min, info.max)
        return clipped.astype(self._input_dtype)

    def _probe_outputs(self) -> bool:
        """Whether the model already outputs probabilities, decided once from probe inputs.

        Runs black, white and two seeded random-noise images: a softmax head gives a
        probability simplex for all of them, while logits almost never do (a single image
        could by chance, which is why the decision is per model and not per batch).
        """
        h, w, c = self.input_shape
        rng = np.random.default_rng(0)
        pixels = [
            np.zeros((h, w, c), dtype=np.float32),
            np.full((h, w, c), 255.0, dtype=np.float32),
            *(rng.uniform(0.0, 255.0, (h, w, c)).astype(np.float32) for _ in range(2)),
        ]
        raw = self._dequantise(self._invoke(np.stack([self._scale(p) for p in pixels])))
        tol = self._simplex_tolerance()
        in_range = bool(np.all(raw >= -tol) and np.all(raw <= 1.0 + tol))
        return in_range and bool(np.all(np.abs(raw.sum(axis=1) - 1.0) <= tol))

    def _simplex_tolerance(self) -> float:
        """How far a row may miss the simplex: quantised softmax rounds each class by a step."""
        return max(1e-3, self.num_classes * self._output_quant.scale)

    def _invoke(self, batch: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Raw (still quantised) outputs for a batch, in chunks of the interpreter's batch."""
        n = batch.shape[0]
        raw = np.empty((n, self.num_classes), dtype=np.float64)
        cap = self._batch_capacity
        with self._lock:
            for start in range(0, n, cap):
                chunk = batch[start : start + cap]
                m = chunk.shape[0]
                if m < cap:
                    # The interpreter's batch size is fixed once allocated; pad the last chunk.
                    pad = np.zeros((cap - m, *self.input_shape), dtype=self._input_dtype)
                    chunk = np.concatenate([chunk, pad])
                self._interpreter.set_tensor(self._input_index, np.ascontiguousarray(chunk))
                self._interpreter.invoke()
                out = self._interpreter.get_tensor(self._output_index)
                raw[start : start + m] = out.reshape(cap, -1)[:m]
        return raw

    def _dequantise(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Real output values: (q - zero_point) * scale for a quantised output."""
        quant = self._output_quant
        if self._output_dtype != np.float32 and quant.scale > 0:
            return (raw - quant.zero_point) * quant.scale
        return raw

    def _to_probabilities(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Softmax logits (or clip probabilities), then renormalise rows to sum to exactly 1."""
        if raw.size == 0:
            return raw
        if self._outputs_probabilities:
            probs = np.clip(raw, 0.0, None)
        else:
            probs = np.exp(raw - raw.max(axis=1, keepdims=True))
        total = probs.sum(axis=1, keepdims=True)
        uniform = np.full_like(probs, 1.0 / self.num_classes)
        return np.where(total > 0, probs / np.where(total > 0, total, 1.0), uniform)


_STDERR_LOCK = threading.Lock()


@contextmanager
def runtime_output_logged(model: Path) -> Iterator[None]:
    """Send what is written to file descriptor 2 inside the block to the log, not stderr.

    Descriptor 2 points at a temporary file meanwhile (a file, unlike a pipe, never fills
    and blocks the writer); each non-blank line is then logged at debug level. The swap is
    process-wide, so it is kept to model loading, under a lock; should descriptor 2 be
    closed or not duplicable, the block runs as it is.
    """
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        try:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            for line in sink.read().decode("utf-8", "replace").splitlines():
                if line.strip():
                    logger.debug("model.runtime_printed",
                                 extra={"model": str(model), "text": line.strip()})


def _check_model_file(path: Path) -> None:
    """Reject missing, empty and non-TFLite files by name (reads the first 8 bytes)."""
    if not path.exists():
        raise ModelError(f"model file {path} does not exist; check the model path setting")
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file; point it at a .tflite file")
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise ModelError(f"model file {path} cannot be read: {err.strerror}") from err
    if head[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(
            f"model file {path} is not a TFLite model (no {TFLITE_IDENTIFIER.decode()!r} "
            f"identifier at byte 4; first bytes {head[:8]!r}); export it with "
            "the TFLite converter"
        )


def _make_interpreter(path: Path, num_threads: int) -> Any:
    """Build and allocate an interpreter, turning runtime failures into a ModelError.

    From the path, not the bytes: the runtime maps the file, so every worker shares one
    copy of the weights in the page cache instead of holding its own (5 MB for
    EfficientNet-lite0). Replace a model file by renaming a new one over it, never by
    rewriting it in place.
    """
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as err:
        raise ModelError(
            f"model file {path} could not be loaded by the TFLite runtime: {err}"
        ) from err
    return interpreter


def _check_signature(path: Path, interpreter: Any, options: ModelOptions) -> None:
    """Check that the model takes one NHWC image batch and returns one (batch, k) tensor."""
    inputs = interpreter.get_input_details()
    outputs = interpreter.get_output_details()
    if len(inputs) != 1:
        raise ModelError(
            f"model file {path} has {len(inputs)} inputs; the analyzer feeds exactly one "
            "image tensor (export a single-input classifier)"
        )
    if len(outputs) != 1:
        raise ModelError(
            f"model file {path} has {len(outputs)} outputs; the analyzer reads exactly one "
            "(batch, classes) tensor (export a single-output classifier)"
        )
    inp, out = inputs[0], outputs[0]
    shape = [int(d) for d in inp["shape"]]
    dtype = np.dtype(inp["dtype"])
    if len(shape) != 4:
        raise ModelError(
            f"model file {path} has input shape {shape}; the analyzer needs a 4-D NHWC image "
            "input (batch, height, width, channels)"
        )
    signature = [int(d) for d in inp.get("shape_signature", inp["shape"])]
    if -1 in signature[1:3]:
        raise ModelError(
            f"model file {path} has a dynamic input size (signature {signature}); export it "
            "with a fixed height and width so images can be resized to it"
        )
    if shape[3] not in (1, 3):
        raise ModelError(
            f"model file {path} has {shape[3]} input channels (shape {shape}); the analyzer "
            "feeds 1 (grayscale) or 3 (RGB) channels in NHWC order"
        )
    if dtype.type not in _INPUT_DTYPES:
        raise ModelError(
            f"model file {path} has input dtype {dtype}; the analyzer feeds float32, uint8 "
            "or int8 image tensors"
        )
    out_dtype = np.dtype(out["dtype"])
    if out_dtype.type not in _OUTPUT_DTYPES or len(out["shape"]) < 2:
        raise ModelError(
            f"model file {path} has output dtype {out_dtype} and shape {list(out['shape'])}; "
            "the analyzer reads a float32/uint8/int8 (batch, classes) tensor"
        )
    classes = int(np.prod(out["shape"][1:]))
    if classes < 2:
        raise ModelError(
            f"model file {path} has {classes} output value(s) per image; the analyzer needs a "
            "classifier with one output per class (at least 2; export a 2-class softmax head)"
        )
    if options.input_color == "rgb" and shape[3] != 3:
        raise ModelError(
            f"model file {path} has a {shape[3]}-channel input but input_color='rgb'; "
            "use input_color='auto' or 'grayscale'"
        )
    for name, values in (("input_mean", options.input_mean), ("input_std", options.input_std)):
        if len(values) not in (1, shape[3]):
            raise ModelError(
                f"model option {name}={values} has {len(values)} values; model file {path} "
                f"has {shape[3]} channels: give 1 or {shape[3]} values"
            )


def batch_for(shape: list[int], options: ModelOptions) -> int:
    """Images per interpreter call for an NHWC input ``shape``: ``options.batch_size``, but
    at most ``BATCH_INPUT_VALUES`` input values (1 for a 224-px model, whose arena at a batch
    of 32 would cost ~85 MB per worker for no speed)."""
    per_image = max(1, shape[1] * shape[2] * shape[3])
    return max(1, min(options.batch_size, BATCH_INPUT_VALUES // per_image))


def _fit_batch(path: Path, interpreter: Any, options: ModelOptions) -> tuple[Any, int]:
    """Resize the batch dimension to `options.batch_size` (at most `BATCH_INPUT_VALUES`
    input values) when the model allows it.

    Returns the interpreter to use and its batch capacity. A model whose batch dimension is
    fixed (or whose graph fails to resize) keeps its own batch size.
    """
    inp = interpreter.get_input_details()[0]
    shape = [int(d) for d in inp["shape"]]
    signature = [int(d) for d in inp.get("shape_signature", inp["shape"])]
    want = batch_for(shape, options)
    resizable = signature[0] == -1 or shape[0] == 1
    if shape[0] == want or not resizable:
        return interpreter, shape[0]
    try:
        interpreter.resize_tensor_input(inp["index"], [want, *shape[1:]], strict=False)
        interpreter.allocate_tensors()
        # Output shapes are only propagated by an invoke (the delegate plans lazily).
        interpreter.set_tensor(inp["index"], np.zeros([want, *shape[1:]], dtype=inp["dtype"]))
        interpreter.invoke()
        out = interpreter.get_output_details()[0]
        if int(out["shape"][0]) != want:
            raise ValueError(f"output batch stayed {int(out['shape'][0])}")
    except (ValueError, RuntimeError):
        # Some graphs hard-code the batch in a Reshape; run those one image at a time.
        return _make_interpreter(path, options.num_threads), shape[0]
    return interpreter, want


def _load_labels(model_path: Path, labels_path: str | None, num_classes: int) -> list[str]:
    """Labels from the given file, else a sidecar next to the model, else `class_<i>`."""
    candidate: Path | None
    if labels_path is not None:
        candidate = Path(labels_path)
        if not candidate.is_file():
            raise ModelError(
                f"labels file {candidate} does not exist; fix the labels path for model "
                f"{model_path} or remove it to use class_0..class_{num_classes - 1}"
            )
    else:
        sidecars = [model_path.with_suffix(".labels.txt"), model_path.parent / "labels.txt"]
        candidate = next((p for p in sidecars if p.is_file()), None)
    if candidate is None:
        return [f"class_{i}" for i in range(num_classes)]
    try:
        lines = candidate.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ModelError(f"labels file {candidate} cannot be read as UTF-8 text: {err}") from err
    labels = [line.strip() for line in lines]
    while labels and not labels[-1]:
        labels.pop()
    if len(labels) != num_classes:
        raise ModelError(
            f"labels file {candidate} has {len(labels)} labels but model {model_path} has "
            f"{num_classes} classes; give one label per line, in output order"
        )
    return labels


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """Convert any Pillow image to 'L' or 'RGB' (palette, alpha, 16-bit and CMYK included)."""
    if image.mode == mode:
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # Pillow clips 16-bit values to 255 when converting; rescale the range instead.
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max() if arr.size and arr.max() > 0 else 1.0
        image = Image.fromarray((arr * (255.0 / max(peak, 255.0))).astype(np.uint8), mode="L")
        return image if mode == "L" else image.convert(mode)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    return image.convert(mode)


def _resize(image: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """Bring an image to width×height by stretching, centre-cropping or letterboxing."""
    if image.size == (width, height):
        return image
    if mode == "crop":
        src_w, src_h = image.size
        scale = min(src_w / width, src_h / height)
        crop_w, crop_h = round(width * scale), round(height * scale)
        left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
        image = image.crop((left, top, left + crop_w, top + crop_h))
    elif mode == "pad":
        src_w, src_h = image.size
        scale = min(width / src_w, height / src_h)
        new_w, new_h = max(1, round(src_w * scale)), max(1, round(src_h * scale))
        canvas = Image.new(image.mode, (width, height))
        canvas.paste(
            image.resize((new_w, new_h), Image.Resampling.BILINEAR),
            ((width - new_w) // 2, (height - new_h) // 2),
        )
        return canvas
    return image.resize((width, height), Image.Resampling.BILINEAR)
