"""analyzer.model.Classifier with the real TFLite interpreter on the bundled models."""

from __future__ import annotations

import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from analyzer.errors import ModelError
from analyzer.model import Classifier, ModelOptions

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
DEMO_IMAGES = ROOT / "daemon" / "demo" / "images"
DATA = Path(__file__).resolve().parent / "data"
DEMO_MODELS = ["demo_classifier.tflite", "demo_classifier_uint8.tflite"]


def slug(label: str) -> str:
    """The class slug used in the bundled image names (`00001_t-shirt-top.png`)."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower())


def demo_sample(n: int) -> tuple[list[Image.Image], list[str]]:
    """The first `n` bundled Fashion-MNIST test images and their class slugs."""
    paths = sorted(DEMO_IMAGES.glob("*.png"))[:n]
    images = [Image.open(p) for p in paths]
    return images, [p.stem.split("_", 1)[1] for p in paths]


@pytest.fixture(scope="module", params=DEMO_MODELS)
def demo(request: pytest.FixtureRequest) -> Classifier:
    """The bundled float32 or uint8 demo classifier."""
    return Classifier.load(MODELS / request.param)


def constant_image(value: int, size: tuple[int, int] = (8, 8)) -> Image.Image:
    """An RGB image whose every pixel is `value`."""
    return Image.new("RGB", size, (value, value, value))


def softmax(x: np.ndarray) -> np.ndarray:
    """Reference softmax of one logit vector."""
    e = np.exp(x - x.max())
    return e / e.sum()


class TestDemoModels:
    """The bundled Fashion-MNIST classifiers, float32 and uint8."""

    def test_predictions_on_bundled_images_are_accurate(self, demo: Classifier) -> None:
        """At least 80% of 200 bundled test images get their true class."""
        images, truth = demo_sample(200)
        probs = demo.predict(np.stack([demo.preprocess(im) for im in images]))
        predicted = [slug(demo.labels[i]) for i in probs.argmax(axis=1)]
        accuracy = np.mean([p == t for p, t in zip(predicted, truth, strict=True)])
        assert accuracy >= 0.8

    def test_outputs_are_probability_rows(self, demo: Classifier) -> None:
        """predict returns float64 rows in [0, 1] that sum to 1, one per image."""
        images, _ = demo_sample(40)
        probs = demo.predict(np.stack([demo.preprocess(im) for im in images]))
        assert probs.shape == (40, 10)
        assert probs.dtype == np.float64
        assert np.all((probs >= 0) & (probs <= 1))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)

    def test_describes_its_input_and_labels(self, demo: Classifier) -> None:
        """Input shape, class count and the sidecar labels are exposed."""
        assert demo.input_shape == (28, 28, 1)
        assert demo.num_classes == 10
        assert demo.labels[0] == "T-shirt/top"
        assert demo.labels[9] == "Ankle boot"

    def test_batched_and_single_predictions_agree(self, demo: Classifier) -> None:
        """A batch of 37 (not a multiple of the batch size) equals 37 one-image calls."""
        single = Classifier.load(demo.path, ModelOptions(batch_size=1))
        images, _ = demo_sample(37)
        batch = np.stack([demo.preprocess(im) for im in images])
        one_by_one = np.concatenate([single.predict(batch[i : i + 1]) for i in range(37)])
        np.testing.assert_allclose(demo.predict(batch), one_by_one, atol=1e-6)

    def test_empty_batch_gives_no_rows(self, demo: Classifier) -> None:
        """Predicting zero images returns a (0, k) array instead of failing."""
        empty = np.zeros((0, *demo.input_shape), dtype=np.float32)
        assert demo.predict(empty).shape == (0, 10)

    def test_pickled_classifier_predicts_the_same(self, demo: Classifier) -> None:
        """A classifier sent to a worker process (pickled) reloads and predicts alike."""
        images, _ = demo_sample(8)
        batch = np.stack([demo.preprocess(im) for im in images])
        clone = pickle.loads(pickle.dumps(demo))
        np.testing.assert_array_equal(clone.predict(batch), demo.predict(batch))

    def test_wrong_batch_shape_is_refused(self, demo: Classifier) -> None:
        """An array that is not (n, H, W, C) is a ModelError naming the expected shape."""
        with pytest.raises(ModelError, match=r"\(n, 28, 28, 1\)"):
            demo.predict(np.zeros((2, 32, 32, 3), dtype=np.float32))


class TestQuantisedModel:
    """The uint8 model is fed raw pixels and its outputs are dequantised."""

    def test_uint8_input_receives_the_pixel_values(self) -> None:
        """With input_scale='auto', a uint8 model's input tensor holds the image's pixels."""
        clf = Classifier.load(MODELS / "demo_classifier_uint8.tflite")
        image = Image.open(sorted(DEMO_IMAGES.glob("*.png"))[0])
        tensor = clf.preprocess(image)
        assert tensor.dtype == np.uint8
        np.testing.assert_array_equal(tensor[:, :, 0], np.asarray(image))

    def test_uint8_probabilities_match_the_float_model(self) -> None:
        """Dequantised uint8 outputs are probabilities close to the float model's."""
        fp = Classifier.load(MODELS / "demo_classifier.tflite")
        q8 = Classifier.load(MODELS / "demo_classifier_uint8.tflite")
        images, _ = demo_sample(100)
        p_fp = fp.predict(np.stack([fp.preprocess(im) for im in images]))
        p_q8 = q8.predict(np.stack([q8.preprocess(im) for im in images]))
        assert np.abs(p_fp - p_q8).mean() < 0.02
        assert np.mean(p_fp.argmax(axis=1) == p_q8.argmax(axis=1)) >= 0.95
        assert 0.0 < p_q8.max() <= 1.0


class TestLogits:
    """A model with a logits head (no softmax) still yields probabilities."""

    @pytest.mark.parametrize("name", ["logits_rgb.tflite", "logits_rgb_int8.tflite"])
    @pytest.mark.parametrize("pixel", [0, 64, 255])
    def test_logits_go_through_softmax(self, name: str, pixel: int) -> None:
        """The test model's logits [4x, 1, -4x] come out as softmax([4x, 1, -4x])."""
        clf = Classifier.load(DATA / name)
        probs = clf.predict(clf.preprocess(constant_image(pixel))[None])
        x = pixel / 255.0
        expected = softmax(np.array([4 * x, 1.0, -4 * x]))
        # int8 outputs are quantised in steps of ~0.03 logits.
        np.testing.assert_allclose(probs[0], expected, atol=0.02 if "int8" in name else 1e-5)

    def test_int8_input_is_offset_pixels(self) -> None:
        """An int8 model with input_scale='auto' receives pixel - 128."""
        clf = Classifier.load(DATA / "logits_rgb_int8.tflite")
        tensor = clf.preprocess(constant_image(200))
        assert tensor.dtype == np.int8
        assert np.all(tensor == 72)


class TestPreprocess:
    """Colour conversion, resizing and scaling follow ModelOptions."""

    def test_colour_image_for_a_grayscale_model(self) -> None:
        """An RGB photo is converted to one channel for a 1-channel model."""
        clf = Classifier.load(MODELS / "demo_classifier.tflite")
        tensor = clf.preprocess(Image.new("RGB", (100, 60), (255, 255, 255)))
        assert tensor.shape == (28, 28, 1)
        assert tensor.dtype == np.float32
        np.testing.assert_allclose(tensor, 1.0)

    @pytest.mark.parametrize("mode", ["L", "P", "RGBA", "I;16", "CMYK"])
    def test_any_pillow_mode_is_accepted(self, mode: str) -> None:
        """Grayscale, palette, alpha, 16-bit and CMYK images all become an RGB tensor."""
        clf = Classifier.load(DATA / "logits_rgb.tflite")
        image = Image.new("RGB", (12, 12), (90, 90, 90)).convert(mode)
        tensor = clf.preprocess(image)
        assert tensor.shape == (8, 8, 3)
        assert np.all((tensor >= 0.0) & (tensor <= 1.0))

    def test_pad_letterboxes_a_wide_image(self) -> None:
        """input_resize='pad' keeps a 2:1 white image whole, with black bars above and below."""
        clf = Classifier.load(DATA / "logits_rgb.tflite", ModelOptions(input_resize="pad"))
        tensor = clf.preprocess(constant_image(255, size=(16, 8)))
        np.testing.assert_allclose(tensor[2:6], 1.0)
        np.testing.assert_allclose(tensor[:2], 0.0)
        np.testing.assert_allclose(tensor[6:], 0.0)

    def test_crop_keeps_the_centre(self) -> None:
        """input_resize='crop' drops a black left border that 'stretch' would squeeze in."""
        arr = np.full((8, 16, 3), 255, dtype=np.uint8)
        arr[:, :4] = 0
        image = Image.fromarray(arr)
        crop = Classifier.load(DATA / "logits_rgb.tflite", ModelOptions(input_resize="crop"))
        stretch = Classifier.load(DATA / "logits_rgb.tflite")
        np.testing.assert_allclose(crop.preprocess(image), 1.0)
        assert stretch.preprocess(image).min() < 0.5

    def test_mean_std_scaling(self) -> None:
        """input_scale='mean_std' gives (x/255 - mean) / std per channel."""
        options = ModelOptions(
            input_scale="mean_std", input_mean=(0.5, 0.0, 0.25), input_std=(0.5, 1.0, 0.25)
        )
        clf = Classifier.load(DATA / "logits_rgb.tflite", options)
        tensor = clf.preprocess(constant_image(255))
        np.testing.assert_allclose(tensor[0, 0], [1.0, 1.0, 3.0], rtol=1e-6)

    def test_raw_scaling(self) -> None:
        """input_scale='raw' feeds 0..255 unchanged."""
        clf = Classifier.load(DATA / "logits_rgb.tflite", ModelOptions(input_scale="raw"))
        np.testing.assert_allclose(clf.preprocess(constant_image(200)), 200.0)


class TestLoadErrors:
    """Unusable files are refused with a ModelError that names the file."""

    def test_missing_file(self, tmp_path: Path) -> None:
        """A path that does not exist is named in the error."""
        path = tmp_path / "nope.tflite"
        with pytest.raises(ModelError, match=re.escape(str(path))):
            Classifier.load(path)

    def test_text_file_renamed_tflite(self, tmp_path: Path) -> None:
        """A text file with a .tflite name is 'not a TFLite model'."""
        path = tmp_path / "model.tflite"
        path.write_text("this is not a model\n")
        with pytest.raises(ModelError, match="not a TFLite model") as err:
            Classifier.load(path)
        assert str(path) in str(err.value)

    def test_jpeg_renamed_tflite(self, tmp_path: Path) -> None:
        """A JPEG photo with a .tflite name is 'not a TFLite model'."""
        path = tmp_path / "photo.tflite"
        constant_image(128).save(path, "JPEG")
        with pytest.raises(ModelError, match="not a TFLite model"):
            Classifier.load(path)

    def test_truncated_model(self, tmp_path: Path) -> None:
        """A model file cut short (interrupted copy) is refused, not crashed on."""
        path = tmp_path / "cut.tflite"
        path.write_bytes((MODELS / "demo_classifier.tflite").read_bytes()[:50_000])
        with pytest.raises(ModelError, match=re.escape(str(path))):
            Classifier.load(path)

    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("input_2d.tflite", "4-D NHWC"),
            ("input_4ch.tflite", "4 input channels"),
            ("two_inputs.tflite", "2 inputs"),
            ("dynamic_hw.tflite", "dynamic input size"),
            ("single_output.tflite", "1 output value"),
        ],
    )
    def test_input_the_analyzer_cannot_feed(self, name: str, message: str) -> None:
        """Inputs or outputs the analyzer cannot use are refused, naming the file and why."""
        with pytest.raises(ModelError, match=message) as err:
            Classifier.load(DATA / name)
        assert name in str(err.value)

    def test_labels_line_count_mismatch(self, tmp_path: Path) -> None:
        """A labels file with the wrong number of lines is named in the error."""
        labels = tmp_path / "labels.txt"
        labels.write_text("a\nb\nc\n")
        with pytest.raises(ModelError, match="3 labels but") as err:
            Classifier.load(MODELS / DEMO_MODELS[0], ModelOptions(labels_path=str(labels)))
        assert str(labels) in str(err.value)

    def test_missing_labels_file(self, tmp_path: Path) -> None:
        """An explicit labels path that does not exist is refused."""
        labels = tmp_path / "missing.txt"
        with pytest.raises(ModelError, match=re.escape(str(labels))):
            Classifier.load(MODELS / DEMO_MODELS[0], ModelOptions(labels_path=str(labels)))

    def test_rgb_option_on_grayscale_model(self) -> None:
        """input_color='rgb' on a 1-channel model is refused with the fix."""
        with pytest.raises(ModelError, match="input_color"):
            Classifier.load(MODELS / "demo_classifier.tflite", ModelOptions(input_color="rgb"))

    def test_unknown_option_value(self) -> None:
        """An unknown resize mode names the option and the allowed values."""
        with pytest.raises(ModelError, match="input_resize='squash'"):
            ModelOptions(input_resize="squash")


class TestLabels:
    """Labels come from the option, a sidecar file, or default names."""

    def test_default_names_without_a_labels_file(self, tmp_path: Path) -> None:
        """A model with no labels file next to it gets class_0 .. class_k-1."""
        model = tmp_path / "m.tflite"
        shutil.copyfile(DATA / "logits_rgb.tflite", model)
        assert Classifier.load(model).labels == ["class_0", "class_1", "class_2"]

    def test_labels_txt_next_to_the_model(self, tmp_path: Path) -> None:
        """A labels.txt beside the model is used, trailing blank lines ignored."""
        model = tmp_path / "m.tflite"
        shutil.copyfile(DATA / "logits_rgb.tflite", model)
        (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n\n")
        assert Classifier.load(model).labels == ["cat", "dog", "bird"]
