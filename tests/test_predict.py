"""The toy-predicts-real table: collapse measures of an embedding, the declared mapping of the
real hyperparameters onto the linear toy, and the settings table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dynamics.analysis.collapse_metrics import embedding_collapse

D = 8


def _signed_axes(k: int, d: int = D, scale=None) -> np.ndarray:
    """Rows ``+-c_i e_i`` for ``i < k``: every direction of a k-dimensional subspace equally often."""
    scale = np.ones(k) if scale is None else np.asarray(scale)
    rows = [s * c * np.eye(d)[i] for i, c in enumerate(scale) for s in (1.0, -1.0)]
    return np.array(rows, np.float32)


# The known answers below are exact in real arithmetic; 1e-5 leaves room for float32 SVD and
# eigvalsh round-off on 8 x 8 / 16 x 16 matrices (a few ulp of 1.2e-7 times the size).
TOL = 1e-5


def test_isotropic_embedding():
    m = embedding_collapse(_signed_axes(D))
    # u = +-e_i, each channel has mean 0 and variance 2 / (2 D): std 1/sqrt(D) exactly.
    assert m["std"] == pytest.approx(1 / math.sqrt(D), abs=TOL)
    assert m["std_ratio"] == pytest.approx(1.0, abs=TOL)
    assert m["effective_rank"] == pytest.approx(D, abs=D * TOL)   # Z^T Z = 2 I: all s_j equal
    assert m["top_share"] == pytest.approx(1 / D, abs=TOL)        # E[u u^T] = I / D


@pytest.mark.parametrize("k", [2, 3, 5])
def test_k_dimensional_embedding(k):
    # Scaling the rows does not move u = z/||z||, but the rank sees only the k directions.
    m = embedding_collapse(_signed_axes(k, scale=np.full(k, 3.7)))
    assert m["effective_rank"] == pytest.approx(k, abs=k * TOL)
    assert m["top_share"] == pytest.approx(1 / k, abs=TOL)
    # k channels of variance 1/k, D - k channels at 0: mean std = k / D / sqrt(k).
    assert m["std"] == pytest.approx(math.sqrt(k) / D, abs=TOL)


def test_rank_one_embedding():
    rng = np.random.default_rng(0)
    v = rng.normal(size=D)
    z = (rng.uniform(0.5, 2.0, size=(16, 1)) * v).astype(np.float32)   # every row a positive multiple of v
    m = embedding_collapse(z)
    assert m["effective_rank"] == pytest.approx(1.0, abs=1e-3)  # other s_j are float32 noise, ~1e-7 of s_1
    assert m["top_share"] == pytest.approx(1.0, abs=TOL)
    assert m["std"] == pytest.approx(0.0, abs=TOL)            # u = v/|v| on every row
    # +-v (what a final BatchNorm permits): the std no longer sees it, the top share does.
    m2 = embedding_collapse(np.concatenate([z, -z]))
    assert m2["top_share"] == pytest.approx(1.0, abs=TOL)
    assert m2["std_ratio"] > 0.5


def test_bad_embedding_shape():
    with pytest.raises(ValueError, match=r"shape \(5,\)"):
        embedding_collapse(np.ones(5))
