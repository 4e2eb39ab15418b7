"""The engine's Rosenbrock methods (``rodas4``, ``rodas5p``): their coefficients against the
classical order conditions and the published node values, the observed order of each method
and of its embedded solution on a nonlinear problem with a closed-form solution, and a stiff
lane against scipy's Radau."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dynamics.flow import VARIANTS, Hyper, State
from dynamics.models import ScalarSiamese
from dynamics.solve import engine, steps, tableaus
from tests.oracles import scalar_field

#: (order of the solution, order of the embedded solution)
ORDERS = {"rodas4": (4, 3), "rodas5p": (5, 4)}


def _trees(order):
    """The rooted trees with ``order`` vertices, each a sorted tuple of its root's subtrees."""
    if order == 1:
        return [()]

    def partitions(n, largest):
        if n == 0:
            yield []
        for k in range(min(n, largest), 0, -1):
            for rest in partitions(n - k, k):
                yield [k] + rest

    found = set()
    for part in partitions(order - 1, order - 1):
        for subtrees in itertools.product(*(_trees(k) for k in part)):
            found.add(tuple(sorted(subtrees)))
    return sorted(found)


def _size(t):
    return 1 + sum(_size(c) for c in t)


def _density(t):
    return _size(t) * math.prod(_density(c) for c in t)


def _standard_form(method):
    """The method in Hairer & Wanner's form (Solving ODEs II, IV.7): ``alpha``, ``Gamma``
    (lower triangular, gamma on the diagonal) and the weights of the solution and of the
    embedded one, recovered from the engine's form (A = alpha Gamma^-1,
    C = diag(1/gamma) - Gamma^-1, y_new = y + sum_j A[-1][j] K_j + K_last, embedded
    y_new - K_last)."""
    gamma, A, C = tableaus.ROSENBROCK[method]
    s = len(A)
    a, c = np.zeros((s, s)), np.zeros((s, s))
    for i in range(s):
        a[i, : len(A[i])], c[i, : len(C[i])] = A[i], C[i]
    G = np.linalg.inv(np.eye(s) / gamma - c)
    m = a[-1].copy()
    m_hat = m.copy()
    m[-1] += 1.0
    return a @ G, G, m @ G, m_hat @ G


def _elementary_weights(t, alpha, beta):
    """Phi(t) per stage: a root with one subtree enters through the Jacobian (beta = alpha +
    Gamma, its diagonal included), one with several through f's higher derivatives at the
    stage point (alpha)."""
    if len(t) == 1:
        return beta @ _elementary_weights(t[0], alpha, beta)
    out = np.ones(alpha.shape[0])
    for sub in t:
        out = out * (alpha @ _elementary_weights(sub, alpha, beta))
    return out


@pytest.mark.parametrize("method", list(ORDERS))
def test_coefficients_satisfy_the_order_conditions(method):
    """For every rooted tree t up to the method's order: sum_i b_i Phi_i(t) = 1 / t! (its
    density) — 17 conditions for order 5, 8 for order 4 — for the solution and, one order
    lower, for the embedded solution; the coefficients are published to 16 digits, so the
    residuals are rounding (observed <= 5e-15; checked to 1e-12). The next order's conditions
    fail (observed residuals >= 4e-3), so the check tells the orders apart. Also: L-stable
    solution and estimate (R(z) -> 0 as z -> -inf, i.e. 1 - b B^-1 1 = 0), and the recovered
    c_i = sum_j alpha_ij and gamma_i = sum_j gamma_ij equal the published ones (the paper's c
    and d, which the engine's form does not contain: a transcription check of A and C)."""
    alpha, G, b, b_hat = _standard_form(method)
    beta = alpha + G
    p, p_hat = ORDERS[method]
    for weights, q in ((b, p), (b_hat, p_hat)):
        for k in range(1, q + 2):
            res = [weights @ _elementary_weights(t, alpha, beta) - 1 / _density(t)
                   for t in _trees(k)]
            if k <= q:
                assert max(map(abs, res)) < 1e-12, (q, k, res)
            else:
                assert max(map(abs, res)) > 1e-3, (q, k, res)
        assert abs(1 - weights @ np.linalg.solve(beta, np.ones(len(b)))) < 1e-12
    assert len(_trees(5)) == 9 and sum(len(_trees(k)) for k in range(1, 6)) == 17
    published = {  # Hairer & Wanner's RODAS; Steinebach (2023)
        "rodas4": (dict(c=[0.0, 0.386, 0.21, 0.63, 1.0, 1.0],
                        d=[0.25, -0.1043, 0.1035, -0.0362, 0.0, 0.0])),
        "rodas5p": (dict(c=[0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716,
                            0.4288403609558664, 1.0, 1.0, 1.0],
                         d=[0.21193756319429014, -0.42387512638858027, -0.3384627126235924,
                            1.8046452872882734, 2.325825639765069, 0.0, 0.0, 0.0])),
    }[method]
    np.testing.assert_allclose(alpha.sum(axis=1), published["c"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(G.sum(axis=1), published["d"], rtol=0, atol=1e-12)


# y = (u, u^2 + v) with (u, v) = (cos t, sin t): a rotation seen through a nonlinear change of
# variables, so the field is nonlinear and coupled and the solution is known in closed form
def _exact(t):
    return np.array([np.cos(t), np.sin(t) + np.cos(t) ** 2])


def _field(y):
    u, v = y[0], y[1] - y[0] ** 2
    return jnp.stack([-v, u - 2 * u * v])


def _jacobian(y):
    u, v = y[0], y[1] - y[0] ** 2
    return jnp.stack([jnp.stack([2 * u, -jnp.ones_like(u)]),
                      jnp.stack([1 - 2 * v + 4 * u * u, -2 * u])])


@pytest.mark.parametrize("method", list(ORDERS))
def test_observed_local_order_of_the_step_and_of_its_estimate(method):
    """One step from the exact state at t = 0.3 with h = 0.16, 0.08, 0.04, 0.02 (one lane
    each): the local error of a method of order p falls like h^(p+1), that of the embedded
    solution (y_new - err) like h^p. Observed log2 ratios of successive errors, rodas5p:
    5.57, 5.78, 5.89 and 4.90, 4.95, 4.98; rodas4: 2.5, 4.5, 4.8 and 3.94, 3.97, 3.98 (its
    pre-asymptotic first ratio is why only the last two are checked). Checked: the last two
    within 0.5 of p + 1 and of p (the errors at h = 0.02 are 5e-13 and above, far from
    rounding)."""
    p, p_hat = ORDERS[method]
    t0, hs = 0.3, np.array([0.16, 0.08, 0.04, 0.02])
    y = jnp.asarray(np.repeat(_exact(t0)[:, None], hs.size, axis=1))
    y_new, err = steps.rosenbrock_step(_field, _jacobian, y, _field(y), jnp.asarray(hs), method)
    exact = np.stack([_exact(t0 + h) for h in hs], axis=1)
    for sol, q in ((y_new, p + 1), (y_new - err, p_hat + 1)):
        e = np.max(np.abs(np.asarray(sol) - exact), axis=0)
        ratios = np.log2(e[:-1] / e[1:])
        assert np.all(np.abs(ratios[1:] - q) < 0.5), (q, ratios, e)


def test_rodas5p_on_a_stiff_lane_agrees_with_radau():
    """A stiff SimSiam lane (eps = 1e-3: |lambda_fast| ~ eta_phi / eps = 150) through the
    public API on ``rodas5p`` at rtol 1e-12, against scipy's Radau at rtol 1e-12 with the
    hand-written field (tests/oracles.py), at four save times across the fast transient and
    the slow decay. The flow contracts, so both global errors stay near their tolerance:
    observed difference <= 4e-14; checked 1e-10. (A tableau with the sixth row of C off by a
    relative 1e-3 does not get there: its lanes end at max_steps with NaN.)"""
    eps, eta, t1 = 1e-3, 0.15, 20.0
    ts = np.array([0.01, 0.5, 5.0, t1])
    th, ph = np.array([0.8, -0.4]), np.array([0.1, 1.5])
    sol = engine.flow_batch(ScalarSiamese(0.5), VARIANTS["simsiam"], Hyper.loss_decay(eta, eps, 1.0),
                            State(jnp.asarray(th), jnp.asarray(ph)), t1=t1, ts=ts,
                            method="rodas5p", rtol=1e-12, atol=1e-14)
    assert np.all(sol.status == 0)
    kw = dict(sigma2=0.5, eps=eps, eta_theta=eta, eta_phi=eta, beta=1.0, target="simsiam",
              stop_grad=True)
    for i in range(th.size):
        ref = solve_ivp(lambda t, y: scalar_field(y[0], y[1], None, **kw)[:2], (0.0, t1),
                        [th[i], ph[i]], method="Radau", rtol=1e-12, atol=1e-14, t_eval=ts)
        assert ref.success
        np.testing.assert_allclose(sol.ys.enc[i], ref.y[0], rtol=0, atol=1e-9)
        np.testing.assert_allclose(sol.ys.pred[i], ref.y[1], rtol=0, atol=1e-9)
