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


# --- the mapping and the toy column ---------------------------------------------------------

from dynamics.predict import mapping as mp  # noqa: E402
from dynamics.predict.settings import SETTINGS  # noqa: E402


def test_mode_threshold_matches_saddle_node():
    # One mode (d_j = 1, A = 1 + sigma2): survives iff eta <= eta_crit = 1/(4A) (docs/theory.md s. 2).
    a = 1 + mp.SIGMA2
    crit = 1 / (4 * a)
    assert mp._mode_survives(1.0, a, 0.98 * crit, 1.0, None)
    assert not mp._mode_survives(1.0, a, 1.02 * crit, 1.0, None)
    # BYOL shares SimSiam's fixed points; at p_+ with a fast target it stays stable.
    assert mp._mode_survives(1.0, a, 0.5 * crit, 0.1, 5.0)


def test_live_modes_count_against_closed_form():
    # Trained predictor: the survivors are exactly the modes with d_j^2 >= 4 A_j eta.
    tp = mp.to_toy(wd=0.3, width=0.125)
    dj = mp.spectrum(tp.d)
    expect = int(np.sum(dj**2 >= 4 * (dj + tp.sigma2) * tp.eta))
    assert mp.live_modes(tp) == expect and 0 < expect < tp.d
    assert mp.live_modes(mp.to_toy(wd=0.0)) == tp.d
    assert mp.live_modes(mp.to_toy(stop_grad=False)) == 0


def test_mapping_units():
    kw = dict(method="byol", ema=0.99, lr=0.03, batch_size=128, momentum=0.9, wd=5e-4, width=0.125,
              predictor_lr_ratio=10)
    assert mp.to_toy(**kw, mapping="v2").eta == pytest.approx(5e-4)   # BatchNorm units: eta = wd
    tp = mp.to_toy(**kw, mapping="v1")
    assert tp.d == 256 and tp.eta == pytest.approx(5e-4 * 256)        # unit-vector units: eta = wd d
    assert tp.beta == pytest.approx(0.01 / (0.03 * 0.5 / 0.1))
    assert tp.alpha_p == 10
    with pytest.raises(ValueError, match="-1"):
        mp.to_toy(wd=-1)
    with pytest.raises(ValueError, match="'v9'"):
        mp.to_toy(mapping="v9")


def test_v2_random_predictor_matches_its_linear_flow():
    # v2 reads the fixed random predictor's end state off the eigenvalues of M_j. Independent
    # check: integrate the linear flow itself (matrix exponentials, d = 16) from W = I for a long
    # time and measure the embedding's effective rank as the CIFAR runs are measured.
    from scipy.linalg import expm

    for wd in (0.0, 0.05):
        tp = mp.to_toy(predictor="random", width=16 / 2048, wd=wd, mapping="v2")
        assert tp.d == 16
        dj = mp.spectrum(tp.d)
        rng = np.random.default_rng(mp.RANDOM_PREDICTOR_SEED)
        wp = rng.normal(scale=1 / np.sqrt(tp.d), size=(tp.d, tp.d))
        growth = max(np.max(np.linalg.eigvals(a * wp.T - (a + tp.sigma2) * wp.T @ wp).real) for a in dj) - tp.eta
        assert growth > 0    # something grows: the end state is one direction (or a plane)
        t_end = 60.0 / growth
        cols = [expm((a * wp.T - (a + tp.sigma2) * wp.T @ wp - tp.eta * np.eye(tp.d)) * t_end)[:, j]
                for j, a in enumerate(dj)]
        cov = sum(a * np.outer(c, c) for a, c in zip(dj, cols))
        er = mp.effective_rank_of_variances(np.clip(np.linalg.eigvalsh(cov), 0, None))
        # e^-60 leaves the other directions' singular values below 1e-13 of the top one
        assert mp.live_modes(tp) == round(er)
        assert mp.toy_prediction(tp)["outcome"] == mp.classify_modes(er)


def test_v2_directpred_shares_are_an_equilibrium():
    # At the stationary shares every direction that keeps a share grows at the same rate (else its
    # share would still move): g_j = p_j d_j - p_j^2 A_j - eta, p_j = sqrt(s_j / s_max) + eps_dp.
    d = 32
    dj = mp.spectrum(d)
    aj = dj + mp.SIGMA2
    for eta in (0.0, 0.05):
        q = mp.directpred_shares(dj, aj, eta, 0.1)
        assert q.sum() == pytest.approx(1.0) and np.all(q >= 0)
        s = aj * q / dj                      # A_j theta_j^2, up to one common factor
        p = np.sqrt(s / s.max()) + 0.1
        g = p * dj - p * p * aj - eta
        kept = q > 1e-6
        assert kept.sum() > d // 2
        assert np.ptp(g[kept]) < 1e-5 * np.abs(g).max()   # equal rates, to the integrator's rtol
        # scale-free: the call does not depend on the embedding's overall scale, so the v2 call of
        # DirectPred is healthy although the MSE toy's amplitude decays (all g < 0)
        assert np.all(g < 0)
    tp = mp.to_toy(predictor="directpred", mapping="v2")
    assert mp.toy_prediction(tp)["outcome"] == "healthy"
    assert mp.toy_prediction(mp.to_toy(predictor="directpred", mapping="v1"))["outcome"] == "collapsed"


def test_settings_cover_the_issue_and_parse():
    groups = [s.group for s in SETTINGS]
    assert len(SETTINGS) >= 16
    assert sum(g == "weight decay" for g in groups) >= 4 and sum(g == "EMA momentum" for g in groups) >= 3
    ratios = {s.config.get("predictor_lr_ratio", 1.0) for s in SETTINGS}
    assert {0.1, 1.0, 10.0} <= ratios
    from dynamics.cifar.__main__ import build_parser

    from dynamics.predict.settings import PLANS

    for s in SETTINGS:
        if s.runnable:
            for name in PLANS:
                build_parser().parse_args(["--data-dir", "x", *s.cli_args(name)])


def test_cifar_outcome_cannot_change_toy_column():
    # The toy column is a function of the settings alone: computed before and after any number of
    # CIFAR outcomes, and in a process that never imports the CIFAR training code.
    import subprocess
    import sys

    code = ("import sys; from dynamics.predict.settings import SETTINGS; from dynamics.predict import mapping;"
            "[mapping.toy_prediction(s.toy()) for s in SETTINGS if s.config.get('predictor') != 'random'];"
            "print(sorted(m for m in sys.modules if m.startswith('dynamics.cifar')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    rows = [s for s in SETTINGS if s.config.get("predictor") != "random"]
    before = [mp.toy_prediction(s.toy()) for s in rows]
    for args in [(1.0, 0.01, 0.99, 0.1, 0.2), (200.0, 0.9, 0.01, 0.9, 0.2)]:
        mp.cifar_outcome(*args)
    assert [mp.toy_prediction(s.toy()) for s in rows] == before


def test_cifar_outcome_thresholds():
    assert mp.cifar_outcome(40, 0.8, 0.1, 0.35, 0.25) == "healthy"
    assert mp.cifar_outcome(5, 0.8, 0.3, 0.35, 0.25) == "partial"
    assert mp.cifar_outcome(40, 0.8, 0.95, 0.35, 0.25) == "collapsed"   # a line, even if BN keeps std
    # kNN: a drop within the noise of 2000 test images (3 standard errors, ~0.03) is no collapse,
    # a larger one is
    assert mp.cifar_outcome(40, 0.8, 0.1, 0.24, 0.25) == "healthy"
    assert mp.cifar_outcome(40, 0.8, 0.1, 0.25 - mp.KNN_DROP - 0.001, 0.25) == "collapsed"
    assert 2.5 < mp.KNN_DROP / (0.25 * 0.75 / 2000) ** 0.5 < 3.5
    with pytest.raises(ValueError, match="nan"):
        mp.cifar_outcome(float("nan"), 0.8, 0.1, 0.3, 0.2)
