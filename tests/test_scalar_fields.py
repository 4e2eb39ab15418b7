"""The autodiff vector field, update rule and Jacobian against hand-written closed forms.

Tolerances: both sides are a handful of float64 operations on O(1) numbers, so they agree to a
few ulps; 1e-12 absolute leaves a margin of ~1e3 ulps and still fails on any wrong term
(the smallest term here is ~1e-3).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.flow import State, Variant, initial_state
from tests.oracles import p_pm, scalar_field, scalar_gd_step

TOL = 1e-12
# fixed sample points (their own generator: no test's inputs depend on which tests ran before)
POINTS = np.random.default_rng(0).uniform(-1.5, 1.5, size=(6, 3))
HYPERS = [
    dict(sigma2=0.5, eps=1.0, eta_theta=0.05, eta_phi=0.05, beta=1.0),
    dict(sigma2=0.2, eps=0.01, eta_theta=0.1, eta_phi=0.001, beta=0.4),
    dict(sigma2=0.0, eps=3.0, eta_theta=0.0, eta_phi=0.0, beta=2.0),
]


def _field(variant, hp, point):
    model = d.ScalarSiamese(sigma2=hp["sigma2"])
    hyper = d.Hyper(eps=hp["eps"], eta_theta=hp["eta_theta"], eta_phi=hp["eta_phi"], beta=hp["beta"])
    th, ph, ta = point
    y = initial_state(variant, jnp.asarray(th), jnp.asarray(ph), jnp.asarray(ta))
    return model, hyper, y


@pytest.mark.parametrize("name", list(d.VARIANTS))
def test_vector_field_matches_closed_form(name):
    variant = d.VARIANTS[name]
    for hp, point in itertools.product(HYPERS, POINTS):
        model, hyper, y = _field(variant, hp, point)
        got = d.vector_field(model, variant, hyper, y)
        want = scalar_field(*point, **hp, target=variant.target, stop_grad=variant.stop_grad)
        np.testing.assert_allclose(got.enc, want[0], rtol=0, atol=TOL)
        np.testing.assert_allclose(got.pred, want[1], rtol=0, atol=TOL)
        if variant.has_target:
            np.testing.assert_allclose(got.tgt, want[2], rtol=0, atol=TOL)
        else:
            assert got.tgt is None


@pytest.mark.parametrize("name", list(d.VARIANTS))
def test_jacobian_matches_closed_form(name):
    """The Jacobian implicit solvers and stability analyses use is the true one.

    The oracle is the Jacobian of the hand-written field (forward-mode AD of plain arithmetic,
    checked once more against central finite differences with h = 1e-6, error O(h^2) ~ 1e-11).
    """
    variant = d.VARIANTS[name]
    for hp, point in itertools.product(HYPERS, POINTS[:3]):
        model, hyper, y = _field(variant, hp, point)
        got = np.asarray(d.jacobian_matrix(model, variant, hyper, y))
        n = 3 if variant.has_target else 2

        def oracle(z):
            th, ph = z[0], z[1]
            ta = z[2] if n == 3 else point[2]
            out = scalar_field(th, ph, ta, **hp, target=variant.target, stop_grad=variant.stop_grad)
            return jnp.stack([o for o in out if o is not None])

        z0 = jnp.asarray(point[:n])
        want = np.asarray(jax.jacfwd(oracle)(z0))
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * max(1.0, 1.0 / hp["eps"]))
        h = 1e-6
        fd = np.stack([(oracle(z0 + h * e) - oracle(z0 - h * e)) / (2 * h) for e in np.eye(n)], 1)
        np.testing.assert_allclose(want, fd, rtol=0, atol=1e-6 * max(1.0, 1.0 / hp["eps"]))


def test_stop_gradient_inside_the_field_breaks_the_jacobian():
    """Why the package writes the stop-gradient as a partial derivative (DESIGN.md).

    A field built with ``lax.stop_gradient`` on the target has the right values but loses the
    target path in its Jacobian; the package's Jacobian keeps it.
    """
    model, v = d.ScalarSiamese(0.5), d.VARIANTS["simsiam"]
    hyper = d.Hyper(eps=0.01, eta_theta=0.1, eta_phi=0.1)

    def sg_field(z):
        th, ph = z
        g = jax.grad(lambda t, p: model.expected_loss(t, p, jax.lax.stop_gradient(t)), (0, 1))(th, ph)
        return jnp.stack([-(g[0] + 0.1 * th), -(g[1] + 0.1 * ph) / 0.01])

    z = jnp.array([0.7, 0.3])
    j_ours = d.jacobian_matrix(model, v, hyper, State(z[0], z[1]))
    j_sg = jax.jacfwd(sg_field)(z)
    np.testing.assert_allclose(sg_field(z), jnp.stack(d.vector_field(model, v, hyper, State(z[0], z[1]))[:2]), atol=TOL)
    # d(phi')/d(theta) misses theta_a's share, theta * 1/eps = 70: the number DESIGN.md quotes
    assert abs(j_ours[1, 0] - j_sg[1, 0]) == pytest.approx(0.7 / 0.01, rel=1e-12)


def test_no_predictor_stop_gradient_is_half_the_full_gradient():
    """docs/theory.md 2: with phi == 1, E[grad] under stop-grad is half the no-stop-grad one, and the
    stop-grad flow is theta' = -(sigma2 + eta) theta."""
    model = d.ScalarSiamese(sigma2=0.3, predictor="none")
    for th in (0.4, -1.3, 2.0):
        y = State(jnp.asarray(th), jnp.asarray(0.37))  # phi ignored: no predictor
        g_sg = d.loss_gradients(model, d.VARIANTS["simsiam"], y)
        g_full = d.loss_gradients(model, d.VARIANTS["simsiam-nosg"], y)
        np.testing.assert_allclose(g_sg.enc, 0.5 * g_full.enc, rtol=1e-14)
        f = d.vector_field(model, d.VARIANTS["simsiam"], d.Hyper(eta_theta=0.02), y)
        np.testing.assert_allclose(f.enc, -(0.3 + 0.02) * th, rtol=1e-14)
        assert f.pred == 0.0  # the identity predictor does not move


def test_su_post_flows_are_the_fields_at_zero_noise():
    """Su (2020) writes, for the loss 1/2 (phi theta - theta)^2, the stop-gradient flow
    theta' = -(phi theta - theta) phi, phi' = -(phi theta - theta) theta, and without
    stop-gradient theta' = -(phi theta - theta)(phi - 1) (docs/theory.md 2). These are the autodiff
    fields at sigma2 = 0, eta = 0, eps = 1."""
    model, hyper = d.ScalarSiamese(sigma2=0.0), d.Hyper(eps=1.0)
    for th, ph in np.random.default_rng(1).uniform(-2, 2, size=(5, 2)):
        y = State(jnp.asarray(th), jnp.asarray(ph))
        r = ph * th - th
        sg = d.vector_field(model, d.VARIANTS["simsiam"], hyper, y)
        nosg = d.vector_field(model, d.VARIANTS["simsiam-nosg"], hyper, y)
        np.testing.assert_allclose(sg.enc, -r * ph, atol=TOL)
        np.testing.assert_allclose(nosg.enc, -r * (ph - 1.0), atol=TOL)
        np.testing.assert_allclose(sg.pred, -r * th, atol=TOL)
        np.testing.assert_allclose(nosg.pred, -r * th, atol=TOL)


def test_su_post_experiment_limits():
    """Su's experiment (docs/theory.md 2): both flows from theta = 0.1, phi = 0.6. With stop-gradient
    theta^2 - phi^2 is conserved, so phi -> 1 and theta -> sqrt(0.65); without it
    theta^2 - (phi - 1)^2 = -0.15 is conserved, theta collapses (theta(200) < 1e-13) and
    phi -> 1 - sqrt(0.15). Tsit5 at rtol 1e-10: observed errors in the limits and drifts of the
    conserved quantities are below 1e-10, so 1e-8 is a safe margin that still fails on a wrong
    flow (the two flows' limits differ by 0.2)."""
    from dynamics.solve import solve_flow

    model, hyper = d.ScalarSiamese(sigma2=0.0), d.Hyper(eps=1.0)
    y0 = State(jnp.asarray(0.1), jnp.asarray(0.6))
    ts = jnp.linspace(0.0, 200.0, 201)
    kw = dict(ts=ts, solver="tsit5", rtol=1e-10, atol=1e-16, max_steps=100_000)
    sg = solve_flow(model, d.VARIANTS["simsiam"], hyper, y0, 200.0, **kw)
    nosg = solve_flow(model, d.VARIANTS["simsiam-nosg"], hyper, y0, 200.0, **kw)
    th, ph = np.asarray(sg.ys.enc), np.asarray(sg.ys.pred)
    assert abs(th[-1] - np.sqrt(0.65)) < 1e-8 and abs(ph[-1] - 1.0) < 1e-8
    assert np.max(np.abs(th**2 - ph**2 - (0.01 - 0.36))) < 1e-8
    th, ph = np.asarray(nosg.ys.enc), np.asarray(nosg.ys.pred)
    assert 0.0 < th[-1] < 1e-13
    assert abs(ph[-1] - (1.0 - np.sqrt(0.15))) < 1e-8
    assert np.max(np.abs(th**2 - (ph - 1.0) ** 2 + 0.15)) < 1e-8


def test_invariant_law_with_decay_in_the_loss():
    """With eta_phi = eta (decay in the loss), I = phi^2 - alpha_p theta^2 obeys
    dI/dt = -2 alpha_p eta (phi^2 - theta^2) (docs/theory.md 2) at every point."""
    model = d.ScalarSiamese(0.5)
    for eps, eta in ((1.0, 0.05), (0.25, 0.1), (0.01, 0.02)):
        hyper = d.Hyper.loss_decay(eta, eps)
        for th, ph in np.random.default_rng(2).uniform(-1.5, 1.5, size=(4, 2)):
            f = d.vector_field(model, d.VARIANTS["simsiam"], hyper, State(jnp.asarray(th), jnp.asarray(ph)))
            dI = 2 * ph * f.pred - 2 / eps * th * f.enc
            np.testing.assert_allclose(dI, -2 / eps * eta * (ph**2 - th**2), atol=1e-10 / eps)


def test_fixed_points_and_spectra_match_closed_forms():
    """p_pm, the vanishing field there, and the Jacobian eigenvalues {-2 eta, 2 eta - p}
    (independent of alpha_p); the origin has {-eta, -eta} (BYOL adds -beta).
    Worked numbers of docs/theory.md 2 (a = 1.5, eta = 0.05): p_+ = 0.612220, p_- = 0.054447."""
    a, eta = 1.5, 0.05
    pp, pm = p_pm(a, eta)
    assert abs(pp - 0.612220) < 5e-7 and abs(pm - 0.054447) < 5e-7
    model = d.ScalarSiamese(a - 1.0)
    for alpha in (1.0, 4.0, 100.0):
        hyper = d.Hyper.tian(eta, alpha)
        for p in (pp, pm):
            y = State(jnp.asarray(p / np.sqrt(alpha)), jnp.asarray(p))
            f = d.vector_field(model, d.VARIANTS["simsiam"], hyper, y)
            assert max(abs(f.enc), abs(f.pred)) < 1e-13 * alpha
            ev = np.sort(np.linalg.eigvals(np.asarray(d.jacobian_matrix(model, d.VARIANTS["simsiam"], hyper, y))).real)
            np.testing.assert_allclose(ev, np.sort([-2 * eta, 2 * eta - p]), atol=1e-10 * alpha)
        y0 = State(jnp.asarray(0.0), jnp.asarray(0.0))
        ev0 = np.linalg.eigvals(np.asarray(d.jacobian_matrix(model, d.VARIANTS["simsiam"], hyper, y0))).real
        np.testing.assert_allclose(np.sort(ev0), [-eta, -eta], atol=1e-12)
        hb = d.Hyper.tian(eta, alpha, beta=0.7)
        yb = State(jnp.asarray(0.0), jnp.asarray(0.0), jnp.asarray(0.0))
        evb = np.linalg.eigvals(np.asarray(d.jacobian_matrix(model, d.VARIANTS["byol"], hb, yb))).real
        np.testing.assert_allclose(np.sort(evb), np.sort([-eta, -eta, -0.7]), atol=1e-12)
    # the worked eigenvalues, printed to 6 decimals
    np.testing.assert_allclose(2 * eta - pp, -0.512220, atol=5e-7)
    np.testing.assert_allclose(2 * eta - pm, 0.045553, atol=5e-7)


def test_saddle_node_at_eta_crit():
    """Non-trivial fixed points lie on the parabola I = 0 (dI/dt = -2 eta I), where the field's
    phi-component is -a phi (phi - p_-)(phi - p_+). Just below eta_crit = 1/(4a) it has two
    roots in (0, 1/a); just above, none: the saddle-node bifurcation."""
    sigma2 = 0.5
    a = 1 + sigma2
    eta_crit = 1 / (4 * a)
    model = d.ScalarSiamese(sigma2)
    phi = np.linspace(1e-4, 1 / a, 20001)

    def phi_dot(eta):
        h = d.Hyper.tian(eta, 1.0)
        f = jax.vmap(lambda p: d.vector_field(model, d.VARIANTS["simsiam"], h, State(p, p)).pred)
        return np.asarray(f(jnp.asarray(phi)))

    for eta in (0.05, 0.1, eta_crit * (1 - 1e-3)):
        vals = phi_dot(eta)
        np.testing.assert_allclose(vals, -a * phi * (phi - p_pm(a, eta)[1]) * (phi - p_pm(a, eta)[0]), atol=1e-13)
        roots = phi[:-1][np.sign(vals[:-1]) != np.sign(vals[1:])]
        assert len(roots) == 2
        np.testing.assert_allclose(np.sort(roots), np.sort(p_pm(a, eta)), atol=2 * (phi[1] - phi[0]))
    assert np.all(phi_dot(eta_crit * (1 + 1e-3)) < 0)


@pytest.mark.parametrize("name", list(d.VARIANTS))
def test_gd_step_matches_hand_written_step(name):
    """One discrete step (expected gradient, and on a sampled minibatch) against the oracle of
    tests/oracles.py: BYOL's EMA has momentum 1 - beta lr and follows the *updated* encoder.
    A few float64 operations on O(1) numbers: 1e-12 as for the field."""
    variant = d.VARIANTS[name]
    rng = np.random.default_rng(10)
    points = rng.uniform(-1.5, 1.5, size=(4, 3))
    for hp, point in itertools.product(HYPERS, points):
        model, hyper, y = _field(variant, hp, point)
        for lr, batch in ((0.05, None), (0.01, model.sample(jax.random.PRNGKey(5), 8))):
            got = d.gd_step(model, variant, hyper, y, lr, batch)
            want = scalar_gd_step(*point, lr, **hp, target=variant.target,
                                  stop_grad=variant.stop_grad, batch=batch)
            np.testing.assert_allclose(got.enc, want[0], rtol=0, atol=TOL)
            np.testing.assert_allclose(got.pred, want[1], rtol=0, atol=TOL)
            if variant.has_target:
                np.testing.assert_allclose(got.tgt, want[2], rtol=0, atol=TOL)
