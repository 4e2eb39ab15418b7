"""Linear InfoNCE and MoCo against their closed forms (docs/theory.md, "InfoNCE and MoCo"): the
batch gradient identity, the large-batch flow against a Monte Carlo batch, the per-mode fixed
points and thresholds, dimensional collapse along X_alpha's negative directions, the two-layer
solution, MoCo's mode spectrum, queue, momentum limits, and bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.models import InfoNCELinear, MoCoLinear
from dynamics.models.infonce import INFONCE
from dynamics.models.moco import MOCO
from dynamics.solve import solve_flow
from dynamics.types import SlotState

# compiled once per shape: far cheaper than running the autodiff transforms op by op
field = jax.jit(d.vector_field, static_argnums=1)

# non-isotropic: the third direction has little data and strong augmentation
GAMMA = jnp.array([1.5, 0.8, 0.05])
SIG = jnp.array([0.2, 0.3, 1.5])
X, XP = jnp.diag(GAMMA), jnp.diag(SIG)
TAU = 0.7


def test_batch_gradient_is_minus_W_X_alpha_over_tau():
    # X_alpha written out by hand from the softmax weights (independent of autodiff)
    m = InfoNCELinear(X, XP, TAU)
    W = jax.random.normal(jax.random.PRNGKey(0), (2, 3))  # n2 != n1 too
    b = m.sample(jax.random.PRNGKey(1), 16)
    g = jax.jit(jax.grad(lambda W: m.loss(W, None, W, b)))(W)
    np.testing.assert_allclose(g, -W @ m.batch_X_alpha(W, b) / TAU, rtol=0, atol=1e-12)
    # and through the flow, with both branches and weight decay: W' = W X_alpha/tau - eta W
    ge = field(m, INFONCE, d.Hyper(eta_theta=0.3), d.State(W, None)).enc
    np.testing.assert_allclose(ge, W @ m.X_alpha(W) / TAU - 0.3 * W, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.X_alpha(0 * W), 2 * X, atol=1e-13)  # uniform softmax at W = 0


def test_large_batch_loss_against_a_monte_carlo_batch():
    m = InfoNCELinear(X, XP, TAU)
    W = 0.4 * jax.random.normal(jax.random.PRNGKey(2), (3, 3))
    B = 800
    x1, x2 = m.sample(jax.random.PRNGKey(3), B)
    z1, z2 = x1 @ W.T, x2 @ W.T
    s = -jnp.sum((z2[:, None] - z1[None]) ** 2, -1) / (2 * TAU)
    per = jax.scipy.special.logsumexp(s, axis=1) - jnp.diagonal(s) - jnp.log(B)
    got = float(m.loss(W, None, W, (x1, x2))) - np.log(B)
    assert got == pytest.approx(float(jnp.mean(per)), abs=1e-12)
    # the per-query terms are independent up to the shared negatives: 5 standard errors,
    # plus the O(1/B) bias of a log of a sample mean (the positive in the denominator)
    se = float(jnp.std(per)) / np.sqrt(B)
    assert abs(got - float(m.expected_loss(W, None, W))) < 5 * se + 2.0 / B


def test_dimensional_collapse_along_the_negative_directions_of_X_alpha():
    m = InfoNCELinear(X, XP, TAU)
    W0 = jax.random.normal(jax.random.PRNGKey(0), (3, 3))
    w, v = np.linalg.eigh(np.asarray(m.X_alpha(W0)))
    assert w[0] < 0 and abs(v[2, 0]) > 0.95  # its negative direction is the noisy one
    # eta between the thresholds 2 gamma_k / tau: only the noisy direction loses its fixed point
    eta = 0.3
    crit = np.asarray(InfoNCELinear.eta_crit(GAMMA, TAU))
    assert crit[2] < eta < crit[1]
    ts = jnp.array([0.0, 5.0, 120.0])
    sol = solve_flow(m, INFONCE, d.Hyper(eta_theta=eta), d.State(W0, None), 120.0, ts=ts,
                     solver="tsit5", rtol=1e-10, atol=1e-13)
    assert int(sol.status) == 0
    noisy = [float(jnp.linalg.norm(W @ jnp.eye(3)[2])) for W in sol.ys.enc]
    assert noisy[0] > noisy[1] > noisy[2]
    u = np.sort(np.linalg.eigvalsh(np.asarray(sol.ys.enc[-1].T @ sol.ys.enc[-1])))[::-1]
    want = np.asarray(InfoNCELinear.mode_fixed_point(GAMMA, SIG, TAU, eta))
    assert want[2] == 0.0
    # the surviving modes converge at rates >= 0.5 by t = 120: 1e-8 is far above e^-60; the
    # collapsing one decays at 2 eta - 4 gamma_3/tau = 0.31: below 1e-12 by then
    np.testing.assert_allclose(u[:2], want[:2], rtol=1e-8)
    assert u[2] < 1e-12


def test_fixed_points_without_decay_and_the_threshold_2_gamma_over_tau():
    m = InfoNCELinear(X, XP, TAU)
    W0 = 0.5 * jax.random.normal(jax.random.PRNGKey(5), (3, 3))
    # the same save times and tolerances as above: one compiled solver serves both
    sol = solve_flow(m, INFONCE, d.Hyper(), d.State(W0, None), 300.0,
                     ts=jnp.array([0.0, 5.0, 300.0]), solver="tsit5", rtol=1e-10, atol=1e-13)
    u = np.sort(np.linalg.eigvalsh(np.asarray(sol.ys.enc[-1].T @ sol.ys.enc[-1])))[::-1]
    want = np.asarray(InfoNCELinear.mode_fixed_point(GAMMA, SIG, TAU))
    np.testing.assert_allclose(u, want, rtol=1e-7)  # slowest rate 0.06: e^-18 by t = 300
    # the slope of one mode at u = 0 is -gamma/tau, so the mode grows iff eta < 2 gamma/tau
    slope0 = InfoNCELinear.mode_slope(0.0, GAMMA, SIG, TAU)
    np.testing.assert_allclose(slope0, -GAMMA / TAU, rtol=1e-14)
    crit = InfoNCELinear.eta_crit(GAMMA, TAU)
    assert np.all(InfoNCELinear.mode_fixed_point(GAMMA, SIG, TAU, 0.999 * crit) > 0)
    assert np.all(InfoNCELinear.mode_fixed_point(GAMMA, SIG, TAU, crit) < 1e-15)  # rounding


def test_two_balanced_aligned_layers_follow_sigma0_over_sqrt():
    # two layers, W = W2 W1, balanced and aligned: sigma' = lam sigma^3 (1 + delta) with
    # lam = 2 gamma/tau and |delta| <= 1.5 u s^2 / (gamma tau), u = sigma^4 (the slope's
    # change, its derivative being at most 1.5 s^2/tau^2); so
    # |sigma^-2 - closed form^-2| <= 2 lam t max|delta|
    g, s2, tau = jnp.array([1.0, 0.5]), 0.5, 1.0
    m = InfoNCELinear(jnp.diag(g), s2 * jnp.eye(2), tau, layers=2)
    s0 = 0.2
    W1 = W2 = s0 * jnp.eye(2)
    lam = 2 * g / tau
    t1 = 0.95 * (1 / s0**2 - 1 / 0.3**2) / (2 * lam[0])  # mode 1 stays below sigma = 0.3
    ts = jnp.linspace(0.0, t1, 6)
    sol = solve_flow(m, INFONCE, d.Hyper(), d.State((W1, W2), None), float(t1), ts=ts,
                     solver="tsit5", rtol=1e-11, atol=1e-14)
    W1t, W2t = sol.ys.enc
    sig = np.stack([np.diagonal(a) for a in np.asarray(W1t)])
    # balancedness W1 W1^T - W2^T W2 is conserved by any two-layer gradient flow
    bal = np.einsum("tij,tkj->tik", W1t, W1t) - np.einsum("tji,tjk->tik", W2t, W2t)
    np.testing.assert_allclose(bal, 0.0, atol=1e-12)
    np.testing.assert_allclose(sig, np.stack([np.diagonal(a) for a in np.asarray(W2t)]), atol=1e-12)
    want = np.asarray(InfoNCELinear.two_layer_solution(s0, lam[None], ts[:, None]))
    s = np.asarray(g) + s2
    delta = 1.5 * sig[-1] ** 4 * s**2 / (np.asarray(g) * tau)
    bound = 2 * np.asarray(lam) * np.asarray(ts)[:, None] * delta
    err = np.abs(sig**-2 - want**-2)
    assert np.all(err <= bound + 1e-9)
    # it did grow (sigma^-2 fell by 10 % and more): the check is not on a resting state
    assert np.all(sig[-1] > 1.1 * s0)


def test_bad_infonce_values_are_one_line_errors():
    with pytest.raises(ValueError, match=r"tau must be a finite number > 0, got -1.0"):
        InfoNCELinear(X, XP, -1.0)
    with pytest.raises(ValueError, match=r"tau must be a finite number > 0, got 0"):
        InfoNCELinear(X, XP, 0)
    with pytest.raises(ValueError, match=r"layers must be 1 or 2, got 3"):
        InfoNCELinear(X, XP, 1.0, layers=3)


# --- MoCo ------------------------------------------------------------------------------------

def _moco_state(w, Q):
    W = jnp.atleast_2d(jnp.asarray(w))
    return SlotState(W, None, W, {"queue": jnp.broadcast_to(W, (Q,) + W.shape)})


@pytest.mark.parametrize("Q, r, beta, eta", [(3, 2.0, 0.3, 0.2), (8, 1.0, 5.0, 0.0)])
def test_moco_mode_spectrum_is_the_jacobian_at_the_fixed_point(Q, r, beta, eta):
    # one mode (n1 = 1): the whole Jacobian is the mode's; the closed form's roots of the
    # characteristic polynomial against autodiff's Jacobian (conditioning of roots: 1e-9)
    g, s2, tau = 1.0, 0.5, 0.5
    m = MoCoLinear(jnp.array([[g]]), jnp.array([[s2]]), tau, Q, r)
    u = float(MoCoLinear.mode_fixed_point(g, s2, tau, eta))
    y = _moco_state(np.sqrt(u), Q)
    h = d.Hyper(eta_theta=eta, beta=beta)
    assert float(jnp.max(jnp.abs(field(m, MOCO, h, y).enc))) < 1e-13
    J = jax.jit(d.jacobian_matrix, static_argnums=1)(m, MOCO, h, y)  # one compile, not many
    ev = np.sort_complex(np.linalg.eigvals(np.asarray(J)))
    np.testing.assert_allclose(ev, MoCoLinear.mode_spectrum(g, s2, tau, eta, beta, Q, r),
                               atol=1e-9)


def test_moco_long_queue_with_fast_keys_leaves_the_fixed_point():
    # the spectrum says: queue 8 at beta = 10 unstable, at beta = 0.1 (slow momentum) stable
    g, s2, tau = 1.0, 0.5, 0.5
    lam = {b: MoCoLinear.mode_spectrum(g, s2, tau, 0.0, b, 8, 1.0).real.max() for b in (0.1, 10.0)}
    assert lam[10.0] > 0.01 and lam[0.1] < -0.01
    m = MoCoLinear(jnp.array([[g]]), jnp.array([[s2]]), tau, 8, 1.0)
    w = float(np.sqrt(MoCoLinear.mode_fixed_point(g, s2, tau)))
    y = _moco_state(w, 8)
    y = y._replace(enc=y.enc * (1 + 1e-4))
    for b, grows in ((10.0, True), (0.1, False)):
        sol = solve_flow(m, MOCO, d.Hyper(beta=b), y, 300.0, solver="tsit5", rtol=1e-10,
                         atol=1e-13)
        dev = abs(float(sol.ys.enc[-1, 0, 0]) - w)
        # e^{300 lam}: > e^3 for the unstable, < e^-3 for the stable one
        assert (dev > 1e-4 * w * 10) if grows else (dev < 1e-4 * w / 10)


def test_moco_momentum_limits():
    m = MoCoLinear(X, XP, TAU, 2, 1.0)
    # momentum -> 0 (keys = queries): at small W a mode grows at gamma/tau - eta, half of
    # InfoNCE's 2 gamma/tau - eta (no gradient through the keys)
    eps_w, eta = 1e-7, 0.1
    y = _moco_state(eps_w * jnp.eye(3), 2)
    f = field(m, MOCO, d.Hyper(eta_theta=eta, beta=1.0), y).enc
    np.testing.assert_allclose(jnp.diagonal(f) / eps_w, GAMMA / TAU - eta, rtol=1e-6)
    fi = field(InfoNCELinear(X, XP, TAU), INFONCE, d.Hyper(eta_theta=eta),
                        d.State(eps_w * jnp.eye(3), None)).enc
    np.testing.assert_allclose(jnp.diagonal(fi) / eps_w, 2 * GAMMA / TAU - eta, rtol=1e-6)
    # momentum -> 1 (beta = 0): frozen keys; W goes to the closed-form regression on them
    Wk = jax.random.normal(jax.random.PRNGKey(7), (3, 3))
    y = SlotState(0.1 * Wk.T, None, Wk, {"queue": jnp.broadcast_to(Wk, (2, 3, 3))})
    sol = solve_flow(m, MOCO, d.Hyper(eta_theta=0.05, beta=0.0), y, 200.0, solver="tsit5",
                     rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sol.ys.enc[-1], m.frozen_key_solution(Wk, 0.05), atol=1e-8)
    np.testing.assert_allclose(sol.ys.tgt[-1], Wk, atol=0)


def test_moco_queue_step_is_a_fifo_push_and_sampled_loss_matches_the_flow():
    m = MoCoLinear(X, XP, TAU, 3, 100.0)
    ks = jax.random.split(jax.random.PRNGKey(9), 5)
    W, Wk = (jax.random.normal(k, (3, 3)) for k in ks[:2])
    K = jax.random.normal(ks[2], (3, 3, 3))
    y = SlotState(W, None, Wk, {"queue": K})
    y1 = d.gd_step(m, MOCO, d.Hyper(beta=1.0), y, lr=0.01)  # r lr = 1
    want = jnp.concatenate([Wk[None], K[:2]])
    np.testing.assert_allclose(y1.aux["queue"], want, rtol=0, atol=1e-15)
    # equal queue entries: the sampled loss less log(#negatives) against the large-batch one
    W = 0.4 * W
    y = _moco_state(0.0, 3)._replace(enc=W, tgt=W, aux={"queue": jnp.broadcast_to(W, (3, 3, 3))})
    B = 800
    loss = jax.jit(lambda b: m.loss(W, None, W, b, y.aux))
    vals = [float(loss(m.sample(jax.random.fold_in(ks[3], k), B)))
            - np.log(3 * (B - 1)) for k in range(4)]
    # four independent batches: 6 standard errors of their mean (the positive term's spread
    # dominates), plus the O(1/B) bias of a log of a sample mean
    se = np.std(vals, ddof=1) / 2
    assert abs(np.mean(vals) - float(m.expected_loss(W, None, W, y.aux))) < 6 * se + 2.0 / B
    assert se < 0.05  # the check has teeth: a term missing from the flow would be O(0.1-1)


def test_bad_moco_values_are_one_line_errors():
    with pytest.raises(ValueError, match=r"queue must be an integer >= 1, got 0"):
        MoCoLinear(X, XP, 1.0, 0)
    with pytest.raises(ValueError, match=r"queue must be an integer >= 1, got 2.5"):
        MoCoLinear(X, XP, 1.0, 2.5)
    with pytest.raises(ValueError, match=r"tau must be a finite number > 0, got -0.5"):
        MoCoLinear(X, XP, -0.5, 1)
    with pytest.raises(ValueError, match=r"push_rate must be a finite number > 0, got 0"):
        MoCoLinear(X, XP, 1.0, 1, 0)
    with pytest.raises(ValueError, match=r"queue = 4 reads more key encoders than the queue "
                                         r"slot holds \(2\)"):
        d.vector_field(MoCoLinear(X, XP, 1.0, 4), MOCO, d.Hyper(), _moco_state(jnp.eye(3), 2))
