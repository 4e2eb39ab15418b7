"""The InfoNCE, MoCo and VICReg families' command lines on tiny settings: each writes a table,
a dataset and a figure that put collapse where the closed forms say (docs/theory.md 5f, 5g),
and offers only the flags it reads."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr


def _run(*args):
    return subprocess.run([sys.executable, "-m", "dynamics.sweep", *args], capture_output=True,
                          text=True, timeout=600)


def test_infonce_cli_collapses_each_mode_past_2_gamma_over_tau(tmp_path):
    out = tmp_path / "infonce"
    r = _run("--model", "infonce", "--n1", "2", "--x-eig", "0.5", "1.0", "--tau", "0.5", "1",
             "--eta", "0", "1.5", "3", "--n-init", "1", "--t1", "60", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = xr.open_dataset(out / "sweep_infonce.nc")
    assert list(ds.variant.values) == ["infonce"]
    cf = ds["collapsed_fraction"].squeeze().transpose("eta", "tau").values
    # by hand: mode k (gamma = 1.0, 0.5) is lost iff eta >= 2 gamma / tau; every eta here is
    # at least 0.5 from a threshold, so the slowest decay (rate 1) is done by t1 = 60
    want = np.array([[np.mean([e >= 2 * g / t for g in (1.0, 0.5)]) for t in (0.5, 1.0)]
                     for e in (0.0, 1.5, 3.0)])
    np.testing.assert_array_equal(cf, want)
    assert "lanes not ok: 0 of 6" in r.stdout and "2 gamma_k / tau" in r.stdout
    assert (out / "phase_infonce_infonce.png").stat().st_size > 10_000


def test_moco_cli_long_queue_with_fast_keys_leaves_the_fixed_point(tmp_path):
    out = tmp_path / "moco"
    r = _run("--model", "moco", "--n1", "1", "--x-eig", "1", "1", "--tau", "0.5", "--queue",
             "1", "16", "--beta", "0.1", "10", "--eta", "0", "--n-init", "1", "--t1", "200",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = xr.open_dataset(out / "sweep_moco.nc")
    off = ds["off"].squeeze().transpose("queue", "beta").values
    lam = ds["lambda_max"].squeeze().transpose("queue", "beta").values
    # only queue 16 with fast keys (beta = 10) is unstable (+0.038); the stable cells decay at
    # rates >= 0.06, so by t1 = 200 they are within e^-12 of u*
    np.testing.assert_array_equal(lam > 0, [[False, False], [False, True]])
    assert off[1, 1] > 0.05
    assert np.all(np.delete(off.ravel(), 3) < 1e-4)
    assert "lanes not ok: 0 of 4" in r.stdout
    assert (out / "moco_moco.png").stat().st_size > 10_000


def test_vicreg_cli_loses_rank_without_the_covariance_term(tmp_path):
    out = tmp_path / "vicreg"
    r = _run("--model", "vicreg", "--cov", "0", "200", "--sigma2", "0.5", "--n-init", "1",
             "--t1", "40", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = xr.open_dataset(out / "sweep_vicreg.nc")
    cf = ds["collapsed_fraction"].squeeze().values
    # cov = 0: every output on one direction (2 of 3 singular values gone); cov = 200 is
    # above cov_crit = 45 (sigma2 = 0.5): the aligned full-rank state, every mode at u*
    np.testing.assert_array_equal(cf, [2 / 3, 0.0])
    assert float(ds["cov_crit"].squeeze()) < 200
    sv2 = ds["sv"].squeeze().sel(cov=200.0).values ** 2
    np.testing.assert_allclose(sv2, ds["u_star"].squeeze().values, rtol=1e-6)
    assert (out / "phase_vicreg_vicreg.png").stat().st_size > 10_000


@pytest.mark.parametrize("model, absent, present", [
    ("infonce", {"--eps", "--beta", "--convention"}, {"--tau", "--eta", "--sigma2", "--batch"}),
    ("moco", {"--eps", "--convention"}, {"--tau", "--queue", "--beta", "--push-rate"}),
    ("vicreg", {"--eps", "--beta", "--convention"}, {"--inv", "--var", "--cov", "--epsilon"}),
])
def test_flags_and_labels(model, absent, present):
    from dynamics.sweep import SweepConfig, build_parser

    p = build_parser(model)
    flags = {a for act in p._actions for a in act.option_strings}
    assert not flags & absent and present <= flags
    with pytest.raises(ValueError, match="unknown variant 'simsiam'"):
        SweepConfig(model=model, variant=("simsiam",))


def test_bad_flag_values_are_one_line_errors(tmp_path):
    for args, msg in ((["--model", "moco", "--queue", "0"], "queue must be > 0, got '0'"),
                      (["--model", "infonce", "--tau", "-1"], "tau must be > 0, got '-1'"),
                      (["--model", "vicreg", "--cov", "-2"], "cov must be >= 0, got '-2'")):
        r = _run(*args, "--out", str(tmp_path / "x"))
        assert r.returncode == 2 and msg in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()[-1]) < 200 and "Traceback" not in r.stderr


def test_plane_figure_hatches_exactly_the_cells_with_unfinished_lanes():
    """A cell whose lanes did not all reach t1 is averaged from fewer lanes (or none): the
    shared phase-plane figure hatches it and says so; finished cells are left plain."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.patches import Rectangle

    from dynamics.sweep._planes import plane_figure

    sig, cov = [0.1, 0.5, 2.0], [0.0, 10.0]
    shape = (1, 1, 3, 2, 4)  # variant, method, sigma2, cov, init
    status = np.full(shape, "ok", dtype=object)
    status[0, 0, 0, :, :] = "max_steps"  # every lane of sigma2 = 0.1
    status[0, 0, 2, 1, 3] = "nonfinite"  # one lane of (2.0, 10)
    ds = xr.Dataset(
        {"status": (("variant", "method", "sigma2", "cov", "init"), status.astype(str)),
         "rank": (("variant", "method", "sigma2", "cov", "init"), np.ones(shape))},
        coords={"variant": ["vicreg"], "method": ["flow"], "sigma2": sig, "cov": cov},
        attrs={"model": "vicreg", "n1": 3, "t1": 60.0})
    fig = plane_figure(ds, "vicreg", "flow", "sigma2", "cov", [("rank", "rank", "viridis", 3)])
    ax = fig.axes[0]
    cells = sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches
                   if isinstance(p, Rectangle) and p.get_hatch())
    assert cells == [(0, 0), (0, 1), (2, 1)]
    assert "hatched" in fig._suptitle.get_text()
    ds["status"][:] = "ok"
    fig = plane_figure(ds, "vicreg", "flow", "sigma2", "cov", [("rank", "rank", "viridis", 3)])
    assert not [p for p in fig.axes[0].patches if p.get_hatch()]
    assert "hatched" not in fig._suptitle.get_text()
