"""The batched engine against diffrax, closed forms, and its own bookkeeping.

Few distinct programs and small batches: compile time dominates these tests.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dynamics import flow as d_flow
from dynamics import runtime, solve
from dynamics.solve import diffrax_flow, engine, steps
from dynamics.flow import VARIANTS, Hyper, State, initial_state
from dynamics.models import ScalarSiamese
from tests.oracles import scalar_field, scalar_gd_step

RTOL, ATOL = 1e-10, 1e-12


def _lanes(variant, n, seed):
    rng = np.random.default_rng(seed)
    th = rng.uniform(-1.5, 1.5, n)
    ph = rng.uniform(-1.0, 2.0, n)
    tgt = rng.uniform(-1.5, 1.5, n) if variant.has_target else None
    return State(jnp.asarray(th), jnp.asarray(ph), None if tgt is None else jnp.asarray(tgt))


@pytest.mark.parametrize("name, eps", [("simsiam", [1.0, 1e-2, 1e-4]), ("byol", [1e-2])])
def test_agrees_with_diffrax_on_random_lanes(name, eps):
    """Several eps in one batch (so both methods of ``auto`` run), weight decay inside the
    loss; reference: diffrax Kvaerno5 at rtol 1e-9 (they agree to 5.3e-10 at worst, observed;
    checked to 5e-9, about the reference's own error at rtol 1e-9). BYOL (a third state
    variable, the target) is checked at one stiff eps to keep compile time down; at eps = 1e-4
    Kvaerno5 itself hits 100k steps on some BYOL lanes."""
    variant = VARIANTS[name]
    eps = np.repeat(eps, 4)
    y0 = _lanes(variant, eps.size, seed=1)
    model = ScalarSiamese(0.5)
    hyper = Hyper.loss_decay(jnp.full(eps.shape, 0.05), jnp.asarray(eps), 1.0)
    sol = engine.flow_batch(model, variant, hyper, y0, t1=20.0, rtol=RTOL, atol=ATOL)
    ref = diffrax_flow.flow_batch(model, variant, hyper, y0, t1=20.0, solver="kvaerno5",
                                  rtol=1e-9, atol=1e-11, max_steps=100_000)
    assert np.all(sol.status == solve.STATUS_OK) and np.all(np.asarray(ref.status) == 0)
    for a, b in zip(sol.ys, ref.ys):
        if a is not None:
            np.testing.assert_allclose(a[:, -1], np.asarray(b)[:, -1], rtol=0, atol=5e-9)
    assert sol.ys.enc.shape == (eps.size, 1) and sol.ts.shape == (eps.size, 1)


def test_invariant_decays_as_closed_form_tian():
    """docs/theory.md 2: I = phi^2 - alpha_p theta^2 obeys I(t) = I(0) exp(-2 eta t) (Tian
    convention), for stiff (alpha_p = 100) and non-stiff lanes; saves hit the given times."""
    variant = VARIANTS["simsiam"]
    alpha_p = np.array([1.0, 1.0, 100.0, 100.0, 1.0, 100.0])
    eta = np.array([0.0, 0.05, 0.0, 0.05, 0.1, 0.1])
    y0 = _lanes(variant, alpha_p.size, seed=2)
    hyper = Hyper.tian(jnp.asarray(eta), jnp.asarray(alpha_p))
    ts = np.linspace(0.0, 10.0, 6)
    sol = engine.flow_batch(ScalarSiamese(0.5), variant, hyper, y0, t1=10.0, ts=ts,
                            rtol=RTOL, atol=ATOL)
    assert np.all(sol.status == 0)
    np.testing.assert_array_equal(sol.ts[0], ts)
    np.testing.assert_array_equal(sol.ys.enc[:, 0], np.asarray(y0.enc))
    th, ph = sol.ys.enc, sol.ys.pred
    inv = ph**2 - alpha_p[:, None] * th**2
    expect = inv[:, :1] * np.exp(-2.0 * eta[:, None] * ts[None, :])
    # observed: 2.1e-13 of max |I(0)| (= 149) at rtol 1e-10; checked to 3e-12 of it
    np.testing.assert_allclose(inv, expect, rtol=0, atol=3e-12 * np.abs(inv[:, :1]).max())


def test_diverging_lane_is_nonfinite_and_others_are_unaffected():
    variant = VARIANTS["simsiam"]
    y0 = _lanes(variant, 5, seed=3)
    model = ScalarSiamese(0.5)

    def run(eta):
        return engine.flow_batch(model, variant, Hyper(0.01, jnp.asarray(eta), 0.05), y0,
                                 t1=50.0)

    sol = run([0.05, 0.05, -60.0, 0.05, 0.05])  # lane 2: theta grows like exp(60 t)
    np.testing.assert_array_equal(sol.status, [0, 0, solve.STATUS_NONFINITE, 0, 0])
    assert np.isnan(sol.ys.enc[2, 0])
    calm = run([0.05] * 5)
    keep = [0, 1, 3, 4]
    np.testing.assert_array_equal(sol.ys.enc[keep], calm.ys.enc[keep])
    np.testing.assert_array_equal(sol.ys.pred[keep], calm.ys.pred[keep])


def test_too_few_steps_gives_max_steps_for_that_lane_only():
    """An explicit method on a stiff lane (eps = 1e-4) needs far more than 1500 steps."""
    variant = VARIANTS["simsiam"]
    y0 = _lanes(variant, 2, seed=4)
    hyper = Hyper.loss_decay(0.05, jnp.asarray([1.0, 1e-4]))
    sol = engine.flow_batch(ScalarSiamese(0.5), variant, hyper, y0, t1=50.0,
                            method="dopri5", max_steps=1500)
    np.testing.assert_array_equal(sol.status, [solve.STATUS_OK, solve.STATUS_MAX_STEPS])
    assert sol.num_steps[1] == 1500 and sol.num_steps[0] < 1500
    assert np.isfinite(sol.ys.enc[0, 0]) and np.isnan(sol.ys.enc[1, 0])


def test_chunks_and_slots_do_not_change_results():
    """Same lanes, other chunking: the same numbers up to rounding (a different array shape can
    change how XLA vectorises, so the last bit may differ)."""
    variant = VARIANTS["simsiam"]
    eps = np.array([0.05, 0.01] * 4)
    y0 = _lanes(variant, eps.size, seed=5)
    hyper = Hyper.loss_decay(0.05, jnp.asarray(eps))
    args = (ScalarSiamese(0.5), variant, hyper, y0)
    base = engine.flow_batch(*args, t1=20.0)
    other = engine.flow_batch(*args, t1=20.0, chunk_size=3, slots=2)
    np.testing.assert_allclose(other.ys.enc, base.ys.enc, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(other.ys.pred, base.ys.pred, rtol=1e-12, atol=1e-15)
    assert np.all(other.status == 0) and np.all(base.status == 0)
    again = engine.flow_batch(*args, t1=20.0)  # same call, same bits
    np.testing.assert_array_equal(again.ys.enc, base.ys.enc)


def test_discrete_sgd_matches_hand_written_steps_for_every_unroll_and_chunk():
    """BYOL SGD (minibatches of 8; step k of lane i samples with fold_in(keys[i], k)) through
    the engine's plain loop (unroll = 1), its unrolled loop (unroll = 4, a separate code path)
    and in chunks, against the oracle step of tests/oracles.py iterated in numpy on the same
    minibatches. Only rounding separates them: observed 8.9e-16, checked to 1e-13; the unrolled
    and chunked runs are the same arithmetic in another loop (observed 1.1e-16, checked 1e-14)."""
    variant = VARIANTS["byol"]
    n, n_steps, bs, lr = 6, 50, 8, 0.01
    y0 = _lanes(variant, n, seed=6)
    model, hyper = ScalarSiamese(0.5), Hyper.loss_decay(0.05, 0.5, beta=0.7)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(7), i))(jnp.arange(n))
    args = (model, variant, hyper, y0, lr, keys)
    a = engine.discrete_batch(*args, n_steps=n_steps, batch_size=bs)
    b = engine.discrete_batch(*args, n_steps=n_steps, batch_size=bs, unroll=4)
    c = engine.discrete_batch(*args, n_steps=n_steps, batch_size=bs, unroll=4, chunk_size=4)
    x1, x2 = (np.asarray(x) for x in jax.vmap(lambda key: jax.vmap(
        lambda k: model.sample(jax.random.fold_in(key, k), bs))(jnp.arange(n_steps)))(keys))
    want = []
    for i in range(n):
        z = (float(y0.enc[i]), float(y0.pred[i]), float(y0.tgt[i]))
        for k in range(n_steps):
            z = scalar_gd_step(*z, lr, sigma2=0.5, eps=0.5, eta_theta=0.05, eta_phi=0.05,
                               beta=0.7, target="byol", stop_grad=True,
                               batch=(x1[i, k], x2[i, k]))
        want.append(z)
    want = np.array(want)
    got = np.stack([a.ys.enc[:, 0], a.ys.pred[:, 0], a.ys.tgt[:, 0]], 1)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    for other in (b, c):
        np.testing.assert_allclose(np.stack([other.ys.enc[:, 0], other.ys.pred[:, 0],
                                             other.ys.tgt[:, 0]], 1), got, rtol=0, atol=1e-14)
    assert np.all(a.status == 0) and np.all(b.status == 0)
    np.testing.assert_allclose(a.ts[:, 0], n_steps * lr)
    again = engine.discrete_batch(*args, n_steps=n_steps, batch_size=bs, unroll=4)
    np.testing.assert_array_equal(again.ys.enc, b.ys.enc)  # same seed, same bits


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(method="rk4"), "unknown method 'rk4'"),
        (dict(rtol=-1.0), "rtol must be > 0, got -1.0"),
        (dict(atol=-1e-9), "atol must be >= 0, got -1e-09"),
        (dict(ts=[0.0, 2.0, 1.0]), "got [0.0, 2.0, 1.0]"),
        (dict(max_steps=0), "max_steps must be an integer >= 1, got 0"),
        (dict(t1=float("nan")), "t1 must be finite, got nan"),
        (dict(slots=0), "slots must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_one_line_error_naming_the_value(kwargs, needle):
    variant = VARIANTS["simsiam"]
    kw = dict(t1=1.0)
    kw.update(kwargs)
    with pytest.raises(ValueError) as e:
        engine.flow_batch(ScalarSiamese(0.5), variant, Hyper(), _lanes(variant, 2, 0), **kw)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg


_TWO_DEVICES = r"""
import json, sys, numpy as np, jax, jax.numpy as jnp
import dynamics
from dynamics.flow import VARIANTS, Hyper, State
from dynamics.solve import engine
from dynamics.models import ScalarSiamese
assert jax.local_device_count() == 2
v = VARIANTS["simsiam"]
th, ph, eps = (np.asarray(x) for x in json.loads(sys.argv[1]))
sol = engine.flow_batch(ScalarSiamese(0.5), v, Hyper.loss_decay(0.05, jnp.asarray(eps)),
                        State(jnp.asarray(th), jnp.asarray(ph)), t1=20.0, chunk_size=4)
print(json.dumps([sol.ys.enc[:, 0].tolist(), sol.status.tolist()]))
"""


def test_lanes_split_over_two_devices_give_the_same_result():
    """Two host devices (``--xla_force_host_platform_device_count``) stand in for two GPUs."""
    variant = VARIANTS["simsiam"]
    eps = np.array([1.0, 0.01, 1.0, 0.01, 0.01, 1.0, 1.0])
    y0 = _lanes(variant, eps.size, seed=8)
    sol = engine.flow_batch(ScalarSiamese(0.5), variant, Hyper.loss_decay(0.05, jnp.asarray(eps)),
                            y0, t1=20.0, devices=1)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               DYNAMICS_COMPILE_CACHE="0")
    arg = json.dumps([np.asarray(y0.enc).tolist(), np.asarray(y0.pred).tolist(), eps.tolist()])
    r = subprocess.run([sys.executable, "-c", _TWO_DEVICES, arg], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    enc, status = json.loads(r.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(enc, sol.ys.enc[:, 0], rtol=1e-12, atol=1e-15)
    assert status == sol.status.tolist()


def test_compilation_cache_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("DYNAMICS_COMPILE_CACHE", "0")
    assert runtime.enable_compilation_cache(str(tmp_path)) is None
    code = ("import jax, jax.numpy as jnp; from dynamics import runtime; "
            "print(runtime.enable_compilation_cache()); jax.jit(lambda x: jnp.sin(x) * 2)(1.0)")
    env = dict(os.environ, DYNAMICS_COMPILE_CACHE=str(tmp_path / "c"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "c")
    assert any((tmp_path / "c").iterdir())


@pytest.mark.parametrize("q", [4, 5])
def test_fast_inverse_root_matches_power(q):
    # the step-size controller's x ** (-1/q), over the whole range it is used on
    x = np.logspace(-30, 30, 20001)
    got = np.asarray(steps.inv_root(jnp.asarray(x), q))
    want = x ** (-1.0 / q)
    assert np.max(np.abs(got / want - 1.0)) < 1e-4


def test_unrolled_and_dense_lu_solve_the_same_systems():
    # the Rosenbrock step's two factorisations (unrolled for small states, batched dense above
    # steps.UNROLLED_LU_MAX_DIM) on matrices that need pivoting
    rng = np.random.default_rng(3)
    d, n = 6, 5
    a = rng.normal(size=(d, d, n))
    a[0, 0] = 1e-12  # a zero-ish leading pivot
    b = rng.normal(size=(d, n))
    x_unrolled = np.asarray(steps.lu_solve(steps.lu_factor(jnp.asarray(a)), jnp.asarray(b)))
    x_dense = np.asarray(steps.dense_lu_solve(steps.dense_lu_factor(jnp.asarray(a)),
                                              jnp.asarray(b)))
    want = np.stack([np.linalg.solve(a[:, :, k], b[:, k]) for k in range(n)], axis=1)
    np.testing.assert_allclose(x_unrolled, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(x_dense, want, rtol=1e-9, atol=1e-12)


def test_rodas4_on_a_matrix_model_agrees_with_diffrax():
    """A linear model's state (n1 = n2 = 2: 8 numbers) is factored by the dense LU."""
    from dynamics.models import LinearSiamese

    assert 8 > steps.UNROLLED_LU_MAX_DIM
    rng = np.random.default_rng(4)
    n = 3
    q, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    X = (q * np.array([1.5, 0.5])) @ q.T
    model = LinearSiamese(jnp.asarray(np.broadcast_to(X, (n, 2, 2))),
                          jnp.asarray(np.broadcast_to(0.5 * np.eye(2), (n, 2, 2))))
    hyper = Hyper.loss_decay(jnp.asarray([0.0, 0.1, 0.2]), jnp.full((n,), 0.05), 1.0)
    y0 = State(jnp.asarray(rng.normal(size=(n, 2, 2))),
               jnp.asarray(0.5 * rng.normal(size=(n, 2, 2))))
    variant = VARIANTS["simsiam"]
    sol = engine.flow_batch(model, variant, hyper, y0, t1=10.0, method="rodas4", rtol=1e-9,
                            atol=1e-11)
    ref = diffrax_flow.flow_batch(model, variant, hyper, y0, t1=10.0, solver="kvaerno5",
                                  rtol=1e-10, atol=1e-12, max_steps=100_000)
    assert np.all(sol.status == solve.STATUS_OK)
    for a, b in zip(sol.ys, ref.ys):
        if a is not None:
            np.testing.assert_allclose(a[:, -1], np.asarray(b)[:, -1], rtol=0, atol=1e-7)


# --- accuracy and order of the two methods -------------------------------------------------
# Three lanes: two non-stiff (eps = 1) and one stiff (eps = 0.02), weight decay in the loss,
# BYOL's EMA rate 0.7. Reference: scipy on the hand-written field of tests/oracles.py (DOP853,
# Radau for the stiff lane) at rtol 1e-13, so its error (~1e-13) is far below what is measured.
ACC_T, ACC_EPS, ACC_ETA, ACC_BETA, ACC_SIGMA2 = 4.0, np.array([1.0, 1.0, 0.02]), 0.05, 0.7, 0.5
ACC_Y0 = np.array([[0.8, 0.1, 0.3], [-1.2, 0.9, -0.5], [0.5, 0.4, 0.6]])  # theta, phi, theta_a
ACC_S = 65  # save points of every run below: one compiled program per variant and method
_REF = {}


def _save_grid(n):
    """n + 1 save times spaced T/n on [0, T], then points 1e-9 apart up to 65 in all (a fixed
    shape, so one compiled program serves every n). The state at T is save number n."""
    return np.concatenate([np.linspace(0.0, ACC_T, n + 1), ACC_T + 1e-9 * np.arange(1, ACC_S - n)])


def _acc_problem(name):
    variant = VARIANTS[name]
    y0 = initial_state(variant, *(jnp.asarray(ACC_Y0[:, j]) for j in range(3)))
    hyper = Hyper.loss_decay(ACC_ETA, jnp.asarray(ACC_EPS), ACC_BETA)
    return ScalarSiamese(ACC_SIGMA2), variant, hyper, y0


def _reference(name):
    if name not in _REF:
        variant = VARIANTS[name]
        ends = []
        for (th, ph, ta), eps in zip(ACC_Y0, ACC_EPS):
            kw = dict(sigma2=ACC_SIGMA2, eps=eps, eta_theta=ACC_ETA, eta_phi=ACC_ETA,
                      beta=ACC_BETA, target=variant.target, stop_grad=variant.stop_grad)

            def rhs(t, z):
                out = scalar_field(z[0], z[1], z[2] if variant.has_target else None, **kw)
                return [x for x in out if x is not None]

            z0 = [th, ph, ta][: 3 if variant.has_target else 2]
            ends.append(solve_ivp(rhs, (0, ACC_T), z0, method="DOP853" if eps > 0.1 else "Radau",
                                  rtol=1e-13, atol=1e-15).y[:, -1])
        _REF[name] = np.array(ends)
    return _REF[name]


def _end_error(sol, name, index=-1):
    got = np.stack([x[:, index] for x in sol.ys if x is not None], 1)
    return np.max(np.abs(got - _reference(name)), axis=1)  # per lane


# fixed-step order measured from N = 8 ... 64 steps on the non-stiff lanes (observed):
# dopri5 5.4-6.1 (pre-asymptotic: the ratios of successive errors are 2^5.6-2^6.4),
# rodas4 3.5-4.5 (irregular ratios, components change sign); bounds half an order around.
# rodas5p 2.8-5.1: more irregular still at these step sizes (h = 0.06-0.5 on lanes whose errors
# change sign), so only a loose band here; its order is measured cleanly, step and estimate,
# on a closed-form problem in tests/test_solve_rosenbrock.py
ORDER_BOUNDS = {"dopri5": (4.7, 6.6), "rodas4": (3.2, 5.0), "rodas5p": (2.3, 6.0)}


@pytest.mark.parametrize("method", ["dopri5", "rodas4", "rodas5p"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_fixed_step_convergence_order(method, name):
    """Fixed steps through the public API: with a huge rtol every trial step is accepted and
    grows 10x per step until it is cut at the next save time, so save times t_k = k T/N make the
    engine take N steps of h = T/N (plus 3 tiny ramp-up steps from h0 = 1e-6, whose error is
    ~h0^5; see ``_save_grid``). The state at T is compared with the reference; the order is
    the slope of log error against log h."""
    model, variant, hyper, y0 = _acc_problem(name)
    ns = np.array([8, 16, 32, 64])
    errs = []
    for n in ns:
        ts = _save_grid(n)
        sol = engine.flow_batch(model, variant, hyper, y0, t1=float(ts[-1]), ts=ts,
                                method=method, rtol=1e6, atol=1e6)
        assert np.all(sol.num_steps[:2] <= ACC_S + 3), sol.num_steps  # N + 3 + the padding steps
        errs.append(_end_error(sol, name, index=n))
    errs = np.array(errs)  # (N, lane)
    lo, hi = ORDER_BOUNDS[method]
    for lane in (0, 1):
        order = np.polyfit(np.log(ACC_T / ns), np.log(errs[:, lane]), 1)[0]
        assert lo < order < hi, (lane, order, errs[:, lane])
    if method in ("rodas4", "rodas5p"):
        # L-stable: the stiff lane (h |lambda| up to ~45) stays accurate at every step size, if
        # at a reduced order (observed error <= 1.1e-4, rodas5p <= 9.6e-5)
        assert np.all(errs[:, 2] < 1e-3), errs[:, 2]


@pytest.mark.parametrize("method", ["dopri5", "rodas4", "rodas5p"])
@pytest.mark.parametrize("name", list(VARIANTS))
def test_work_precision(method, name):
    """Adaptive steps at rtol = 1e-5 ... 1e-11 (atol = rtol/100), the state at T against the
    reference (saves 0 and T, then the padding of ``_save_grid(1)``, so the controller runs
    freely on (0, T)). Observed: error/rtol 0.001-0.78 and the slope of log error against
    log rtol 0.84-1.24 over all variants and lanes; checked: error <= 2 rtol and slope in
    [0.7, 1.5]. The step count grows like rtol^(-1/q), q = the order of the error estimate + 1
    (5 for Dormand-Prince and Rodas5P, 4 for Rodas4): observed exponents within 0.035 of 1/q
    (checked: 0.05; a Rodas5P whose estimate were third order would grow by 1/4) on the lanes where accuracy, not stability, sets the step (all but Dormand-Prince on
    the stiff lane)."""
    model, variant, hyper, y0 = _acc_problem(name)
    rtols = np.array([1e-5, 1e-7, 1e-9, 1e-11])
    ts = _save_grid(1)
    errs, steps = [], []
    for rtol in rtols:
        sol = engine.flow_batch(model, variant, hyper, y0, t1=float(ts[-1]), ts=ts,
                                method=method, rtol=rtol, atol=rtol * 1e-2)
        assert np.all(sol.status == 0)
        errs.append(_end_error(sol, name, index=1))
        steps.append(sol.num_steps - (ACC_S - 2))  # minus the padding steps
    errs, steps = np.array(errs), np.array(steps)
    assert np.all(errs <= 2 * rtols[:, None]), errs / rtols[:, None]
    q = {"dopri5": 5, "rodas4": 4, "rodas5p": 5}[method]
    for lane in range(3):
        slope = np.polyfit(np.log(rtols), np.log(errs[:, lane]), 1)[0]
        growth = -np.polyfit(np.log(rtols), np.log(steps[:, lane]), 1)[0]
        assert 0.7 < slope < 1.5, (lane, slope, errs[:, lane])
        if method != "dopri5" or lane < 2:
            assert abs(growth - 1 / q) < 0.05, (lane, growth, steps[:, lane])


# --- the batched field and Jacobian of small states, the wide-vector flag ------------------------


@pytest.mark.parametrize("name", ["simsiam", "simsiam-nosg", "byol"])
def test_batched_field_and_jacobian_match_the_hand_written_field(name):
    """``engine.batched_field`` on the scalar models (one array per component, the Jacobian from
    one directional derivative per component) against the hand-written field of
    tests/oracles.py and its Jacobian by central differences (step 1e-6: truncation ~1e-12,
    rounding ~1e-10 on entries up to ~1e2 at eps = 0.05; tolerance 1e-7 relative to the
    largest entry). The simsiam Jacobian is also checked against its closed form (docs/theory.md
    section 2), to rounding."""
    variant = VARIANTS[name]
    n = 5
    rng = np.random.default_rng(3)
    d = 3 if variant.has_target else 2
    y = rng.uniform(-1.5, 1.5, (d, n))
    sigma2, eps, eta, beta = rng.uniform(0.2, 1.0, n), rng.uniform(0.05, 1.0, n), 0.15, 1.0

    def f_lane(lane, z):
        s2, e = lane
        state = State(z[0], z[1], z[2] if d == 3 else None)
        out = d_flow.vector_field(ScalarSiamese(sigma2=s2), variant,
                                  Hyper.loss_decay(eta, e, beta), state)
        return jnp.stack([out.enc, out.pred] + ([out.tgt] if d == 3 else []))

    f, jac = engine.batched_field(f_lane, d)
    p = (jnp.asarray(sigma2), jnp.asarray(eps))
    got_f = np.asarray(f(p, jnp.asarray(y)))
    got_j = np.asarray(jac(p, jnp.asarray(y)))
    assert got_f.shape == (d, n) and got_j.shape == (d, d, n)

    def oracle(z, k):
        out = scalar_field(*z[:2], z[2] if d == 3 else None, sigma2=sigma2[k], eps=eps[k],
                           eta_theta=eta, eta_phi=eta, beta=beta, target=variant.target,
                           stop_grad=variant.stop_grad)
        return np.array([v for v in out if v is not None])

    for k in range(n):
        np.testing.assert_allclose(got_f[:, k], oracle(y[:, k], k), rtol=1e-12, atol=1e-12)
        fd = np.empty((d, d))
        for j in range(d):
            e = np.zeros(d)
            e[j] = 1e-6
            fd[:, j] = (oracle(y[:, k] + e, k) - oracle(y[:, k] - e, k)) / 2e-6
        np.testing.assert_allclose(got_j[:, :, k], fd, rtol=0,
                                   atol=1e-7 * max(1.0, np.abs(fd).max()))
    if name == "simsiam":
        th, ph, a = y[0], y[1], 1.0 + sigma2
        closed = np.array([[-(a * ph**2 - ph + eta), -th * (2 * a * ph - 1)],
                           [2 * th * (1 - a * ph) / eps, (-a * th**2 - eta) / eps]])
        np.testing.assert_allclose(got_j, closed, rtol=1e-13, atol=1e-13)


def test_wide_vectors_flag_is_added_only_where_it_helps(monkeypatch):
    """``runtime.prefer_wide_vectors`` adds the XLA flag on an AVX-512 CPU, and leaves
    ``XLA_FLAGS`` as the user set it (a width already chosen, or no AVX-512)."""
    monkeypatch.setattr(runtime, "_cpu_has_avx512", lambda: True)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert runtime.prefer_wide_vectors() is True
    assert os.environ["XLA_FLAGS"] == ("--xla_cpu_enable_fast_math=false "
                                       + runtime.WIDE_VECTORS_FLAG)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_prefer_vector_width=256")
    assert runtime.prefer_wide_vectors() is False
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_prefer_vector_width=256"
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(runtime, "_cpu_has_avx512", lambda: False)
    assert runtime.prefer_wide_vectors() is False
    assert "XLA_FLAGS" not in os.environ
