"""Embeddings reduced to a fixed small size: a fixed random projection, a bounded mergeable
sample of projected vectors, and the principal-axes basis the tests map them onto.

The reduction has two stages, so that shards merge and baselines stay small:

1. **Per image, in the worker** (``project``): the model's ``dim``-value embedding times a
   fixed ``dim × 64`` matrix of ±1/8 entries (a Rademacher random projection, which keeps
   distances between embeddings to within a few per cent, Johnson-Lindenstrauss/Achlioptas
   2003). The matrix depends only on ``dim`` and is derived from SHAKE-256 bits, not from
   numpy's random generator, so every process, machine and numpy version computes the same
   one: a baseline made last year and tonight's night are in the same coordinates. An
   embedding of 64 values or fewer is kept as is.
2. **At compare time** (``Basis``, called inside ``analyzer.multivariate``'s tests): a PCA of
   the projected rows, centred, rotated onto the principal axes and, by default, whitened
   (each axis divided by its standard deviation; axes with a variance below 1e-6 of the
   largest are dropped). It is fitted on the *pooled* rows of both samples, not on the
   baseline's alone: a basis fitted on the baseline makes its rows in-sample (exactly unit
   variance on every axis) and the night's out-of-sample (more variance on the weak axes), a
   difference the permutation null does not know about, and the tests then flag same-law
   nights (``bench/embedding_arms.py``, arm ``mmd_baseline_basis``). A function of the pooled
   set is the same under every relabelling, so the permutation p-value stays exact. It is
   cheap (a 64 × 64 eigendecomposition) and is not stored.

``EmbeddingSample`` keeps the projected vectors of the images with the smallest content-hash
keys, at most ``capacity`` of them (default 1,024): the bottom-k of two shards' union is the
bottom-k of their two bottom-k samples, so ``merge`` gives exactly the sample of both. Its JSON
form stores the vectors as base64 little-endian float32: 1,024 × 64 × 4 B = 256 KiB of numbers,
about 350 kB of JSON (plus the keys, ~21 kB).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.errors import BaselineError

FloatArray = npt.NDArray[np.float64]

#: Values per image after the fixed projection.
PROJECTION_DIM = 64
#: Names the projection's construction; a profile made with another one cannot be compared.
PROJECTION_KIND = "rademacher-shake256-v1"
#: Default bound on the images whose projected embedding a profile keeps.
SAMPLE_CAPACITY = 1024
#: Axes of the PCA whose variance is below this share of the largest are dropped.
MIN_VARIANCE_RATIO = 1e-6


@functools.lru_cache(maxsize=8)
def _matrix(dim: int, components: int) -> FloatArray:
    if dim <= components:
        return np.eye(dim)
    seed = f"driftd.projection.{PROJECTION_KIND}:{dim}:{components}".encode()
    bits = np.unpackbits(np.frombuffer(
        hashlib.shake_256(seed).digest(math.ceil(dim * components / 8)), dtype=np.uint8))
    signs = bits[: dim * components].reshape(dim, components).astype(np.float64) * 2.0 - 1.0
    out = signs / math.sqrt(components)
    out.setflags(write=False)
    return out


def projection_matrix(dim: int, components: int = PROJECTION_DIM) -> FloatArray:
    """The fixed ``dim × min(dim, components)`` projection (identity when ``dim`` is small).

    Raises ``ValueError`` when ``dim`` or ``components`` is below 1.
    """
    if dim < 1 or components < 1:
        raise ValueError(f"projection needs positive sizes, got dim={dim}, "
                         f"components={components}")
    return _matrix(dim, components)


def project(embeddings: npt.ArrayLike, components: int = PROJECTION_DIM
            ) -> npt.NDArray[np.float32]:
    """Project each row of an (n, dim) embedding array to (n, min(dim, components)) float32.

    Row by row, so images may be projected one at a time, in any worker, in any order.
    """
    values = np.asarray(embeddings, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"embeddings must be (n, dim); got shape {values.shape}")
    return (values @ projection_matrix(values.shape[1], components)).astype(np.float32)


@dataclass
class EmbeddingSample:
    """The projected embeddings of the (at most ``capacity``) images with the smallest keys.

    ``keys`` are the images' content-hash keys (the profile's ``sample_keys``), kept sorted;
    ``vectors`` the matching rows. ``dim`` is the model's embedding size before projection,
    ``tensor`` the tensor's name: both must agree for two samples to be compared or merged.
    """

    dim: int
    tensor: str
    capacity: int = SAMPLE_CAPACITY
    keys: npt.NDArray[np.uint64] = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    vectors: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def __post_init__(self) -> None:
        width = min(self.dim, PROJECTION_DIM)
        if self.vectors.size == 0:
            self.vectors = np.zeros((0, width), dtype=np.float32)
        if self.vectors.shape != (self.keys.size, width):
            raise BaselineError(
                f"embedding sample has {self.keys.size} keys and vectors of shape "
                f"{self.vectors.shape}; expected ({self.keys.size}, {width}); regenerate it")

    @property
    def count(self) -> int:
        """Vectors kept."""
        return int(self.keys.size)

    def add(self, keys: npt.NDArray[np.uint64], embeddings: npt.ArrayLike) -> None:
        """Fold in a batch: ``embeddings`` are raw (n, dim) model embeddings, projected here."""
        self._keep(np.concatenate([self.keys, np.asarray(keys, dtype=np.uint64)]),
                   np.concatenate([self.vectors, project(embeddings)]))

    def add_projected(self, keys: npt.NDArray[np.uint64], vectors: npt.ArrayLike) -> None:
        """Fold in a batch of already projected rows (``project``'s output, as workers send)."""
        self._keep(np.concatenate([self.keys, np.asarray(keys, dtype=np.uint64)]),
                   np.concatenate([self.vectors, np.asarray(vectors, dtype=np.float32)]))

    def merge(self, other: EmbeddingSample) -> EmbeddingSample:
        """Fold another shard's sample into this one; returns self.

        Raises ``BaselineError`` when the two come from different embeddings.
        """
        self.check_compatible(other)
        self.capacity = min(self.capacity, other.capacity)
        self._keep(np.concatenate([self.keys, other.keys]),
                   np.concatenate([self.vectors, other.vectors]))
        return self

    def check_compatible(self, other: EmbeddingSample) -> None:
        """Raise ``BaselineError`` unless both samples are of the same model embedding."""
        if (self.dim, self.tensor) != (other.dim, other.tensor):
            raise BaselineError(
                f"embedding samples differ: tensor {self.tensor!r} ({self.dim} values) vs "
                f"{other.tensor!r} ({other.dim} values); profile both with the same model "
                "and embedding tensor, or regenerate the baseline")

    def _keep(self, keys: npt.NDArray[np.uint64], vectors: npt.NDArray[np.float32]) -> None:
        order = np.argsort(keys, kind="stable")[: self.capacity]
        self.keys, self.vectors = keys[order], vectors[order]

    def to_dict(self) -> dict[str, Any]:
        """JSON form: sizes, the projection's name, keys, and base64 float32 vectors."""
        return {
            "tensor": self.tensor, "dim": self.dim, "projection": PROJECTION_KIND,
            "components": int(self.vectors.shape[1]), "capacity": self.capacity,
            "keys": [int(k) for k in self.keys],
            "vectors": base64.b64encode(self.vectors.astype("<f4").tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EmbeddingSample:
        """Rebuild from ``to_dict()`` output.

        Raises ``BaselineError`` for another projection or a malformed entry.
        """
        if d.get("projection") != PROJECTION_KIND:
            raise BaselineError(
                f"embedding sample uses projection {d.get('projection')!r}; this analyzer "
                f"reads {PROJECTION_KIND!r}: regenerate the baseline")
        try:
            keys = np.asarray(d["keys"], dtype=np.uint64)
            raw = np.frombuffer(base64.b64decode(d["vectors"], validate=True), dtype="<f4")
            vectors = raw.reshape(keys.size, int(d["components"])).astype(np.float32)
            return cls(int(d["dim"]), str(d["tensor"]), int(d["capacity"]), keys, vectors)
        except (KeyError, TypeError, ValueError) as err:
            raise BaselineError(
                f"embedding sample is malformed ({type(err).__name__}: {err}); regenerate the "
                "baseline") from err


@dataclass(frozen=True)
class Basis:
    """Principal axes of a set of projected rows; maps any rows onto them.

    ``transform(x) = (x - mean) @ axes / scale``: ``scale`` is the axes' standard deviations
    when whitened, else ones.
    """

    mean: FloatArray
    axes: FloatArray
    scale: FloatArray

    @classmethod
    def fit(cls, rows: npt.ArrayLike, whiten: bool = True) -> Basis:
        """Fit on (n, k) rows (the pooled rows of both samples, see the module docstring).

        Raises ``ValueError`` with fewer than 2 rows or when every axis is constant.
        """
        x = np.asarray(rows, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"a basis needs at least 2 rows; got shape {x.shape}")
        mean = x.mean(axis=0)
        variances, vectors = np.linalg.eigh(np.cov(x - mean, rowvar=False).reshape(
            x.shape[1], x.shape[1]))
        order = np.argsort(variances)[::-1]
        variances, vectors = variances[order], vectors[:, order]
        keep = variances > MIN_VARIANCE_RATIO * max(float(variances[0]), 0.0)
        if not keep.any():
            raise ValueError("the embeddings are constant: nothing to compare")
        scale = np.sqrt(variances[keep]) if whiten else np.ones(int(keep.sum()))
        return cls(mean, vectors[:, keep], scale)

    @property
    def components(self) -> int:
        """Axes kept."""
        return int(self.axes.shape[1])

    def transform(self, x: npt.ArrayLike) -> FloatArray:
        """Map (n, k) projected vectors onto the axes: (n, components)."""
        return np.asarray((np.asarray(x, dtype=np.float64) - self.mean) @ self.axes / self.scale)
