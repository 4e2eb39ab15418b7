"""The batched engine against diffrax, closed forms, and its own bookkeeping.

Few distinct programs and small batches: compile time dominates these tests.
"""

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from dynamics import engine, solve
from dynamics.flow import VARIANTS, Hyper, State
from dynamics.models import ScalarSiamese

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
    loss; reference: diffrax Kvaerno5 at rtol 1e-9 (they agree to ~3e-10). BYOL (a third state
    variable, the target) is checked at one stiff eps to keep compile time down; at eps = 1e-4
    Kvaerno5 itself hits 100k steps on some BYOL lanes."""
    variant = VARIANTS[name]
    eps = np.repeat(eps, 4)
    y0 = _lanes(variant, eps.size, seed=1)
    model = ScalarSiamese(0.5)
    hyper = Hyper.loss_decay(jnp.full(eps.shape, 0.05), jnp.asarray(eps), 1.0)
    sol = engine.solve_flow_batch(model, variant, hyper, y0, t1=20.0, rtol=RTOL, atol=ATOL)
    ref = solve.solve_flow_batch(model, variant, hyper, y0, t1=20.0, solver="kvaerno5",
                                 rtol=1e-9, atol=1e-11, max_steps=100_000)
    assert np.all(sol.status == solve.STATUS_OK) and np.all(np.asarray(ref.status) == 0)
    for a, b in zip(sol.ys, ref.ys):
        if a is not None:
            np.testing.assert_allclose(a[:, -1], np.asarray(b)[:, -1], rtol=0, atol=1e-7)
    assert sol.ys.enc.shape == (eps.size, 1) and sol.ts.shape == (eps.size, 1)


def test_invariant_decays_as_closed_form_tian():
    """THEORY.md 2: I = phi^2 - alpha_p theta^2 obeys I(t) = I(0) exp(-2 eta t) (Tian
    convention), for stiff (alpha_p = 100) and non-stiff lanes; saves hit the given times."""
    variant = VARIANTS["simsiam"]
    alpha_p = np.array([1.0, 1.0, 100.0, 100.0, 1.0, 100.0])
    eta = np.array([0.0, 0.05, 0.0, 0.05, 0.1, 0.1])
    y0 = _lanes(variant, alpha_p.size, seed=2)
    hyper = Hyper.tian(jnp.asarray(eta), jnp.asarray(alpha_p))
    ts = np.linspace(0.0, 10.0, 6)
    sol = engine.solve_flow_batch(ScalarSiamese(0.5), variant, hyper, y0, t1=10.0, ts=ts,
                                  rtol=RTOL, atol=ATOL)
    assert np.all(sol.status == 0)
    np.testing.assert_array_equal(sol.ts[0], ts)
    np.testing.assert_array_equal(sol.ys.enc[:, 0], np.asarray(y0.enc))
    th, ph = sol.ys.enc, sol.ys.pred
    inv = ph**2 - alpha_p[:, None] * th**2
    expect = inv[:, :1] * np.exp(-2.0 * eta[:, None] * ts[None, :])
    np.testing.assert_allclose(inv, expect, rtol=0, atol=1e-7 * np.abs(inv[:, :1]).max())


def test_diverging_lane_is_nonfinite_and_others_are_unaffected():
    variant = VARIANTS["simsiam"]
    y0 = _lanes(variant, 5, seed=3)
    model = ScalarSiamese(0.5)

    def run(eta):
        return engine.solve_flow_batch(model, variant, Hyper(0.01, jnp.asarray(eta), 0.05), y0,
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
    sol = engine.solve_flow_batch(ScalarSiamese(0.5), variant, hyper, y0, t1=50.0,
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
    base = engine.solve_flow_batch(*args, t1=20.0)
    other = engine.solve_flow_batch(*args, t1=20.0, chunk_size=3, slots=2)
    np.testing.assert_allclose(other.ys.enc, base.ys.enc, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(other.ys.pred, base.ys.pred, rtol=1e-12, atol=1e-15)
    assert np.all(other.status == 0) and np.all(base.status == 0)
    again = engine.solve_flow_batch(*args, t1=20.0)  # same call, same bits
    np.testing.assert_array_equal(again.ys.enc, base.ys.enc)


def test_discrete_sgd_matches_solve_and_is_reproducible():
    variant = VARIANTS["simsiam"]
    y0 = _lanes(variant, 6, seed=6)
    import jax

    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(7), i))(jnp.arange(6))
    args = (ScalarSiamese(0.5), variant, Hyper.loss_decay(0.05, 0.5), y0, 0.01, keys)
    ref = solve.run_discrete_batch(*args, n_steps=50, batch_size=8)
    a = engine.run_discrete_batch(*args, n_steps=50, batch_size=8)
    b = engine.run_discrete_batch(*args, n_steps=50, batch_size=8, chunk_size=4)
    for x, y, z in zip(a.ys, b.ys, ref.ys):
        if x is None:
            continue
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x[:, 0], np.asarray(z)[:, -1], rtol=1e-13, atol=1e-15)
    assert np.all(a.status == 0)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(method="rk4"), "'rk4'"),
        (dict(rtol=-1.0), "-1.0"),
        (dict(ts=[0.0, 2.0, 1.0]), "[0.0, 2.0, 1.0]"),
        (dict(max_steps=0), "0"),
        (dict(t1=float("nan")), "nan"),
    ],
)
def test_bad_input_one_line_error_naming_the_value(kwargs, needle):
    variant = VARIANTS["simsiam"]
    kw = dict(t1=1.0)
    kw.update(kwargs)
    with pytest.raises(ValueError) as e:
        engine.solve_flow_batch(ScalarSiamese(0.5), variant, Hyper(), _lanes(variant, 2, 0), **kw)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg


_TWO_DEVICES = r"""
import json, sys, numpy as np, jax, jax.numpy as jnp
import dynamics
from dynamics import engine
from dynamics.flow import VARIANTS, Hyper, State
from dynamics.models import ScalarSiamese
assert jax.local_device_count() == 2
v = VARIANTS["simsiam"]
th, ph, eps = (np.asarray(x) for x in json.loads(sys.argv[1]))
sol = engine.solve_flow_batch(ScalarSiamese(0.5), v, Hyper.loss_decay(0.05, jnp.asarray(eps)),
                              State(jnp.asarray(th), jnp.asarray(ph)), t1=20.0, chunk_size=4)
print(json.dumps([sol.ys.enc[:, 0].tolist(), sol.status.tolist()]))
"""


def test_lanes_split_over_two_devices_give_the_same_result():
    """Two host devices (``--xla_force_host_platform_device_count``) stand in for two GPUs."""
    variant = VARIANTS["simsiam"]
    eps = np.array([1.0, 0.01, 1.0, 0.01, 0.01, 1.0, 1.0])
    y0 = _lanes(variant, eps.size, seed=8)
    sol = engine.solve_flow_batch(ScalarSiamese(0.5), variant, Hyper.loss_decay(0.05, jnp.asarray(eps)),
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
    assert engine.enable_compilation_cache(str(tmp_path)) is None
    code = ("import jax, jax.numpy as jnp; from dynamics import engine; "
            "print(engine.enable_compilation_cache()); jax.jit(lambda x: jnp.sin(x) * 2)(1.0)")
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
    got = np.asarray(engine._inv_root(jnp.asarray(x), q))
    want = x ** (-1.0 / q)
    assert np.max(np.abs(got / want - 1.0)) < 1e-4
