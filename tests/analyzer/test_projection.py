"""analyzer.projection: the fixed projection, the mergeable sample, the PCA basis."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from analyzer.errors import BaselineError
from analyzer.projection import (
    PROJECTION_DIM,
    Basis,
    EmbeddingSample,
    project,
    projection_matrix,
)


class TestProjection:
    """The per-image random projection."""

    def test_matrix_is_fixed_forever(self) -> None:
        """The 1280 → 64 matrix is the same bytes in every process and numpy version."""
        np.random.seed(123)  # the global generator's state must not matter
        matrix = projection_matrix(1280)
        assert matrix.shape == (1280, PROJECTION_DIM)
        assert set(np.unique(matrix)) == {-0.125, 0.125}
        assert hashlib.sha256(matrix.tobytes()).hexdigest() == (
            "3e162b59d956b02a26f882de3dfe59a58ba91563c6eca8ce94f8d1e3b7e5fb44")

    def test_small_embedding_kept_as_is(self) -> None:
        """An embedding of at most 64 values is not projected."""
        x = np.random.default_rng(0).normal(size=(5, 40))
        np.testing.assert_array_equal(project(x), x.astype(np.float32))

    def test_row_by_row(self) -> None:
        """Projecting two shards apart gives the rows of projecting them together."""
        x = np.random.default_rng(1).normal(size=(30, 300))
        np.testing.assert_array_equal(np.vstack([project(x[:11]), project(x[11:])]), project(x))

    def test_distances_preserved(self) -> None:
        """Pairwise distances survive the projection to within the Johnson-Lindenstrauss error."""
        x = np.random.default_rng(2).normal(size=(40, 1280))
        y = project(x).astype(np.float64)
        i, j = np.triu_indices(40, k=1)
        ratio = np.linalg.norm(y[i] - y[j], axis=1) / np.linalg.norm(x[i] - x[j], axis=1)
        assert abs(float(ratio.mean()) - 1.0) < 0.05
        assert ratio.min() > 0.6 and ratio.max() < 1.4


def sample_of(keys: np.ndarray, emb: np.ndarray, capacity: int = 16) -> EmbeddingSample:
    s = EmbeddingSample(dim=emb.shape[1], tensor="t", capacity=capacity)
    s.add(keys, emb)
    return s


class TestEmbeddingSample:
    """The bottom-k sample of projected embeddings kept in a profile."""

    def test_merge_equals_whole(self) -> None:
        """Two shards' samples merged are exactly the sample of all images."""
        rng = np.random.default_rng(3)
        keys = rng.permutation(np.arange(100, dtype=np.uint64) * 7919)
        emb = rng.normal(size=(100, 200))
        merged = sample_of(keys[:60], emb[:60]).merge(sample_of(keys[60:], emb[60:]))
        whole = sample_of(keys, emb)
        np.testing.assert_array_equal(merged.keys, whole.keys)
        np.testing.assert_array_equal(merged.vectors, whole.vectors)
        assert merged.count == 16
        np.testing.assert_array_equal(merged.keys, np.sort(keys)[:16])

    def test_json_round_trip_is_exact(self) -> None:
        """to_dict → JSON → from_dict gives back the same keys and float32 vectors."""
        rng = np.random.default_rng(4)
        s = sample_of(rng.integers(0, 2**63, 20, dtype=np.uint64), rng.normal(size=(20, 1280)))
        back = EmbeddingSample.from_dict(json.loads(json.dumps(s.to_dict())))
        np.testing.assert_array_equal(back.keys, s.keys)
        np.testing.assert_array_equal(back.vectors, s.vectors)
        assert (back.dim, back.tensor, back.capacity) == (1280, "t", 16)

    def test_other_projection_rejected(self) -> None:
        """A sample written with another projection cannot be read into this one's space."""
        d = sample_of(np.arange(3, dtype=np.uint64), np.ones((3, 100))).to_dict()
        d["projection"] = "gaussian-v0"
        with pytest.raises(BaselineError, match=r"projection 'gaussian-v0'.*regenerate"):
            EmbeddingSample.from_dict(d)

    def test_other_model_rejected(self) -> None:
        """Samples of embeddings of different sizes do not merge."""
        a = sample_of(np.arange(3, dtype=np.uint64), np.ones((3, 100)))
        b = sample_of(np.arange(3, dtype=np.uint64), np.ones((3, 120)))
        with pytest.raises(BaselineError, match=r"\(100 values\) vs 't' \(120 values\)"):
            a.merge(b)


class TestBasis:
    """The whitened principal axes the tests map both samples onto."""

    def test_whitened_rows_have_unit_covariance(self) -> None:
        """On the rows it was fitted on, the basis gives zero mean and identity covariance."""
        rng = np.random.default_rng(5)
        x = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6)) + 3.0
        z = Basis.fit(x).transform(x)
        np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-9)
        np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(6), atol=1e-9)

    def test_constant_axes_dropped(self) -> None:
        """Directions with no variance are dropped instead of divided by zero."""
        rng = np.random.default_rng(6)
        x = np.hstack([rng.normal(size=(50, 2)), np.full((50, 3), 4.0)])
        basis = Basis.fit(x)
        assert basis.components == 2
        assert np.isfinite(basis.transform(x)).all()
