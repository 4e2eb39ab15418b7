"""Per-mode reduction (docs/theory.md section 3): the matrix flow from aligned, commuting initial
conditions follows the (p_j, s_j, tau_j) system mode by mode."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics  # noqa: F401  (float64)
from dynamics.flow import Hyper, State, Variant
from dynamics.models import LinearSiamese, PerModeSiamese, ScalarSiamese
from dynamics.models.linear import random_orthogonal
from dynamics.models.permode import embed, from_pst, to_pst
from tests.linear_common import field, solve_tight

BYOL = Variant("byol", True)
ETA, ALPHA_P, BETA = 0.03, 2.0, 0.4

_solve = solve_tight


def pst_oracle(p, s, tau, a, eta, alpha_p, beta):
    """docs/theory.md section 3 (isotropic per mode: d = 1, a = 1 + sigma2), written by hand."""
    dp = alpha_p * s * (tau - a * p) - eta * p
    ds = 2 * p * s * (tau - a * p) - 2 * eta * s
    dtau = beta * (1 - tau) - tau * ds / (2 * s)
    return dp, ds, dtau


def test_mode_field_matches_pst_system():
    sigma2 = jnp.array([0.2, 0.5, 1.0])
    model = PerModeSiamese(jnp.ones(3), sigma2)
    p, s, tau = jnp.array([0.3, 0.6, -0.2]), jnp.array([0.5, 1.2, 0.1]), jnp.array([0.9, 1.1, 0.4])
    y = from_pst(p, s, tau)
    f = field(model, BYOL, Hyper.tian(ETA, ALPHA_P, BETA), y)
    _, d = jax.jvp(lambda y: to_pst(y), (y,), (f,))
    for got, want in zip(d, pst_oracle(p, s, tau, 1 + sigma2, ETA, ALPHA_P, BETA)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # One mode is the scalar model with a = 1 + sigma2.
    f1 = field(ScalarSiamese(0.5), BYOL, Hyper.tian(ETA, ALPHA_P, BETA), State(y.enc[1], y.pred[1], y.tgt[1]))
    np.testing.assert_allclose([f1.enc, f1.pred, f1.tgt], [f.enc[1], f.pred[1], f.tgt[1]], rtol=1e-13)


def test_matrix_flow_follows_modes():
    """n = 3 modes inside n1 = 4, n2 = 3; non-isotropic X and X' sharing eigenvectors."""
    n, n1, n2 = 3, 4, 3
    k = jax.random.split(jax.random.PRNGKey(0), 2)
    V = random_orthogonal(k[0], n1)[:, :n]
    U = random_orthogonal(k[1], n2)[:, :n]
    modes = PerModeSiamese(jnp.array([1.0, 0.7, 1.4]), jnp.array([0.3, 0.5, 0.2]))
    y0 = State(jnp.array([0.8, -0.5, 0.3]), jnp.array([0.2, 0.5, 0.05]), jnp.array([0.6, -0.6, 0.1]))
    X, Xp, Y0 = embed(modes, y0, U, V)
    hyper = Hyper.tian(ETA, ALPHA_P, BETA)
    ts = jnp.linspace(0.0, 8.0, 9)  # same save grid as test_linear: shares its compiled program
    full = _solve(LinearSiamese(X, Xp), BYOL, hyper, Y0, ts[-1], ts)
    red = _solve(modes, BYOL, hyper, y0, ts[-1], ts)
    assert int(full.status) == 0 and int(red.status) == 0
    # Read the modes back from the matrices: p_j = u_j^T Wp u_j, s_j = u_j^T W W^T u_j, ...
    W, Wp, Wa = full.ys
    th = jnp.einsum("ij,tik,kj->tj", U, W, V)
    p = jnp.einsum("ij,tik,kj->tj", U, Wp, U)
    tha = jnp.einsum("ij,tik,kj->tj", U, Wa, V)
    # Both runs at rtol 1e-11; states are O(1), so 1e-8 leaves three orders of margin.
    np.testing.assert_allclose(th, red.ys.enc, atol=1e-8)
    np.testing.assert_allclose(p, red.ys.pred, atol=1e-8)
    np.testing.assert_allclose(tha, red.ys.tgt, atol=1e-8)
    # and the matrices stay in the aligned form (nothing leaks out of the mode subspace).
    _, _, Yt = embed(modes, State(red.ys.enc[-1], red.ys.pred[-1], red.ys.tgt[-1]), U, V)
    for a, b in zip(Yt, (W[-1], Wp[-1], Wa[-1])):
        np.testing.assert_allclose(a, b, atol=1e-8)
    # The modes really evolved (and differently).
    assert float(jnp.abs(red.ys.pred[-1] - y0.pred).min()) > 1e-2


def test_permode_bad_input():
    with pytest.raises(ValueError, match="unknown predictor 'optimal'"):
        PerModeSiamese(jnp.ones(2), jnp.ones(2), predictor="optimal")
    with pytest.raises(ValueError, match="sigma2 must be >= 0, got -0.5"):
        PerModeSiamese.isotropic(2, -0.5)
