"""analyzer.embeddings on the bundled models with the real TFLite interpreter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analyzer.embeddings import EmbeddingModel, add_embedding_output, locate_embedding
from analyzer.errors import ModelError
from analyzer.model import Classifier, Interpreter

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
DATA = Path(__file__).resolve().parent / "data"
DEMO_IMAGES = ROOT / "daemon" / "demo" / "images"

#: model file → (tensor index, name fragment, values per image, dtype) of its embedding.
EXPECTED = {
    "demo_classifier.tflite": (20, "dense_1/Relu", 64, "float32"),
    "demo_classifier_uint8.tflite": (21, "dense_1/Relu", 64, "int8"),
    "imagenet/efficientnet_lite0_uint8.tflite": (163, "reduce_mean/Mean", 1280, "int8"),
}


def real_images(n: int) -> list[Image.Image]:
    """The first ``n`` bundled Fashion-MNIST photographs."""
    return [Image.open(p) for p in sorted(DEMO_IMAGES.glob("*.png"))[:n]]


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def bundled(request: pytest.FixtureRequest) -> tuple[str, EmbeddingModel]:
    """A bundled model loaded with its embedding output."""
    return request.param, EmbeddingModel.load(MODELS / request.param)


class TestLocate:
    """Finding the embedding tensor in the graph."""

    def test_bundled_models_penultimate_tensor(self, bundled: tuple[str, EmbeddingModel]
                                               ) -> None:
        """The walk from the class output stops at the fully-connected head's input."""
        name, model = bundled
        index, fragment, dim, dtype = EXPECTED[name]
        info = model.tensor
        assert (info.index, info.dim, info.dtype, info.found_by, info.head) == (
            index, dim, dtype, "auto", "FULLY_CONNECTED")
        assert fragment in info.name
        assert (info.scale > 0) == (dtype != "float32")

    def test_by_name_and_by_index_agree_with_auto(self) -> None:
        """Naming the tensor or giving its index finds the same tensor."""
        content = (MODELS / "demo_classifier_uint8.tflite").read_bytes()
        auto = locate_embedding(content)
        by_name = locate_embedding(content, auto.name)
        by_index = locate_embedding(content, auto.index)
        assert (by_name.index, by_index.index) == (auto.index, auto.index)
        assert (by_name.found_by, by_index.found_by) == ("name", "index")

    def test_unknown_name_lists_candidates(self) -> None:
        """A wrong name is a ModelError naming the model, the name and real tensors."""
        path = MODELS / "demo_classifier.tflite"
        with pytest.raises(ModelError, match=r"demo_classifier\.tflite has no tensor.*'nope'"
                           r".*e\.g\. one of \['22:StatefulPartitionedCall"):
            locate_embedding(path.read_bytes(), "nope", str(path))

    def test_index_out_of_range(self) -> None:
        """An index past the last tensor says how many tensors there are."""
        with pytest.raises(ModelError, match=r"index 9999 is out of range .*\(23 tensors\)"):
            locate_embedding((MODELS / "demo_classifier.tflite").read_bytes(), 9999)

    def test_constant_tensor_rejected(self) -> None:
        """A weight tensor is not an embedding."""
        with pytest.raises(ModelError, match=r"is a constant \(weights\)"):
            locate_embedding((MODELS / "demo_classifier.tflite").read_bytes(), 6)

    def test_model_without_hidden_layer(self) -> None:
        """A head that reads the input image directly has no embedding to test."""
        with pytest.raises(ModelError, match=r"is the model's input image.*no hidden layer"):
            locate_embedding((DATA / "input_4ch.tflite").read_bytes())

    def test_not_a_flatbuffer(self) -> None:
        """Garbage bytes are a ModelError, not a crash."""
        with pytest.raises(ModelError, match=r"model x\.tflite is not a TFLite model"):
            locate_embedding(b"\x00" * 64, None, "x.tflite")


class TestRewrite:
    """The model with its embedding appended as an output."""

    def test_embedding_equals_preserved_intermediate(self, bundled: tuple[str, EmbeddingModel]
                                                     ) -> None:
        """The new output holds exactly the activation the original graph computes."""
        name, model = bundled
        images = real_images(3)
        batch = np.stack([model.preprocess(im) for im in images])
        _, embeddings = model.embed(batch)
        reference = Interpreter(model_path=str(MODELS / name),
                                experimental_preserve_all_tensors=True)
        reference.allocate_tensors()
        index = reference.get_input_details()[0]["index"]
        for row, pixels in zip(embeddings, batch, strict=True):
            reference.set_tensor(index, pixels[None])
            reference.invoke()
            expected = model.tensor.read(reference, 1)[0]
            np.testing.assert_array_equal(row, expected)
        assert np.ptp(embeddings, axis=0).max() > 0  # the images differ, so must the rows

    def test_probabilities_identical_to_original(self, bundled: tuple[str, EmbeddingModel]
                                                 ) -> None:
        """The class output of the rewritten model is bit-for-bit the original's."""
        name, model = bundled
        plain = Classifier.load(MODELS / name)
        batch = np.stack([plain.preprocess(im) for im in real_images(40)])
        probs, embeddings = model.embed(batch)
        np.testing.assert_array_equal(probs, plain.predict(batch))
        assert embeddings.shape == (40, model.dim)

    def test_dequantised_values(self) -> None:
        """An int8 embedding comes back as (q - zero_point) * scale."""
        model = EmbeddingModel.load(MODELS / "demo_classifier_uint8.tflite")
        _, emb = model.embed(np.stack([model.preprocess(im) for im in real_images(8)]))
        steps = emb / model.tensor.scale
        np.testing.assert_allclose(steps, np.rint(steps), atol=1e-6)
        assert emb.min() >= 0.0  # a ReLU layer, zero point -128: q = -128 reads 0.0

    def test_already_an_output_is_left_alone(self) -> None:
        """A model exported with its embedding as a second output is not rewritten."""
        content = (MODELS / "demo_classifier.tflite").read_bytes()
        rewritten, info = add_embedding_output(content)
        again, found = add_embedding_output(rewritten)
        assert again is rewritten
        assert (found.index, found.found_by) == (info.index, "output")

    def test_embed_empty_batch(self) -> None:
        """Zero images give empty arrays of the right widths."""
        model = EmbeddingModel.load(MODELS / "demo_classifier.tflite")
        probs, emb = model.embed(np.zeros((0, 28, 28, 1), dtype=np.float32))
        assert probs.shape == (0, 10) and emb.shape == (0, 64)


def float16_weights(content: bytes) -> bytes:
    """The model with its head's weights stored as float16 behind a DEQUANTIZE op, as the
    TFLite converter's float16 quantisation writes them."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = model.subgraphs[0]
    head = next(op for op in graph.operators if 5 in list(op.inputs))  # the 10×64 weights
    weights = graph.tensors[5]
    values = np.frombuffer(bytes(model.buffers[weights.buffer].data), dtype=np.float32)
    half = schema.BufferT()
    half.data = np.frombuffer(values.astype(np.float16).tobytes(), dtype=np.uint8)
    model.buffers.append(half)
    model.buffers[weights.buffer].data = None
    stored = schema.TensorT()
    stored.shape, stored.type = list(weights.shape), schema.TensorType.FLOAT16
    stored.buffer, stored.name = len(model.buffers) - 1, b"weights_fp16"
    graph.tensors.append(stored)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
    model.operatorCodes.append(code)
    dequantize = schema.OperatorT()
    dequantize.opcodeIndex = len(model.operatorCodes) - 1
    dequantize.inputs, dequantize.outputs = [len(graph.tensors) - 1], [5]
    graph.operators.insert(0, dequantize)
    assert head is not None
    builder = flatbuffers.Builder(len(content) * 2)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_float16_weights_are_constants(tmp_path: Path) -> None:
    """Weights dequantised from float16 at run time still count as weights: the head is found."""
    content = float16_weights((MODELS / "demo_classifier.tflite").read_bytes())
    (tmp_path / "fp16.tflite").write_bytes(content)
    model = EmbeddingModel.load(tmp_path / "fp16.tflite")
    assert (model.tensor.index, model.tensor.found_by) == (20, "auto")
    plain = Classifier.load(MODELS / "demo_classifier.tflite")
    batch = np.stack([plain.preprocess(im) for im in real_images(10)])
    probs, _ = model.embed(batch)
    np.testing.assert_allclose(probs, plain.predict(batch), atol=1e-2)
