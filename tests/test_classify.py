"""The sweep's collapse rule (dynamics.classify) on states whose fate is known in closed form.

Cases every other test misses: at eta = 0 the encoder collapses while the predictor stays away
from 0 (theta = 0, phi != 0), so a rule that looked at phi instead of theta would mislabel them;
and a run parked on a saddle's stable manifold (the basin boundary) must stay undecided.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dynamics as d
from dynamics.classify import classify_batch
from dynamics.flow import State
from dynamics.solve import engine
from tests.oracles import p_pm, scalar_field

SIMSIAM, NOSG = d.VARIANTS["simsiam"], d.VARIANTS["simsiam-nosg"]
NON_COLLAPSED, COLLAPSED, UNDECIDED = 0, 1, 2


def _classify(model, variant, hyper, theta, phi, status=None):
    y = State(jnp.asarray(theta, float), jnp.asarray(phi, float))
    status = jnp.zeros(len(theta), jnp.int8) if status is None else jnp.asarray(status)
    return {k: np.asarray(v) for k, v in classify_batch(model, variant, hyper, y, status).items()}


def test_eta_zero_fixed_lines_are_labelled_by_the_encoder():
    """eta = 0 (docs/theory.md 2): two lines of fixed points, theta = 0 (collapsed, whatever phi is)
    and phi = 1/a (not collapsed, whatever theta != 0 is). The field vanishes exactly there."""
    sigma2 = 0.5
    a = 1 + sigma2
    model, hyper = d.ScalarSiamese(sigma2), d.Hyper.tian(0.0, 1.0)
    phis = [1.2, 0.9, 0.3, -0.5, 2.0]
    c = _classify(model, SIMSIAM, hyper, [0.0] * 5, phis)
    assert np.all(c["fnorm"] == 0.0) and np.all(c["converged"])
    np.testing.assert_array_equal(c["outcome"], [COLLAPSED] * 5)
    c = _classify(model, SIMSIAM, hyper, [0.4, -0.9, 1.5], [1 / a] * 3)
    assert np.all(c["fnorm"] < 1e-15)
    np.testing.assert_array_equal(c["outcome"], [NON_COLLAPSED] * 3)


@pytest.fixture(scope="module")
def su_runs():
    """Su's experiment (docs/theory.md 2): sigma2 = eta = 0, theta(0) = 0.1, phi(0) = 0.6, t = 200."""
    model, hyper = d.ScalarSiamese(0.0), d.Hyper(eps=1.0)
    y0 = State(jnp.asarray([0.1]), jnp.asarray([0.6]))
    out = {}
    for v in (SIMSIAM, NOSG):
        sol = engine.flow_batch(model, v, hyper, y0, t1=200.0, rtol=1e-10, atol=1e-14)
        y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
        out[v.name] = y, {k: np.asarray(val) for k, val in
                          classify_batch(model, v, hyper, y, sol.status).items()}
    return out


def test_su_run_without_stop_gradient_collapses_with_phi_away_from_zero(su_runs):
    """theta^2 - (phi - 1)^2 = -0.15 is conserved, so theta -> 0 while phi -> 1 - sqrt(0.15):
    a collapsed state with |phi| = 0.61. At t = 200 theta ~ 0.1 exp(-0.15 * 200) ~ 1e-14
    (observed 1e-14); phi is off by 6e-14 (observed). The tolerance 1e-9 is ten times the
    run's rtol of 1e-10, the most its global error should reach."""
    y, c = su_runs["simsiam-nosg"]
    assert abs(float(y.enc[0])) < 1e-12
    np.testing.assert_allclose(float(y.pred[0]), 1 - np.sqrt(0.15), atol=1e-9, rtol=0)
    assert c["outcome"][0] == COLLAPSED and c["collapsed"][0]


def test_su_run_with_stop_gradient_survives(su_runs):
    """theta^2 - phi^2 is conserved, phi -> 1: theta -> sqrt(0.65) (not collapsed). The approach
    to the line phi = 1 is exponential (rate theta^2 = 0.65 there), so at t = 200 only
    the run's error is left: 3e-11 observed, tolerance 1e-9 (ten times rtol, as above)."""
    y, c = su_runs["simsiam"]
    np.testing.assert_allclose([float(y.enc[0]), float(y.pred[0])], [np.sqrt(0.65), 1.0], atol=1e-9, rtol=0)
    assert c["outcome"][0] == NON_COLLAPSED


def test_lane_on_the_saddle_stable_manifold_stays_undecided():
    """docs/theory.md 2 (Tian convention, a = 1.5, eta = 0.05, alpha_p = 1): the saddle (p_-, p_-)
    has eigenvalues -0.1 and +0.0456; its stable manifold is the collapse-basin boundary.

    Points on that manifold are computed independently of the package: scipy integrates the
    hand-written field *backwards* from the saddle plus 1e-8 along the stable eigenvector (in
    backward time the manifold attracts, so the point is accurate to ~1e-12), to distance 0.3.
    Forward from there, the engine (rtol 1e-10) ends at t = 200 within ~1e-8 of the saddle:
    the gradient residual (~5e-10 observed) is below ftol = 1e-6, so the run counts as
    converged, and the only thing that keeps it undecided is the saddle exclusion. The saddle
    itself is a lane too. Starts 1e-3 off the manifold on either side are decided by scipy: one
    collapses, the other reaches p_+ (so the manifold really is the boundary)."""
    sigma2, eta = 0.5, 0.05
    pp, pm = p_pm(1 + sigma2, eta)
    kw = dict(sigma2=sigma2, eps=1.0, eta_theta=eta, eta_phi=eta, beta=1.0, target="simsiam",
              stop_grad=True)

    def rhs(t, z):
        return np.array(scalar_field(z[0], z[1], None, **kw)[:2])

    saddle = np.array([pm, pm])
    J = np.array(jax.jacfwd(lambda z: jnp.stack(scalar_field(z[0], z[1], None, **kw)[:2]))(
        jnp.asarray(saddle)))
    w, V = np.linalg.eig(J)
    np.testing.assert_allclose(np.sort(w.real), [-2 * eta, 2 * eta - pm], atol=1e-12, rtol=0)
    v_s = V[:, np.argmin(w.real)].real

    def far(t, z):
        return np.hypot(*(z - saddle)) - 0.3

    far.terminal = True
    starts = [saddle]
    for sign in (1.0, -1.0):
        back = solve_ivp(lambda t, z: -rhs(t, z), (0, 400), saddle + sign * 1e-8 * v_s,
                         rtol=1e-13, atol=1e-16, events=far)
        assert back.status == 1  # reached distance 0.3
        starts.append(back.y[:, -1])
    starts = np.array(starts)

    model, hyper = d.ScalarSiamese(sigma2), d.Hyper.tian(eta, 1.0)
    y0 = State(jnp.asarray(starts[:, 0]), jnp.asarray(starts[:, 1]))
    sol = engine.flow_batch(model, SIMSIAM, hyper, y0, t1=200.0, rtol=1e-10, atol=1e-12)
    y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
    c = {k: np.asarray(v) for k, v in classify_batch(model, SIMSIAM, hyper, y, sol.status).items()}
    # observed: within 1.1e-8 of the saddle, lam_max within 1.4e-8 of 2 eta - p_-
    np.testing.assert_allclose(np.stack([y.enc, y.pred], 1), np.tile(saddle, (3, 1)), atol=1e-7, rtol=0)
    assert np.all(c["converged"]), c["fnorm"]
    assert np.all(c["fnorm"] < 1e-7), c["fnorm"]  # observed ~5e-10
    np.testing.assert_allclose(c["lam_max"], 2 * eta - pm, atol=1e-7, rtol=0)
    np.testing.assert_array_equal(c["outcome"], [UNDECIDED] * 3)
    assert not np.any(c["decided"])

    # the manifold separates the basins: nudge the far start across it both ways
    normal = np.array([-(starts[1] - saddle)[1], (starts[1] - saddle)[0]])
    normal /= np.linalg.norm(normal)
    ends = [solve_ivp(rhs, (0, 800), starts[1] + s * 1e-3 * normal, rtol=1e-10, atol=1e-13).y[:, -1]
            for s in (1.0, -1.0)]
    fates = sorted("collapsed" if abs(z[0]) < 1e-3 else
                   ("p+" if abs(z[1] - pp) < 1e-6 and abs(abs(z[0]) - pp) < 1e-6 else "?")
                   for z in ends)
    assert fates == ["collapsed", "p+"], ends


def test_tian_survivors_at_tiny_eps_are_not_collapsed():
    """Tian's convention at eps = 1e-6 (eta = 0.15, sigma2 = 0.5): the stable non-trivial fixed
    point is theta* = sqrt(eps) p_+ = 4.39e-4 (docs/theory.md 4), below the default
    collapse_tol 1e-3 of a fixed |theta| threshold. The rule is scale-free, so it labels that
    point non-collapsed and the origin collapsed, both exactly at a zero of the field."""
    sigma2, eta, eps = 0.5, 0.15, 1e-6
    p_plus, _ = p_pm(1 + sigma2, eta)
    theta_star = np.sqrt(eps) * p_plus
    assert theta_star < 1e-3
    model, hyper = d.ScalarSiamese(sigma2), d.Hyper.tian(eta, 1.0 / eps)
    c = _classify(model, SIMSIAM, hyper, [theta_star, -theta_star, 0.0], [p_plus, p_plus, 0.3])
    assert np.all(c["converged"]), c["fnorm"]
    np.testing.assert_array_equal(c["outcome"], [NON_COLLAPSED, NON_COLLAPSED, COLLAPSED])


def test_tian_sweep_at_tiny_eps_is_the_eps_one_sweep_rescaled():
    """The scaling symmetry (docs/theory.md 2): in Tian's convention trajectories of
    (phi, theta^2 / eps) do not depend on eps. So the sweep at eps = 1e-6 over theta0 in
    +-1e-3 must label every lane as the sweep at eps = 1 over theta0 in +-1 does (observed:
    26 of 64 survive in both), and its survivors must end at the closed form sqrt(eps) p_+
    (the flow runs at rtol 1e-8, so 1e-6 relative is ample; observed 3e-10). A fixed
    threshold of 1e-3 on |theta| called all 26 collapsed."""
    from dynamics.sweep import SweepConfig, run
    from dynamics.sweep.scalar import ScalarOptions

    eps = 1e-6
    kw = dict(variant=("simsiam",), convention="tian", eta=(0.15,), sigma2=(0.5,))
    one = run(SweepConfig(eps=(1.0,), options=ScalarOptions(n=8), **kw))
    tiny = run(SweepConfig(eps=(eps,), options=ScalarOptions(n=8, theta_range=(-1e-3, 1e-3)),
                           **kw))
    o1, o2 = one["outcome"].values.ravel(), tiny["outcome"].values.ravel()
    np.testing.assert_array_equal(o2, o1)
    alive = o2 == NON_COLLAPSED
    assert 0 < alive.sum() < alive.size
    p_plus, _ = p_pm(1.5, 0.15)
    np.testing.assert_allclose(np.abs(tiny["theta"].values.ravel()[alive]),
                               np.sqrt(eps) * p_plus, rtol=1e-6)
