"""Integrated trajectories of the scalar models against closed forms and a different solver."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dynamics as d
from dynamics.classify import Criterion, classify
from dynamics.flow import State, initial_state
from dynamics.solve import STATUS_NONFINITE, STATUS_OK, run_discrete, solve_flow
from dynamics.solve.diffrax_flow import flow_batch
from dynamics.solve.discrete import discrete_batch
from tests.oracles import p_pm, scalar_field, scalar_gd_step

SIMSIAM = d.VARIANTS["simsiam"]


@functools.partial(jax.jit, static_argnames=("variant", "solver", "t1"))
def flow(model, variant, hyper, y0, ts, *, t1, solver="tsit5"):
    return solve_flow(model, variant, hyper, y0, t1, ts=ts, solver=solver, rtol=1e-10,
                      atol=1e-12, max_steps=200_000)


def test_invariant_decays_exactly_along_trajectories():
    """Tian convention: I = phi^2 - alpha_p theta^2 = I0 exp(-2 eta t) (docs/theory.md 2).

    The solver runs at rtol 1e-10; the invariant is a smooth function of O(1) states, so its
    error stays within ~1e-8 over t = 20 (observed ~1e-10)."""
    model = d.ScalarSiamese(0.5)
    ts = jnp.linspace(0.0, 20.0, 41)
    for alpha, eta, (th, ph) in ((1.0, 0.05, (0.8, -0.4)), (2.5, 0.1, (-1.2, 0.9)), (0.5, 0.0, (0.3, 1.4))):
        hyper = d.Hyper.tian(eta, alpha)
        sol = flow(model, SIMSIAM, hyper, State(jnp.asarray(th), jnp.asarray(ph)), ts, t1=20.0)
        assert int(sol.status) == STATUS_OK
        inv = sol.ys.pred**2 - alpha * sol.ys.enc**2
        np.testing.assert_allclose(inv, (ph**2 - alpha * th**2) * np.exp(-2 * eta * ts), atol=1e-8)


def test_stiff_predictor_eps_small_with_implicit_solver():
    """eps = 0.01 and eps = 1e-4 both integrate: the invariant law holds (the Tian convention
    keeps it exact for any eps), and the end state matches scipy's Radau on the hand-written
    field at rtol 1e-11 (agreement to 1e-7: both solvers' global errors are ~1e-9 here)."""
    model = d.ScalarSiamese(0.5)
    ts = jnp.linspace(0.0, 10.0, 11)
    eta = 0.05
    for eps in (1e-2, 1e-4):
        hyper = d.Hyper.tian(eta, 1.0 / eps)
        th, ph = 0.9 * np.sqrt(eps), 0.2
        sol = flow(model, SIMSIAM, hyper, State(jnp.asarray(th), jnp.asarray(ph)), ts, t1=10.0,
                   solver="kvaerno5")
        assert int(sol.status) == STATUS_OK
        inv = sol.ys.pred**2 - sol.ys.enc**2 / eps
        np.testing.assert_allclose(inv, (ph**2 - th**2 / eps) * np.exp(-2 * eta * ts), atol=1e-7)

        def rhs(t, z):
            return scalar_field(z[0], z[1], None, sigma2=0.5, eps=eps, eta_theta=eta,
                                eta_phi=eps * eta, beta=1.0, target="simsiam", stop_grad=True)[:2]

        ref = solve_ivp(rhs, (0, 10.0), [th, ph], method="Radau", rtol=1e-11, atol=1e-14)
        np.testing.assert_allclose([sol.ys.enc[-1], sol.ys.pred[-1]], ref.y[:, -1], atol=1e-7)


def test_alpha_p_scaling_symmetry():
    """Trajectories of (phi, alpha_p theta^2) do not depend on alpha_p (Tian convention)."""
    model = d.ScalarSiamese(0.5)
    ts = jnp.linspace(0.0, 15.0, 31)
    s0, ph0, eta = 0.6, 0.25, 0.05
    curves = []
    for alpha in (1.0, 3.0, 10.0):
        sol = flow(model, SIMSIAM, d.Hyper.tian(eta, alpha),
                   State(jnp.asarray(np.sqrt(s0 / alpha)), jnp.asarray(ph0)), ts, t1=15.0)
        curves.append(np.stack([sol.ys.pred, alpha * sol.ys.enc**2]))
    np.testing.assert_allclose(curves[1], curves[0], atol=1e-7)
    np.testing.assert_allclose(curves[2], curves[0], atol=1e-7)


def test_without_stop_gradient_every_start_collapses():
    """theta' = -theta [(phi-1)^2 + sigma2 (phi^2+1) + eta] and the bracket is >= a - 1/a + eta,
    so |theta(t)| <= |theta0| exp(-(a - 1/a + eta) t) for every start (docs/theory.md 2)."""
    sigma2, eta = 0.5, 0.0
    a = 1 + sigma2
    rate = a - 1 / a + eta
    model = d.ScalarSiamese(sigma2)
    v = d.VARIANTS["simsiam-nosg"]
    ts = jnp.linspace(0.0, 8.0, 17)
    rng = np.random.default_rng(1)
    for th, ph in rng.uniform(-3, 3, size=(8, 2)):
        sol = flow(model, v, d.Hyper.loss_decay(eta, 1.0), State(jnp.asarray(th), jnp.asarray(ph)), ts, t1=8.0)
        bound = abs(th) * np.exp(-rate * np.asarray(ts))
        assert np.all(np.abs(sol.ys.enc) <= bound * (1 + 1e-7) + 1e-12)
        # and the loss-plus-decay function is a Lyapunov function of this gradient flow
        V = jax.vmap(lambda t_, p_: model.expected_loss(t_, p_, t_))(sol.ys.enc, sol.ys.pred)
        assert np.all(np.diff(np.asarray(V)) <= 1e-10)


def test_collapse_threshold_on_the_invariant_parabola():
    """On I = 0 (eta > 0): phi0 just below p_- collapses, just above goes to p_+ (docs/theory.md 2).
    The classification is the sweep's rule (dynamics.classify)."""
    sigma2, eta, alpha = 0.5, 0.05, 1.0
    a = 1 + sigma2
    pp, pm = p_pm(a, eta)
    model, hyper = d.ScalarSiamese(sigma2), d.Hyper.tian(eta, alpha)
    ts = jnp.array([600.0])
    for factor, expect_collapse in ((0.97, True), (1.03, False)):
        ph0 = factor * pm
        y0 = State(jnp.asarray(ph0 / np.sqrt(alpha)), jnp.asarray(ph0))
        sol = flow(model, SIMSIAM, hyper, y0, ts, t1=600.0)
        y = jax.tree_util.tree_map(lambda x: x[-1], sol.ys)
        c = classify(model, SIMSIAM, hyper, y, sol.status, Criterion())
        assert bool(c["decided"])
        assert bool(c["collapsed"]) == expect_collapse
        if not expect_collapse:
            np.testing.assert_allclose(y.pred, pp, atol=1e-6)


@pytest.mark.parametrize("name", ["simsiam", "byol", "byol-nosg"])
def test_gd_on_expected_loss_converges_to_flow_with_order_one(name):
    """Explicit Euler: global error O(h), BYOL's EMA included (its target follows the updated
    encoder, an O(h^2) change per step). The order fitted over h = 0.02 ... 0.0025 is 1.008
    (SimSiam), 1.000 (BYOL), 1.003 (BYOL without stop-gradient), checked to within 0.05; the
    error constant err/h at the smallest step is 0.065, 0.036, 0.013, checked below 0.1."""
    variant = d.VARIANTS[name]
    model, hyper = d.ScalarSiamese(0.5), d.Hyper.loss_decay(0.05, 0.5, beta=0.7)
    y0 = initial_state(variant, jnp.asarray(0.8), jnp.asarray(0.1), jnp.asarray(0.3))
    T = 4.0
    ref = flow(model, variant, hyper, y0, jnp.array([T]), t1=T)
    errs, hs = [], [0.02, 0.01, 0.005, 0.0025]
    for h in hs:
        sol = run_discrete(model, variant, hyper, y0, h, int(round(T / h)))
        errs.append(max(float(np.abs(a[-1] - b[-1])) for a, b in zip(sol.ys, ref.ys)
                        if a is not None))
    order = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(order - 1.0) < 0.05, (order, errs)
    assert errs[-1] < 0.1 * hs[-1], errs


@pytest.mark.parametrize("name", ["byol", "byol-nosg"])
def test_discrete_byol_follows_the_hand_written_update(name):
    """200 GD steps and 200 SGD steps (minibatches of 8, step k sampled with fold_in(key, k))
    of BYOL against the oracle step iterated in numpy on the same minibatches. Only rounding
    separates them: observed <= 4.4e-16 after 200 steps, checked to 1e-13 (a few hundred ulps)."""
    variant = d.VARIANTS[name]
    sigma2, lr, n = 0.5, 0.02, 200
    hp = dict(sigma2=sigma2, eps=0.5, eta_theta=0.05, eta_phi=0.05, beta=0.7)
    model, hyper = d.ScalarSiamese(sigma2), d.Hyper.loss_decay(0.05, 0.5, beta=0.7)
    y0 = State(jnp.asarray(0.8), jnp.asarray(0.1), jnp.asarray(-0.3))
    key = jax.random.PRNGKey(11)
    x1, x2 = (np.asarray(x) for x in
              jax.vmap(lambda k: model.sample(jax.random.fold_in(key, k), 8))(jnp.arange(n)))
    for batch_size in (None, 8):
        sol = run_discrete(model, variant, hyper, y0, lr, n, batch_size=batch_size, key=key)
        z = (0.8, 0.1, -0.3)
        for k in range(n):
            b = None if batch_size is None else (x1[k], x2[k])
            z = scalar_gd_step(*z, lr, **hp, target="byol", stop_grad=variant.stop_grad, batch=b)
        np.testing.assert_allclose([sol.ys.enc[-1], sol.ys.pred[-1], sol.ys.tgt[-1]], z,
                                   rtol=0, atol=1e-13)


def test_sgd_averaged_over_seeds_approaches_gd():
    """Minibatch SGD is unbiased per step; averaged over 256 seeds its end state is within
    4 standard errors (+ an O(lr) curvature bias allowance of 2e-3) of GD's, and the
    seed-to-seed spread shrinks like 1/sqrt(batch) (ratio 2 for 4x the batch, +-25%)."""
    model, hyper = d.ScalarSiamese(0.5), d.Hyper.loss_decay(0.05, 0.5)
    n, lr, steps = 256, 0.01, 300
    y0 = State(jnp.full(n, 0.8), jnp.full(n, 0.1))
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    gd = run_discrete(model, SIMSIAM, hyper, State(jnp.asarray(0.8), jnp.asarray(0.1)), lr, steps)
    spreads = []
    for batch in (16, 64):
        sol = discrete_batch(model, SIMSIAM, hyper, y0, lr, keys, n_steps=steps, batch_size=batch)
        th = np.asarray(sol.ys.enc[:, -1])
        se = th.std(ddof=1) / np.sqrt(n)
        assert abs(th.mean() - float(gd.ys.enc[-1])) < 4 * se + 2e-3
        spreads.append(th.std(ddof=1))
    assert 1.5 < spreads[0] / spreads[1] < 2.5


def test_same_seed_same_result():
    model, hyper = d.ScalarSiamese(0.5), d.Hyper.loss_decay(0.05, 0.5)
    y0 = State(jnp.full(4, 0.8), jnp.full(4, 0.1))
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    a = discrete_batch(model, SIMSIAM, hyper, y0, 0.01, keys, n_steps=50, batch_size=8)
    b = discrete_batch(model, SIMSIAM, hyper, y0, 0.01, keys, n_steps=50, batch_size=8)
    np.testing.assert_array_equal(a.ys.enc, b.ys.enc)
    c = discrete_batch(model, SIMSIAM, hyper, y0, 0.01, jax.random.split(jax.random.PRNGKey(4), 4),
                       n_steps=50, batch_size=8)
    assert not np.array_equal(a.ys.enc, c.ys.enc)


def test_diverging_lane_is_flagged_and_the_others_kept():
    """A lane that blows up gets status nonfinite; its neighbours are untouched."""

    model = d.ScalarSiamese(0.5)
    # negative weight decay on lane 0 makes theta grow without bound (theta' ~ +theta^3 phi^2 ...)
    hyper = d.Hyper(eps=jnp.array([1.0, 1.0]), eta_theta=jnp.array([-50.0, 0.05]),
                    eta_phi=jnp.array([-50.0, 0.05]))
    y0 = State(jnp.array([1.0, 0.8]), jnp.array([0.5, 0.1]))
    sol = flow_batch(model, SIMSIAM, hyper, y0, t1=50.0, solver="tsit5", rtol=1e-8,
                     atol=1e-10, max_steps=4096)
    assert int(sol.status[0]) != STATUS_OK
    assert int(sol.status[1]) == STATUS_OK
    one = flow(model, SIMSIAM, d.Hyper.loss_decay(0.05), State(jnp.asarray(0.8), jnp.asarray(0.1)),
               jnp.array([50.0]), t1=50.0)
    np.testing.assert_allclose(sol.ys.enc[1, -1], one.ys.enc[-1], atol=1e-7)
    assert STATUS_NONFINITE == 2
