"""The sweep CLI end to end: files, names, labels against an independent solve, bad input."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from tests.oracles import p_pm, scalar_field
from scipy.integrate import solve_ivp

from dynamics.sweep import DEFAULTS, T1_DEFAULT


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dynamics.sweep", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def default_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    r = _run("--n", "8", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    return out, xr.open_dataset(out / "sweep.nc")


def test_files_names_and_provenance(default_sweep):
    out, ds = default_sweep
    assert (out / "basins_simsiam.png").stat().st_size > 1000
    assert (out / "basins_simsiam-nosg.png").stat().st_size > 1000
    for c in ("theta0", "phi0", "eps", "eta", "eta_theta", "eta_phi", "sigma2", "beta", "variant", "method"):
        assert c in ds.coords, c
    for v in ("theta", "phi", "theta_a", "status", "collapsed", "decided"):
        assert v in ds.data_vars, v
    assert ds["collapsed"].dtype == bool and ds["decided"].dtype == bool
    assert set(np.unique(ds["status"].values)) <= {"ok", "max_steps", "nonfinite"}
    for a in ("command", "package_version", "dtype", "device", "solver", "rtol", "atol", "t1"):
        assert a in ds.attrs, a
    assert ds.attrs["dtype"] == "float64"
    # loss convention: eta_phi = eta_theta = eta
    assert float(ds["eta_phi"].squeeze()) == float(ds["eta_theta"].squeeze()) == DEFAULTS["eta"][0]
    # SimSiam has no separate target: theta_a is reported equal to theta
    s = ds.sel(variant="simsiam")
    np.testing.assert_array_equal(s["theta_a"].values, s["theta"].values)


def test_labels_match_independent_solve_of_the_theory(default_sweep):
    """Every lane of the stop-gradient default is compared with an independent solve of the
    hand-written field (docs/theory.md 2) by scipy LSODA, classified by where it ends: |theta| < 1e-3 collapsed, or
    the non-trivial fixed point phi = p_+, theta^2 = eta p_+/(1 - a p_+) (the weight-decay-in-
    the-loss convention). Lanes whose label flips when theta0 moves by +-0.03 are within a small
    distance of the basin boundary and are skipped (there must be few of them)."""
    _, ds = default_sweep
    eps, eta, sigma2 = DEFAULTS["eps"][0], DEFAULTS["eta"][0], DEFAULTS["sigma2"][0]
    a = 1 + sigma2
    pp = p_pm(a, eta)[0]
    theta_star = np.sqrt(eta * pp / (1 - a * pp))
    t1 = T1_DEFAULT["flow"]

    def rhs(t, z):
        return scalar_field(z[0], z[1], None, sigma2=sigma2, eps=eps, eta_theta=eta, eta_phi=eta,
                            beta=1.0, target="simsiam", stop_grad=True)[:2]

    def label(th0, ph0):
        z = solve_ivp(rhs, (0, t1), [th0, ph0], method="LSODA", rtol=1e-9, atol=1e-12).y[:, -1]
        if abs(z[0]) < 1e-3:
            return True
        assert abs(abs(z[0]) - theta_star) < 1e-5 and abs(z[1] - pp) < 1e-5, z
        return False

    sub = ds.sel({"variant": "simsiam", "method": "flow"}).squeeze()
    compared = skipped = 0
    cache = {}
    for ph0 in sub.phi0.values:
        for th0 in sub.theta0.values:
            key = (abs(th0), ph0)  # the field is odd in theta: basins are mirror images
            if key not in cache:
                labs = {label(abs(th0) + s, ph0) for s in (-0.03, 0.0, 0.03)}
                cache[key] = labs.pop() if len(labs) == 1 else None
            want = cache[key]
            lane = sub.sel(theta0=th0, phi0=ph0)
            if want is None:
                skipped += 1
                continue
            assert bool(lane.decided), (th0, ph0)
            assert bool(lane.collapsed) == want, (th0, ph0)
            compared += 1
    assert compared >= 0.7 * sub.theta0.size * sub.phi0.size
    # both basins are present with stop-gradient ...
    assert 0 < sub["collapsed"].values.mean() < 1
    # ... and without it everything collapses (docs/theory.md 2)
    nosg = ds.sel({"variant": "simsiam-nosg"})
    assert bool(nosg["collapsed"].all())


def test_sgd_and_byol_run_and_are_reproducible(tmp_path):
    args = ["--n", "3", "--variant", "byol", "--method", "gd", "sgd", "--eps", "0.5", "--t1", "5",
            "--lr", "0.01", "--quiet", "--no-plot"]
    r1 = _run(*args, "--out", str(tmp_path / "a"))
    r2 = _run(*args, "--out", str(tmp_path / "b"))
    assert r1.returncode == 0 and r2.returncode == 0, r1.stderr + r2.stderr
    a = xr.open_dataset(tmp_path / "a" / "sweep.nc")
    b = xr.open_dataset(tmp_path / "b" / "sweep.nc")
    np.testing.assert_array_equal(a["theta"].values, b["theta"].values)
    gd = a.sel({"method": "gd"})["theta"].values
    sgd = a.sel({"method": "sgd"})["theta"].values
    assert not np.array_equal(gd, sgd)
    assert np.all(np.isfinite(sgd))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--eps", "0"], "'0'"),
        (["--eps", "-0.1"], "'-0.1'"),
        (["--eps", "nan"], "'nan'"),
        (["--n", "-4"], "'-4'"),
        (["--variant", "simclr"], "'simclr'"),
        (["--sigma2", "abc"], "'abc'"),
        (["--theta-range", "1", "-1"], "LO < HI"),
    ],
)
def test_bad_values_give_one_line_errors(args, needle, tmp_path):
    r = _run(*args, "--out", str(tmp_path))
    assert r.returncode != 0
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    assert needle in lines[0] and "error" in lines[0]
    assert not (tmp_path / "sweep.nc").exists()


def test_help_documents_every_flag():
    r = _run("--help")
    assert r.returncode == 0
    for flag in ("--eps", "--eta", "--sigma2", "--beta", "--variant", "--method", "--lr", "--out",
                 "--convention", "--t1", "--n"):
        assert flag in r.stdout
    assert "default" in r.stdout


@pytest.mark.parametrize("eta, eps", [(0.05, 0.1), (0.1, 0.01), (0.0, 2.0)])
def test_tian_convention_is_tian_with_alpha_p_one_over_eps(eta, eps):
    from dynamics.flow import Hyper

    got = Hyper.from_convention("tian", eta, eps)
    want = Hyper.tian(eta, 1.0 / eps)
    for field in ("eps", "eta_theta", "eta_phi", "beta"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field), rtol=1e-15)
    loss = Hyper.from_convention("loss", eta, eps)
    assert (loss.eps, loss.eta_theta, loss.eta_phi) == (eps, eta, eta)
    with pytest.raises(ValueError, match="unknown convention 'tyan'"):
        Hyper.from_convention("tyan", eta, eps)


def test_tian_convention_sweep_ends_at_tian_fixed_point():
    """``--convention tian`` at eps = 0.1: a non-collapsed lane ends at phi = p_+ and
    theta^2 = eps p_+^2 (docs/theory.md 4), not at the loss convention's theta^2 = eta p_+/(1 - a p_+)
    (0.37 against 0.037 here). Run in-process on a 4 x 4 grid; convergence at rate 2 eta = 0.1
    over t1 = 300 leaves exp(-30) ~ 1e-13, so the end state is as good as the solver (rtol
    1e-8): 7e-8 observed, tolerance 1e-6."""
    from dynamics.sweep import SweepConfig, run
    from dynamics.sweep.scalar import ScalarOptions

    eps, eta, sigma2 = 0.1, 0.05, 0.5
    ds = run(SweepConfig(eps=(eps,), eta=(eta,), sigma2=(sigma2,), variant=("simsiam",),
                         convention="tian", t1=300.0, options=ScalarOptions(n=4))).squeeze()
    assert ds.attrs["convention"] == "tian"
    np.testing.assert_allclose(float(ds["eta_phi"]), eps * eta, rtol=1e-15)
    assert np.all(ds["status"].values == "ok")
    pp = p_pm(1 + sigma2, eta)[0]
    outcome = ds["outcome"].values
    live = outcome == 0
    assert 0 < live.sum() < live.size - 1  # both basins are in the grid
    np.testing.assert_allclose(np.abs(ds["theta"].values[live]), np.sqrt(eps) * pp, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ds["phi"].values[live], pp, atol=1e-6, rtol=0)
    assert np.all(np.abs(ds["theta"].values[outcome == 1]) < 1e-3)
