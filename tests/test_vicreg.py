"""Linear VICReg against its closed forms (docs/theory.md, "VICReg"): the field against the
hand-derived gradient, the sampled loss against the large-batch one, the aligned fixed points,
their spectrum (per-mode rates and rotation blocks), the covariance threshold, the rank-one
state without the covariance term, and bad values."""

import contextlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.models import VICRegLinear
from dynamics.models.vicreg import VICREG
from dynamics.solve import solve_flow

GAMMA = np.array([1.5, 1.0, 0.5])
SIG = np.full(3, 0.5)
X, XP = jnp.diag(GAMMA), jnp.diag(SIG)
N = 3


@contextlib.contextmanager
def warnings_as_errors():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# compiled once (every call here has one shape): far cheaper than op-by-op autodiff
field = jax.jit(d.vector_field, static_argnums=1)
jacobian = jax.jit(d.jacobian_matrix, static_argnums=1)


def test_field_is_the_hand_derived_gradient_through_both_branches():
    # A = W S W^T; S_j = sqrt(A_jj + epsilon); with both branches (d = n2):
    # dL/dW = 4 inv W X' - 2 var/d D W S + 8 cov/d offdiag(A) W S, D = diag([S_j < 1] / S_j)
    m = VICRegLinear(X, XP, 3.0, 2.0, 0.7, 1e-3)
    W = 0.5 * jax.random.normal(jax.random.PRNGKey(0), (N, N))
    W = W.at[0].multiply(4.0)  # one output past the hinge (S_0 > 1), where it is flat
    S = X + XP
    A = W @ S @ W.T
    std = jnp.sqrt(jnp.diag(A) + 1e-3)
    assert std[0] > 1 and np.all(std[1:] < 1)
    D = jnp.diag(jnp.where(std < 1, 1 / std, 0.0))
    off = A - jnp.diag(jnp.diag(A))
    grad = 4 * 3.0 * W @ XP - 2 * 2.0 / N * D @ W @ S + 8 * 0.7 / N * off @ W @ S
    got = field(m, VICREG, d.Hyper(eta_theta=0.1), d.State(W, None)).enc
    np.testing.assert_allclose(got, -(grad + 0.1 * W), rtol=1e-12, atol=1e-12)


def test_sampled_loss_against_the_large_batch_loss():
    m = VICRegLinear(X, XP, 1.0, 1.0, 1.0)  # weights of one size: every term is seen
    W = 0.4 * jax.random.normal(jax.random.PRNGKey(1), (N, N))
    B = 4000
    vals = [float(m.loss(W, None, W, m.sample(jax.random.PRNGKey(k), B))) for k in range(4)]
    # four independent batches: 6 standard errors of their mean, plus the O(1/B) bias of a
    # square root (and of squares) of sample moments
    se = np.std(vals, ddof=1) / 2
    want = float(m.expected_loss(W, None, W))
    assert abs(np.mean(vals) - want) < 6 * se + 2.0 / B
    assert se < 0.01 * want  # the check has teeth: a wrong term would be off by O(want)


def test_aligned_fixed_point_and_its_spectrum():
    m = VICRegLinear(X, XP, cov=10.0)
    u = np.asarray(m.mode_fixed_point(GAMMA, SIG, N))
    s = GAMMA + SIG
    Sd = np.sqrt(u * s + 1e-4)
    np.testing.assert_allclose(Sd, m.mode_std(GAMMA, SIG, N), rtol=1e-12)
    assert np.all(Sd < 1) and np.all(Sd > 1e-2)  # the hinge is active: a smooth fixed point
    W = jnp.diag(np.sqrt(u))
    y = d.State(W, None)
    assert float(jnp.max(jnp.abs(field(m, VICREG, d.Hyper(), y).enc))) < 1e-12
    ev = np.sort(np.linalg.eigvals(np.asarray(jacobian(m, VICREG, d.Hyper(), y))).real)
    # the diagonal entries: w' = w h(w), h = 2 var s/(d S) - 4 inv sigma2, so the rate is
    # w h'(w) = -2 var s^2 u / (d S^3); the pairs (W_jk, W_kj): the rotation blocks
    diag = -2 * 25.0 * s**2 * u / (N * Sd**3)
    blk = m.rotation_block(GAMMA, SIG, np.sqrt(u), N)
    pairs = [e for j in range(N) for k in range(j + 1, N)
             for e in np.linalg.eigvals(blk(j, k)).real]
    np.testing.assert_allclose(ev, np.sort(np.concatenate([diag, pairs])), rtol=1e-9, atol=1e-9)
    # the origin: a mode grows at 2 var s/(d sqrt(epsilon)) - 4 inv sigma2 (> 0 here: no collapse)
    assert np.all(np.asarray(m.origin_rate(GAMMA, SIG, N)) > 0)


def test_cov_crit_is_where_the_aligned_state_turns_stable():
    m = VICRegLinear(X, XP, cov=0.0)
    cc = m.cov_crit(GAMMA, SIG, N)
    assert 0 < cc < np.inf
    W = jnp.diag(np.sqrt(np.asarray(m.mode_fixed_point(GAMMA, SIG, N))))
    top = {}
    for f in (0.95, 1.05):
        mm = VICRegLinear(X, XP, cov=f * cc)
        J = jacobian(mm, VICREG, d.Hyper(), d.State(W, None))
        ev = np.linalg.eigvals(np.asarray(J))
        top[f] = ev.real.max()
    assert top[0.95] > 0 > top[1.05]


def test_cov_crit_is_nan_where_a_mode_has_no_smooth_fixed_point():
    # weak augmentation: the top mode's S* = 2 var s/(d (4 inv sigma2 + eta)) is >= 1, so the
    # aligned point does not exist (the flow rests on the hinge's corner) and no cov makes it
    # stable; the threshold is NaN, quietly, not the 0 that NaN comparisons would give
    m = VICRegLinear(X, XP, cov=0.0)
    weak = np.full(3, 0.15)
    s_star = 2 * m.var * (GAMMA + weak) / (N * 4 * m.inv * weak)
    assert s_star[0] >= 1 > s_star[-1]  # independent of the model's own mode_std
    with np.errstate(all="raise"), warnings_as_errors():
        assert np.isnan(m.cov_crit(GAMMA, weak, N))
    assert np.isfinite(m.cov_crit(GAMMA, SIG, N))  # S* < 1 for every mode at sigma2 = 0.5


@pytest.mark.parametrize("cov_factor", [0.0, 2.0])
def test_without_the_covariance_term_the_outputs_collapse_to_rank_one(cov_factor):
    m0 = VICRegLinear(X, XP, cov=0.0)
    cov = cov_factor * m0.cov_crit(GAMMA, SIG, N)
    m = VICRegLinear(X, XP, cov=cov)
    W0 = 0.3 * jax.random.normal(jax.random.PRNGKey(0), (N, N))
    sol = solve_flow(m, VICREG, d.Hyper(), d.State(W0, None), 60.0, solver="tsit5", rtol=1e-10,
                     atol=1e-13, max_steps=100_000)
    assert int(sol.status) == 0
    sv2 = np.linalg.svd(np.asarray(sol.ys.enc[-1]), compute_uv=False) ** 2
    if cov == 0:
        k, u1 = m.rank_one_state(GAMMA, SIG, N)
        assert k == 0
        # the lost directions decay at the rotation blocks' rates (>= 10): e^-600 by t = 60
        np.testing.assert_allclose(sv2[0], u1, rtol=1e-8)
        assert np.all(sv2[1:] < 1e-20)
    else:  # above cov_crit: the aligned full-rank state, every mode at u*
        np.testing.assert_allclose(sv2, np.asarray(m.mode_fixed_point(GAMMA, SIG, N)), rtol=1e-8)


def test_bad_vicreg_values_are_one_line_errors():
    with pytest.raises(ValueError, match=r"inv must be a finite number >= 0, got -1.0"):
        VICRegLinear(X, XP, inv=-1.0)
    with pytest.raises(ValueError, match=r"cov must be a finite number >= 0, got -0.5"):
        VICRegLinear(X, XP, cov=-0.5)
    with pytest.raises(ValueError, match=r"epsilon must be a finite number > 0, got 0"):
        VICRegLinear(X, XP, epsilon=0)
    with pytest.raises(ValueError, match=r"var must be a finite number >= 0, got nan"):
        VICRegLinear(X, XP, var=float("nan"))
