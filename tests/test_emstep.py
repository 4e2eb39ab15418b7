"""The EM k-step (a target copied every k steps; docs/theory.md, "EM k-step"): a segmented run
counts steps over the whole run, k h -> 0 recovers SimSiam's flow, and a large k moves the
basin boundary onto |theta0| = p_- (the fixed point of the map on the target)."""

import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.flow import initial_state
from dynamics.solve import run_discrete, solve_flow
from dynamics.sweep.core import run_segments, segments

MODEL = d.ScalarSiamese(sigma2=0.5)
HYPER = d.Hyper.loss_decay(0.15, 1.0)


def test_a_segmented_run_copies_on_the_whole_runs_step_count():
    # 120 steps cut into segments of 22, then 2 each: k = 7 divides neither, so a step index
    # restarted at each segment would copy at other steps than one unsegmented run
    v = d.Variant("byol", True, copy_every=7)
    assert segments(120)[:2] == (22, 2)
    y0 = initial_state(v, jnp.array([0.6, -0.4]), jnp.array([0.3, 1.2]))
    y, status, _ = run_segments(MODEL, v, HYPER, y0, 0.05, None, n_steps=120, batch=None,
                                window=0)
    assert (status == 0).all()
    for i in range(2):
        one = run_discrete(MODEL, v, HYPER, initial_state(v, y0.enc[i], y0.pred[i]), 0.05, 120)
        # the same steps in the same order: equal up to the rounding of a vmapped program
        np.testing.assert_allclose([y.enc[i], y.pred[i], y.tgt[i]],
                                   [one.ys.enc[-1], one.ys.pred[-1], one.ys.tgt[-1]],
                                   rtol=1e-13, atol=1e-15)


def test_copies_every_k_steps_approach_simsiams_flow_as_k_h_shrinks():
    y0 = d.State(jnp.asarray(0.7), jnp.asarray(0.2))
    t1, h = 8.0, 0.002
    ref = solve_flow(MODEL, d.Variant("simsiam"), HYPER, y0, t1, solver="tsit5", rtol=1e-11,
                     atol=1e-13)
    errs = []
    for k in (50, 10, 2):  # k h = 0.1, 0.02, 0.004
        v = d.Variant("byol", True, copy_every=k)
        got = run_discrete(MODEL, v, HYPER, initial_state(v, y0.enc, y0.pred), h, int(t1 / h))
        errs.append(abs(float(got.ys.enc[-1] - ref.ys.enc[-1])))
    # the lag of the target is about k h / 2: the error is first order in k h (plus GD's own
    # O(h) error, which the smallest k leaves); each fivefold cut in k h cuts the error by > 2.5
    assert errs[0] > 2.5 * errs[1] > 6 * errs[2]
    assert errs[0] < 0.1


def test_large_k_moves_the_basin_boundary_to_p_minus():
    from dynamics.sweep import SweepConfig, run
    from dynamics.sweep.scalar import ScalarOptions

    cfg = SweepConfig(model="emstep", variant=("em-k1000",), method=("gd",),
                      options=ScalarOptions(n=12, n_phi=3, phi_range=(0.5, 2.0)))
    ds = run(cfg)
    a, eta = 1.5, 0.15
    p_minus = (1 - np.sqrt(1 - 4 * a * eta)) / (2 * a)  # 0.2279: the map's unstable point
    theta0 = ds.theta0.values
    o = ds["outcome"].sel({"variant": "em-k1000", "method": "gd"}).squeeze().values
    # away from the boundary (where the map leaves p_- slowly) every lane is decided by
    # |theta0| alone, whatever phi0: collapsed inside p_-, at p_+ outside
    inside, outside = np.abs(theta0) < p_minus - 0.05, np.abs(theta0) > p_minus + 0.12
    assert (o[:, inside] == d.Outcome.COLLAPSED).all()
    assert (o[:, outside] == d.Outcome.NON_COLLAPSED).all()
    p_plus = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
    th = ds["theta"].sel({"variant": "em-k1000", "method": "gd"}).squeeze().values
    np.testing.assert_allclose(np.abs(th[:, outside]), p_plus, rtol=1e-4)
    assert list(ds["copy_every"].values) == [1000]


def test_emstep_refuses_the_flow_and_beta():
    from dynamics.sweep import SweepConfig

    with pytest.raises(ValueError, match="'em-k10' copies its target every 10 steps"):
        SweepConfig(model="emstep", variant=("em-k10",), method=("flow",))
    with pytest.raises(ValueError, match="does not use beta"):
        SweepConfig(model="emstep", beta=(0.5,))
