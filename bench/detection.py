"""Detection benchmark: driftd's false-alarm and detection rates next to two reference detectors.

Every trial writes a baseline folder and a current folder of PNG files built from the
Fashion-MNIST test split (Debian package ``dataset-fashion-mnist``), and asks three detectors
whether the current folder drifted:

- **driftd**, exactly as a user runs it: ``DatasetAnalyzer(folder, model_path=..., **options)``,
  ``.analyze()`` on the baseline folder, ``.detect_drift(baseline)`` on the current folder, the
  verdict is ``overall_drift_detected``;
- **BBSD**, the best detector of "Failing Loudly" (Rabanser et al., NeurIPS 2019): the bundled
  model's softmax outputs, one two-sample KS test per class, Bonferroni at alpha 0.05;
- **properties**, a deepchecks-style rule: KS statistic > 0.2 on any of deepchecks' default image
  properties (aspect ratio, area, brightness, RMS contrast, mean R/G/B relative intensity).

The images are "colourised" Fashion-MNIST: each grey image gets a random luma-preserving colour
tint (seeded), so that colour cast and grayscale conversion are real shifts while the model,
which sees the luma, gets the images it was trained on. The baseline pool and the current pool
are disjoint halves of the test split; the no-shift case is a fresh sample of the current pool.

Run ``python bench/detection.py --help``; ``--quick`` for a short iteration run.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageEnhance, ImageFilter
from scipy import stats

REPO_ROOT = Path(__file__).resolve().parent.parent
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_MODEL = REPO_ROOT / "models" / "demo_classifier.tflite"
DEFAULT_OUT = REPO_ROOT / "bench" / "results" / "detection.md"
ALPHA = 0.05
PROPERTY_KS_THRESHOLD = 0.2
READING_START = "<!-- reading -->"
READING_END = "<!-- /reading -->"

Images = NDArray[np.uint8]
"""A stack of RGB images, shape (n, height, width, 3)."""

ShiftFn = Callable[[Images, np.random.Generator], Images]


# ---------------------------------------------------------------------------- dataset


def read_idx(path: Path) -> NDArray[np.uint8]:
    """Read a gzipped IDX file of unsigned bytes (the MNIST format) into an array.

    Raises ``ValueError`` naming the file when its header is not an unsigned-byte IDX header.
    """
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    if data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (header {data[:4].hex()})")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def colourise(gray: NDArray[np.uint8], rng: np.random.Generator) -> Images:
    """Tint each grey image with a random colour whose luma is 1, so PIL's ``L`` gives it back.

    Hue is uniform, saturation uniform in [0, 0.5]; bright pixels of strongly tinted images clip.
    """
    hue = rng.uniform(0.0, 1.0, (len(gray), 1))
    sat = rng.uniform(0.0, 0.5, (len(gray), 1))
    # HSV -> RGB at value 1 (the closed form of colorsys.hsv_to_rgb), vectorised.
    k = (np.array([5.0, 3.0, 1.0]) + 6.0 * hue) % 6.0
    rgb = 1.0 - sat * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    tints = rgb / (rgb @ LUMA)[:, None]
    out = gray[..., None].astype(np.float32) * tints[:, None, None, :].astype(np.float32)
    np.rint(out, out=out)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


LUMA = np.array([0.299, 0.587, 0.114])
"""ITU-R 601-2 luma weights, as Pillow's RGB -> L conversion uses them."""


@dataclass(frozen=True)
class Pools:
    """The colourised test split cut into a baseline pool and a disjoint current pool."""

    images: Images
    labels: NDArray[np.uint8]
    baseline: NDArray[np.int64]
    current: NDArray[np.int64]


def load_pools(root: Path = FASHION_MNIST_DIR, seed: int = 0) -> Pools:
    """Load the Fashion-MNIST test split, colourise it and split it into two disjoint halves.

    Raises ``FileNotFoundError`` with the install command when the Debian package is missing.
    """
    images_path = root / "t10k-images-idx3-ubyte.gz"
    labels_path = root / "t10k-labels-idx1-ubyte.gz"
    if not images_path.exists():
        raise FileNotFoundError(
            f"{images_path} not found; install it with `apt-get install dataset-fashion-mnist`"
        )
    rng = np.random.default_rng(seed)
    gray = read_idx(images_path)
    labels = read_idx(labels_path)
    order = rng.permutation(len(gray))
    half = len(gray) // 2
    return Pools(colourise(gray, rng), labels, order[:half], order[half:])


# ---------------------------------------------------------------------------- shifts


def _per_image(images: Images, fn: Callable[[Image.Image], Image.Image]) -> Images:
    return np.stack([np.asarray(fn(Image.fromarray(img)).convert("RGB")) for img in images])


def gaussian_noise(sigma: float) -> ShiftFn:
    """Additive Gaussian noise of ``sigma`` grey levels (0-255 scale), clipped."""

    def shift(images: Images, rng: np.random.Generator) -> Images:
        noisy = images.astype(np.float64) + rng.normal(0.0, sigma, images.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)

    return shift


def gaussian_blur(radius: float) -> ShiftFn:
    """Pillow Gaussian blur of ``radius`` pixels (an out-of-focus camera)."""
    blur = ImageFilter.GaussianBlur(radius)
    return lambda images, rng: _per_image(images, lambda im: im.filter(blur))


def enhance(kind: Callable[[Image.Image], Any], factor: float) -> ShiftFn:
    """A Pillow ``ImageEnhance`` operation (Brightness, Contrast) at ``factor``."""
    return lambda images, rng: _per_image(images, lambda im: kind(im).enhance(factor))


def jpeg(quality: int) -> ShiftFn:
    """JPEG round trip at ``quality``; the file written is still PNG, so only artefacts remain."""

    def one(im: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        im.save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        return Image.open(buffer).convert("RGB")

    return lambda images, rng: _per_image(images, one)


def colour_cast(gains: tuple[float, float, float]) -> ShiftFn:
    """Multiply R, G, B by ``gains`` (a white-balance error), clipped."""
    factors = np.array(gains)
    return lambda images, rng: np.clip(np.rint(images * factors), 0, 255).astype(np.uint8)


def rotation(degrees: float) -> ShiftFn:
    """Rotate every image by ``degrees`` counter-clockwise (a tilted camera), black fill."""
    return lambda images, rng: _per_image(
        images, lambda im: im.rotate(degrees, resample=Image.Resampling.BILINEAR)
    )


def resolution_loss(factor: int) -> ShiftFn:
    """Downsample by ``factor`` and upsample back to the original size (same pixel count)."""

    def one(im: Image.Image) -> Image.Image:
        small = im.resize((im.width // factor, im.height // factor), Image.Resampling.BOX)
        return small.resize(im.size, Image.Resampling.BILINEAR)

    return lambda images, rng: _per_image(images, one)


def grayscale(images: Images, rng: np.random.Generator) -> Images:
    """Drop the colour (the camera switched to monochrome); the luma is unchanged."""
    return _per_image(images, lambda im: im.convert("L"))


def identity(images: Images, rng: np.random.Generator) -> Images:
    """No pixel change (the no-shift case and the class-prior shift)."""
    return images


@dataclass(frozen=True)
class Shift:
    """One cell of the suite: a pixel corruption applied to ``fraction`` of the current images,
    and/or a class-prior change (``class_weights[label]`` scales the sampling probability)."""

    name: str
    family: str
    fn: ShiftFn
    fraction: float = 1.0
    class_weights: tuple[float, ...] | None = None

    def apply(self, images: Images, rng: np.random.Generator) -> Images:
        """Return ``images`` with the corruption applied to a random ``fraction`` of them."""
        if self.fraction >= 1.0:
            return self.fn(images, rng)
        out = images.copy()
        chosen = rng.choice(len(images), size=round(self.fraction * len(images)), replace=False)
        out[chosen] = self.fn(images[chosen], rng)
        return out


NO_SHIFT = Shift("no_shift", "none", identity)

# Classes 0-2 (T-shirt/top, Trouser, Pullover) three times as likely: they make up ~56% of a
# night instead of 30%, as when one product line takes over.
PRIOR_WEIGHTS = (3.0, 3.0, 3.0) + (1.0,) * 7

SHIFTS: tuple[Shift, ...] = (
    Shift("noise_s8", "noise", gaussian_noise(8)),
    Shift("noise_s20", "noise", gaussian_noise(20)),
    Shift("noise_s40", "noise", gaussian_noise(40)),
    Shift("noise_s20_half", "noise", gaussian_noise(20), fraction=0.5),
    Shift("blur_r1", "blur", gaussian_blur(1.0)),
    Shift("blur_r1_half", "blur", gaussian_blur(1.0), fraction=0.5),
    Shift("brightness_up_1.3", "brightness", enhance(ImageEnhance.Brightness, 1.3)),
    Shift("brightness_down_0.7", "brightness", enhance(ImageEnhance.Brightness, 0.7)),
    Shift("brightness_up_1.3_half", "brightness", enhance(ImageEnhance.Brightness, 1.3),
          fraction=0.5),
    Shift("contrast_0.6", "contrast", enhance(ImageEnhance.Contrast, 0.6)),
    Shift("jpeg_q10", "jpeg", jpeg(10)),
    Shift("jpeg_q10_half", "jpeg", jpeg(10), fraction=0.5),
    Shift("colour_cast", "colour", colour_cast((1.15, 1.0, 0.85))),
    Shift("colour_cast_half", "colour", colour_cast((1.15, 1.0, 0.85)), fraction=0.5),
    Shift("rotation_20", "rotation", rotation(20)),
    Shift("resolution_x2", "resolution", resolution_loss(2)),
    Shift("grayscale", "grayscale", grayscale),
    Shift("class_prior", "class-prior", identity, class_weights=PRIOR_WEIGHTS),
)
FAMILIES = tuple(dict.fromkeys(s.family for s in SHIFTS))


def select_shifts(spec: str | None) -> tuple[Shift, ...]:
    """The shifts named in the comma-separated ``spec`` (shift names or family names); all if None.

    Raises ``ValueError`` naming the unknown entry and the known names.
    """
    if not spec:
        return SHIFTS
    chosen: list[Shift] = []
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        matches = [s for s in SHIFTS if entry in (s.name, s.family)]
        if not matches:
            known = ", ".join([s.name for s in SHIFTS] + list(FAMILIES))
            raise ValueError(f"unknown shift {entry!r} in --shifts; known: {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return tuple(chosen)


def sample(pools: Pools, pool: NDArray[np.int64], n: int, rng: np.random.Generator,
           class_weights: Sequence[float] | None = None) -> NDArray[np.int64]:
    """Draw ``n`` distinct indices from ``pool``, class-weighted when ``class_weights`` is set."""
    if class_weights is None:
        return rng.choice(pool, size=n, replace=False)
    weights = np.asarray(class_weights)[pools.labels[pool]]
    return rng.choice(pool, size=n, replace=False, p=weights / weights.sum())


def write_folder(folder: Path, images: Images) -> None:
    """Replace ``folder``'s content with one PNG per image."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"img_{i:05d}.png")


def read_folder(folder: Path) -> list[Images]:
    """Decode every image file of ``folder`` to an RGB array (as a user's pipeline would)."""
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())
            if p.suffix.lower() in {".png", ".jpg", ".jpeg"}]


# ---------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Verdict:
    """A detector's answer for one night: drift or not, what fired, and (driftd) every test as
    ``[feature, p_value, effect_size, effect_size_kind]`` for offline what-if corrections."""

    drift: bool
    fired: list[str]
    tests: list[list[Any]] = field(default_factory=list)


class Detector(Protocol):
    """A drift detector: ``fit`` reads the baseline folder once, ``detect`` judges one night."""

    name: str

    def fit(self, folder: Path) -> Any: ...

    def detect(self, reference: Any, folder: Path) -> Verdict: ...


def deepchecks_properties(images: Sequence[Images]) -> dict[str, NDArray[np.float64]]:
    """deepchecks' default image properties (vision/utils/image_properties.py), per image.

    Brightness and RMS contrast are the mean and standard deviation of scikit-image's
    ``rgb2gray`` (weights 0.2125, 0.7154, 0.0721 on [0, 1] values); the relative intensities are
    the per-pixel channel share ``c / (r + g + b)`` (0 where the pixel is black), averaged.
    """
    gray_weights = np.array([0.2125, 0.7154, 0.0721])
    rows: dict[str, list[float]] = {k: [] for k in (
        "aspect_ratio", "area", "brightness", "rms_contrast",
        "mean_red_relative_intensity", "mean_green_relative_intensity",
        "mean_blue_relative_intensity")}
    for img in images:
        pixels = img.astype(np.float64) / 255.0
        gray = pixels @ gray_weights
        total = pixels.sum(axis=2)
        share = np.divide(pixels, total[..., None], out=np.zeros_like(pixels),
                          where=total[..., None] != 0)
        rows["aspect_ratio"].append(img.shape[0] / img.shape[1])
        rows["area"].append(float(img.shape[0] * img.shape[1]))
        rows["brightness"].append(float(gray.mean()))
        rows["rms_contrast"].append(float(gray.std()))
        for channel, name in enumerate(("red", "green", "blue")):
            rows[f"mean_{name}_relative_intensity"].append(float(share[..., channel].mean()))
    return {k: np.asarray(v) for k, v in rows.items()}


class PropertyDetector:
    """deepchecks-style rule: drift when the KS statistic of any default property exceeds 0.2."""

    name = "properties"

    def __init__(self, threshold: float = PROPERTY_KS_THRESHOLD) -> None:
        self.threshold = threshold

    def fit(self, folder: Path) -> dict[str, NDArray[np.float64]]:
        return deepchecks_properties(read_folder(folder))

    def detect(self, reference: dict[str, NDArray[np.float64]],
               folder: Path) -> Verdict:
        current = deepchecks_properties(read_folder(folder))
        fired = [name for name, values in reference.items()
                 if stats.ks_2samp(values, current[name]).statistic > self.threshold]
        return Verdict(bool(fired), fired)


class BBSDDetector:
    """Failing Loudly's BBSD: per-class KS on the model's softmax outputs, Bonferroni at alpha."""

    name = "bbsd"

    def __init__(self, softmax: Callable[[list[Images]], NDArray[np.float64]],
                 alpha: float = ALPHA) -> None:
        self.softmax = softmax
        self.alpha = alpha

    def fit(self, folder: Path) -> NDArray[np.float64]:
        return self.softmax(read_folder(folder))

    def detect(self, reference: NDArray[np.float64], folder: Path) -> Verdict:
        current = self.softmax(read_folder(folder))
        classes = reference.shape[1]
        fired = [f"softmax_{k}" for k in range(classes)
                 if stats.ks_2samp(reference[:, k], current[:, k]).pvalue < self.alpha / classes]
        return Verdict(bool(fired), fired)


def tflite_softmax(model_path: Path) -> Callable[[list[Images]], NDArray[np.float64]]:
    """Softmax outputs of the bundled model through driftd's own ``analyzer.model.Classifier``."""
    from analyzer.model import Classifier

    classifier = Classifier.load(model_path)

    def softmax(images: list[Images]) -> NDArray[np.float64]:
        batch = np.stack([classifier.preprocess(Image.fromarray(im)) for im in images])
        return classifier.predict(batch)

    return softmax


class DriftdDetector:
    """driftd through its public API, exactly as a user calls it."""

    name = "driftd"

    def __init__(self, model_path: Path | None, options: dict[str, Any]) -> None:
        self.model_path = model_path
        self.options = options

    def _analyzer(self, folder: Path) -> Any:
        from analyzer import DatasetAnalyzer

        model = str(self.model_path) if self.model_path else None
        return DatasetAnalyzer(str(folder), model_path=model, **self.options)

    def fit(self, folder: Path) -> dict[str, Any]:
        return dict(self._analyzer(folder).analyze())

    def detect(self, reference: dict[str, Any], folder: Path) -> Verdict:
        report = self._analyzer(folder).detect_drift(reference)
        # A significant test whose effect is below the severity cut-off is marked with "~".
        fired = [t["feature"] + ("" if t["severity"] != "none" else "~")
                 for t in _tests(report) if t.get("significant")]
        tests = [[t["feature"], t["p_value"], t["effect_size"], t["effect_size_kind"]]
                 for t in _tests(report) if t["test"] != "skipped"]
        return Verdict(bool(report["overall_drift_detected"]), fired, tests)


def _tests(report: dict[str, Any]) -> list[dict[str, Any]]:
    sections = ("pixel_distribution_drift", "confidence_drift", "class_distribution_drift")
    return [t for s in sections for t in (report.get(s) or {}).get("tests", [])]


# ---------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class Record:
    """One detector's verdict on one night."""

    size: int
    trial: int
    shift: str
    family: str
    rep: int
    detector: str
    drift: bool
    seconds: float
    fired: list[str]
    tests: list[list[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Config:
    """What a run does; written into the JSON and the Markdown so a table can be reproduced."""

    sizes: list[int]
    trials: int
    null_per_trial: int
    shifts: list[str]
    seed: int
    model: str | None
    options: dict[str, Any]
    detectors: list[str]
    command: str


def run(config: Config, detectors: Sequence[Detector], pools: Pools,
        work: Path, log: Callable[[str], None] = print) -> tuple[list[Record], dict[str, float]]:
    """Run every (size, trial, cell) of ``config``; return the verdicts and the fit times.

    Per (size, trial) one baseline folder is written and each detector fits it once; then
    ``null_per_trial`` fresh no-shift nights and one night per shift are judged against it, as
    nightly use judges many nights against one saved baseline.
    """
    shifts = select_shifts(",".join(config.shifts))
    records: list[Record] = []
    fit_seconds: dict[str, float] = {d.name: 0.0 for d in detectors}
    cells = [(NO_SHIFT, rep) for rep in range(config.null_per_trial)] + [(s, 0) for s in shifts]
    for size in config.sizes:
        for trial in range(config.trials):
            rng = np.random.default_rng([config.seed, size, trial])
            write_folder(work / "baseline", pools.images[sample(pools, pools.baseline, size, rng)])
            references = {}
            for det in detectors:
                start = time.perf_counter()
                references[det.name] = det.fit(work / "baseline")
                fit_seconds[det.name] += time.perf_counter() - start
            for cell, (shift, rep) in enumerate(cells):
                night_rng = np.random.default_rng([config.seed, size, trial, cell, 1])
                idx = sample(pools, pools.current, size, night_rng, shift.class_weights)
                write_folder(work / "current", shift.apply(pools.images[idx], night_rng))
                verdicts = []
                for det in detectors:
                    start = time.perf_counter()
                    verdict = det.detect(references[det.name], work / "current")
                    seconds = time.perf_counter() - start
                    records.append(Record(size, trial, shift.name, shift.family, rep, det.name,
                                          verdict.drift, seconds, verdict.fired, verdict.tests))
                    verdicts.append(f"{det.name}={'D' if verdict.drift else '.'}")
                log(f"n={size} trial={trial} {shift.name}#{rep}: {' '.join(verdicts)}")
    return records, fit_seconds


# ---------------------------------------------------------------------------- report


def _rate(records: Sequence[Record]) -> float:
    return sum(r.drift for r in records) / len(records) if records else float("nan")


def _pick(records: Sequence[Record], **where: Any) -> list[Record]:
    return [r for r in records if all(getattr(r, k) == v for k, v in where.items())]


def summarise(records: Sequence[Record], config: Config) -> dict[str, Any]:
    """Rates per (size, detector): false alarms, per shift, per family, suite mean, wall time."""
    out: dict[str, Any] = {}
    shifts = [s for s in SHIFTS if s.name in config.shifts]
    for size in config.sizes:
        per_size: dict[str, Any] = {}
        for det in config.detectors:
            mine = _pick(records, size=size, detector=det)
            null = _pick(mine, shift=NO_SHIFT.name)
            per_shift = {s.name: _rate(_pick(mine, shift=s.name)) for s in shifts}
            families = dict.fromkeys(s.family for s in shifts)
            per_family = {f: float(np.mean([per_shift[s.name] for s in shifts if s.family == f]))
                          for f in families}
            per_size[det] = {
                "false_alarms": sum(r.drift for r in null), "null_nights": len(null),
                "false_alarm_rate": _rate(null),
                "detection_rate": per_shift, "family_rate": per_family,
                "suite_mean": float(np.mean(list(per_shift.values()))) if per_shift else None,
                "seconds_per_night": float(np.mean([r.seconds for r in mine])) if mine else None,
            }
        out[str(size)] = per_size
    return out


def _pct(x: float | None) -> str:
    return "–" if x is None or x != x else f"{100 * x:.0f}%"


def markdown(summary: dict[str, Any], config: Config, fit_seconds: dict[str, float],
             total_seconds: float) -> str:
    """The result tables as Markdown (what the README shows)."""
    dets = config.detectors
    refs = [d for d in dets if d != "driftd"]
    sizes = [str(s) for s in config.sizes]
    lines = [
        "## Detection benchmark",
        "",
        f"Command: `{config.command}`",
        "",
        f"Data: Fashion-MNIST test split (colourised, PNG, 28×28), baseline and current nights "
        f"drawn from disjoint halves; {config.trials} trials per size, "
        f"{config.null_per_trial} no-shift nights per trial; model `{config.model}`; "
        f"driftd options: `{json.dumps(config.options) if config.options else 'defaults'}`; "
        f"machine: {platform.machine()}, {_cpu_count()} cores; total wall time "
        f"{total_seconds / 60:.1f} min.",
        "",
        "### False alarms on no-shift nights",
        "",
        "| detector | " + " | ".join(f"n={s}" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for det in dets:
        cells = [f"{_pct(summary[s][det]['false_alarm_rate'])} "
                 f"({summary[s][det]['false_alarms']}/{summary[s][det]['null_nights']})"
                 for s in sizes]
        lines.append(f"| {det} | " + " | ".join(cells) + " |")
    lines += ["", "### Detection rate per shift", "",
              "| shift | " + " | ".join(f"{d} n={s}" for s in sizes for d in dets) + " |",
              "|---|" + "---:|" * (len(sizes) * len(dets))]
    for name in next(iter(summary.values()))[dets[0]]["detection_rate"]:
        cells = [_pct(summary[s][d]["detection_rate"][name]) for s in sizes for d in dets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **suite mean** | " + " | ".join(
        f"**{_pct(summary[s][d]['suite_mean'])}**" for s in sizes for d in dets) + " |")
    lines += ["", "### Per shift family: driftd against the better reference", "",
              "| family | " + " | ".join(f"n={s}: driftd / best ref" for s in sizes) + " |",
              "|---|" + "---:|" * len(sizes)]
    for family in next(iter(summary.values()))[dets[0]]["family_rate"]:
        cells = []
        for s in sizes:
            ours = summary[s].get("driftd", {}).get("family_rate", {}).get(family)
            best = max((summary[s][r]["family_rate"][family] for r in refs), default=None)
            mark = "" if ours is None or best is None else (" ✓" if ours >= best else " ✗")
            cells.append(f"{_pct(ours)} / {_pct(best)}{mark}")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += ["", "### Wall time", "",
              "| detector | " + " | ".join(f"s/night n={s}" for s in sizes)
              + " | baseline fits, total s |",
              "|---|" + "---:|" * (len(sizes) + 1)]
    for det in dets:
        cells = [f"{summary[s][det]['seconds_per_night']:.2f}" for s in sizes]
        lines.append(f"| {det} | " + " | ".join(cells) + f" | {fit_seconds[det]:.1f} |")
    lines.append("")
    return "\n".join(lines)


def hommel(p_values: Sequence[float]) -> NDArray[np.float64]:
    """Hommel adjusted p-values (R's ``p.adjust(method="hommel")``): family-wise error control
    under positive dependence (Simes), uniformly more powerful than Holm."""
    p = np.asarray(p_values, dtype=np.float64)
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p)
    ps = p[order]
    ranks = np.arange(1, n + 1)
    q = np.full(n, np.min(n * ps / ranks))
    pa = q.copy()
    for m in range(n - 1, 1, -1):
        i1 = np.arange(n - m + 1)
        i2 = np.arange(n - m + 1, n)
        q1 = np.min(m * ps[i2] / np.arange(2, m + 1))
        q[i1] = np.minimum(m * ps[i1], q1)
        q[i2] = q[n - m]
        pa = np.maximum(pa, q)
    out = np.empty(n)
    out[order] = np.maximum(pa, ps)
    return np.minimum(out, 1.0)


def holm(p_values: Sequence[float]) -> NDArray[np.float64]:
    """Holm step-down adjusted p-values (what driftd's default ``correction="holm"`` does)."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p)
    out = np.empty(p.size)
    out[order] = np.minimum(np.maximum.accumulate((p.size - np.arange(p.size)) * p[order]), 1.0)
    return out


@dataclass(frozen=True)
class Replay:
    """driftd's verdict recomputed from a report's p-values under other settings."""

    name: str
    correction: Callable[[Sequence[float]], NDArray[np.float64]]
    alpha: float = ALPHA
    wasserstein_low: float = 0.1
    psi_low: float = 0.1

    def drift(self, tests: Sequence[Sequence[Any]]) -> bool:
        """Whether any test is significant after correction with an effect above its cut-off."""
        if not tests:
            return False
        adjusted = self.correction([t[1] for t in tests])
        return any(q <= self.alpha and t[2] >= (self.wasserstein_low
                                               if t[3] == "wasserstein_norm" else self.psi_low)
                   for q, t in zip(adjusted, tests, strict=True))


REPLAYS = (
    Replay("holm (default, replayed)", holm),
    Replay("hommel", hommel),
    Replay("holm, wasserstein_low 0.05", holm, wasserstein_low=0.05),
    Replay("hommel, wasserstein_low 0.05", hommel, wasserstein_low=0.05),
)


def replay_markdown(records: Sequence[Record], config: Config) -> str:
    """What-if table: driftd's nights re-judged from their p-values under ``REPLAYS``."""
    mine = [r for r in records if r.detector == "driftd" and (r.tests or not r.drift)]
    if not mine:
        return ""
    families = list(dict.fromkeys(r.family for r in mine if r.family != "none"))
    lines = ["### driftd re-judged from the same p-values (what-if, no re-run)", "",
             "| setting | n | false alarms | suite mean | "
             + " | ".join(families) + " |", "|---|---:|---:|---:|" + "---:|" * len(families)]
    for rep in REPLAYS:
        for size in config.sizes:
            at = [r for r in mine if r.size == size]
            null = [rep.drift(r.tests) for r in at if r.shift == NO_SHIFT.name]
            per_shift: dict[str, list[bool]] = {}
            for r in at:
                if r.shift != NO_SHIFT.name:
                    per_shift.setdefault(r.shift, []).append(rep.drift(r.tests))
            shift_rate = {k: float(np.mean(v)) for k, v in per_shift.items()}
            fam = {f: float(np.mean([shift_rate[s.name] for s in SHIFTS
                                     if s.family == f and s.name in shift_rate]))
                   for f in families}
            suite = float(np.mean(list(shift_rate.values()))) if shift_rate else None
            lines.append(f"| {rep.name} | {size} | {sum(null)}/{len(null)} | {_pct(suite)} | "
                         + " | ".join(_pct(fam[f]) for f in families) + " |")
    return "\n".join(lines) + "\n"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def keep_reading(out: Path, generated: str) -> str:
    """``generated`` followed by the hand-written reading block of the existing ``out``, if any.

    The block sits between ``<!-- reading -->`` and ``<!-- /reading -->``; rerunning the
    benchmark refreshes the tables and keeps the prose.
    """
    if out.exists():
        match = re.search(re.escape(READING_START) + ".*?" + re.escape(READING_END),
                          out.read_text(), flags=re.S)
        if match:
            return generated + "\n" + match.group(0) + "\n"
    return generated


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs to a dict; values are JSON when they parse (numbers, bools), else text.

    Raises ``ValueError`` naming the pair that has no ``=``.
    """
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--option {pair!r} has no '='; write key=value, e.g. alpha=0.01")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def build_detectors(names: Sequence[str], model: Path | None,
                    options: dict[str, Any]) -> list[Detector]:
    """The detectors named in ``names``; BBSD is left out when there is no model.

    Raises ``ValueError`` naming an unknown detector and the known ones.
    """
    detectors: list[Detector] = []
    for name in names:
        if name == "driftd":
            detectors.append(DriftdDetector(model, options))
        elif name == "bbsd":
            if model is not None:
                detectors.append(BBSDDetector(tflite_softmax(model)))
        elif name == "properties":
            detectors.append(PropertyDetector())
        else:
            raise ValueError(f"unknown detector {name!r}; choose from driftd, bbsd, properties")
    return detectors


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables, write Markdown and JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=None,
                        help="trials (baselines) per size (default 5; 2 with --quick)")
    parser.add_argument("--null-per-trial", type=int, default=None,
                        help="no-shift nights judged against each trial's baseline "
                        "(default 10; 3 with --quick)")
    parser.add_argument("--sizes", default="100,500", help="images per folder, comma-separated")
    parser.add_argument("--shifts", default=None, help="shift or family names (default: all)")
    parser.add_argument("--seed", type=int, default=20191208)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--no-model", action="store_true",
                        help="run driftd without a model (BBSD is skipped)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="DatasetAnalyzer option override, repeatable (e.g. workers=1)")
    parser.add_argument("--detectors", default="driftd,bbsd,properties")
    parser.add_argument("--quick", action="store_true",
                        help="fewer trials and no-shift nights, for iteration")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown output; the JSON goes beside it with .json")
    args = parser.parse_args(argv)
    # Run as a script from a checkout: import the working tree's analyzer, not an installed one.
    sys.path.insert(0, str(REPO_ROOT))
    if args.trials is None:
        args.trials = 2 if args.quick else 5
    if args.null_per_trial is None:
        args.null_per_trial = 3 if args.quick else 10

    model = None if args.no_model else args.model
    if model is not None and not model.exists():
        parser.error(f"model {model} not found; pass --model PATH or --no-model")
    wanted = [d.strip() for d in args.detectors.split(",") if d.strip()]
    try:
        detectors = build_detectors(wanted, model, parse_options(args.option))
    except ValueError as err:
        parser.error(str(err))
    config = Config(
        sizes=[int(s) for s in args.sizes.split(",")], trials=args.trials,
        null_per_trial=args.null_per_trial,
        shifts=[s.name for s in select_shifts(args.shifts)], seed=args.seed,
        model=str(model.relative_to(REPO_ROOT)) if model and model.is_relative_to(REPO_ROOT)
        else (str(model) if model else None),
        options=parse_options(args.option), detectors=[d.name for d in detectors],
        command="python bench/detection.py " + " ".join(sys.argv[1:] if argv is None else argv),
    )
    pools = load_pools(seed=0)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="driftd-bench-") as tmp:
        records, fit_seconds = run(config, detectors, pools, Path(tmp),
                                   log=lambda m: print(m, file=sys.stderr, flush=True))
    total = time.perf_counter() - start
    summary = summarise(records, config)
    text = markdown(summary, config, fit_seconds, total) + "\n" + replay_markdown(records, config)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(keep_reading(args.out, text))
    args.out.with_suffix(".json").write_text(json.dumps(
        {"config": asdict(config), "summary": summary, "fit_seconds": fit_seconds,
         "total_seconds": total, "records": [asdict(r) for r in records]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
