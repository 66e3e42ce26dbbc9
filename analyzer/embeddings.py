"""The classifier's penultimate-layer embedding, read from a TFLite model in the same invoke.

An image classifier ends in a head: a fully-connected layer (or a 1×1 convolution on a pooled
map) that turns a feature vector, the *embedding*, into one logit per class, usually followed
by a softmax and, in quantised models, a re-quantisation. The embedding is what the model
"sees": drift in it is drift that matters to the model, whether or not the predicted classes
move. This module finds that tensor and makes it a second model output, so one interpreter
call returns both the class scores and the embedding.

Finding the tensor (``locate_embedding``). From the class output, walk back through the ops
that only re-express the class scores (QUANTIZE, DEQUANTIZE, SOFTMAX, LOG_SOFTMAX, LOGISTIC,
RESHAPE, SQUEEZE, CAST, and an ADD/MUL with a constant: a separate bias or temperature) to the
head: FULLY_CONNECTED, BATCH_MATMUL, or CONV_2D whose output is 1×1. The head's data input is
the embedding (for EfficientNet-Lite: the 1,280 values after the global mean pool; for the
bundled demo CNN: the 64-unit dense layer). A tensor may also be named (``tensor="name"``) or
given by index (``tensor=163``), e.g. for a model whose head the walk does not recognise.

Making it an output (``add_embedding_output``). The model's flatbuffer is unpacked with the
schema module that ships inside ``ai-edge-litert``, the tensor's index is appended to the
subgraph's outputs, and the model is packed again (weights 16-byte aligned, as the TFLite
converter writes them). The interpreter then keeps that one tensor alive; the alternative,
``experimental_preserve_all_tensors``, keeps every activation of the network and runs without
the XNNPACK delegate (see ``bench/embedding_cost.py`` for both costs). The class output stays
output 0 and is bit-for-bit what the original model computes.

Exporting a model that outputs its embedding (then nothing is rewritten): give the Keras model
two outputs and convert it, e.g.::

    features = base_model.get_layer("global_average_pooling2d").output
    two = keras.Model(base_model.input, [base_model.output, features])
    tflite = tf.lite.TFLiteConverter.from_keras_model(two).convert()

and name the embedding output (``tensor=``) if the automatic walk does not find it. Without an
export, the automatic rewrite is enough for any classifier whose head is listed above.

Quantised embeddings (int8, uint8, int16) are dequantised with the tensor's scale and zero
point; ``EmbeddingTensor.read`` returns float64 rows of ``dim`` values per image.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import flatbuffers
import numpy as np
import numpy.typing as npt

from analyzer.errors import ModelError
from analyzer.model import (
    Classifier,
    Interpreter,
    ModelOptions,
    batch_for,
    runtime_output_logged,
)

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:  # pragma: no cover - depends on what is installed
    schema = None

TensorRef = int | str | None
"""How a caller names the embedding tensor: its index, its name, or None (find it)."""

#: Ops that only re-express the class scores: the walk from the output passes through them.
_PASS_THROUGH = ("QUANTIZE", "DEQUANTIZE", "SOFTMAX", "LOG_SOFTMAX", "LOGISTIC", "RESHAPE",
                 "SQUEEZE", "CAST")
#: Elementwise ops that may add a separate bias or divide by a temperature (one operand const).
_CONSTANT_ARITHMETIC = ("ADD", "SUB", "MUL", "DIV")
#: Ops that turn the embedding into class scores.
_HEADS = ("FULLY_CONNECTED", "BATCH_MATMUL", "CONV_2D")
_DTYPES = {"FLOAT32": np.float32, "INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16}
#: TFLite reads weights in place; the converter aligns every buffer to 16 bytes.
_BUFFER_ALIGNMENT = 16


@dataclass(frozen=True)
class EmbeddingTensor:
    """Where a model's embedding is and how to read it.

    Attributes:
        index: the tensor's index in the model's main subgraph.
        name: the tensor's name in the model.
        dim: values per image (the product of the non-batch dimensions).
        dtype: ``float32``, ``int8``, ``uint8`` or ``int16``.
        scale: quantisation scale (0.0 for a float tensor).
        zero_point: quantisation zero point.
        found_by: how it was chosen: ``auto`` (the walk from the class output), ``name``,
            ``index``, or ``output`` (the model already outputs it).
        head: the op that reads it to make the class scores (``auto`` only, else "").
    """

    index: int
    name: str
    dim: int
    dtype: str
    scale: float
    zero_point: int
    found_by: str
    head: str = ""

    def dequantise(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        """Real values of raw tensor contents, as float64: ``(q - zero_point) * scale``."""
        values = np.asarray(raw, dtype=np.float64)
        if self.dtype != "float32" and self.scale > 0:
            return (values - self.zero_point) * self.scale
        return values

    def read(self, interpreter: Any, rows: int) -> npt.NDArray[np.float64]:
        """The first ``rows`` images' embeddings after an invoke, shape (rows, dim), float64.

        Raises ``ModelError`` when the tensor does not hold ``dim`` values per batch row (a
        graph whose batch dimension is not the tensor's first).
        """
        raw = np.asarray(interpreter.get_tensor(self.index))
        batch = raw.shape[0] if raw.ndim else 0
        if batch < rows or raw.size != batch * self.dim:
            raise ModelError(
                f"embedding tensor {self.name!r} (index {self.index}) has shape "
                f"{list(raw.shape)}; expected (batch, {self.dim}) with batch ≥ {rows}; "
                "name a tensor whose first dimension is the image batch")
        return self.dequantise(raw.reshape(batch, self.dim)[:rows])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON form (what a profile records about the embedding's origin)."""
        return asdict(self)


def _schema() -> Any:
    if schema is None:  # pragma: no cover - depends on what is installed
        raise ModelError(
            "reading a model's embedding needs the TFLite flatbuffer schema shipped with "
            "ai-edge-litert; install it with `pip install ai-edge-litert`")
    return schema


def _unpack(content: bytes, source: str) -> Any:
    """The model as schema objects; raises ``ModelError`` for a file it cannot rewrite."""
    sch = _schema()
    if content[4:8] != b"TFL3":
        raise ModelError(f"model {source} is not a TFLite model (no 'TFL3' identifier at "
                         "byte 4); export it with the TFLite converter")
    try:
        model = sch.ModelT.InitFromPackedBuf(content, 0)
    except Exception as err:  # a truncated or foreign flatbuffer fails anywhere inside
        raise ModelError(f"model {source} cannot be parsed as a TFLite flatbuffer: {err}") from err
    if not model.subgraphs:
        raise ModelError(f"model {source} has no subgraph; export it with the TFLite converter")
    return model


def _names(enum: Any) -> dict[int, str]:
    return {v: k for k, v in vars(enum).items() if not k.startswith("_")}


def _op_name(model: Any, op: Any) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    # Builtin codes above 127 live only in `builtinCode`; older files fill only the deprecated one.
    value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    name = _names(_schema().BuiltinOperator).get(value, f"op#{value}")
    return str(code.customCode.decode()) if name == "CUSTOM" and code.customCode else name


def _tensor_name(tensor: Any) -> str:
    name = tensor.name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or "")


def _is_constant(model: Any, graph: Any, index: int) -> bool:
    """Whether tensor ``index`` holds weights: its own buffer, or a DEQUANTIZE of weights
    (how float16-quantised models store them)."""
    buffer = graph.tensors[index].buffer
    data = model.buffers[buffer].data if 0 < buffer < len(model.buffers) else None
    if data is not None and len(data) > 0:
        return True
    for op in graph.operators:
        if index in [int(t) for t in op.outputs] and _op_name(model, op) == "DEQUANTIZE":
            return len(op.inputs) > 0 and _is_constant(model, graph, int(op.inputs[0]))
    return False


def _describe(model: Any, graph: Any, index: int, found_by: str, head: str,
              source: str) -> EmbeddingTensor:
    """An ``EmbeddingTensor`` for tensor ``index``, checked to be a readable activation."""
    tensor = graph.tensors[index]
    name = _tensor_name(tensor)
    type_name = _names(_schema().TensorType).get(int(tensor.type), str(tensor.type))
    if type_name not in _DTYPES:
        raise ModelError(
            f"embedding tensor {name!r} (index {index}) of model {source} has type {type_name}; "
            "the analyzer reads float32, int8, uint8 or int16 embeddings: name another tensor")
    if _is_constant(model, graph, index):
        raise ModelError(
            f"tensor {name!r} (index {index}) of model {source} is a constant (weights), not "
            "an activation; name the layer output that feeds the classification head")
    if _source_tensor(model, graph, index) in [int(i) for i in graph.inputs]:
        raise ModelError(
            f"tensor {name!r} (index {index}) of model {source} is the model's input image, "
            "not an embedding: the model has no hidden layer before its head, so drift in "
            "what it sees is the image features' drift; turn the embedding test off")
    shape = [int(d) for d in (tensor.shape if tensor.shape is not None else [])]
    if len(shape) < 2:
        raise ModelError(
            f"tensor {name!r} (index {index}) of model {source} has shape {shape}; an "
            "embedding needs a batch dimension and at least one value per image")
    quant = tensor.quantization
    scales = list(quant.scale) if quant is not None and quant.scale is not None else []
    zeros = list(quant.zeroPoint) if quant is not None and quant.zeroPoint is not None else []
    if len(scales) > 1:
        raise ModelError(
            f"tensor {name!r} (index {index}) of model {source} is quantised per channel "
            f"({len(scales)} scales); name a per-tensor quantised or float activation")
    return EmbeddingTensor(
        index=index, name=name, dim=int(np.prod(shape[1:])), dtype=type_name.lower(),
        scale=float(scales[0]) if scales else 0.0,
        zero_point=int(zeros[0]) if zeros else 0, found_by=found_by, head=head)


def _producers(graph: Any) -> dict[int, int]:
    """Tensor index → index of the op that writes it."""
    return {int(t): i for i, op in enumerate(graph.operators) for t in op.outputs if t >= 0}


def _source_tensor(model: Any, graph: Any, index: int) -> int:
    """The tensor that ``index`` is a reshaped view of (through RESHAPE/SQUEEZE), or itself."""
    produced_by = _producers(graph)
    while index in produced_by:
        op = graph.operators[produced_by[index]]
        if _op_name(model, op) not in ("RESHAPE", "SQUEEZE"):
            break
        index = int(op.inputs[0])
    return index


def _walk_to_head(model: Any, graph: Any, output: int, source: str) -> tuple[int, str]:
    """From class output ``output`` back to the head; returns (embedding index, head op name).

    Raises ``ModelError`` naming the op where the walk stopped and how to name the tensor.
    """
    produced_by = _producers(graph)
    tensor, seen = output, set()
    stop = "no op (a graph input)"
    while tensor in produced_by and tensor not in seen:
        seen.add(tensor)
        op = graph.operators[produced_by[tensor]]
        name = _op_name(model, op)
        data = [int(t) for t in op.inputs if t >= 0 and not _is_constant(model, graph, int(t))]
        stop = f"a {name} op"
        if name in _HEADS:
            shape = [int(d) for d in graph.tensors[tensor].shape]
            if len(data) != 1:
                stop = f"a {name} op with {len(data)} non-constant inputs"
                break
            if name == "CONV_2D" and (len(shape) != 4 or shape[1:3] != [1, 1]):
                stop = f"a CONV_2D op with a {shape[1:3]} output map"
                break
            return data[0], name
        # A pass-through op carries the scores on; an ADD/MUL... must have one data operand.
        if (name in _PASS_THROUGH and data) or (name in _CONSTANT_ARITHMETIC and len(data) == 1):
            tensor = data[0]
        else:
            break
    raise ModelError(
        f"cannot find the embedding of model {source} automatically: walking back from the "
        f"class output, tensor {_tensor_name(graph.tensors[tensor])!r} is produced by {stop}, "
        "where a fully-connected or 1×1 convolution head reading one activation was expected; "
        f"name the embedding tensor (by name or index), e.g. one of {_candidates(graph)}")


def _candidates(graph: Any, count: int = 4) -> list[str]:
    """The last few activations of the graph, as hints in an error message."""
    names: list[str] = []
    for op in reversed(graph.operators):
        for t in op.outputs:
            if t >= 0 and len(names) < count:
                tensor = graph.tensors[int(t)]
                shape = [int(d) for d in tensor.shape] if tensor.shape is not None else []
                names.append(f"{int(t)}:{_tensor_name(tensor)} {shape}")
    return names


def _class_output(model: Any, graph: Any, source: str) -> tuple[int, int | None]:
    """The class output's index and, for a two-output model, the output it is computed from.

    A model exported with ``[probabilities, embedding]`` outputs has one output whose head
    reads the other; that pair is returned. One output: (it, None).
    """
    outputs = [int(t) for t in graph.outputs]
    if len(outputs) == 1:
        return outputs[0], None
    if len(outputs) == 2:
        for cls, emb in (outputs, outputs[::-1]):
            try:
                found, _ = _walk_to_head(model, graph, cls, source)
            except ModelError:
                continue
            if found == emb:
                return cls, emb
    raise ModelError(
        f"model {source} has {len(outputs)} outputs and none is the classification head of "
        "another; export the classifier with one class output (and optionally its embedding "
        "as a second output)")


def locate_embedding(content: bytes, tensor: TensorRef = None,
                     source: str = "<bytes>") -> EmbeddingTensor:
    """Find the embedding tensor of a TFLite classifier.

    Args:
        content: the ``.tflite`` file's bytes.
        tensor: None to find it from the graph (see the module docstring), a tensor name, or
            a tensor index in the main subgraph.
        source: how messages name the model (its path).

    Raises:
        ModelError: the bytes are not a TFLite model, the name or index does not exist, the
            walk does not reach a recognised head, or the tensor cannot be an embedding (a
            constant, the model input, an unsupported type). The message says how to fix it.
    """
    model = _unpack(content, source)
    graph = model.subgraphs[0]
    class_output, exported = _class_output(model, graph, source)
    if tensor is None:
        if exported is not None:
            return _describe(model, graph, exported, "output", "", source)
        index, head = _walk_to_head(model, graph, class_output, source)
        return _describe(model, graph, index, "auto", head, source)
    if isinstance(tensor, bool) or not isinstance(tensor, (int, str)):
        raise ModelError(f"embedding tensor {tensor!r} must be a tensor name or index")
    if isinstance(tensor, int):
        if not 0 <= tensor < len(graph.tensors):
            raise ModelError(
                f"embedding tensor index {tensor} is out of range for model {source} "
                f"({len(graph.tensors)} tensors); the last activations are "
                f"{_candidates(graph)}")
        return _describe(model, graph, tensor, "index", "", source)
    matches = [i for i, t in enumerate(graph.tensors) if _tensor_name(t) == tensor]
    if len(matches) != 1:
        problem = "no tensor" if not matches else f"{len(matches)} tensors"
        raise ModelError(
            f"model {source} has {problem} named {tensor!r}; name one of its tensors exactly "
            f"or give an index, e.g. one of {_candidates(graph)}")
    return _describe(model, graph, matches[0], "name", "", source)


class _AlignedBuilder(flatbuffers.Builder):  # type: ignore[misc]
    """A flatbuffer builder that aligns every numeric vector (the weight buffers) to 16 bytes."""

    def CreateNumpyVector(self, x: npt.NDArray[Any]) -> int:
        """``flatbuffers.Builder.CreateNumpyVector`` with the vector aligned to 16 bytes."""
        payload = np.ascontiguousarray(x).astype(x.dtype.newbyteorder("<"), copy=False).tobytes()
        self.StartVector(x.itemsize, x.size, max(_BUFFER_ALIGNMENT, x.dtype.alignment))
        head = int(self.Head()) - len(payload)
        self.head = head
        self.Bytes[head : head + len(payload)] = payload
        self.vectorNumElems = x.size
        return int(self.EndVector())


def add_embedding_output(content: bytes, tensor: TensorRef = None,
                         source: str = "<bytes>") -> tuple[bytes, EmbeddingTensor]:
    """The model with its embedding tensor appended as the last output, and where it is.

    The class output(s) keep their positions, so ``get_output_details()[0]`` is still the
    class scores; the model's weights, ops and tensors are unchanged. A model that already
    outputs the tensor is returned as is.

    Raises:
        ModelError: see ``locate_embedding``; also for a model that keeps its weights outside
            the flatbuffer (files over 2 GB), which this rewrite cannot repack.
    """
    info = locate_embedding(content, tensor, source)
    model = _unpack(content, source)
    graph = model.subgraphs[0]
    if info.index in [int(t) for t in graph.outputs]:
        return content, info
    if any(int(b.offset or 0) > 1 for b in model.buffers or []):
        raise ModelError(
            f"model {source} stores its weights outside the flatbuffer (a >2 GB layout) and "
            "cannot be rewritten; export the model with its embedding as a second output")
    graph.outputs = [*(int(t) for t in graph.outputs), info.index]
    builder = _AlignedBuilder(len(content) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=content[4:8])
    return bytes(builder.Output()), info


class EmbeddingModel:
    """A classifier that returns each image's class probabilities and embedding in one call.

    Built with ``EmbeddingModel.load``. Preprocessing, dequantisation and the probability
    handling are ``analyzer.model.Classifier``'s (``self.classifier``, running the rewritten
    model); this class adds reading the embedding output after each interpreter call.
    """

    def __init__(self, classifier: Classifier, interpreter: Any, capacity: int,
                 tensor: EmbeddingTensor) -> None:
        """Wrap a classifier running ``interpreter``; use ``EmbeddingModel.load``."""
        self.classifier = classifier
        self.tensor = tensor
        self._interpreter = interpreter
        self._capacity = capacity
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, tensor: TensorRef = None,
             options: ModelOptions | None = None, checked: bool = False) -> EmbeddingModel:
        """Load a ``.tflite`` classifier with its embedding as a second output.

        ``checked``: the caller already loaded ``path`` with ``Classifier.load`` (a profiling
        worker, whose parent did); skips building that interpreter a second time.

        Raises:
            ModelError: everything ``Classifier.load`` rejects, and everything
                ``add_embedding_output`` rejects; messages name the file.
        """
        path = Path(path)
        options = options or ModelOptions()
        if not checked:
            Classifier.load(path, options)  # the same checks and messages as a plain model
        rewritten, info = rewritten_model(path, tensor)
        interpreter, capacity = _interpreter(path, rewritten, options)
        classifier = Classifier(path, options, interpreter, capacity)
        first = interpreter.get_output_details()[0]["index"]
        if first == info.index:
            raise ModelError(f"model {path}: the class output is not output 0 after the rewrite")
        return cls(classifier, interpreter, capacity, info)

    @property
    def dim(self) -> int:
        """Embedding values per image."""
        return self.tensor.dim

    @property
    def batch_capacity(self) -> int:
        """Images per interpreter call (``Classifier.batch_capacity``)."""
        return self._capacity

    def preprocess(self, image: Any) -> npt.NDArray[Any]:
        """``Classifier.preprocess``: one decoded image to one input tensor."""
        return self.classifier.preprocess(image)

    def embed(self, batch: npt.NDArray[Any]
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Probabilities (n, classes) and embeddings (n, dim) of a preprocessed batch.

        The batch runs in chunks of the interpreter's batch size; each chunk is one invoke,
        whose class output ``Classifier.predict`` converts and whose embedding output is read
        right after, under one lock so another thread cannot invoke in between.
        """
        batch = np.asarray(batch)
        n = batch.shape[0] if batch.ndim else 0
        probs = np.empty((n, self.classifier.num_classes))
        embeddings = np.empty((n, self.tensor.dim))
        for start in range(0, n, self._capacity):
            chunk = batch[start : start + self._capacity]
            with self._lock:
                probs[start : start + len(chunk)] = self.classifier.predict(chunk)
                embeddings[start : start + len(chunk)] = self.tensor.read(
                    self._interpreter, len(chunk))
        return probs, embeddings


def rewritten_model(path: Path, tensor: TensorRef = None) -> tuple[Any, EmbeddingTensor]:
    """The model with its embedding as a second output, as a file path when it can be
    cached (else as bytes), and where the embedding is.

    The rewrite is written once per model and tensor to a private cache folder
    (``$TMPDIR/driftd-embeddings-<uid>``, mode 0700, checked to be this user's), named by
    the model's SHA-256: every worker then maps the same file, so the weights are in memory
    once for all of them, as for a plain model, instead of a parsed and rebuilt copy per
    worker (measured: 63 MB instead of 38 MB per worker with EfficientNet-Lite0).
    """
    content = path.read_bytes()
    folder = _cache_folder()
    key = hashlib.sha256(content).hexdigest()[:32]
    if folder is not None and isinstance(tensor, int) and not isinstance(tensor, bool):
        # A worker, given the index its parent resolved: the parent cached the rewrite and
        # its description, so no worker parses the model (a transient ~20 MB each).
        cached = folder / f"{key}-{tensor}.tflite"
        try:
            described = json.loads(cached.with_suffix(".json").read_text())
            if cached.is_file():
                return cached, EmbeddingTensor(**described)
        except (OSError, ValueError, TypeError):
            pass
    info = locate_embedding(content, tensor, str(path))
    new, _ = add_embedding_output(content, tensor, str(path))
    if folder is None:
        return new, info
    if new is content:  # the model already outputs it
        return path, info
    cached = folder / f"{key}-{info.index}.tflite"
    for target, data in ((cached, new), (cached.with_suffix(".json"),
                                         json.dumps(info.to_dict()).encode())):
        part = target.with_name(f"{target.name}.{os.getpid()}.part")
        part.write_bytes(data)
        os.replace(part, target)  # atomic: a worker never maps a half-written file
    return cached, info


def _cache_folder() -> Path | None:
    """This user's private cache folder for rewritten models, or None when it cannot be
    trusted (someone else's, or open to others)."""
    folder = Path(tempfile.gettempdir()) / f"driftd-embeddings-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(folder)
    except OSError:
        return None
    if (not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid()
            or info.st_mode & 0o077):
        return None
    return folder


def _interpreter(path: Path, model: Any, options: ModelOptions) -> tuple[Any, int]:
    """An allocated interpreter for ``model`` (a file path, mapped by the runtime, or bytes)
    with its batch resized when the graph allows.

    Returns the interpreter and its batch capacity (``options.batch_size``, or the model's own
    fixed batch when resizing fails, as ``Classifier.load`` does).
    """
    def build() -> Any:
        try:
            source = ({"model_content": model} if isinstance(model, bytes)
                      else {"model_path": str(model)})
            interpreter = Interpreter(**source, num_threads=options.num_threads)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise ModelError(f"model {path} with its embedding output could not be loaded "
                             f"by the TFLite runtime: {err}") from err
        return interpreter

    with runtime_output_logged(path):  # the runtime's banner goes to the log, not stderr
        interpreter = build()
    inp = interpreter.get_input_details()[0]
    shape = [int(d) for d in inp["shape"]]
    want = batch_for(shape, options)
    if shape[0] == want or shape[0] != 1:
        return interpreter, shape[0]
    try:
        interpreter.resize_tensor_input(inp["index"], [want, *shape[1:]], strict=False)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], np.zeros([want, *shape[1:]], dtype=inp["dtype"]))
        interpreter.invoke()
        if any(int(o["shape"][0]) != want for o in interpreter.get_output_details()):
            raise ValueError("an output kept its batch size")
    except (ValueError, RuntimeError):
        return build(), shape[0]
    return interpreter, want

