"""The sweep library: ``run(SweepConfig)``, its checks, its invariants, and the old names.

The CLI is a thin layer over ``run``; these tests hold the library to what the CLI promises:
one-line errors naming the bad value, results that do not depend on how lanes are chunked or on
which integrator runs the flow (beyond the solver's tolerance), and the old entry points still
working with a deprecation warning."""

import argparse
import dataclasses

import numpy as np
import pytest
import xarray as xr

import dynamics.sweep as sweep
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.matrix import MatrixOptions
from dynamics.sweep.scalar import ScalarOptions

TINY = ScalarOptions(n=4)


@pytest.mark.parametrize("kw, needle", [
    (dict(eps=(0.0,)), "eps must be > 0, got 0.0"),
    (dict(eta=(-1.0,)), "eta must be >= 0, got -1.0"),
    (dict(eps=(0.1, 0.1)), "--eps lists a value twice: 0.1 0.1"),
    (dict(variant=("simclr",)), "unknown variant 'simclr'"),
    (dict(method=("adam",)), "unknown method 'adam'"),
    (dict(model="resnet"), "unknown model 'resnet'"),
    (dict(convention="paper"), "unknown convention 'paper'"),
    (dict(target0="random"), "unknown target0 'random'"),
    (dict(seed=2**63), "seed must be <="),
    (dict(t1=float("nan")), "t1 must be finite"),
    (dict(method=("gd",), lr=0.5, eps=(0.1,)), "--lr 0.5 is too large for eps 0.1"),
    (dict(solver="tsit5", integrator="engine"), "--solver tsit5 needs --engine diffrax"),
    (dict(solver="rodas4", integrator="diffrax"), "--solver rodas4 needs --engine batched"),
    (dict(options=ScalarOptions(n=1)), "grid needs at least 2 points per axis"),
    (dict(options=ScalarOptions(theta_range=(1.0, -1.0))), "--theta-range needs LO < HI"),
    (dict(options=ScalarOptions(n=-3)), "n must be > 0, got -3"),
    (dict(options=MatrixOptions()), "options of --model scalar must be ScalarOptions"),
    (dict(model="permode", options=MatrixOptions(n1=3, n2=4)), "--n2 4 differs from --n1 3"),
])
def test_bad_config_is_one_line_naming_the_value(kw, needle):
    with pytest.raises(ValueError) as e:
        SweepConfig(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_config_is_frozen_and_takes_the_family_defaults():
    c = SweepConfig(model="linear", eta=[0.1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.eps = (1.0,)
    assert c.eta == (0.1,) and c.eps == (1.0, 0.1, 0.03) and c.t1_for("flow") == 300.0
    assert isinstance(c.options, MatrixOptions) and c.flow_integrator == "engine"
    s = SweepConfig()
    assert s.variant == ("simsiam", "simsiam-nosg") and s.t1_for("sgd") == 60.0
    assert s.flow_integrator == "engine"
    assert SweepConfig(solver="kvaerno5").flow_integrator == "diffrax"
    assert SweepConfig(model="linear", solver="tsit5").flow_integrator == "diffrax"


def test_cli_writes_what_run_returns(tmp_path):
    """The CLI adds nothing to the numbers: its file holds ``run(config)``'s data variables."""
    out = tmp_path / "o"
    argv = ["--n", "4", "--eps", "1", "0.05", "--variant", "simsiam", "byol", "--t1", "20",
            "--out", str(out), "--quiet", "--no-plot", "--no-compile-cache"]
    assert sweep.main(argv) == 0
    cli = xr.load_dataset(out / "sweep.nc")
    lib = run(SweepConfig(eps=(1.0, 0.05), variant=("simsiam", "byol"), t1=20.0, options=TINY))
    assert cli.attrs["command"] == "python -m dynamics.sweep " + " ".join(argv)
    for k in lib.data_vars:
        np.testing.assert_array_equal(cli[k].values, lib[k].values, err_msg=k)


@pytest.mark.parametrize("target0", ["online", "zero"])
def test_byol_target_starts_where_target0_says(target0):
    """Scalar BYOL lanes against scipy's DOP853 (rtol 1e-11) on the hand-written field of
    docs/theory.md from theta_a(0) = theta0 (online) or 0 (zero). The sweep's flow runs at
    rtol 1e-8 / atol 1e-10 to t1 = 5, so the end states agree to well under 1e-6; the two starts
    differ there by 1e-2 and more, so a sweep that ignored target0 fails one of the cases."""
    from scipy.integrate import solve_ivp

    from tests.oracles import scalar_field

    eta, beta, t1 = 0.05, 0.3, 5.0
    ds = run(SweepConfig(variant=("byol",), convention="tian", eps=(1.0,), eta=(eta,),
                         beta=(beta,), t1=t1, target0=target0, options=ScalarOptions(n=3)))
    assert ds.attrs["target0"] == target0
    lane = ds.isel(variant=0, method=0, eps=0, eta=0, sigma2=0, beta=0)
    kw = dict(sigma2=0.5, eps=1.0, eta_theta=eta, eta_phi=eta, beta=beta, target="byol",
              stop_grad=True)
    for phi0 in lane.phi0.values:
        for theta0 in lane.theta0.values:
            ta0 = theta0 if target0 == "online" else 0.0
            ref = solve_ivp(lambda t, z: scalar_field(*z, **kw), (0.0, t1), [theta0, phi0, ta0],
                            method="DOP853", rtol=1e-11, atol=1e-13).y[:, -1]
            got = lane.sel(phi0=phi0, theta0=theta0)
            np.testing.assert_allclose([float(got.theta), float(got.phi), float(got.theta_a)],
                                       ref, atol=1e-6)


def test_matrix_byol_target_start_is_an_option_recorded_in_the_dataset():
    """The linear family starts BYOL's target at W(0) or at 0 as asked, and says which. The
    target drives W, so at t1 = 1 the encoder's singular values differ between the two starts
    (observed: by up to 0.19; 1e-3 asked); SimSiam lanes have no target and do not change."""
    kw = dict(model="linear", variant=("byol", "simsiam"), eps=(1.0,), eta=(0.05,), t1=1.0,
              options=MatrixOptions(n1=2, n_init=2))
    a, b = run(SweepConfig(target0="online", **kw)), run(SweepConfig(target0="zero", **kw))
    assert (a.attrs["target0"], b.attrs["target0"]) == ("online", "zero")
    sv_a, sv_b = (x["sv"].sel(variant="byol").values for x in (a, b))
    assert np.max(np.abs(sv_a - sv_b)) > 1e-3
    np.testing.assert_array_equal(a["sv"].sel(variant="simsiam").values,
                                  b["sv"].sel(variant="simsiam").values)


def test_sgd_does_not_depend_on_the_chunking():
    """Lane ``i``'s noise is ``fold_in(key, i)`` and then one key a segment, so cutting the lanes
    into chunks of 5 (the last one padded) or one chunk of all 32 draws the same noise: the
    runs agree to rounding (a batch of another shape may sum in another order: 3e-16
    observed, tolerance 1e-12), while another seed moves them by ~1e-2."""
    kw = dict(method=("sgd",), variant=("simsiam", "byol"), eps=(0.5,), t1=2.0, lr=0.01,
              options=ScalarOptions(n=4, n_phi=4))
    a, b = run(SweepConfig(**kw)), run(SweepConfig(chunk=5, **kw))
    for k in ("theta", "phi", "theta_a", "enc_mean"):
        np.testing.assert_allclose(a[k].values, b[k].values, rtol=0, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(a["outcome"].values, b["outcome"].values)
    np.testing.assert_array_equal(a["theta"].values, run(SweepConfig(**kw))["theta"].values)
    c = run(SweepConfig(seed=1, **kw))
    assert np.max(np.abs(a["theta"].values - c["theta"].values)) > 1e-4


def test_matrix_sweep_on_the_engine_agrees_with_diffrax():
    """The matrix families run on either integrator; at rtol 1e-9 both solve the same flow, so
    their final singular values agree to well within 1e-6 (a stiff eps = 0.1 lane included:
    Rodas5P on the engine after the per-lane switch, Tsit5 on diffrax)."""
    kw = dict(model="linear", eps=(1.0, 0.1), eta=(0.05, 0.3), t1=30.0, rtol=1e-9, atol=1e-11,
              options=MatrixOptions(n1=3, n_init=2))
    eng = run(SweepConfig(integrator="engine", **kw))
    dfx = run(SweepConfig(integrator="diffrax", **kw))
    assert (eng["status"].values == "ok").all() and (dfx["status"].values == "ok").all()
    np.testing.assert_allclose(eng["sv"].values, dfx["sv"].values, atol=1e-6)
    assert "switching per lane to rodas5p (batched)" in eng.attrs["solver"]
    assert "tsit5 (diffrax)" in dfx.attrs["solver"]


def test_old_entry_points_warn_and_still_work():
    parser = sweep.build_parser()
    args = parser.parse_args(["--n", "4", "--variant", "simsiam", "--t1", "5", "--quiet"])
    with pytest.warns(DeprecationWarning, match="run_sweep is deprecated"):
        old = sweep.run_sweep(args)
    new = run(SweepConfig(variant=("simsiam",), t1=5.0, options=TINY))
    np.testing.assert_array_equal(old["theta"].values, new["theta"].values)
    with pytest.warns(DeprecationWarning, match="solver_for"):
        assert sweep.solver_for(0.01, "auto", "batched") == "rodas4"
    import dynamics.sweep_linear as sweep_linear

    with pytest.warns(DeprecationWarning, match="build_parser"):
        a = sweep_linear.build_parser().parse_args(["--n1", "3"])
    assert isinstance(a, argparse.Namespace) and a.model == "linear" and a.n1 == 3
    with pytest.warns(DeprecationWarning, match="git_revision"):
        assert sweep._git_revision() == sweep.git_revision()


# --- gd in segments, and statuses of padded chunks, against a hand-written GD loop -------------


def _gd_by_hand(theta, phi, *, sigma2, eta, eps, lr, n):
    """Exactly ``n`` explicit GD steps of scalar SimSiam with stop-gradient, weight decay in
    the loss (docs/theory.md sections 1-2: theta' = -theta (a phi^2 - phi + eta),
    eps phi' = theta^2 (1 - a phi) - eta phi), both updated from the old state."""
    a = 1.0 + sigma2
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(n):
            theta, phi = (theta - lr * theta * (a * phi**2 - phi + eta),
                          phi - (lr / eps) * (theta**2 * (a * phi - 1.0) + eta * phi))
    return theta, phi


def test_segments_add_up_to_every_step():
    for n in range(1, 260):
        first, length, count = sweep.segments(n)
        assert first + (count - 1) * length == n and first >= length >= 1, n


def test_gd_sweep_takes_every_step_to_t1():
    """t1 = 1.07 at lr = 0.01 is 107 steps, 50 segments of 2 with the remainder 7 in the first:
    a lane must end where exactly 107 hand-written steps end (a run that dropped the remainder
    stops at t = 1.00, 7 steps short, off by ~1e-3 here). Tolerance 1e-12: the two loops differ
    only in rounding (~1e-16 a step)."""
    opts = ScalarOptions(n=2, n_phi=2, theta_range=(-0.9, 0.7), phi_range=(-0.4, 1.5))
    config = SweepConfig(variant=("simsiam",), method=("gd",), eps=(0.5,), eta=(0.15,),
                         sigma2=(0.5,), t1=1.07, lr=0.01, options=opts)
    assert sweep.plan(config)["steps"]["gd"] == 107
    ds = run(config)
    pick = {"variant": "simsiam", "method": "gd", "eps": 0.5, "eta": 0.15, "sigma2": 0.5,
            "beta": 1.0}
    th0, ph0 = np.meshgrid(ds["theta0"].values, ds["phi0"].values)
    theta, phi = _gd_by_hand(th0, ph0, sigma2=0.5, eta=0.15, eps=0.5, lr=0.01, n=107)
    short, _ = _gd_by_hand(th0, ph0, sigma2=0.5, eta=0.15, eps=0.5, lr=0.01, n=100)
    assert np.abs(short - theta).max() > 1e-4  # the check can tell 100 steps from 107
    got = ds.sel(pick).transpose("phi0", "theta0")
    np.testing.assert_allclose(got["theta"].values, theta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["phi"].values, phi, rtol=1e-12, atol=1e-15)


def test_a_failing_last_lane_of_a_padded_chunk_is_the_only_failed_lane():
    """Eight lanes (sigma2 in {0.5, 1e300} x a 2 x 2 grid with theta0 in {0, 0.5}) in chunks of
    three: the last chunk holds lanes 6 (theta0 = 0) and 7 (theta0 = 0.5) of sigma2 = 1e300 and
    a padding copy of lane 7. With sigma2 = 1e300 a start at theta0 = 0.5 overflows within two
    GD steps, one at theta0 = 0 stays finite (theta stays 0): the hand-written loop says which.
    Each status must land on its own lane, not be read from the chunk's padded end."""
    sigma2 = (0.5, 1e300)
    opts = ScalarOptions(n=2, theta_range=(0.0, 0.5), phi_range=(0.2, 0.8))
    config = SweepConfig(variant=("simsiam",), method=("gd",), eps=(1.0,), eta=(0.1,),
                         sigma2=sigma2, t1=0.1, lr=0.01, chunk=3, options=opts)
    ds = run(config).squeeze(["variant", "method", "eps", "eta", "beta"])
    ds = ds.transpose("sigma2", "phi0", "theta0")
    th0, ph0 = np.meshgrid(ds["theta0"].values, ds["phi0"].values)
    for i, s in enumerate(sigma2):
        theta, phi = _gd_by_hand(th0, ph0, sigma2=s, eta=0.1, eps=1.0, lr=0.01, n=10)
        finite = np.isfinite(theta) & np.isfinite(phi)
        status = ds["status"].values[i]
        np.testing.assert_array_equal(status, np.where(finite, "ok", "nonfinite"))
        np.testing.assert_allclose(ds["theta"].values[i][finite], theta[finite], rtol=1e-12)
    assert ds["status"].values.reshape(-1)[-3:].tolist() == ["nonfinite", "ok", "nonfinite"]


# --- the local backend's pipeline (a unit written while the next integrates) -------------------


def _chunked():
    # 16 lanes a block; --chunk 6 makes units of one phi0 row (4 lanes): 4 a block, 8 in all;
    # eps 1 and 0.05 run both engine methods
    return SweepConfig(variant=("simsiam",), eps=(1.0, 0.05), t1=20.0, chunk=6, options=TINY)


def test_pipelined_backend_gives_the_sequential_dataset_bit_for_bit():
    """The pipelined local backend (the default) and the sequential loop give the same Dataset:
    every variable equal to the bit, the same attributes; and they finish the units in order."""
    from dynamics.sweep.core import LocalBackend, MemorySink, plan

    config = _chunked()
    seq = run(config, backend=LocalBackend(pipeline=False))
    pip = run(config, backend=LocalBackend(pipeline=True))
    xr.testing.assert_identical(seq.drop_attrs(), pip.drop_attrs())
    assert {k: v for k, v in seq.attrs.items() if k != "created"} == \
        {k: v for k, v in pip.attrs.items() if k != "created"}
    for k in seq.data_vars:
        np.testing.assert_array_equal(seq[k].values, pip[k].values, err_msg=k)

    order = []
    pl = plan(config)
    sink = MemorySink(config, pl)

    def put(unit, got):
        order.append(unit.index)
        sink.put(unit, got)

    units = sweep.core.work_units(config, pl)
    LocalBackend().run(config, pl, units, put)
    assert order == [u.index for u in units] and len(order) == 8


def test_pipelined_backend_finishes_what_it_handed_over_and_raises_its_error():
    """A stop asked between units: every unit integrated before it is finished (in the sink)
    when ``run`` returns. An error in a unit's ``on_done`` reaches the caller, and no unit after
    the one that raised is finished."""
    from dynamics.sweep.core import LocalBackend, MemorySink, plan

    config = _chunked()
    pl = plan(config)
    units = sweep.core.work_units(config, pl)
    sink = MemorySink(config, pl)
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 4  # four units integrated, then stop

    LocalBackend().run(config, pl, units, sink.put, should_stop=should_stop)
    assert sink.finished == {0, 1, 2, 3}

    done = []

    def put(unit, got):
        if unit.index == 2:
            raise OSError("disk full")
        done.append(unit.index)

    with pytest.raises(OSError, match="disk full"):
        LocalBackend().run(config, pl, units, put)
    assert done == [0, 1]


def test_the_next_block_is_prepared_while_a_block_of_several_units_runs(monkeypatch):
    """The pipelined backend prepares the next block's first unit once a block's first unit
    has run, and only where that block has more units to run; preparing integrates nothing
    (the Dataset is the sequential loop's, above)."""
    from dynamics.sweep.core import LocalBackend, MemorySink, Runner, plan

    config = _chunked()  # two blocks (eps 1 and 0.05) of four units
    pl = plan(config)
    units = sweep.core.work_units(config, pl)
    assert sweep.core._next_blocks(units) == {0: units[4]}
    assert sweep.core._next_blocks(units[3:]) == {}  # the first block has one unit left
    prepared = []
    real = Runner.prepare
    monkeypatch.setattr(Runner, "prepare", lambda self, u: prepared.append(u) or real(self, u))
    LocalBackend().run(config, pl, units, MemorySink(config, pl).put)
    assert prepared == [units[4]]
