"""Which multivariate test on the model's embeddings: false alarms and power, arm by arm.

For one image source (``bench/image_sources.py``: ``food`` with EfficientNet-Lite0, ``scenes``
with EfficientNet-Lite2, ``fashion`` with the bundled demo CNN), each trial draws a baseline of
``--baseline`` images, then ``--null`` no-shift nights and ``--reps`` nights per shift at each
night size, all from the source's own law (photo sources go through a JPEG q90 round trip, as
``bench/detection.py`` writes them). Every image runs once through
``analyzer.embeddings.EmbeddingModel`` (probabilities + embedding in one invoke); the embedding
is projected per image (``analyzer.projection.project``); the tests map the pooled rows on
their whitened principal axes.

Arms (all exact permutation tests, ``--permutations`` draws, seeded from the data):

- ``embedding``: ``embedding_test`` (driftd's choice): the MMD's p-value, the classifier's
  AUC-above-chance effect, on the same permutations;
- ``mmd``: ``mmd_test`` (pooled whitened basis, pooled median-heuristic bandwidth);
- ``mmd_unwhitened``: no basis (the projected values as they are);
- ``mmd_baseline_basis``: the whitened basis fitted on the baseline rows alone (the design
  first planned; it breaks the null: see the false alarms);
- ``clf``: ``classifier_test`` (ridge 1, 5 folds, pooled whitened basis);
- ``clf_ridge0.01``: the same with a 100× smaller penalty (close to LDA; not run by default);
- ``mmd_full``: MMD on the full embedding as it is (no projection, no basis; photo sources
  only): against ``mmd_unwhitened`` it shows what the random projection costs;
- references on the same nights: ``bbsd`` (per-class softmax KS, Bonferroni over the
  classes; Rabanser et al. 2019) and ``classes`` (driftd's ``category_test`` on the predicted
  class).

A night is flagged at level alpha when its p-value ≤ alpha. The table gives false alarms at
0.05 (count and one-sided 95% Clopper-Pearson bound), detection per shift at 0.05 and at
0.05/30 (what the test needs when it is the only one to fire in a Holm family of 30), and the
median effect size per shift.

    python bench/embedding_arms.py --source food --out bench/results/embedding-arms-food
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detection import NO_SHIFT, SHIFTS, Shift, upper_bound
from image_sources import REPO_ROOT, SOURCES, ImageSource, load_source

from analyzer.embeddings import EmbeddingModel
from analyzer.model import ModelOptions
from analyzer.multivariate import classifier_test, embedding_test, mmd_test
from analyzer.projection import Basis, project
from analyzer.stats import category_test

DEFAULT_SHIFTS = ("noise_s8", "noise_s20", "blur_r1_half", "jpeg_q10_half", "colour_cast_half",
                  "rotation_20", "class_prior")
DEFAULT_ARMS = ("embedding", "mmd_unwhitened", "mmd_baseline_basis", "clf", "mmd_full",
                "classes")
HOLM_M = 30
Arrays = dict[str, NDArray[Any]]


def jpeg_round_trip(images: NDArray[np.uint8]) -> list[Image.Image]:
    """Each image as decoded from a JPEG written at quality 90 (what the detection bench does)."""
    out = []
    for img in images:
        buffer = io.BytesIO()
        Image.fromarray(img).save(buffer, format="JPEG", quality=90)
        buffer.seek(0)
        out.append(Image.open(buffer).convert("RGB"))
    return out


class Night:
    """One folder's model outputs: projected embeddings, full embeddings, probabilities."""

    def __init__(self, model: EmbeddingModel, images: NDArray[np.uint8], photo: bool) -> None:
        pil = jpeg_round_trip(images) if photo else [Image.fromarray(i) for i in images]
        probs, emb = [], []
        for start in range(0, len(pil), 256):
            batch = np.stack([model.preprocess(im) for im in pil[start : start + 256]])
            p, e = model.embed(batch)
            probs.append(p)
            emb.append(e)
        self.probs = np.concatenate(probs)
        self.full = np.concatenate(emb)
        self.projected = project(self.full)


class Reference:
    """The baseline night the arms compare each night with."""

    def __init__(self, night: Night) -> None:
        self.night = night


def bbsd_p(base: NDArray[np.float64], cur: NDArray[np.float64]) -> tuple[float, float]:
    """Per-class KS on softmax columns, Bonferroni over the classes: (p, largest KS D)."""
    results = [stats.ks_2samp(base[:, k], cur[:, k]) for k in range(base.shape[1])]
    p = min(1.0, min(float(r.pvalue) for r in results) * base.shape[1])
    return p, max(float(r.statistic) for r in results)


def class_counts(probs: NDArray[np.float64]) -> dict[str, int]:
    values, counts = np.unique(probs.argmax(axis=1), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts, strict=True)}


def arms(permutations: int, photo: bool
         ) -> dict[str, Callable[[Reference, Night], tuple[float, float]]]:
    """Each arm: (reference, night) → (p-value, effect size)."""
    def multi(result: Any) -> tuple[float, float]:
        return float(result.p_value), float(result.effect_size)

    def pair(r: Reference, n: Night) -> tuple[NDArray[Any], NDArray[Any]]:
        return r.night.projected, n.projected

    def baseline_basis(r: Reference, n: Night) -> tuple[NDArray[Any], NDArray[Any]]:
        basis = Basis.fit(r.night.projected)  # the baseline's rows alone: in-sample for them
        return basis.transform(r.night.projected), basis.transform(n.projected)

    out: dict[str, Callable[[Reference, Night], tuple[float, float]]] = {
        "embedding": lambda r, n: multi(embedding_test(*pair(r, n), permutations)),
        "mmd": lambda r, n: multi(mmd_test(*pair(r, n), permutations)),
        "mmd_unwhitened": lambda r, n: multi(mmd_test(*pair(r, n), permutations,
                                                      whiten=False)),
        "mmd_baseline_basis": lambda r, n: multi(mmd_test(*baseline_basis(r, n), permutations,
                                                          whiten=False)),
        "clf": lambda r, n: multi(classifier_test(*pair(r, n), permutations)),
        "clf_ridge0.01": lambda r, n: multi(classifier_test(*pair(r, n), permutations,
                                                            ridge=0.01)),
    }
    if photo:
        out["mmd_full"] = lambda r, n: multi(mmd_test(r.night.full, n.full, permutations,
                                                      whiten=False))
    out["bbsd"] = lambda r, n: bbsd_p(r.night.probs, n.probs)

    def classes(r: Reference, n: Night) -> tuple[float, float]:
        result = category_test(class_counts(r.night.probs), class_counts(n.probs))
        return float(result.p_value), float(result.effect_size)

    out["classes"] = classes
    return out


def run(source: ImageSource, model: EmbeddingModel, args: argparse.Namespace,
        log: Callable[[str], None]) -> list[dict[str, Any]]:
    """Every (trial, size, night) judged by every arm; one record per (night, arm)."""
    photo = source.name != "fashion"
    shifts = [s for s in SHIFTS if s.name in args.shifts.split(",")]
    chosen = {k: v for k, v in arms(args.permutations, photo).items()
              if k in args.arms.split(",")}
    records: list[dict[str, Any]] = []
    for trial in range(args.trials):
        reference = Reference(Night(model, source.draw(
            "baseline", args.baseline, np.random.default_rng([args.seed, trial])), photo))
        for size in args.sizes:
            cells: list[tuple[Shift, int]] = [(NO_SHIFT, r) for r in range(args.null)]
            cells += [(s, r) for s in shifts for r in range(args.reps)]
            for cell, (shift, rep) in enumerate(cells):
                rng = np.random.default_rng([args.seed, trial, size, cell, 7])
                night = Night(model, shift.draw(source, size, rng), photo)
                line = []
                for name, arm in chosen.items():
                    start = time.perf_counter()
                    p, effect = arm(reference, night)
                    records.append({"trial": trial, "size": size, "shift": shift.name,
                                    "family": shift.family, "rep": rep, "arm": name, "p": p,
                                    "effect": effect,
                                    "seconds": time.perf_counter() - start})
                    line.append(f"{name}={p:.3f}")
                log(f"trial {trial} n={size} {shift.name}#{rep}: {' '.join(line)}")
    return records


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def markdown(records: list[dict[str, Any]], args: argparse.Namespace, minutes: float,
             description: str) -> str:
    """False-alarm and detection tables, per arm and night size."""
    arm_names = list(dict.fromkeys(r["arm"] for r in records))
    sizes = args.sizes
    lines = [f"## Embedding test arms: {args.source}", "",
             f"Command: `python bench/embedding_arms.py {' '.join(sys.argv[1:])}`", "",
             f"Data: {description}; model `{_relative(args.model)}`; baseline {args.baseline} "
             "images per "
             f"trial, {args.trials} trials; {args.permutations} permutations; "
             f"{minutes:.1f} min.", "",
             "### False alarms (no-shift nights, p ≤ 0.05)", "",
             "| arm | " + " | ".join(f"n={s}" for s in sizes) + " | s/night |",
             "|---|" + "---:|" * (len(sizes) + 1)]
    for arm in arm_names:
        cells = []
        for size in sizes:
            null = [r for r in records if r["arm"] == arm and r["size"] == size
                    and r["shift"] == NO_SHIFT.name]
            hits = sum(r["p"] <= 0.05 for r in null)
            cells.append(f"{_pct(hits / len(null))} ({hits}/{len(null)}; "
                         f"≤ {_pct(upper_bound(hits, len(null)))})")
        seconds = np.mean([r["seconds"] for r in records if r["arm"] == arm])
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {seconds:.2f} |")
    shifts = list(dict.fromkeys(r["shift"] for r in records if r["shift"] != NO_SHIFT.name))
    for size in sizes:
        lines += ["", f"### Detection at n={size}: share of nights with p ≤ 0.05 "
                  f"(p ≤ 0.05/{HOLM_M}); median effect", "",
                  "| shift | " + " | ".join(arm_names) + " |",
                  "|---|" + "---:|" * len(arm_names)]
        means: dict[str, list[float]] = {a: [] for a in arm_names}
        for shift in shifts:
            cells = []
            for arm in arm_names:
                mine = [r for r in records if r["arm"] == arm and r["size"] == size
                        and r["shift"] == shift]
                rate = np.mean([r["p"] <= 0.05 for r in mine])
                strict = np.mean([r["p"] <= 0.05 / HOLM_M for r in mine])
                means[arm].append(float(strict))
                effect = np.median([r["effect"] for r in mine])
                cells.append(f"{_pct(rate)} ({_pct(strict)}) {effect:.3g}")
            lines.append(f"| {shift} | " + " | ".join(cells) + " |")
        lines.append("| **mean at 0.05/30** | " + " | ".join(
            f"**{_pct(float(np.mean(means[a])))}**" for a in arm_names) + " |")
    null_effects = ["", "### Effect sizes on no-shift nights (median, 95th percentile)", "",
                    "| arm | " + " | ".join(f"n={s}" for s in sizes) + " |",
                    "|---|" + "---:|" * len(sizes)]
    for arm in arm_names:
        cells = []
        for size in sizes:
            eff = [r["effect"] for r in records if r["arm"] == arm and r["size"] == size
                   and r["shift"] == NO_SHIFT.name]
            cells.append(f"{np.median(eff):.3g}, {np.quantile(eff, 0.95):.3g}")
        null_effects.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines + null_effects) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", default="food", choices=list(SOURCES))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--null", type=int, default=10, help="no-shift nights per trial and size")
    parser.add_argument("--reps", type=int, default=2, help="nights per shift, trial and size")
    parser.add_argument("--baseline", type=int, default=1000)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[100, 500])
    parser.add_argument("--shifts", default=",".join(DEFAULT_SHIFTS))
    parser.add_argument("--permutations", type=int, default=1999)
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS),
                        help="comma-separated arms (also: mmd, clf_ridge0.01, bbsd)")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--out", type=Path, default=None,
                        help="write OUT.md and OUT.json (default: print only)")
    args = parser.parse_args()
    args.model = args.model or SOURCES[args.source][1]
    source = load_source(args.source)
    model = EmbeddingModel.load(args.model, options=ModelOptions(batch_size=64, num_threads=1))
    start = time.perf_counter()
    records = run(source, model, args, lambda m: print(m, file=sys.stderr, flush=True))
    text = markdown(records, args, (time.perf_counter() - start) / 60, source.description)
    print(text)
    if args.out:
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "records": records}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
