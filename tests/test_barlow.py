"""Linear Barlow Twins against its closed forms (docs/theory.md, "Barlow Twins"): the field
against the hand-derived gradient, the aligned logistic, the stepwise learning from a small
start, the per-mode thresholds in a sweep, and its labels and flags."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.models import BarlowTwinsLinear
from dynamics.models.barlow import BARLOW
from dynamics.models.linear import random_orthogonal
from dynamics.solve import solve_flow

GAMMA = jnp.array([2.0, 1.0, 0.5])
V = random_orthogonal(jax.random.PRNGKey(3), 3)
X = (V * GAMMA) @ V.T


def test_field_is_the_hand_derived_gradient_through_both_branches():
    # L(C), C = W X W^T: dL/dC = G with G_ii = -2 (1 - C_ii), G_ij = 2 lam C_ij, and with
    # both branches differentiated dL/dW = (G + G^T) W X; W' = -(dL/dW + eta W).
    lam, eta = 0.3, 0.2
    m = BarlowTwinsLinear(X, 0.2 * jnp.eye(3), lam)
    W = jax.random.normal(jax.random.PRNGKey(0), (3, 3))
    C = W @ X @ W.T
    G = 2 * lam * C
    G = G - jnp.diag(jnp.diag(G)) - jnp.diag(2 * (1 - jnp.diag(C)))
    want = -((G + G.T) @ W @ X + eta * W)
    got = d.vector_field(m, BARLOW, d.Hyper(eta_theta=eta), d.State(W, None)).enc
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)  # two roundings of one sum


@pytest.mark.parametrize("lam, rotate, eta", [(1.0, True, 0.0), (1.0, True, 0.5),
                                              (0.3, False, 0.0)])
def test_aligned_modes_follow_the_logistic(lam, rotate, eta):
    # W0 = U diag(s0) V^T: each u_k = gamma_k s_k^2 solves u' = r u (1 - u/K) exactly. lam
    # matters only when U mixes the outputs, so lam != 1 is checked with U = I.
    U = random_orthogonal(jax.random.PRNGKey(1), 3) if rotate else jnp.eye(3)
    s0 = jnp.array([0.05, 0.3, 1.8])
    m = BarlowTwinsLinear(X, 0.5 * jnp.eye(3), lam)
    ts = jnp.linspace(0.0, 4.0, 9)
    sol = solve_flow(m, BARLOW, d.Hyper(eta_theta=eta), d.State((U * s0) @ V.T, None), 4.0,
                     ts=ts, solver="tsit5", rtol=1e-11, atol=1e-13)
    assert int(sol.status) == 0
    g, Vm = m.mode_gamma()
    u = jax.vmap(lambda W: BarlowTwinsLinear.mode_u(W, X, Vm))(sol.ys.enc)
    want = BarlowTwinsLinear.aligned_solution(GAMMA, GAMMA * s0**2, ts[:, None], eta)
    # the solver's tolerances (1e-11 relative) bound the error far below 1e-8
    np.testing.assert_allclose(u, want, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(u[-1][:2], BarlowTwinsLinear.fixed_point(GAMMA, eta)[:2], rtol=1e-3)


def test_small_random_start_learns_one_mode_at_a_time_at_the_step_times():
    m = BarlowTwinsLinear(X, 0.2 * jnp.eye(3))
    W0 = 1e-4 * jax.random.normal(jax.random.PRNGKey(4), (3, 3))
    g, _ = m.mode_gamma()
    tk = np.asarray(BarlowTwinsLinear.step_times(g, m.initial_modes(W0)))
    assert np.all(np.diff(tk) > 1.0)  # well separated: the steps can be told apart
    ts = jnp.linspace(0.0, 1.3 * tk[-1], 2601)
    sol = solve_flow(m, BARLOW, d.Hyper(), d.State(W0, None), float(ts[-1]), ts=ts,
                     solver="tsit5", rtol=1e-10, atol=1e-14)
    C = jnp.einsum("tij,jk,tlk->til", sol.ys.enc, X, sol.ys.enc)
    ev = np.asarray(jnp.sort(jnp.linalg.eigvalsh(C), axis=-1)[:, ::-1])
    cross = np.array([np.interp(0.5, ev[:, k], np.asarray(ts)) for k in range(3)])
    # the asymptotic times miss by O(u0) ~ 1e-8 relative; the linear interpolation of a
    # logistic of width 1/(8 gamma) on a grid of 0.0025 adds < 1e-4: 1e-3 is a safe bound
    np.testing.assert_allclose(cross, tk, rtol=1e-3)
    for k in range(3):  # at t_k the earlier modes are learnt and the later still near zero
        i = int(np.searchsorted(np.asarray(ts), tk[k]))
        assert np.all(ev[i, :k] > 0.99) and np.all(ev[i, k + 1:] < 0.01)


def test_bad_lam_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"lam must be >= 0, got -1"):
        BarlowTwinsLinear(X, X, -1.0)


def test_sweep_collapses_the_modes_past_their_thresholds_and_labels_itself():
    from dynamics.sweep import SweepConfig, run
    from dynamics.sweep.barlow import BarlowOptions

    cfg = SweepConfig(model="barlow", eta=(0.0, 2.5, 4.5, 7.0), t1=40.0,
                      options=BarlowOptions(n1=3, n_init=2, x_eig=(0.5, 1.5)))
    ds = run(cfg)
    assert list(ds.variant.values) == ["barlow"]
    assert (ds["status"].values == "ok").all()
    # independent: mode k survives iff eta < 4 gamma_k (gamma = 1.5, 1.0, 0.5)
    want = np.array([np.mean([e >= 4 * g for g in (1.5, 1.0, 0.5)]) for e in cfg.eta])
    got = ds["collapsed_fraction"].mean([k for k in ds["collapsed_fraction"].dims if k != "eta"])
    np.testing.assert_array_equal(got.values, want)
    np.testing.assert_allclose(ds["eta_crit"].values, [6.0, 4.0, 2.0])


def test_barlow_flags_and_labels():
    from dynamics.sweep import SweepConfig, build_parser

    p = build_parser("barlow")
    flags = {a for act in p._actions for a in act.option_strings}
    assert not flags & {"--eps", "--beta", "--convention"}
    assert {"--eta", "--lam", "--variant"} <= flags
    with pytest.raises(ValueError, match="--model barlow does not use eps"):
        SweepConfig(model="barlow", eps=(0.5,))
    with pytest.raises(ValueError, match="unknown variant 'simsiam'"):
        SweepConfig(model="barlow", variant=("simsiam",))
    assert d.Variant.from_name("simsiam-nosg").name == "simsiam-nosg"
    assert BARLOW.name == "barlow" and BARLOW == d.Variant.from_name("simsiam-nosg")
