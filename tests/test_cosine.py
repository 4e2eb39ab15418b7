"""Cosine SimSiam/BYOL against its closed forms (docs/theory.md, "Cosine SimSiam / BYOL"): the
field against the hand-derived gradient, the conserved norms and balance, GD's exact norm
growth, the expectation of cosines against the cosine of moments, the no-predictor collapse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.flow import loss_gradients
from dynamics.models import CosineSiamese
from dynamics.models.linear import random_orthogonal
from dynamics.solve import solve_flow

GAMMA = jnp.array([2.0, 1.0, 0.5])
V = random_orthogonal(jax.random.PRNGKey(3), 3)
X = (V * GAMMA) @ V.T
XP = 0.5 * jnp.eye(3)
W0 = jax.random.normal(jax.random.PRNGKey(0), (3, 3))
WP0 = jax.random.normal(jax.random.PRNGKey(1), (3, 3))
SG, NOSG = d.Variant("simsiam"), d.Variant("simsiam", False)


def test_field_is_the_hand_derived_gradient():
    # L = -P / (N_M N_T), P = tr(M X T^T), N_A^2 = tr(A S A^T), M = Wp W; with T held fixed
    # dL/dM = -T X / (N_M N_T) + P M S / (N_M^3 N_T), dL/dW = Wp^T dL/dM, dL/dWp = dL/dM W^T
    m = CosineSiamese(X, XP)
    S = X + XP
    M, T = WP0 @ W0, W0
    P = jnp.trace(M @ X @ T.T)
    NM, NT = jnp.sqrt(jnp.trace(M @ S @ M.T)), jnp.sqrt(jnp.trace(T @ S @ T.T))
    G = -T @ X / (NM * NT) + P * M @ S / (NM**3 * NT)
    eta, eps = 0.1, 0.5
    f = d.vector_field(m, SG, d.Hyper(eps=eps, eta_theta=eta, eta_phi=eta), d.State(W0, WP0))
    np.testing.assert_allclose(f.enc, -(WP0.T @ G + eta * W0), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(f.pred, -(G @ W0.T + eta * WP0) / eps, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("variant", [SG, NOSG], ids=["sg", "nosg"])
def test_flow_keeps_both_norms_and_with_stop_gradient_the_balance(variant):
    m, eps = CosineSiamese(X, XP), 0.5
    ts = jnp.linspace(0.0, 20.0, 5)
    sol = solve_flow(m, variant, d.Hyper(eps=eps), d.State(W0, WP0), 20.0, ts=ts,
                     solver="tsit5", rtol=1e-11, atol=1e-13)
    assert int(sol.status) == 0
    nW, nP = jnp.linalg.norm(sol.ys.enc, axis=(1, 2)), jnp.linalg.norm(sol.ys.pred, axis=(1, 2))
    # exact invariants: only the solver's error (tolerance 1e-11 relative) moves them
    np.testing.assert_allclose(nW, nW[0], rtol=1e-8)
    np.testing.assert_allclose(nP, nP[0], rtol=1e-8)
    assert float(jnp.max(jnp.abs(sol.ys.enc[-1] - W0))) > 0.1  # and the flow did move W
    B = jax.vmap(lambda a, b: CosineSiamese.balance(a, b, eps))(sol.ys.enc, sol.ys.pred)
    drift = float(jnp.max(jnp.abs(B - B[0])))
    if variant.stop_grad:
        assert drift < 1e-7
    else:  # the target branch's gradient breaks it: not an identity of any flow
        assert drift > 1e-2


def test_weight_decay_shrinks_the_norm_as_exp_minus_eta_t():
    m, eta = CosineSiamese(X, XP), 0.2
    ts = jnp.linspace(0.0, 5.0, 6)
    sol = solve_flow(m, SG, d.Hyper.loss_decay(eta, 1.0), d.State(W0, WP0), 5.0, ts=ts,
                     solver="tsit5", rtol=1e-11, atol=1e-13)
    want = CosineSiamese.norm_at(jnp.linalg.norm(W0), eta, ts)
    np.testing.assert_allclose(jnp.linalg.norm(sol.ys.enc, axis=(1, 2)), want, rtol=1e-8)


@pytest.mark.parametrize("batch", [False, True], ids=["gd", "sgd"])
def test_a_gd_step_grows_the_squared_norm_by_h2_g2(batch):
    m, h = CosineSiamese(X, XP), 0.3
    b = m.sample(jax.random.PRNGKey(5), 16) if batch else None
    y = d.State(W0, WP0)
    g = loss_gradients(m, SG, y, batch=b)
    new = d.gd_step(m, SG, d.Hyper(), y, h, b)
    grow = jnp.sum(new.enc**2) - jnp.sum(W0**2)
    # <g, W> = 0 to rounding, so the growth is h^2 |g|^2 to ~1e-15 of |W|^2 = 9
    np.testing.assert_allclose(grow, CosineSiamese.gd_norm_growth(g.enc, h), rtol=1e-10)
    assert float(grow) > 1e-3
    np.testing.assert_allclose(jnp.sum(new.pred**2) - jnp.sum(WP0**2),
                               CosineSiamese.gd_norm_growth(g.pred, h), rtol=1e-10)


def test_mean_cosine_is_sheppards_arcsine_of_the_moment_cosine_in_one_dimension():
    # n2 = 1: cos(p, z) = sign(p z) and E[sign] = (2/pi) arcsin(rho); the flow's loss is -rho
    m = CosineSiamese(X, XP)
    W, Wp = W0[:1], WP0[:1, :1]
    rho = -float(m.expected_loss(W, Wp, W))
    batch = m.sample(jax.random.PRNGKey(7), 200_000)
    mc = -float(m.loss(W, Wp, W, batch))
    # a mean of 2e5 signs: standard error <= 1/sqrt(2e5) = 0.0022; 5 of them
    assert abs(mc - float(CosineSiamese.mean_cosine_1d(rho))) < 0.011
    assert abs(mc - rho) > 0.1  # the two losses differ


def test_without_a_predictor_the_representation_collapses_onto_the_top_snr_mode():
    m = CosineSiamese(X, XP, predictor="none")
    Wal = (random_orthogonal(jax.random.PRNGKey(2), 3) * jnp.array([0.6, 1.0, 1.3])) @ V.T
    f = d.vector_field(m, SG, d.Hyper(), d.State(Wal, None)).enc
    rates = jnp.sum((f @ V) * (Wal @ V), axis=0) / jnp.sum((Wal @ V) ** 2, axis=0)
    np.testing.assert_allclose(rates, m.no_predictor_rates(Wal), rtol=1e-10, atol=1e-12)
    assert rates[0] > 0 > rates[2]
    # rates scale as 1/||W||^2: a start of norm ~1 collapses by t = 400
    Ws = W0 / 3.0
    sol = solve_flow(m, SG, d.Hyper(), d.State(Ws, None), 400.0, solver="tsit5", rtol=1e-10,
                     atol=1e-12)
    score = m.collapse_measure(sol.ys.enc[-1])
    np.testing.assert_allclose(jnp.linalg.norm(sol.ys.enc[-1]), jnp.linalg.norm(Ws), rtol=1e-8)
    assert float(score[0]) > 0.999 and float(score[1]) < 1e-3  # rank one, norm kept
    # the surviving direction is X's top eigenvector (largest d/(d + sigma2))
    u = jnp.linalg.svd(sol.ys.enc[-1])[2][0]
    assert abs(float(u @ V[:, 0])) > 0.999


def test_bad_predictor_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown predictor 'linear'"):
        CosineSiamese(X, XP, predictor="linear")
