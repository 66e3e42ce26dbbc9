"""Two-sample tests on many dimensions at once (the model's reduced embeddings).

Every test here has an exact permutation p-value (so it joins driftd's Holm family like the
other tests) and a seed drawn from the data (a rerun of a night gives the same p-value):

* ``mmd_test``: the kernel maximum mean discrepancy (Gretton et al. 2012) with a Gaussian
  kernel whose bandwidth is the median heuristic;
* ``classifier_test``: a domain classifier (Lopez-Paz & Oquab 2017): a ridge-regularised
  linear classifier learns to tell baseline from current rows, scored by its cross-validated
  (held-out) AUC. Its held-out scores are linear in the labels, so every permuted labelling is
  refitted exactly for the price of matrix products: the null is the full procedure's;
* ``embedding_test``: both on the same permutations: the MMD's p-value, the classifier's
  effect size (what driftd runs).

All take the projected embeddings (``analyzer.projection.project``) of each side and map the
pooled rows onto their principal axes, whitened (``analyzer.projection.Basis``; ``whiten=False``
skips it). Every data-dependent choice — the basis, the kernel bandwidth, the folds — is a
function of the pooled rows, the same for every relabelling, which is what keeps the
permutation p-value exact.

Cost is bounded: each side is cut to ``max_rows`` rows (default 1,000) by a random subset
seeded from the data, before anything else, and the result says how many rows were used
(``baseline_used``/``current_used``). The MMD costs O(N² · permutations) for N = the rows used
(about 0.4 s for 1,000 + 500 rows and 999 permutations on one core); the classifier
O(N · d · permutations) (about 0.6 s); the combined test the sum. They run their linear
algebra on one BLAS thread: on a shared machine, OpenBLAS's spinning threads made them
2-25× slower, not faster.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import stats as sps
from threadpoolctl import threadpool_limits

from analyzer.projection import Basis

FloatArray = npt.NDArray[np.float64]
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Rows per side above which a seeded random subset is tested (bounds time and memory).
MAX_ROWS = 1000
#: Permutation draws: p-values resolve to 1/2000, small enough for Holm over ~40 tests.
PERMUTATIONS = 1999
#: Folds of the domain classifier's cross-fitting.
FOLDS = 5
#: Ridge penalty per training row, on whitened inputs (1: strong shrinkage towards the
#: difference of means; 0.01 did no better in ``bench/embedding_arms.py``).
RIDGE = 1.0
#: Permuted labellings processed together (bounds memory at N × this many values).
_CHUNK = 256


@dataclass(frozen=True)
class MultiSample:
    """One multivariate two-sample test: statistic, exact p-value, effect, and the rows used.

    ``effect_size_kind``: ``mmd2`` (the unbiased squared MMD less its permutation mean; 0
    when the samples are alike, at most 2) or ``auc_above_chance`` (held-out AUC less its
    permutation mean; 0..0.5: the chance that a current row scores above a baseline row, less
    one half). ``subsampled`` is true when either side was cut to ``max_rows``; ``parts``
    holds the component statistics of a combined test.
    """

    test: str
    statistic: float
    p_value: float
    effect_size: float
    effect_size_kind: str
    baseline_n: int
    current_n: int
    baseline_used: int
    current_used: int
    permutations: int
    parts: Mapping[str, float] = field(default_factory=dict)

    @property
    def subsampled(self) -> bool:
        """Whether either side was cut to a random subset."""
        return self.baseline_used < self.baseline_n or self.current_used < self.current_n


def _seed(base: FloatArray, cur: FloatArray, salt: str) -> int:
    digest = hashlib.blake2b(salt.encode(), digest_size=8)
    for part in (base, cur):
        digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
        digest.update(str(part.shape).encode())
    return int.from_bytes(digest.digest(), "little")


def _prepare(base: npt.ArrayLike, cur: npt.ArrayLike, max_rows: int, salt: str, whiten: bool
             ) -> tuple[FloatArray, FloatArray, int, int, np.random.Generator]:
    """Both sides as float64 (n, d) arrays, cut to ``max_rows`` and, with ``whiten``, mapped
    on the whitened principal axes of their pooled rows; also the data-seeded generator."""
    b = np.asarray(base, dtype=np.float64)
    c = np.asarray(cur, dtype=np.float64)
    if b.ndim != 2 or c.ndim != 2 or b.shape[1] != c.shape[1]:
        raise ValueError(f"both samples must be (n, d) with the same d; got {b.shape} "
                         f"and {c.shape}")
    rng = np.random.default_rng(_seed(b, c, salt))
    n_base, n_cur = len(b), len(c)
    if n_base > max_rows:
        b = b[np.sort(rng.choice(n_base, max_rows, replace=False))]
    if n_cur > max_rows:
        c = c[np.sort(rng.choice(n_cur, max_rows, replace=False))]
    if whiten and len(b) + len(c) >= 2:
        # Fitted on the pooled rows, the same for every relabelling (see analyzer.projection).
        basis = Basis.fit(np.vstack([b, c]))
        b, c = basis.transform(b), basis.transform(c)
    return b, c, n_base, n_cur, rng


def _labellings(rng: np.random.Generator, n_base: int, n_cur: int, count: int
                ) -> npt.NDArray[np.bool_]:
    """(n_base + n_cur, count + 1) current-side indicators: column 0 observed, then shuffles."""
    observed = np.r_[np.zeros(n_base, dtype=bool), np.ones(n_cur, dtype=bool)]
    shuffled = rng.permuted(np.tile(observed, (count, 1)), axis=1)
    return np.ascontiguousarray(np.vstack([observed, shuffled]).T)


def _p_upper(values: FloatArray) -> float:
    """P-value of ``values[0]`` (observed) among all values (it included): #{≥} / count."""
    tolerance = 1e-12 * max(1.0, abs(float(values[0])))
    return float(np.count_nonzero(values >= values[0] - tolerance)) / values.size


def _squared_distances(x: FloatArray) -> FloatArray:
    norms = (x * x).sum(axis=1)
    distances: FloatArray = np.maximum(norms[:, None] + norms[None, :] - 2.0 * (x @ x.T), 0.0)
    return distances


def median_bandwidth(sq: FloatArray) -> float:
    """Median squared distance between distinct rows (mean of the positive ones if 0)."""
    rows, cols = np.triu_indices(sq.shape[0], k=1)
    med = float(np.median(sq[rows, cols])) if rows.size else 0.0
    if med > 0:
        return med
    positive = sq[sq > 0]
    return float(positive.mean()) if positive.size else 1.0


def _mmd_draws(b: FloatArray, c: FloatArray, labels: npt.NDArray[np.bool_]) -> FloatArray:
    """The unbiased squared MMD of every labelling (column of ``labels``) of the rows.

    Gaussian kernel with the median heuristic over the pooled rows (the same for every
    labelling). Per labelling only two sums over the kernel matrix change, so all of them
    come from one product of the kernel with the label matrix.
    """
    nb, nc = len(b), len(c)
    sq = _squared_distances(np.vstack([b, c]))
    kernel = np.exp(-sq / (2.0 * median_bandwidth(sq))).astype(np.float32)
    row_sums = kernel.sum(axis=1, dtype=np.float64)
    grand = float(row_sums.sum())
    mmd = np.empty(labels.shape[1])
    for start in range(0, labels.shape[1], _CHUNK):
        v = labels[:, start : start + _CHUNK].astype(np.float32)
        cc = (v * (kernel @ v)).sum(axis=0, dtype=np.float64)  # Σ over current pairs
        cr = row_sums @ v  # Σ_i∈current Σ_j k(i, j)
        bc = cr - cc
        bb = grand - 2.0 * cr + cc
        # The kernel's diagonal is 1: drop it from the within-sample sums (unbiased form).
        mmd[start : start + _CHUNK] = ((bb - nb) / (nb * (nb - 1)) + (cc - nc) / (nc * (nc - 1))
                                       - 2.0 * bc / (nb * nc))
    return mmd


def _auc_draws(b: FloatArray, c: FloatArray, labels: npt.NDArray[np.bool_],
               rng: np.random.Generator, folds: int, ridge: float) -> FloatArray:
    """The held-out AUC of the ridge domain classifier for every labelling of the rows.

    The fold assignment is drawn once from ``rng`` and shared by every labelling; the
    held-out scores are linear in the labels, so one solve per fold serves them all.
    """
    nb, nc = len(b), len(c)
    x = np.vstack([b, c])
    total, width = x.shape
    assignment = rng.permutation(total) % folds
    y = labels.astype(np.float64)
    scores = np.empty(labels.shape, dtype=np.float64)
    for fold in range(folds):
        held, train = assignment == fold, assignment != fold
        centre = x[train].mean(axis=0)
        xt = x[train] - centre
        gram = xt.T @ xt + ridge * int(train.sum()) * np.eye(width)
        # β = solve(gram, xtᵀ) @ y_train for every labelling at once; the held-out rows'
        # weights stay 0, so the product reads y whole instead of copying its training rows.
        weights = np.zeros((width, total))
        weights[:, train] = np.linalg.solve(gram, xt.T)
        scores[held] = (x[held] - centre) @ (weights @ y)
    return (_positive_rank_sums(scores, labels) - nc * (nc + 1) / 2.0) / (nb * nc)


def _one_blas_thread(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``fn`` with one BLAS thread (see the module docstring: spinning threads cost more)."""
    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


@_one_blas_thread
def mmd_test(base: npt.ArrayLike, cur: npt.ArrayLike, permutations: int = PERMUTATIONS,
             max_rows: int = MAX_ROWS, whiten: bool = True) -> MultiSample:
    """Kernel two-sample test: unbiased squared MMD with a permutation p-value.

    Kernel ``k(x, y) = exp(-|x - y|² / (2m))`` with ``m`` the median squared distance between
    pooled rows (the median heuristic; over the pooled rows rather than the baseline's so
    that it is the same for every relabelling). The effect is the squared MMD less its
    permutation mean, floored at 0 (``mmd2``; small numbers: ~0.001-0.03 for the shifts of
    ``bench/embedding_arms.py``).

    Raises ``ValueError`` when the samples' widths differ; fewer than 2 rows on a side gives
    p = 1 and effect 0.
    """
    b, c, n_base, n_cur, rng = _prepare(base, cur, max_rows, "mmd", whiten)
    nb, nc = len(b), len(c)
    if nb < 2 or nc < 2:
        return MultiSample("mmd", 0.0, 1.0, 0.0, "mmd2", n_base, n_cur, nb, nc, 0)
    mmd = _mmd_draws(b, c, _labellings(rng, nb, nc, permutations))
    effect = max(0.0, float(mmd[0] - mmd[1:].mean()))
    return MultiSample("mmd", float(mmd[0]), _p_upper(mmd), effect, "mmd2", n_base, n_cur,
                       nb, nc, permutations)


@_one_blas_thread
def classifier_test(base: npt.ArrayLike, cur: npt.ArrayLike, permutations: int = PERMUTATIONS,
                    max_rows: int = MAX_ROWS, folds: int = FOLDS, ridge: float = RIDGE,
                    whiten: bool = True) -> MultiSample:
    """Domain-classifier test: cross-validated AUC of a ridge classifier, permutation p-value.

    Rows are split into ``folds`` folds (seeded from the data); for each fold a ridge
    regression of the current-side indicator on the other folds' rows (centred; penalty
    ``ridge`` × their row count, on whitened inputs a shrinkage towards the difference of
    means) scores the fold's rows. The statistic is the AUC of all held-out scores; the same
    folds and fits are applied to every permuted labelling, so the p-value is exact.

    Raises ``ValueError`` when the samples' widths differ; fewer than ``folds`` rows on a side
    gives p = 1 and effect 0.
    """
    b, c, n_base, n_cur, rng = _prepare(base, cur, max_rows, "classifier", whiten)
    nb, nc = len(b), len(c)
    kind = "auc_above_chance"
    if nb < folds or nc < folds:
        return MultiSample("classifier", 0.5, 1.0, 0.0, kind, n_base, n_cur, nb, nc, 0)
    auc = _auc_draws(b, c, _labellings(rng, nb, nc, permutations), rng, folds, ridge)
    effect = max(0.0, float(auc[0] - auc[1:].mean()))
    return MultiSample("classifier", float(auc[0]), _p_upper(auc), effect, kind, n_base, n_cur,
                       nb, nc, permutations)


@_one_blas_thread
def embedding_test(base: npt.ArrayLike, cur: npt.ArrayLike, permutations: int = PERMUTATIONS,
                   max_rows: int = MAX_ROWS) -> MultiSample:
    """The embedding drift test: the MMD's p-value with the domain classifier's effect size.

    The MMD was the strongest single test of ``bench/embedding_arms.py``, but its statistic
    (a squared MMD of ~0.001-0.03) means nothing to a reader. The domain classifier runs on
    the same rows and permutations for the effect size, as driftd pairs a KS p-value with a
    Wasserstein effect: ``effect_size`` is the held-out AUC with which a linear probe tells
    tonight's rows from the baseline's, less its permutation mean (``auc_above_chance``,
    0..0.5, the same meaning for any model; ~0 for same-law samples). ``statistic`` is the
    squared MMD, ``p_value`` the MMD's exact permutation p-value; ``parts`` holds the AUC
    and the classifier's own p-value (for the report, not for the verdict).

    Raises ``ValueError`` when the samples' widths differ; fewer than ``FOLDS`` rows on a side
    gives p = 1 and effect 0.
    """
    b, c, n_base, n_cur, rng = _prepare(base, cur, max_rows, "embedding", True)
    nb, nc = len(b), len(c)
    kind = "auc_above_chance"
    if nb < FOLDS or nc < FOLDS:
        return MultiSample("mmd", 0.0, 1.0, 0.0, kind, n_base, n_cur, nb, nc, 0)
    labels = _labellings(rng, nb, nc, permutations)
    mmd = _mmd_draws(b, c, labels)
    auc = _auc_draws(b, c, labels, rng, FOLDS, RIDGE)
    parts = {"mmd2": float(mmd[0]), "auc": float(auc[0]), "auc_p_value": _p_upper(auc)}
    return MultiSample("mmd", float(mmd[0]), _p_upper(mmd),
                       max(0.0, float(auc[0] - auc[1:].mean())), kind, n_base, n_cur, nb, nc,
                       permutations, parts)


def _positive_rank_sums(scores: FloatArray, labels: npt.NDArray[np.bool_]) -> FloatArray:
    """Per column, the sum of the ranks (1 = lowest; ties share their mean rank) of the rows
    that ``labels`` marks: the Mann-Whitney statistic of each labelling."""
    order = np.argsort(scores, axis=0, kind="stable")
    ordered = np.take_along_axis(scores, order, axis=0)
    if np.any(ordered[1:] == ordered[:-1]):
        tied: FloatArray = (sps.rankdata(scores, axis=0) * labels).sum(axis=0)
        return tied
    positions = np.arange(1.0, scores.shape[0] + 1.0)
    sums: FloatArray = positions @ np.take_along_axis(labels, order, axis=0)
    return sums
