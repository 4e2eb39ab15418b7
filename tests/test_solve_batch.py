"""The one batched entry point, its stiffness policy, and the old paths that still work."""

import importlib
import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics  # noqa: F401  (float64)
from dynamics.models import LinearSiamese, ScalarSiamese
from dynamics.models.linear import random_state
from dynamics.solve import Status, policy, solve_batch
from dynamics.solve.diffrax_flow import flow_batch as diffrax_flow_batch
from dynamics.solve.engine import flow_batch as engine_flow_batch
from dynamics.types import Hyper, State, VARIANTS

SIMSIAM = VARIANTS["simsiam"]


def _lanes(n, seed):
    rng = np.random.default_rng(seed)
    return State(jnp.asarray(rng.uniform(-1.5, 1.5, n)), jnp.asarray(rng.uniform(-1.0, 2.0, n)))


def test_policy_is_one_rule_for_both_integrators():
    """The thresholds the sweeps have always used: engine rodas4 below eps = 0.3, diffrax
    kvaerno5 below eps = 5e-3; an explicit choice wins; large states stay explicit."""
    assert [policy.flow_solver(e) for e in (0.29, 0.3)] == ["rodas4", "dopri5"]
    assert [policy.flow_solver(e, integrator="diffrax") for e in (4e-3, 5e-3)] == ["kvaerno5",
                                                                                   "tsit5"]
    assert policy.flow_solver(1e-4, "dopri5") == "dopri5"
    hyper = Hyper(eps=jnp.array([1.0, 0.01, 0.5, 0.001]))
    (m1, l1), (m2, l2) = policy.engine_groups(hyper, 4, d=2)
    assert (m1, l1.tolist(), m2, l2.tolist()) == ("rodas4", [1, 3], "dopri5", [0, 2])
    (_, big), (_, rest) = policy.engine_groups(hyper, 4, d=policy.MAX_ROSENBROCK_DIM + 1)
    assert big.size == 0 and rest.tolist() == [0, 1, 2, 3]
    assert policy.flow_solver(0.01, "auto", "engine") == "rodas4"
    assert policy.flow_solver(0.01, "auto", "engine", dim=policy.MAX_ROSENBROCK_DIM + 1) == "dopri5"
    assert policy.flow_solver(0.01, "auto", "diffrax") == "tsit5"
    assert policy.flow_solver(1e-3, "auto", "diffrax") == "kvaerno5"


def test_entry_point_is_the_integrators_bit_for_bit():
    """solve_batch adds no arithmetic: the same bits as the integrator functions it calls."""
    y0 = _lanes(6, 0)
    hyper = Hyper.loss_decay(0.05, jnp.array([1.0, 0.01, 1.0, 0.01, 0.5, 0.5]))
    m = ScalarSiamese(0.5)
    a = solve_batch(m, SIMSIAM, hyper, y0, t1=10.0)
    b = engine_flow_batch(m, SIMSIAM, hyper, y0, t1=10.0)
    np.testing.assert_array_equal(a.ys.enc, b.ys.enc)
    np.testing.assert_array_equal(a.status, b.status)
    c = solve_batch(m, SIMSIAM, hyper, y0, integrator="diffrax", t1=10.0, solver="kvaerno5")
    d = diffrax_flow_batch(m, SIMSIAM, hyper, y0, t1=10.0, solver="kvaerno5", rtol=1e-8,
                           atol=1e-10, max_steps=16384)
    np.testing.assert_array_equal(np.asarray(c.ys.enc), np.asarray(d.ys.enc))


def test_diffrax_auto_splits_lanes_by_policy_and_agrees_with_the_engine():
    """Mixed eps in one diffrax call: stiff lanes go to Kvaerno5, the rest to Tsit5, results
    land in their lanes; they agree with the engine to the tolerances (both at rtol 1e-8;
    observed 2.2e-9, tolerance 1e-7)."""
    y0 = _lanes(4, 1)
    hyper = Hyper.loss_decay(0.05, jnp.array([1e-3, 1.0, 1e-3, 1.0]))
    m = ScalarSiamese(0.5)
    dfx = solve_batch(m, SIMSIAM, hyper, y0, integrator="diffrax", t1=10.0)
    eng = solve_batch(m, SIMSIAM, hyper, y0, t1=10.0, rtol=1e-8, atol=1e-10)
    assert np.all(np.asarray(dfx.status) == Status.OK) and np.all(eng.status == Status.OK)
    np.testing.assert_allclose(np.asarray(dfx.ys.enc)[:, -1], eng.ys.enc[:, -1], atol=1e-7)
    np.testing.assert_allclose(np.asarray(dfx.ys.pred)[:, -1], eng.ys.pred[:, -1], atol=1e-7)


def test_engine_integrates_the_linear_model_as_diffrax_does():
    """LinearSiamese (n1 = n2 = 2, W and Wp: d = 8) through the engine: Dopri5 and Rodas4
    (exact Jacobian of the matrix field) agree with diffrax Tsit5 (all at rtol 1e-10; observed
    1.2e-11 at n = 3; tolerance 1e-9)."""
    m = LinearSiamese.isotropic(2, 0.5)
    ys = [random_state(jax.random.PRNGKey(i), m, SIMSIAM, 2) for i in range(4)]
    y0 = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *ys)
    hyper = Hyper.tian(0.02, jnp.array([1.0, 1.0, 5.0, 5.0]))
    kw = dict(t1=5.0, rtol=1e-10, atol=1e-12)
    ref = solve_batch(m, SIMSIAM, hyper, y0, integrator="diffrax", solver="tsit5",
                      max_steps=100_000, **kw)
    for solver in ("dopri5", "rodas4"):
        eng = solve_batch(m, SIMSIAM, hyper, y0, solver=solver, **kw)
        assert np.all(eng.status == Status.OK)
        for a, b in ((eng.ys.enc, ref.ys.enc), (eng.ys.pred, ref.ys.pred)):
            np.testing.assert_allclose(a[:, -1], np.asarray(b)[:, -1], rtol=0, atol=1e-9)


def test_discrete_methods_on_both_integrators_give_the_same_stream():
    """SGD: step k of a lane samples with fold_in(key, k) on both paths, so results agree
    to rounding (the engine runs the same program, chunked)."""
    y0 = _lanes(5, 2)
    m, hyper = ScalarSiamese(0.5), Hyper.loss_decay(0.05, 0.5)
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    kw = dict(method="sgd", lr=0.01, n_steps=40, keys=keys, batch_size=8)
    a = solve_batch(m, SIMSIAM, hyper, y0, **kw)
    b = solve_batch(m, SIMSIAM, hyper, y0, integrator="diffrax", **kw)
    np.testing.assert_allclose(a.ys.enc, np.asarray(b.ys.enc), rtol=1e-13, atol=1e-15)
    gd = solve_batch(m, SIMSIAM, hyper, y0, method="gd", lr=0.01, n_steps=40)
    assert gd.ys.enc.shape == (5, 1) and not np.allclose(gd.ys.enc, a.ys.enc)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(method="adam", t1=1.0), "'adam'"),
        (dict(integrator="scipy", t1=1.0), "'scipy'"),
        (dict(), "t1"),
        (dict(t1=1.0, lr=0.1), "lr=0.1"),
        (dict(method="sgd", lr=0.1, n_steps=3), "keys"),
        (dict(method="gd", t1=1.0), "t1"),
        (dict(t1=1.0, solver="kvaerno5"), "'kvaerno5'"),
        (dict(t1=1.0, integrator="diffrax", solver="rodas4"), "'rodas4'"),
    ],
)
def test_bad_arguments_are_one_line_errors_naming_the_value(kwargs, needle):
    with pytest.raises(ValueError) as e:
        solve_batch(ScalarSiamese(0.5), SIMSIAM, Hyper(), _lanes(2, 0), **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_old_paths_warn_and_give_the_new_objects():
    from dynamics.solve import engine as new_engine

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        from dynamics import engine, solve

        assert engine.solve_flow_batch is new_engine.flow_batch
        assert engine.STIFF_EPS == policy.STIFF_EPS
        assert solve.solve_flow_batch is diffrax_flow_batch
    assert len(w) == 3 and all(issubclass(x.category, DeprecationWarning) for x in w)
    assert "dynamics.solve.engine.flow_batch" in str(w[0].message)



# Every old name the tests used before the solve package and the analysis renames, with its
# new home: each still gives the same object and warns once, naming what to use instead.
OLD_NAMES = [
    ("dynamics.engine", "solve_flow_batch", "dynamics.solve.engine", "flow_batch"),
    ("dynamics.engine", "run_discrete_batch", "dynamics.solve.engine", "discrete_batch"),
    ("dynamics.engine", "enable_compilation_cache", "dynamics.runtime", "enable_compilation_cache"),
    ("dynamics.engine", "_inv_root", "dynamics.solve.steps", "inv_root"),
    ("dynamics.engine", "_n_lanes", "dynamics.solve.lanes", "n_lanes"),
    ("dynamics.solve", "solve_flow_batch", "dynamics.solve.diffrax_flow", "flow_batch"),
    ("dynamics.solve", "run_discrete_batch", "dynamics.solve.discrete", "discrete_batch"),
    ("dynamics.solve", "_n_lanes", "dynamics.solve.lanes", "n_lanes"),
    ("dynamics.solve", "_all_finite", "dynamics.solve.lanes", "all_finite"),
    ("dynamics.sweep", "_git_revision", "dynamics.sweep.provenance", "git_revision"),
    ("dynamics.analysis", "classify", "dynamics.analysis", "fixed_point_kind"),
    ("dynamics.analysis.fixed_points", "classify", "dynamics.analysis.fixed_points",
     "fixed_point_kind"),
]


@pytest.mark.parametrize("old_module, old, new_module, new", OLD_NAMES)
def test_each_old_name_warns_and_is_the_new_object(old_module, old, new_module, new):
    want = getattr(importlib.import_module(new_module), new)
    with pytest.warns(DeprecationWarning, match=rf"{old_module}\.{old} is deprecated") as w:
        got = getattr(importlib.import_module(old_module), old)
    assert got is want
    assert len(w) == 1 and "; use dynamics." in str(w[0].message)
    assert w[0].filename == __file__  # attributed to the code that used the old name


def test_unwritable_compile_cache_warns_once_and_the_run_goes_on(tmp_path):
    """A cache path under a regular file cannot be created: one line on stderr, no cache,
    and the computation still runs (issue of a read-only or full cache disk)."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = ("import jax, jax.numpy as jnp; from dynamics import runtime; "
            "print(runtime.enable_compilation_cache()); print(runtime.enable_compilation_cache()); "
            "print(float(jax.jit(lambda x: jnp.sin(x) * 2)(1.0)))")
    env = dict(os.environ, DYNAMICS_COMPILE_CACHE=str(blocker / "cache"))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[:2] == ["None", "None"] and abs(float(out[2]) - 2 * np.sin(1.0)) < 1e-12
    lines = [x for x in r.stderr.splitlines() if "compile cache" in x]
    assert len(lines) == 1 and str(blocker / "cache") in lines[0]


@pytest.mark.parametrize("method", ["flow", "gd"])
def test_a_failing_last_lane_of_a_padded_chunk_keeps_its_status_to_itself(method):
    """Five lanes in chunks of three: the second chunk holds lanes 3 and 4 and one padding copy
    of lane 4. Lane 4 starts at NaN, so it must be ``nonfinite`` and lane 3 (a finite start,
    finite field) ``ok``: each status is read from the chunk's first lanes, not its padded
    end. That the finite lanes are ok is independent of the solver: a finite start of this
    flow stays finite (its end state is compared with the unchunked run)."""
    theta = jnp.array([0.8, -0.5, 0.3, 0.6, jnp.nan])
    y0 = State(theta, jnp.array([0.1, 0.4, 1.2, 0.7, 0.2]))
    h = Hyper.loss_decay(0.15, 1.0)
    kw = dict(t1=2.0) if method == "flow" else dict(method="gd", lr=0.01, n_steps=20)
    sol = solve_batch(ScalarSiamese(0.5), SIMSIAM, h, y0, chunk_size=3, **kw)
    assert np.asarray(sol.status).tolist() == [Status.OK] * 4 + [Status.NONFINITE]
    assert np.isfinite(np.asarray(sol.ys.enc)[:4]).all()
    one = solve_batch(ScalarSiamese(0.5), SIMSIAM, h, take_lanes(y0, [3]), **kw)
    np.testing.assert_allclose(np.asarray(sol.ys.enc)[3], np.asarray(one.ys.enc)[0], rtol=1e-12)


def take_lanes(y, idx):
    return jax.tree_util.tree_map(lambda x: x[jnp.asarray(idx)], y)


@pytest.mark.parametrize("k,size,n_dev", [(7, 8, 2), (3, 8, 2), (1, 6, 3), (12, 12, 3),
                                          (5, 5, 1), (4, 16, 4)])
def test_shard_layout_spreads_lanes_evenly_and_keeps_each_shards_lanes_first(k, size, n_dev):
    """Lane ``j`` of a chunk goes to device ``j % n_dev``; every place is used at most once;
    each device integrates its shard's first ``n_valid`` places (the pool's contract: places
    past ``n_valid`` are padding), and the devices' counts differ by at most one lane, also
    for a chunk of fewer lanes than one shard holds."""
    from dynamics.solve.engine import shard_layout

    pos, n_valid = shard_layout(k, size, n_dev)
    shard = size // n_dev
    assert len(set(pos.tolist())) == k and 0 <= pos.min() and pos.max() < size
    assert (pos // shard).tolist() == [j % n_dev for j in range(k)]
    for s in range(n_dev):
        assert sorted(pos[pos // shard == s] % shard) == list(range(n_valid[s]))
    assert n_valid.sum() == k and n_valid.max() - n_valid.min() <= 1


def test_diffrax_is_imported_only_when_used():
    """The sweep command's modules import without diffrax (the engine never needs it), and the
    diffrax path offers the solver names the policy lists."""
    code = ("import sys, dynamics.sweep.__main__; print('diffrax' in sys.modules); "
            "import dynamics.solve as s; from dynamics.solve.policy import DIFFRAX_SOLVERS; "
            "print(tuple(s.SOLVERS) == DIFFRAX_SOLVERS, 'diffrax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert out.stdout.split() == ["False", "True", "True"], out.stdout


def test_compile_only_runs_nothing_and_checks_the_arguments():
    """``compile_only`` returns None on every path (nothing integrated), still names a bad
    argument in one line, and the engine's flow then runs as without it."""
    y0 = State(jnp.array([0.8, -0.5, 0.3]), jnp.array([0.1, 0.4, 1.2]))
    h = Hyper.loss_decay(0.15, 0.05)
    for kw in (dict(t1=2.0), dict(t1=2.0, integrator="diffrax"),
               dict(method="gd", lr=0.01, n_steps=5)):
        assert solve_batch(ScalarSiamese(0.5), SIMSIAM, h, y0, compile_only=True, **kw) is None
    with pytest.raises(ValueError, match="t1"):
        solve_batch(ScalarSiamese(0.5), SIMSIAM, h, y0, t1=-1.0, compile_only=True)
    sol = solve_batch(ScalarSiamese(0.5), SIMSIAM, h, y0, t1=2.0)
    assert np.all(np.asarray(sol.status) == Status.OK)
