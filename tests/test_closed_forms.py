"""The closed forms the models carry, against hand-written oracles and against numerics.

Oracles: ``tests/oracles.py`` (p_pm written out by hand), the worked numbers of docs/theory.md
section 2, fixed points found by Newton on the autodiff field, Jacobian eigenvalues by autodiff.
The model methods are never compared with themselves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics  # noqa: F401  (float64)
from dynamics.analysis import FlowSystem, find_fixed_points, random_starts
from dynamics.models import LinearSiamese, PerModeSiamese, ScalarSiamese
from dynamics.models.linear import random_orthogonal
from dynamics.types import Hyper, State, VARIANTS
from tests.oracles import p_pm

SIMSIAM = VARIANTS["simsiam"]


def test_scalar_worked_numbers_of_theory():
    """docs/theory.md 2 (a = 1.5, eta = 0.05, alpha_p = 1), printed to 6 decimals: tolerance 5e-7."""
    m = ScalarSiamese(0.5)
    fp = m.fixed_points(0.05)
    np.testing.assert_allclose([fp.phi_plus, fp.phi_minus], [0.612220, 0.054447], atol=5e-7)
    ev = np.asarray(m.fixed_point_eigenvalues(0.05))
    np.testing.assert_allclose(ev[0].real, [-0.1, -0.512220], atol=5e-7)
    np.testing.assert_allclose(ev[1].real, [-0.1, 0.045553], atol=5e-7)
    assert abs(float(m.eta_crit) - 1 / 6) < 1e-15


@pytest.mark.parametrize("sigma2, eta", [(0.5, 0.05), (0.2, 0.2), (1.0, 0.12)])
def test_scalar_fixed_points_match_the_oracle(sigma2, eta):
    """Same formula in two independent spellings: agreement to rounding (1e-14)."""
    m = ScalarSiamese(sigma2)
    fp = m.fixed_points(eta, eps=0.25, convention="tian")
    want_p, want_m = p_pm(1 + sigma2, eta)
    np.testing.assert_allclose([fp.phi_plus, fp.phi_minus], [want_p, want_m], rtol=1e-14)
    np.testing.assert_allclose([fp.theta2_plus, fp.theta2_minus],
                               [0.25 * want_p**2, 0.25 * want_m**2], rtol=1e-14)
    loss = m.fixed_points(eta, eps=0.25, convention="loss")
    np.testing.assert_allclose([loss.theta2_plus, loss.theta2_minus], [want_p**2, want_m**2],
                               rtol=1e-14)


def test_no_fixed_points_past_eta_crit():
    m = ScalarSiamese(0.5)
    assert np.all(np.isfinite(m.fixed_points(0.999 * m.eta_crit)))
    assert np.all(np.isnan(m.fixed_points(1.001 * m.eta_crit)))


@pytest.mark.parametrize("convention, eps", [("tian", 1.0), ("tian", 0.1), ("loss", 0.1)])
def test_scalar_fixed_points_and_spectra_against_newton_and_autodiff(convention, eps):
    """Newton on the autodiff field from 48 random starts finds the origin and (+-theta_pm,
    p_pm); their autodiff Jacobian eigenvalues match the closed forms (observed agreement
    4e-15; tolerance 1e-11, far below any formula error)."""
    m, eta = ScalarSiamese(0.5), 0.05
    hyper = Hyper.from_convention(convention, eta, eps)
    starts = random_starts(jax.random.PRNGKey(0), State(0.0, 0.0), 48, scale=1.0)
    fps = [f for f in find_fixed_points(FlowSystem(m, hyper, SIMSIAM), starts)
           if abs(float(f.state.enc)) > 1e-6 and float(f.state.enc) > 0]
    assert len(fps) == 2
    found = sorted(fps, key=lambda f: -float(f.state.pred))
    want = m.fixed_points(eta, eps, convention)
    spectra = np.asarray(m.fixed_point_eigenvalues(eta, eps, convention))
    for f, phi, theta2, ev in zip(found, (want.phi_plus, want.phi_minus),
                                  (want.theta2_plus, want.theta2_minus), spectra):
        np.testing.assert_allclose(float(f.state.pred), phi, atol=1e-11)
        np.testing.assert_allclose(float(f.state.enc) ** 2, theta2, atol=1e-11)
        np.testing.assert_allclose(np.sort_complex(f.eigenvalues), np.sort_complex(ev),
                                   atol=1e-11)


def test_invariant_is_the_closed_form_of_the_flow():
    """dI/dt = -2 eta I (Tian convention): the autodiff field's derivative of I at random
    states equals -2 eta I to rounding."""
    m, eta, alpha_p = ScalarSiamese(0.5), 0.07, 3.0
    hyper = Hyper.tian(eta, alpha_p)
    rng = np.random.default_rng(0)
    for th, ph in rng.uniform(-2, 2, (5, 2)):
        f = dynamics.vector_field(m, SIMSIAM, hyper, State(jnp.asarray(th), jnp.asarray(ph)))
        dI = 2 * ph * float(f.pred) - 2 * alpha_p * th * float(f.enc)
        I0 = float(m.invariant(th, ph, alpha_p))
        np.testing.assert_allclose(dI, -2 * eta * I0, rtol=1e-12, atol=1e-14)
        # and the closed-form decay is the solution of that linear ODE
        t = 0.3
        np.testing.assert_allclose(float(m.invariant_at(I0, eta, t)), I0 * np.exp(-2 * eta * t),
                                   rtol=1e-15)


def _mode_thresholds_by_hand(d, sigma2):
    # the formula the linear sweep writes into its dataset: d_j^2 / (4 (d_j + sigma2))
    d = np.asarray(d, float)
    return d**2 / (4 * (d + sigma2))


def test_per_mode_thresholds_and_fixed_points():
    """Per mode, eta_crit_j = d_j^2 / (4 (d_j + d'_j)); below it Newton on the per-mode flow
    finds the fixed point the model predicts, above it the mode has none."""
    d, sigma2 = np.array([2.0, 1.0, 0.5]), 0.3
    m = PerModeSiamese(jnp.asarray(d), jnp.full(3, sigma2))
    np.testing.assert_allclose(m.eta_crit, _mode_thresholds_by_hand(d, sigma2), rtol=1e-15)
    eta = 0.9 * float(m.eta_crit[2])  # every mode below its threshold
    fp = m.fixed_points(eta, eps=1.0, convention="loss")
    assert np.all(np.isfinite(fp.phi_plus))
    start = State(jnp.sqrt(fp.theta2_plus) * 1.05, fp.phi_plus * 0.95)
    starts = jax.tree_util.tree_map(lambda x: x[None], start)
    (found,) = find_fixed_points(FlowSystem(m, Hyper.loss_decay(eta, 1.0), SIMSIAM), starts)
    np.testing.assert_allclose(found.state.pred, fp.phi_plus, atol=1e-11)  # Newton: ~1e-15
    np.testing.assert_allclose(found.state.enc**2, fp.theta2_plus, atol=1e-11)
    past = m.fixed_points(1.01 * float(m.eta_crit[0]))
    assert np.all(np.isnan(past.phi_plus))


def test_linear_thresholds_follow_the_data_eigenvalues():
    """X = Q diag(d) Q^T, X' = sigma2 I (the linear sweep's data): the model's thresholds are
    the hand formula on d (order: decreasing d); the eigendecomposition costs ~1e-15."""
    d, sigma2 = np.array([0.4, 1.7, 1.0, 2.5]), 0.5
    q = random_orthogonal(jax.random.PRNGKey(3), 4)
    X = (q * jnp.asarray(d)) @ q.T
    m = LinearSiamese(X, sigma2 * jnp.eye(4))
    np.testing.assert_allclose(m.eta_crit, _mode_thresholds_by_hand(np.sort(d)[::-1], sigma2),
                               rtol=1e-12)
