"""How well driftd's label-free accuracy estimate tracks the true accuracy of shifted nights.

Fashion-MNIST with its real labels (``bench/image_sources.py``'s ``load_pools``) and the
bundled demo CNN: each trial calibrates on a labelled baseline of ``--baseline`` images from
the baseline pool, then draws ``--reps`` nights per shift (``bench/detection.py``'s suite plus
no shift) and night size from the disjoint current pool, and compares each night's estimate
with the night's true accuracy (its labels).

Estimators (all from the night's softmax outputs and the labelled baseline):

- ``cbpe``: ``analyzer.accuracy.Calibration.estimate`` (isotonic P(correct | confidence));
- ``ac``: the mean top-1 probability (average confidence: what "confidence shift" reads);
- ``doc``: baseline accuracy plus the change of mean confidence (difference of confidences);
- ``atc``: average thresholded confidence on the top-1 probability (Garg et al. 2022);
- ``atc_entropy``: ATC on the negative entropy of the softmax (their recommended score).

Intervals (90%) around CBPE, ± z·√(sampling + calibration) plus a shift term: ``basic``
none; ``atc`` |CBPE - ATC|; ``w1`` the Wasserstein-1 distance between the night's and the
baseline's top-1 probabilities (what ``Calibration.estimate`` returns); ``max_atc_w1`` the
larger of the two; ``to_baseline`` |CBPE - baseline accuracy|. The tables give, per shift
family and night size: mean absolute error of each estimator, and for each interval the share
of nights whose true accuracy lies inside and its mean width; then per shift the coverage of
the interval ``Calibration.estimate`` returns.

    python bench/accuracy_estimate.py --out bench/results/accuracy-estimate
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from detection import NO_SHIFT, SHIFTS, Shift
from image_sources import SOURCES, load_pools, prior_weights

from analyzer.accuracy import Calibration
from analyzer.model import Classifier

ESTIMATORS = ("cbpe", "ac", "doc", "atc", "atc_entropy")
INTERVALS = ("basic", "atc", "w1", "max_atc_w1", "to_baseline")


def outputs(model: Classifier, images: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Softmax rows of a stack of RGB images through driftd's classifier."""
    return model.predict(np.stack([model.preprocess(Image.fromarray(im)) for im in images]))


def neg_entropy(probs: NDArray[np.float64]) -> NDArray[np.float64]:
    return (probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=1)


def atc(base_score: NDArray[np.float64], base_acc: float,
        night_score: NDArray[np.float64]) -> float:
    """Share of night scores above the score the baseline exceeds as often as it is right."""
    threshold = np.quantile(base_score, 1.0 - base_acc, method="lower")
    return float(np.mean(night_score > threshold))


def night_record(cal: Calibration, base: dict[str, Any], probs: NDArray[np.float64],
                 truth: NDArray[np.int64]) -> dict[str, Any]:
    conf = probs.max(axis=1)
    est = cal.estimate(conf, base["conf"])
    values = {
        "cbpe": est.estimate, "ac": float(conf.mean()),
        "doc": base["acc"] + float(conf.mean()) - base["mean_conf"],
        "atc": atc(base["conf"], base["acc"], conf),
        "atc_entropy": atc(base["neg_entropy"], base["acc"], neg_entropy(probs)),
    }
    half = 1.6448536269514722 * float(np.hypot(est.sampling_sd, est.calibration_sd))
    w1 = float(stats.wasserstein_distance(base["conf"], conf))
    terms = {"basic": 0.0, "atc": abs(est.estimate - values["atc"]), "w1": w1,
             "max_atc_w1": max(w1, abs(est.estimate - values["atc"])),
             "to_baseline": abs(est.estimate - base["acc"])}
    return {"true": float(np.mean(probs.argmax(axis=1) == truth)), "estimates": values,
            "intervals": {name: [max(0.0, est.estimate - half - t),
                                 min(1.0, est.estimate + half + t)]
                          for name, t in terms.items()},
            "driftd": [est.low, est.high], "half": half, "terms": terms,
            "cbpe": est.estimate}


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    pools = load_pools()
    model = Classifier.load(SOURCES["fashion"][1])
    shifts: list[Shift] = [NO_SHIFT, *SHIFTS]
    records = []
    for trial in range(args.trials):
        rng = np.random.default_rng([args.seed, trial])
        index = pools.sample(pools.baseline, args.baseline, rng)
        probs = outputs(model, pools.images[index])
        right = probs.argmax(axis=1) == pools.labels[index]
        cal = Calibration.fit(probs.max(axis=1), right)
        base = {"acc": float(right.mean()), "mean_conf": float(probs.max(axis=1).mean()),
                "conf": probs.max(axis=1), "neg_entropy": neg_entropy(probs)}
        for size in args.sizes:
            for s, shift in enumerate(shifts):
                for rep in range(args.reps):
                    night_rng = np.random.default_rng([args.seed, trial, size, s, rep, 3])
                    weights = prior_weights(pools.groups) if shift.prior else None
                    idx = pools.sample(pools.current, size, night_rng, weights)
                    images = shift.apply(pools.images[idx], night_rng)
                    record = night_record(cal, base, outputs(model, images), pools.labels[idx])
                    records.append({"trial": trial, "size": size, "shift": shift.name,
                                    "family": shift.family, "rep": rep, **record})
        print(f"trial {trial} done (baseline accuracy {base['acc']:.3f})", file=sys.stderr,
              flush=True)
    return records


def markdown(records: list[dict[str, Any]], args: argparse.Namespace, minutes: float) -> str:
    families = list(dict.fromkeys(r["family"] for r in records))
    lines = ["## Label-free accuracy estimate: Fashion-MNIST, bundled demo CNN", "",
             f"Command: `python bench/accuracy_estimate.py {' '.join(sys.argv[1:])}`", "",
             f"Labelled baseline of {args.baseline} images per trial, {args.trials} trials, "
             f"{args.reps} nights per shift, trial and size ({args.trials * args.reps} nights "
             f"per shift and size); {minutes:.1f} min.", ""]
    for size in args.sizes:
        mine = [r for r in records if r["size"] == size]
        lines += [f"### n = {size}", "",
                  "| family | nights | true acc | " + " | ".join(
                      f"MAE {e}" for e in ESTIMATORS) + " | " + " | ".join(
                      f"cover {i} (width)" for i in INTERVALS) + " |",
                  "|---|---:|---:|" + "---:|" * (len(ESTIMATORS) + len(INTERVALS))]
        for family in [*families, "all"]:
            rows = [r for r in mine if family in ("all", r["family"])]
            cells = [f"{np.mean([r['true'] for r in rows]):.3f}"]
            cells += [f"{np.mean([abs(r['estimates'][e] - r['true']) for r in rows]):.3f}"
                      for e in ESTIMATORS]
            for name in INTERVALS:
                inside = np.mean([r["intervals"][name][0] <= r["true"] <= r["intervals"][name][1]
                                  for r in rows])
                width = np.mean([r["intervals"][name][1] - r["intervals"][name][0] for r in rows])
                cells.append(f"{100 * inside:.0f}% ({width:.3f})")
            label = "**all**" if family == "all" else family
            lines.append(f"| {label} | {len(rows)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Per shift: true accuracy, CBPE, and nights inside driftd's interval", "",
              "| shift | " + " | ".join(f"n={n}: true / CBPE / covered" for n in args.sizes)
              + " |", "|---|" + "---:|" * len(args.sizes)]
    for shift in dict.fromkeys(r["shift"] for r in records):
        cells = []
        for size in args.sizes:
            rows = [r for r in records if r["shift"] == shift and r["size"] == size]
            inside = np.mean([r["driftd"][0] <= r["true"] <= r["driftd"][1] for r in rows])
            cells.append(f"{np.mean([r['true'] for r in rows]):.3f} / "
                         f"{np.mean([r['cbpe'] for r in rows]):.3f} / {100 * inside:.0f}%")
        lines.append(f"| {shift} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--baseline", type=int, default=1000)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[100, 500])
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--out", type=Path, default=None, help="write OUT.md and OUT.json")
    args = parser.parse_args()
    start = time.perf_counter()
    records = run(args)
    text = markdown(records, args, (time.perf_counter() - start) / 60)
    print(text)
    if args.out:
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
