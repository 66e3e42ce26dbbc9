"""The mergeable, versioned, bounded-size summary of a folder of images.

A ``Profile`` is what ``DatasetAnalyzer.analyze()`` returns (as ``to_dict()``) and what a
baseline file stores. Its size does not grow with the number of images:

* per continuous feature, exact moments (count, exact Σx and Σx², and the mean and M2
  rounded once from them; min, max) and the values of a shared **bottom-k sample**: every
  image gets a key from its content hash and the profile keeps the ``reservoir_size``
  images with the smallest keys. The bottom-k of A ∪ B is the bottom-k of
  (bottom-k(A) ∪ bottom-k(B)), so ``merge`` gives exactly the profile of both shards
  (duplicates across shards are counted by ``analyzer.digests`` while a folder is
  profiled);
* per categorical feature (format, mode, size, predicted class), counts and the first few
  file names of each category (at most ``MAX_CATEGORIES`` categories, then ``__other__``; the
  predicted class keeps every one of the model's classes);
* 256-bin pixel histograms per R, G, B channel (integer counts);
* data-quality counts with the first few file names per issue;
* per feature the few lowest and highest images (path + value), for the report's thumbnails;
* with a model whose embedding can be read, the projected embeddings of a bounded bottom-k
  sample of images (``analyzer.projection.EmbeddingSample``, keyed like the feature sample),
  or the reason there are none (``embedding_reason``);
* with a labelled baseline, the accuracy calibration (``analyzer.accuracy.Calibration``:
  right/wrong answers per confidence bin, which add up when shards merge).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.accuracy import Calibration, LabelsError
from analyzer.contract import ISSUES, Category
from analyzer.errors import BaselineError
from analyzer.exact import ZERO, ExactSum
from analyzer.exact import moments as exact_moments
from analyzer.projection import EmbeddingSample

PROFILE_VERSION = 1
PROFILE_KIND = "driftd.profile"
MAX_CATEGORIES = 256
OTHER = "__other__"
_EXAMPLES = 5


def _as_float32(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Sample values are kept at float32 precision, so they survive JSON exactly."""
    return values.astype(np.float32).astype(np.float64)


def _json_floats(values: npt.NDArray[np.float64]) -> list[float]:
    """Shortest decimal text that reads back to the same float32 (keeps the JSON small)."""
    return [float(s) for s in values.astype(np.float32).astype(str)]


@dataclass
class Moments:
    """Exact count/mean/M2/min/max of one feature.

    ``total`` and ``squares`` are the exact Σx and Σx² (``analyzer.exact``); ``mean`` and
    ``m2`` are derived from them, rounded once, so ``merge`` gives the same floats in any
    order and grouping (shards on Dask equal the serial profile bit for bit). A profile
    written before they were stored has them as None: such moments merge with Chan's
    parallel update (exact up to rounding).
    """

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    total: ExactSum | None = ZERO
    squares: ExactSum | None = ZERO

    @property
    def std(self) -> float:
        """Population standard deviation (0.0 for fewer than two values)."""
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 0.0

    def merge(self, other: Moments) -> None:
        """Fold ``other`` into ``self``."""
        if other.count == 0:
            return
        n = self.count + other.count
        if (self.total is not None and self.squares is not None and other.total is not None
                and other.squares is not None):
            self.total, self.squares = self.total + other.total, self.squares + other.squares
            self.mean, self.m2 = exact_moments(n, self.total, self.squares)
        else:
            delta = other.mean - self.mean
            self.m2 += other.m2 + delta * delta * self.count * other.count / n
            self.mean += delta * other.count / n
            self.total = self.squares = None
        self.count = n
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @classmethod
    def of(cls, values: npt.NDArray[np.float64]) -> Moments:
        """Moments of an array of values (NaN or infinite values: not exact, Chan's path)."""
        if values.size == 0:
            return cls()
        try:
            total, squares = ExactSum.of(values), ExactSum.of(values, squared=True)
        except ValueError:
            mean = float(values.mean())
            return cls(int(values.size), mean, float(((values - mean) ** 2).sum()),
                       float(values.min()), float(values.max()), None, None)
        mean, m2 = exact_moments(int(values.size), total, squares)
        return cls(int(values.size), mean, m2, float(values.min()), float(values.max()),
                   total, squares)

    def to_dict(self) -> dict[str, Any]:
        finite = self.count > 0
        d: dict[str, Any] = {"count": self.count, "mean": self.mean, "m2": self.m2,
                             "min": self.min if finite else None,
                             "max": self.max if finite else None}
        if self.total is not None and self.squares is not None:
            d["sum"], d["sum_sq"] = self.total.to_text(), self.squares.to_text()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Moments:
        exact = "sum" in d and "sum_sq" in d
        return cls(int(d["count"]), float(d["mean"]), float(d["m2"]),
                   math.inf if d["min"] is None else float(d["min"]),
                   -math.inf if d["max"] is None else float(d["max"]),
                   ExactSum.from_text(d["sum"]) if exact else None,
                   ExactSum.from_text(d["sum_sq"]) if exact else None)


@dataclass
class Issue:
    """How many files had one data-quality problem, and the first ``limit`` of them."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    limit: int = field(default=_EXAMPLES, compare=False)

    def add(self, name: str, limit: int | None = None) -> None:
        self.count += 1
        if limit is not None:
            self.limit = limit
        if len(self.examples) < self.limit:
            self.examples.append(name)

    def merge(self, other: Issue, limit: int | None = None) -> None:
        """Fold in ``other``, a later shard: its examples come after ours (file order)."""
        self.count += other.count
        self.limit = max(self.limit, other.limit) if limit is None else limit
        self.examples = (self.examples + other.examples)[: self.limit]

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "examples": list(self.examples)}


@dataclass
class Extremes:
    """The ``k`` lowest and highest values of one feature with the file they came from.

    Ties are broken by the path, so the kept entries are the ``k`` smallest and largest
    ``(value, path)`` pairs of every image folded in, whatever the order or the sharding.
    """

    k: int
    low: list[tuple[float, str]] = field(default_factory=list)
    high: list[tuple[float, str]] = field(default_factory=list)

    def add(self, values: npt.NDArray[np.float64], paths: Sequence[str]) -> None:
        """Fold a batch in, keeping only the ``k`` most extreme on each side."""
        n = values.size
        if n == 0 or self.k < 1:
            return
        if n > self.k:
            # Everything tied with the k-th value is a candidate: the path decides among them.
            parted = np.partition(values, (self.k - 1, n - self.k))
            low_idx = np.flatnonzero(values <= parted[self.k - 1])
            high_idx = np.flatnonzero(values >= parted[n - self.k])
        else:
            low_idx = high_idx = np.arange(n)
        low = [(float(values[i]), paths[i]) for i in low_idx.tolist()]
        high = [(float(values[i]), paths[i]) for i in high_idx.tolist()]
        self.low = sorted(self.low + low)[: self.k]
        self.high = sorted(self.high + high, reverse=True)[: self.k]

    def merge(self, other: Extremes) -> None:
        self.low = sorted(self.low + other.low)[: self.k]
        self.high = sorted(self.high + other.high, reverse=True)[: self.k]


@dataclass
class Categories:
    """Counts per category value and the first few file names of each.

    At most ``limit`` distinct values are named; later new values are counted as ``OTHER``.
    """

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    limit: int = MAX_CATEGORIES

    def add(self, value: str, name: str) -> None:
        if value not in self.counts and len(self.counts) >= self.limit:
            value = OTHER
        self.counts[value] = self.counts.get(value, 0) + 1
        names = self.examples.setdefault(value, [])
        if len(names) < _EXAMPLES:
            names.append(name)

    def merge(self, other: Categories) -> None:
        for value, count in other.counts.items():
            key = value if value in self.counts or len(self.counts) < self.limit else OTHER
            self.counts[key] = self.counts.get(key, 0) + count
            self.examples[key] = (self.examples.get(key, []) + other.examples.get(value, []))[
                :_EXAMPLES
            ]


@dataclass
class ModelInfo:
    """Which model produced the profile's model features."""

    name: str
    labels: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.labels)


@dataclass
class Profile:
    """Bounded summary of a folder (see module doc). Build it with ``ProfileBuilder``."""

    features: list[str]
    reservoir_size: int = 4096
    data_dir: str = ""
    total_files: int = 0
    moments: dict[str, Moments] = field(default_factory=dict)
    sample_keys: npt.NDArray[np.uint64] = field(
        default_factory=lambda: np.zeros(0, dtype=np.uint64))
    sample_values: npt.NDArray[np.float64] = field(
        default_factory=lambda: np.zeros((0, 0)))
    categories: dict[str, Categories] = field(default_factory=dict)
    histograms: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros((3, 256), dtype=np.int64))
    issues: dict[str, Issue] = field(default_factory=lambda: {k: Issue() for k in ISSUES})
    extremes: dict[str, Extremes] = field(default_factory=dict)
    model: ModelInfo | None = None
    embeddings: EmbeddingSample | None = None
    embedding_reason: str | None = None
    calibration: Calibration | None = None

    def __post_init__(self) -> None:
        if self.sample_values.shape[1:] != (len(self.features),):
            self.sample_values = np.zeros((0, len(self.features)))
        for name in self.features:
            self.moments.setdefault(name, Moments())
        if self.model is not None:
            # Every class must keep its own count: folding the classes seen after the first
            # MAX_CATEGORIES into OTHER would compare different class sets night by night.
            classes = self.categories.setdefault(Category.PREDICTED_CLASS, Categories())
            classes.limit = max(classes.limit, self.model.num_classes)

    @property
    def image_count(self) -> int:
        """Images whose features were computed (bad files excluded)."""
        first = self.features[0] if self.features else None
        return self.moments[first].count if first else 0

    def sample(self, feature: str) -> npt.NDArray[np.float64]:
        """The bottom-k sample of ``feature`` (at most ``reservoir_size`` values)."""
        return self.sample_values[:, self.features.index(feature)]

    def add_batch(self, keys: npt.NDArray[np.uint64], values: npt.NDArray[np.float64],
                  paths: Sequence[str], atypical_k: int) -> None:
        """Fold in a batch of images: ``values`` is (n, len(features)) in ``features`` order."""
        if len(keys) == 0:
            return
        for j, name in enumerate(self.features):
            self.moments[name].merge(Moments.of(values[:, j]))
            self.extremes.setdefault(name, Extremes(atypical_k)).add(values[:, j], paths)
        self._keep_bottom_k(np.concatenate([self.sample_keys, keys]),
                            np.concatenate([self.sample_values, _as_float32(values)]))

    def _keep_bottom_k(self, keys: npt.NDArray[np.uint64],
                       values: npt.NDArray[np.float64]) -> None:
        if keys.size > self.reservoir_size:
            order = np.argsort(keys, kind="stable")[: self.reservoir_size]
        else:
            order = np.argsort(keys, kind="stable")
        self.sample_keys = keys[order]
        self.sample_values = values[order]

    def merge(self, other: Profile) -> Profile:
        """Fold ``other`` (another shard with the same features) into ``self``; returns self.

        Raises ``BaselineError`` when the two profiles have different features or models.
        """
        if other.features != self.features:
            raise BaselineError(
                "cannot merge profiles with different features "
                f"({len(self.features)} vs {len(other.features)}); profile both shards with "
                "the same model and analyzer version"
            )
        self.total_files += other.total_files
        for name in self.features:
            self.moments[name].merge(other.moments[name])
            if name in other.extremes:
                self.extremes.setdefault(name, Extremes(other.extremes[name].k)).merge(
                    other.extremes[name])
        self.reservoir_size = min(self.reservoir_size, other.reservoir_size)
        self._keep_bottom_k(np.concatenate([self.sample_keys, other.sample_keys]),
                            np.concatenate([self.sample_values, other.sample_values]))
        for name, cats in other.categories.items():
            self.categories.setdefault(name, Categories(limit=cats.limit)).merge(cats)
        self.histograms = self.histograms + other.histograms
        for kind, issue in other.issues.items():
            self.issues.setdefault(kind, Issue(limit=issue.limit)).merge(issue)
        self._merge_model_extras(other)
        return self

    def _merge_model_extras(self, other: Profile) -> None:
        """Embeddings merge when both shards have them (else none, with the reason); the
        calibration's counts add, and a shard without labels adds nothing to them."""
        if self.embeddings is not None and other.embeddings is not None:
            self.embeddings.merge(other.embeddings)
        elif self.embeddings is not None or other.embeddings is not None:
            self.embeddings = None
            self.embedding_reason = ("a shard of this profile was made without embeddings; "
                                     "profile every shard with the same options")
        else:
            self.embedding_reason = self.embedding_reason or other.embedding_reason
        if other.calibration is not None:
            self.calibration = (other.calibration if self.calibration is None
                                else self.calibration.merge(other.calibration))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form; ``["dataset_info"]["image_count"]`` is the seed's key."""
        return {
            "kind": PROFILE_KIND,
            "version": PROFILE_VERSION,
            "dataset_info": {
                "image_count": self.image_count,
                "total_files": self.total_files,
                "data_dir": self.data_dir,
                "formats": dict(self.categories.get(Category.FORMAT, Categories()).counts),
                "modes": dict(self.categories.get(Category.MODE, Categories()).counts),
            },
            "model": None if self.model is None else {
                "name": self.model.name, "labels": list(self.model.labels)},
            "reservoir_size": self.reservoir_size,
            "features": {
                name: {"moments": self.moments[name].to_dict(),
                       "sample": _json_floats(self.sample_values[:, j])}
                for j, name in enumerate(self.features)
            },
            "sample_keys": [int(k) for k in self.sample_keys],
            "categories": {
                name: {"counts": dict(c.counts), "limit": c.limit,
                       "examples": {k: list(v) for k, v in c.examples.items()}}
                for name, c in self.categories.items()
            },
            "pixel_histograms": {ch: self.histograms[i].tolist() for i, ch in enumerate("rgb")},
            "data_quality": {kind: issue.to_dict() for kind, issue in self.issues.items()},
            "atypical": {
                name: {"low": [[v, p] for v, p in e.low], "high": [[v, p] for v, p in e.high]}
                for name, e in self.extremes.items()
            },
            "embeddings": (self.embeddings.to_dict() if self.embeddings is not None
                           else {"reason": self.embedding_reason}),
            "accuracy_calibration": (None if self.calibration is None
                                     else self.calibration.to_dict()),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        """Rebuild a profile from ``to_dict()`` output.

        Raises ``BaselineError`` when ``d`` is not a profile or has an unknown version.
        """
        if not isinstance(d, Mapping) or d.get("kind") != PROFILE_KIND:
            raise BaselineError(
                "baseline is not a driftd profile (no kind='driftd.profile'); regenerate it "
                "with DatasetAnalyzer(...).analyze()"
            )
        if d.get("version") != PROFILE_VERSION:
            raise BaselineError(
                f"baseline profile version {d.get('version')!r} is not supported (this analyzer "
                f"reads version {PROFILE_VERSION}); regenerate the baseline"
            )
        try:
            names = list(d["features"])
            columns = [_as_float32(np.asarray(d["features"][n]["sample"], dtype=np.float64))
                       for n in names]
            values = np.stack(columns, axis=1) if columns else np.zeros((0, 0))
            model = d.get("model")
            profile = cls(
                features=names,
                reservoir_size=int(d["reservoir_size"]),
                data_dir=str(d["dataset_info"].get("data_dir", "")),
                total_files=int(d["dataset_info"].get("total_files", 0)),
                moments={n: Moments.from_dict(d["features"][n]["moments"]) for n in names},
                sample_keys=np.asarray(d["sample_keys"], dtype=np.uint64),
                sample_values=values,
                categories={
                    n: Categories(dict(c["counts"]),
                                  {k: list(v) for k, v in c["examples"].items()},
                                  int(c.get("limit", MAX_CATEGORIES)))
                    for n, c in d["categories"].items()
                },
                histograms=np.asarray([d["pixel_histograms"][ch] for ch in "rgb"],
                                      dtype=np.int64),
                issues={k: Issue(int(v["count"]), list(v["examples"]))
                        for k, v in d["data_quality"].items()},
                model=None if model is None else ModelInfo(str(model["name"]),
                                                           list(model["labels"])),
            )
            # Profiles made before embeddings and labels existed have neither key.
            emb = d.get("embeddings") or {"reason": "the baseline was made before driftd read "
                                                    "embeddings; regenerate it"}
            if "vectors" in emb:
                profile.embeddings = EmbeddingSample.from_dict(emb)
            else:
                profile.embedding_reason = None if emb.get("reason") is None else str(
                    emb["reason"])
            calibration = d.get("accuracy_calibration")
            if calibration is not None:
                try:
                    profile.calibration = Calibration.from_dict(calibration)
                except LabelsError as err:
                    raise BaselineError(str(err)) from err
            for name, e in d.get("atypical", {}).items():
                profile.extremes[name] = Extremes(
                    max(len(e["low"]), 1),
                    [(float(v), str(p)) for v, p in e["low"]],
                    [(float(v), str(p)) for v, p in e["high"]],
                )
        except (KeyError, TypeError, ValueError) as err:
            raise BaselineError(
                f"baseline profile is malformed ({type(err).__name__}: {err}); regenerate it"
            ) from err
        return profile
