"""Detection benchmark: driftd's false-alarm and detection rates next to two reference detectors.

Every trial writes a baseline folder and current folders of real images (``--source``, see
``bench/image_sources.py``: colourised Fashion-MNIST with the bundled 10-class model, or random
crops of real photographs with a 1,000-class ImageNet EfficientNet-Lite), and asks three
detectors whether each current folder drifted:

- **driftd**, exactly as a user runs it: ``DatasetAnalyzer(folder, model_path=..., **options)``,
  ``.analyze()`` on the baseline folder, ``.detect_drift(baseline)`` on the current folder, the
  verdict is ``overall_drift_detected``;
- **BBSD**, the best detector of "Failing Loudly" (Rabanser et al., NeurIPS 2019): the same
  model's softmax outputs, one two-sample KS test per class, Bonferroni at alpha 0.05;
- **properties**, a deepchecks-style rule: KS statistic > 0.2 on any of deepchecks' default image
  properties (aspect ratio, area, brightness, RMS contrast, mean R/G/B relative intensity).

driftd's verdict is also split into its arms (``ARMS``): ``driftd:features`` (the image
features), ``driftd:softmax`` (model outputs and predicted class) and ``driftd:embedding`` (the
MMD test on the penultimate-layer embedding), each judged *alone*, as if driftd ran only that
arm: Holm over that arm's p-values of the same report, at the report's alpha, with the same
effect-size cut-offs. The combined verdict has one family for all arms, so it can be weaker
than an arm alone; the "combined against each arm" table shows whether it is.

The no-shift nights are fresh samples of the baseline's own law; each shift corrupts a fresh
sample (or, for the class-prior shift, reweights the classes or groups it is drawn from).

Run ``python bench/detection.py --help``; ``--quick`` for a short iteration run.
"""

from __future__ import annotations

import argparse
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
# A script beside its helper module.
from image_sources import (
    REPO_ROOT,
    SOURCES,
    Images,
    ImageSource,
    load_source,
    prior_weights,
)

RESULTS = REPO_ROOT / "bench" / "results"
ALPHA = 0.05
PROPERTY_KS_THRESHOLD = 0.2
READING_START = "<!-- reading -->"
READING_END = "<!-- /reading -->"

ShiftFn = Callable[[Images, np.random.Generator], Images]


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
    and/or a class-prior change (``prior``: the night is drawn with ``prior_weights``)."""

    name: str
    family: str
    fn: ShiftFn
    fraction: float = 1.0
    prior: bool = False

    def draw(self, source: ImageSource, n: int, rng: np.random.Generator) -> Images:
        """A current night of ``n`` images from ``source`` with this shift applied."""
        weights = prior_weights(source.groups) if self.prior else None
        return self.apply(source.draw("current", n, rng, weights), rng)

    def apply(self, images: Images, rng: np.random.Generator) -> Images:
        """Return ``images`` with the corruption applied to a random ``fraction`` of them."""
        if self.fraction >= 1.0:
            return self.fn(images, rng)
        out = images.copy()
        chosen = rng.choice(len(images), size=round(self.fraction * len(images)), replace=False)
        out[chosen] = self.fn(images[chosen], rng)
        return out


NO_SHIFT = Shift("no_shift", "none", identity)

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
    Shift("class_prior", "class-prior", identity, prior=True),
)
FAMILIES = tuple(dict.fromkeys(s.family for s in SHIFTS))


def select_shifts(spec: str | None) -> tuple[Shift, ...]:
    """The shifts named in the comma-separated ``spec`` (shift names or family names); all if
    None; none if ``"none"`` (only the no-shift nights run).

    Raises ``ValueError`` naming the unknown entry and the known names.
    """
    if not spec:
        return SHIFTS
    if spec.strip() == "none":
        return ()
    chosen: list[Shift] = []
    for entry in (e.strip() for e in spec.split(",") if e.strip()):
        matches = [s for s in SHIFTS if entry in (s.name, s.family)]
        if not matches:
            known = ", ".join([s.name for s in SHIFTS] + list(FAMILIES))
            raise ValueError(f"unknown shift {entry!r} in --shifts; known: {known}")
        chosen.extend(m for m in matches if m not in chosen)
    return tuple(chosen)


def write_folder(folder: Path, images: Images, fmt: str = "png") -> None:
    """Replace ``folder``'s content with one file per image: PNG, or JPEG at quality 90
    (``fmt="jpeg"``, as a camera pipeline writes photographs)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i, img in enumerate(images):
        if fmt == "jpeg":
            Image.fromarray(img).save(folder / f"img_{i:05d}.jpg", quality=90)
        else:
            Image.fromarray(img).save(folder / f"img_{i:05d}.png")


def read_folder(folder: Path) -> list[Images]:
    """Decode every image file of ``folder`` to an RGB array (as a user's pipeline would)."""
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())
            if p.suffix.lower() in {".png", ".jpg", ".jpeg"}]


# ---------------------------------------------------------------------------- detectors


@dataclass(frozen=True)
class Verdict:
    """A detector's answer for one night: drift or not, what fired, and (driftd) every test as
    ``[feature, p_value, effect_size, effect_size_kind, section, threshold]`` for offline
    what-if corrections and the per-arm verdicts."""

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
    """Failing Loudly's BBSD: per-class KS on the model's softmax outputs, Bonferroni at alpha.

    With ``top``, only the ``top`` classes with the highest mean baseline probability are
    tested (Bonferroni over ``top``): the variant a many-class model would need, kept here as
    evidence for driftd's choice of per-class tests.
    """

    def __init__(self, softmax: Callable[[Path], NDArray[np.float64]],
                 alpha: float = ALPHA, top: int | None = None) -> None:
        self.softmax = softmax
        self.alpha = alpha
        self.top = top
        self.name = "bbsd" if top is None else f"bbsd-top{top}"

    def fit(self, folder: Path) -> NDArray[np.float64]:
        return self.softmax(folder)

    def detect(self, reference: NDArray[np.float64], folder: Path) -> Verdict:
        current = self.softmax(folder)
        classes = np.arange(reference.shape[1])
        if self.top is not None:
            classes = np.argsort(-reference.mean(axis=0), kind="stable")[: self.top]
        fired = [f"softmax_{k}" for k in classes
                 if stats.ks_2samp(reference[:, k], current[:, k]).pvalue
                 < self.alpha / classes.size]
        return Verdict(bool(fired), fired)


def tflite_softmax(model_path: Path, batch: int = 256) -> Callable[[Path], NDArray[np.float64]]:
    """Softmax outputs of a folder's images through driftd's own ``analyzer.model.Classifier``.

    The last folder's outputs are kept, so the BBSD variants judging one night run the model
    once (a night folder is rewritten, with a new mtime, for every night).
    """
    from analyzer.model import Classifier

    classifier = Classifier.load(model_path)
    memo: dict[tuple[str, int], NDArray[np.float64]] = {}

    def softmax(folder: Path) -> NDArray[np.float64]:
        key = (str(folder), folder.stat().st_mtime_ns)
        if key not in memo:
            images = read_folder(folder)
            memo.clear()
            memo[key] = np.concatenate([
                classifier.predict(np.stack([classifier.preprocess(Image.fromarray(im))
                                             for im in images[i:i + batch]]))
                for i in range(0, len(images), batch)])
        return memo[key]

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
        tests = [[t["feature"], t["p_value"], t["effect_size"], t["effect_size_kind"],
                  t["section"], t["threshold"]]
                 for t in _tests(report) if t["test"] != "skipped"]
        return Verdict(bool(report["overall_drift_detected"]), fired, tests)


def _tests(report: dict[str, Any]) -> list[dict[str, Any]]:
    sections = ("pixel_distribution_drift", "confidence_drift", "class_distribution_drift",
                "embedding_drift")
    return [t for s in sections for t in (report.get(s) or {}).get("tests", [])]


ARMS: dict[str, tuple[str, ...]] = {
    "driftd:features": ("pixel_distribution_drift",),
    "driftd:softmax": ("confidence_drift", "class_distribution_drift"),
    "driftd:embedding": ("embedding_drift",),
}
"""driftd's arms: the report sections whose tests each arm holds."""


def arm_verdict(tests: Sequence[Sequence[Any]], sections: Sequence[str],
                alpha: float = ALPHA) -> bool:
    """Whether an arm alone would flag the night: Holm over the arm's own tests (entries as in
    ``Verdict.tests``), significant at ``alpha`` with an effect at or above its cut-off."""
    mine = [t for t in tests if len(t) >= 6 and t[4] in sections]
    if not mine:
        return False
    adjusted = holm([t[1] for t in mine])
    return any(q <= alpha and t[2] >= t[5] for q, t in zip(adjusted, mine, strict=True))


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
    source: str = "fashion"
    baseline_size: int | None = None
    shift_sizes: list[int] | None = None

    def shifts_at(self, size: int) -> bool:
        """Whether the shift families run at ``size`` (the no-shift nights run at every size)."""
        return self.shift_sizes is None or size in self.shift_sizes


def run(config: Config, detectors: Sequence[Detector], source: ImageSource,
        work: Path, log: Callable[[str], None] = print) -> tuple[list[Record], dict[str, float]]:
    """Run every (trial, size, cell) of ``config``; return the verdicts and the fit times.

    A trial writes one baseline folder that each detector fits once, then judges
    ``null_per_trial`` fresh no-shift nights and one night per shift against it, as nightly use
    judges many nights against one saved baseline. With ``config.baseline_size`` one baseline of
    that size per trial serves the nights of every size; without it each (size, trial) has its
    own baseline of ``size`` images.
    """
    shifts = [s for s in SHIFTS if s.name in config.shifts]
    fmt = "png" if source.name == "fashion" else "jpeg"
    records: list[Record] = []
    fit_seconds: dict[str, float] = {d.name: 0.0 for d in detectors}
    if any(d.name == "driftd" for d in detectors):
        fit_seconds.update(dict.fromkeys(ARMS, 0.0))  # the arms come with driftd's fit
    cells = [(NO_SHIFT, rep) for rep in range(config.null_per_trial)] + [(s, 0) for s in shifts]

    def fit(n: int, rng: np.random.Generator) -> dict[str, Any]:
        write_folder(work / "baseline", source.draw("baseline", n, rng), fmt)
        references = {}
        for det in detectors:
            start = time.perf_counter()
            references[det.name] = det.fit(work / "baseline")
            fit_seconds[det.name] += time.perf_counter() - start
        return references

    def judge(size: int, trial: int, references: dict[str, Any]) -> None:
        for cell, (shift, rep) in enumerate(cells):
            if shift is not NO_SHIFT and not config.shifts_at(size):
                continue
            night_rng = np.random.default_rng([config.seed, size, trial, cell, 1])
            write_folder(work / "current", shift.draw(source, size, night_rng), fmt)
            verdicts = []
            for det in detectors:
                start = time.perf_counter()
                verdict = det.detect(references[det.name], work / "current")
                seconds = time.perf_counter() - start
                records.append(Record(size, trial, shift.name, shift.family, rep, det.name,
                                      verdict.drift, seconds, verdict.fired, verdict.tests))
                verdicts.append(f"{det.name}={'D' if verdict.drift else '.'}")
                if det.name == "driftd":
                    for arm, sections in ARMS.items():
                        alone = arm_verdict(verdict.tests, sections)
                        records.append(Record(size, trial, shift.name, shift.family, rep, arm,
                                              alone, 0.0, []))
                        verdicts.append(f"{arm.split(':')[1]}={'D' if alone else '.'}")
            log(f"n={size} trial={trial} {shift.name}#{rep}: {' '.join(verdicts)}")

    if config.baseline_size:
        for trial in range(config.trials):
            references = fit(config.baseline_size,
                             np.random.default_rng([config.seed, 0, trial]))
            for size in config.sizes:
                judge(size, trial, references)
    else:
        for size in config.sizes:
            for trial in range(config.trials):
                judge(size, trial, fit(size, np.random.default_rng([config.seed, size, trial])))
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
            per_shift = {s.name: _rate(_pick(mine, shift=s.name)) for s in shifts
                         if _pick(mine, shift=s.name)}
            ran = [s for s in shifts if s.name in per_shift]
            families = dict.fromkeys(s.family for s in ran)
            per_family = {f: float(np.mean([per_shift[s.name] for s in ran if s.family == f]))
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


def upper_bound(hits: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper confidence bound of a rate seen as ``hits``/``trials``."""
    if trials == 0:
        return float("nan")
    if hits >= trials:
        return 1.0
    return float(stats.beta.ppf(confidence, hits + 1, trials - hits))


def markdown(summary: dict[str, Any], config: Config, fit_seconds: dict[str, float],
             total_seconds: float, description: str = "") -> str:
    """The result tables as Markdown (what the README shows)."""
    dets = config.detectors
    refs = [d for d in dets if d != "driftd" and d not in ARMS]
    arms = [d for d in dets if d in ARMS]
    sizes = [str(s) for s in config.sizes]
    shifted = [s for s in sizes if summary[s][dets[0]]["detection_rate"]]
    baseline = (f"a baseline of {config.baseline_size} images per trial"
                if config.baseline_size else "a baseline of n images per (size, trial)")
    lines = [
        "## Detection benchmark",
        "",
        f"Command: `{config.command}`",
        "",
        f"Data: {description or config.source}; {baseline}; {config.trials} trials, "
        f"{config.null_per_trial} no-shift nights per trial and size; model `{config.model}`; "
        f"driftd options: `{json.dumps(config.options) if config.options else 'defaults'}`; "
        f"machine: {platform.machine()}, {_cpu_count()} cores; total wall time "
        f"{total_seconds / 60:.1f} min.",
        "",
        "### False alarms on no-shift nights",
        "",
        "Share of no-shift nights flagged (count; one-sided 95% Clopper-Pearson upper bound).",
        "",
        "| detector | " + " | ".join(f"n={s}" for s in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for det in dets:
        cells = []
        for s in sizes:
            row = summary[s][det]
            bound = upper_bound(row["false_alarms"], row["null_nights"])
            cells.append(f"{_pct(row['false_alarm_rate'])} ({row['false_alarms']}/"
                         f"{row['null_nights']}; ≤ {_pct(bound)})")
        lines.append(f"| {det} | " + " | ".join(cells) + " |")
    if not shifted:
        return "\n".join([*lines, ""])
    lines += ["", "### Detection rate per shift", "",
              "| shift | " + " | ".join(f"{d} n={s}" for s in shifted for d in dets) + " |",
              "|---|" + "---:|" * (len(shifted) * len(dets))]
    for name in summary[shifted[0]][dets[0]]["detection_rate"]:
        cells = [_pct(summary[s][d]["detection_rate"].get(name)) for s in shifted for d in dets]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| **suite mean** | " + " | ".join(
        f"**{_pct(summary[s][d]['suite_mean'])}**" for s in shifted for d in dets) + " |")
    calibrated = {s: [r for r in refs if summary[s][r]["false_alarm_rate"] <= ALPHA]
                  for s in shifted}
    excluded = [f"{r} at n={s} ({_pct(summary[s][r]['false_alarm_rate'])})"
                for s in shifted for r in refs if r not in calibrated[s]]
    lines += ["", "### Per shift family: driftd against the better reference", "",
              "Best reference among those whose own false-alarm rate at that size is at most "
              f"{ALPHA:.0%} (a detector that alarms on clean nights detects shifts by chance as "
              "often); the best of all references in brackets where it differs."
              + (f" Not calibrated: {', '.join(excluded)}." if excluded else ""), "",
              "| family | " + " | ".join(f"n={s}: driftd / best ref" for s in shifted) + " |",
              "|---|" + "---:|" * len(shifted)]
    for family in summary[shifted[0]][dets[0]]["family_rate"]:
        cells = []
        for s in shifted:
            ours = summary[s].get("driftd", {}).get("family_rate", {}).get(family)
            rates = {r: summary[s][r]["family_rate"][family] for r in refs}
            best = max((rates[r] for r in calibrated[s]), default=None)
            best_all = max(rates.values(), default=None)
            mark = "" if ours is None or best is None else (" ✓" if ours >= best else " ✗")
            extra = f" ({_pct(best_all)})" if best_all is not None and best_all != best else ""
            cells.append(f"{_pct(ours)} / {_pct(best)}{extra}{mark}")
        lines.append(f"| {family} | " + " | ".join(cells) + " |")
    if arms and "driftd" in dets:
        lines += ["", "### Per shift family: combined driftd against each arm alone", "",
                  "Each arm judged alone (its own Holm family, same cut-offs); ✓ where the "
                  "combined verdict is at or above the best arm.", "",
                  "| family | " + " | ".join(f"n={s}: combined / " + " / ".join(
                      a.split(":")[1] for a in arms) for s in shifted) + " |",
                  "|---|" + "---:|" * len(shifted)]
        for family in summary[shifted[0]]["driftd"]["family_rate"]:
            cells = []
            for s in shifted:
                ours = summary[s]["driftd"]["family_rate"][family]
                alone = [summary[s][a]["family_rate"][family] for a in arms]
                mark = " ✓" if ours >= max(alone) else " ✗"
                cells.append(f"{_pct(ours)} / " + " / ".join(_pct(x) for x in alone) + mark)
            lines.append(f"| {family} | " + " | ".join(cells) + " |")
    lines += ["", "### Wall time", "",
              "| detector | " + " | ".join(f"s/night n={s}" for s in sizes)
              + " | baseline fits, total s |",
              "|---|" + "---:|" * (len(sizes) + 1)]
    for det in (d for d in dets if d not in ARMS):
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
    tvd_low: float = 0.05
    auc_low: float = 0.02

    def drift(self, tests: Sequence[Sequence[Any]]) -> bool:
        """Whether any test is significant after correction with an effect above its cut-off."""
        if not tests:
            return False
        adjusted = self.correction([t[1] for t in tests])
        cutoff = {"wasserstein_norm": self.wasserstein_low, "auc_above_chance": self.auc_low}
        return any(q <= self.alpha and t[2] >= cutoff.get(t[3], self.tvd_low)
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
    softmax = tflite_softmax(model) if model is not None else None
    for name in names:
        top = re.fullmatch(r"bbsd-top(\d+)", name)
        if name == "driftd":
            detectors.append(DriftdDetector(model, options))
        elif name == "bbsd" or top:
            if softmax is not None:
                detectors.append(BBSDDetector(softmax, top=int(top.group(1)) if top else None))
        elif name == "properties":
            detectors.append(PropertyDetector())
        else:
            raise ValueError(f"unknown detector {name!r}; choose from driftd, bbsd, "
                             "bbsd-topN (e.g. bbsd-top10), properties")
    return detectors


def render(saved: Path, out: Path) -> int:
    """Rewrite ``out`` (Markdown) from a run's saved JSON: same records, current tables."""
    data = json.loads(saved.read_text())
    config = Config(**data["config"])
    records = [Record(**r) for r in data["records"]]
    description = data.get("description", config.source)
    text = (markdown(summarise(records, config), config, data["fit_seconds"],
                     data["total_seconds"], description)
            + "\n" + replay_markdown(records, config))
    out.write_text(keep_reading(out, text))
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the tables, write Markdown and JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", default="fashion", choices=list(SOURCES),
                        help="image set (bench/image_sources.py); the default model follows it")
    parser.add_argument("--trials", type=int, default=None,
                        help="trials (baselines) per size (default 5; 2 with --quick)")
    parser.add_argument("--null-per-trial", type=int, default=None,
                        help="no-shift nights judged against each trial's baseline "
                        "(default 10; 3 with --quick)")
    parser.add_argument("--sizes", default="100,500", help="images per folder, comma-separated")
    parser.add_argument("--shift-sizes", default=None,
                        help="sizes at which the shift families run (default: every size)")
    parser.add_argument("--baseline-size", type=int, default=None,
                        help="one baseline of this many images per trial for every size "
                        "(default: a baseline of n images per size)")
    parser.add_argument("--shifts", default=None,
                        help="shift or family names (default: all; none: no-shift nights only)")
    parser.add_argument("--seed", type=int, default=20191208)
    parser.add_argument("--model", type=Path, default=None,
                        help="TFLite classifier (default: the source's, see image_sources.py)")
    parser.add_argument("--no-model", action="store_true",
                        help="run driftd without a model (BBSD is skipped)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="DatasetAnalyzer option override, repeatable (e.g. workers=1)")
    parser.add_argument("--detectors", default="driftd,bbsd,properties")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="rewrite the Markdown of a finished run from its JSON (no new "
                        "nights), e.g. after a change to the tables")
    parser.add_argument("--quick", action="store_true",
                        help="fewer trials and no-shift nights, for iteration")
    parser.add_argument("--out", type=Path, default=None,
                        help="Markdown output (default bench/results/detection-SOURCE.md); "
                        "the JSON goes beside it with .json")
    args = parser.parse_args(argv)
    if args.render is not None:
        return render(args.render, args.out or args.render.with_suffix(".md"))
    # Run as a script from a checkout: import the working tree's analyzer, not an installed one.
    sys.path.insert(0, str(REPO_ROOT))
    if args.trials is None:
        args.trials = 2 if args.quick else 5
    if args.null_per_trial is None:
        args.null_per_trial = 3 if args.quick else 10

    model = None if args.no_model else (args.model or SOURCES[args.source][1])
    out = args.out or RESULTS / f"detection-{args.source}.md"
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
        options=parse_options(args.option),
        detectors=[d.name for d in detectors]
        + (list(ARMS) if any(d.name == "driftd" for d in detectors) else []),
        command="python bench/detection.py " + " ".join(sys.argv[1:] if argv is None else argv),
        source=args.source, baseline_size=args.baseline_size,
        shift_sizes=[int(s) for s in args.shift_sizes.split(",")] if args.shift_sizes else None,
    )
    try:
        source = load_source(args.source)
    except FileNotFoundError as err:
        parser.error(str(err))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="driftd-bench-") as tmp:
        records, fit_seconds = run(config, detectors, source, Path(tmp),
                                   log=lambda m: print(m, file=sys.stderr, flush=True))
    total = time.perf_counter() - start
    summary = summarise(records, config)
    text = (markdown(summary, config, fit_seconds, total, source.description) + "\n"
            + replay_markdown(records, config))
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(keep_reading(out, text))
    out.with_suffix(".json").write_text(json.dumps(
        {"config": asdict(config), "description": source.description,
         "summary": summary, "fit_seconds": fit_seconds,
         "total_seconds": total, "records": [asdict(r) for r in records]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
