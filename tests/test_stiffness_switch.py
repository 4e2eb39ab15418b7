"""The engine's per-lane stiffness switch (``auto``): its estimate against the closed form on
the linear test equation, switching lanes against scipy references, and a basin sweep whose
labels do not depend on the switch."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dynamics.flow import VARIANTS, Hyper, State
from dynamics.models import ScalarSiamese
from dynamics.solve import engine, steps
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.scalar import ScalarOptions
from tests.oracles import scalar_field

SIMSIAM = VARIANTS["simsiam"]


@pytest.mark.parametrize("h", [0.05, 0.3, 1.0])
def test_estimate_on_the_linear_test_equation_is_abs_lambda_h(h):
    """y' = lambda y: both last stages of a Dormand-Prince step sit at t + h, so
    k7 - k6 = lambda (y7 - y6) and the estimate is |lambda| h exactly. Observed relative error
    <= 1e-13 for |lambda| h in [0.025, 1000] (rounding in y7 - y6); checked to 1e-10."""
    lam = jnp.array([-0.5, -3.0, -40.0, -1e3, 2.0])
    y = jnp.array([[1.0, -0.3, 2.5, 1e-3, 0.7]])  # (d = 1, lanes = 5)
    f = lambda yy: lam * yy  # noqa: E731
    *_, est = steps.dopri5_step(f, y, f(y), jnp.full(5, h), stiffness=True)
    np.testing.assert_allclose(np.asarray(est), np.abs(np.asarray(lam)) * h, rtol=1e-10)
    # a diagonal system: the estimate is a Rayleigh-type quotient, between the smallest and
    # the largest |lambda| h (here the stiff component dominates y7 - y6)
    L = jnp.array([[-1.0], [-100.0]])
    y2 = jnp.array([[1.0], [0.5]])
    *_, est2 = steps.dopri5_step(lambda yy: L * yy, y2, L * y2, jnp.array([h / 100]),
                                 stiffness=True)
    assert h / 100 * (1 - 1e-12) <= float(est2[0]) <= h * (1 + 1e-12)


T1, TS = 20.0, np.array([0.0, 0.5, 5.0, 20.0])


def _reference(th, ph, eps, eta):
    """scipy at rtol 1e-12: DOP853 for the non-stiff lane, Radau (with the hand-written field,
    tests/oracles.py) for the stiff one; values at ``TS``."""
    kw = dict(sigma2=0.5, eps=eps, eta_theta=eta, eta_phi=eta, beta=1.0,
              target="simsiam", stop_grad=True)

    def rhs(t, y):
        return scalar_field(y[0], y[1], None, **kw)[:2]

    r = solve_ivp(rhs, (0.0, T1), [th, ph], method="DOP853" if eps > 0.1 else "Radau",
                  rtol=1e-12, atol=1e-14, t_eval=TS)
    assert r.success
    return r.y  # (2, len(TS))


def test_switching_lanes_match_scipy_references_in_one_batch():
    """One batch, a non-stiff lane (eps = 1) and stiff lanes (eps = 1e-4), saves before and
    after the switch. The stiff lanes switched: on Dormand-Prince alone they would need at
    least t1 |lambda_fast| / 3.3 >= 20 * (eta / eps) / 3.3 = 9091 steps (|lambda_fast| >=
    eta_phi / eps, docs/theory.md 4), they take less than half of that. Every save agrees
    with scipy's rtol 1e-12 solution to 1e-8, ten times the engine's rtol of 1e-9 (the flow
    contracts, so the global error stays near the tolerance; observed: 1.2e-10)."""
    eps = np.array([1.0, 1e-4, 1e-4])
    eta = 0.15
    th, ph = np.array([0.8, 0.8, -0.4]), np.array([0.1, 0.1, 1.5])
    hyper = Hyper.loss_decay(eta, jnp.asarray(eps), 1.0)
    sol = engine.flow_batch(ScalarSiamese(0.5), SIMSIAM, hyper,
                            State(jnp.asarray(th), jnp.asarray(ph)), t1=T1, ts=TS, rtol=1e-9,
                            atol=1e-11)
    assert np.all(sol.status == 0)
    assert np.all(sol.num_steps[1:] < 9091 / 2), sol.num_steps
    for i in range(eps.size):
        ref = _reference(th[i], ph[i], eps[i], eta)
        np.testing.assert_allclose(sol.ys.enc[i], ref[0], rtol=0, atol=1e-8)
        np.testing.assert_allclose(sol.ys.pred[i], ref[1], rtol=0, atol=1e-8)


def test_chunks_of_switching_and_explicit_lanes_give_the_same_numbers():
    """Lanes that switch and lanes that do not, mixed over chunks of three with two slots:
    the same numbers as one chunk up to rounding (the resumed pool is packed differently)."""
    eps = np.array([1.0, 1e-3, 0.3, 1e-3, 1.0, 1e-2, 1e-3])
    rng = np.random.default_rng(7)
    y0 = State(jnp.asarray(rng.uniform(-1, 1, eps.size)), jnp.asarray(rng.uniform(-1, 2, eps.size)))
    args = (ScalarSiamese(0.5), SIMSIAM, Hyper.loss_decay(0.15, jnp.asarray(eps), 1.0), y0)
    one = engine.flow_batch(*args, t1=T1, rtol=1e-8, atol=1e-10)
    many = engine.flow_batch(*args, t1=T1, rtol=1e-8, atol=1e-10, chunk_size=3, slots=2)
    np.testing.assert_array_equal(many.status, one.status)
    np.testing.assert_array_equal(many.num_steps, one.num_steps)
    np.testing.assert_allclose(many.ys.enc, one.ys.enc, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(many.ys.pred, one.ys.pred, rtol=1e-12, atol=1e-15)


def test_basin_labels_do_not_change_with_the_switch():
    """A small default-style basin sweep (the default eps = 0.01, both default variants, the
    default eta, t1, rtol and grid ranges; 12 x 12 starts): the per-lane switch gives the same
    label on every lane as the method the fixed rule chose there (rodas4 for every lane). At
    the sweep's rtol of 1e-8 the switching lanes continue on rodas5p, so this also compares
    the two Rosenbrock methods' labels."""
    opts = ScalarOptions(n=12)
    auto = run(SweepConfig(options=opts))
    rule = run(SweepConfig(solver="rodas4", options=opts))
    assert (auto["status"].values == "ok").all()
    np.testing.assert_array_equal(auto["outcome"].values, rule["outcome"].values)
    assert "switching per lane to rodas5p" in auto.attrs["solver"]
    # both kinds of end present (SimSiam survives on part of the grid, the variant without
    # stop-gradient collapses everywhere), so both labels are compared
    assert len(np.unique(rule["outcome"].values)) == 2
