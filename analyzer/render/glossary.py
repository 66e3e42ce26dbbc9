"""Plain-language names and one-sentence meanings of the report's features and statistics.

The report's keys (``luma_p99``, ``p_adjusted``, ``effect_size``) are the JSON contract; a
person reading the HTML page gets a label ("Highlights (99th pct. brightness)") and, in the
page's glossary, what each one measures and why it can move. ``describe_feature`` covers
every feature the analyzer produces, including the per-class ``softmax.<label>`` ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.contract import (
    EMBEDDING_FEATURE,
    SOFTMAX_PREFIX,
    Category,
    ImageFeature,
    ModelFeature,
)


@dataclass(frozen=True)
class Term:
    """A label for tables and charts and a sentence for the glossary."""

    label: str
    meaning: str


FEATURES: dict[str, Term] = {
    ImageFeature.BRIGHTNESS: Term(
        "Brightness",
        "Average lightness of an image (0 black – 255 white)."),
    ImageFeature.CONTRAST: Term(
        "Contrast",
        "How much lightness varies within an image (RMS contrast)."),
    ImageFeature.LUMA_P99: Term(
        "Highlights",
        "Lightness of the brightest 1% of pixels (99th percentile): moves when images are "
        "over-exposed or clip to white."),
    ImageFeature.MEAN_R: Term(
        "Red level",
        "Average value of the red channel (0–255)."),
    ImageFeature.MEAN_G: Term(
        "Green level",
        "Average value of the green channel (0–255)."),
    ImageFeature.MEAN_B: Term(
        "Blue level",
        "Average value of the blue channel (0–255)."),
    ImageFeature.SATURATION: Term(
        "Saturation",
        "How strong the colours are (0 grey – 1 pure colour)."),
    ImageFeature.COLORFULNESS: Term(
        "Colourfulness",
        "How varied and vivid the colours are (Hasler–Süsstrunk)."),
    ImageFeature.RED_SHARE: Term(
        "Red share",
        "Share of an image's light that is red; a colour cast moves it, exposure does not."),
    ImageFeature.GREEN_SHARE: Term(
        "Green share",
        "Share of an image's light that is green."),
    ImageFeature.BLUE_SHARE: Term(
        "Blue share",
        "Share of an image's light that is blue."),
    ImageFeature.SHARPNESS: Term(
        "Sharpness",
        "Strength of fine edges (variance of the Laplacian): falls with blur or "
        "out-of-focus images."),
    ImageFeature.ENTROPY: Term(
        "Detail",
        "How many different lightness levels an image uses (entropy, 0–8 bits)."),
    ImageFeature.NOISE_LEVEL: Term(
        "Noise",
        "Estimated sensor noise: rises with grain, low light or a failing camera."),
    ImageFeature.HIGH_FREQ_ENERGY: Term(
        "Fine detail",
        "Share of an image's energy in its finest detail: falls with blur or down-scaling, "
        "rises with noise."),
    ImageFeature.BLOCKINESS: Term(
        "JPEG blockiness",
        "Visible 8×8 compression blocks (1 = none)."),
    ImageFeature.JPEG_QUALITY: Term(
        "JPEG quality",
        "Compression quality read from the file (100 = lossless)."),
    ImageFeature.WIDTH: Term(
        "Width",
        "Image width in pixels."),
    ImageFeature.HEIGHT: Term(
        "Height",
        "Image height in pixels."),
    ImageFeature.ASPECT_RATIO: Term(
        "Aspect ratio",
        "Width divided by height."),
    ImageFeature.FILE_SIZE: Term(
        "File size",
        "Bytes on disk."),
    Category.FORMAT: Term(
        "File format",
        "JPEG, PNG, …: the share of each."),
    Category.MODE: Term(
        "Colour mode",
        "RGB, greyscale, …: the share of each."),
    ModelFeature.MAX_CONFIDENCE: Term(
        "Model confidence",
        "The model's probability for the class it predicts; falls when images look "
        "unfamiliar to it."),
    ModelFeature.PREDICTION_ENTROPY: Term(
        "Model uncertainty",
        "How spread the model's probabilities are over the classes (0 certain – 1 "
        "undecided)."),
    ModelFeature.MARGIN: Term(
        "Decision margin",
        "Gap between the model's two most likely classes."),
    Category.PREDICTED_CLASS: Term(
        "Predicted classes",
        "How often the model predicts each class."),
    EMBEDDING_FEATURE: Term(
        "Model embedding",
        "What the model sees: its penultimate-layer features for each image. The effect is "
        "how well a linear probe tells tonight's images from the baseline's (AUC above 0.5)."),
}

STATISTICS: dict[str, Term] = {
    "effect": Term("Effect size", "How far the night's distribution moved from the "
                   "baseline's: for measurements, the Wasserstein distance in baseline "
                   "standard deviations (0.5 = half a typical spread); for categories, the share "
                   "of images whose category changed (total-variation distance, net of what "
                   "chance alone gives: 0.1 = one image in ten); for the model embedding, a "
                   "linear probe's held-out AUC above chance (0.1 = right 60% of the time). "
                   "Severity comes from it."),
    "band": Term("Band", "The severity range the effect size falls in, from the cut-offs "
                 "in the report settings; a change that is not significant counts as none."),
    "p": Term("p", "The chance of a difference at least this large between two samples "
              "of the same images; small means the change is unlikely to be chance."),
    "p_adjusted": Term("p (corrected)", "p corrected for testing every feature at once "
                       "(Holm by default); a test is significant when this is at most α."),
    "test": Term("Test", "KS: Kolmogorov–Smirnov, for measurements; chi²: for categories "
                 "(its p from random relabellings of the images, valid for any number of "
                 "classes); MMD: maximum mean discrepancy between the two sets of embeddings "
                 "(its p from random relabellings too)."),
    "statistic": Term("Statistic", "The test's own statistic (KS distance, chi², or the "
                      "squared MMD)."),
}


def describe_feature(name: str) -> Term:
    """The label and meaning of feature ``name`` (unknown names are labelled as is)."""
    if name in FEATURES:
        return FEATURES[name]
    if name.startswith(SOFTMAX_PREFIX):
        label = name.removeprefix(SOFTMAX_PREFIX)
        return Term(f"P({label})", f"The model's average probability for class "
                    f"“{label}”; moves when the images or the class mix change.")
    return Term(name.replace("_", " "), "")
