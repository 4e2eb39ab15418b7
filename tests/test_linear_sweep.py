"""The sweep CLI on the linear and per-mode models: files, phase-diagram content, bad input."""

import numpy as np
import pytest
import xarray as xr

from dynamics.sweep import main

# d = (1.5, 1.0, 0.5), sigma2 = 0.5: per-mode eta_crit = d^2 / (4 (d + sigma2)) = 0.281, 0.167, 0.0625
SMALL = ["--n1", "3", "--eta", "0.1", "0.2", "0.3", "--eps", "0.1", "--n-init", "3",
         "--t1", "300", "--quiet"]
ETA_CRIT = np.array([1.5**2 / 8, 1.0 / 6, 0.25 / 4])


@pytest.fixture(scope="module", params=["linear", "permode"])
def small_sweep(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    assert main(["--model", request.param, *SMALL, "--out", str(out)]) == 0
    return request.param, out, xr.open_dataset(out / f"sweep_{request.param}.nc")


def test_files_and_provenance(small_sweep):
    model, out, ds = small_sweep
    assert (out / f"phase_{model}_simsiam.png").stat().st_size > 1000
    for v in ("sv", "n_collapsed", "collapsed_fraction", "effective_rank", "norm", "status", "fnorm"):
        assert v in ds.data_vars, v
    for c in ("eta", "eps", "sigma2", "beta", "variant", "method", "init", "eta_crit"):
        assert c in ds.coords, c
    assert ds.attrs["model"] == model and ds.attrs["dtype"] == "float64"
    assert set(ds["status"].values.ravel()) == {"ok"}
    if model == "linear":  # the trained predictor ends aligned with F = W X W^T
        assert float(ds["commutator"].max()) < 1e-3
    np.testing.assert_allclose(np.sort(ds["eta_crit"].values[0]), np.sort(ETA_CRIT), rtol=1e-12)


def test_modes_past_their_saddle_node_collapse(small_sweep):
    """A mode with eta > eta_crit has no non-trivial fixed point, so at least
    #{j: eta_crit_j < eta} singular values must be collapsed at t1, for every initial state."""
    _, _, ds = small_sweep
    nc = ds["n_collapsed"].squeeze(drop=True)  # dims (eta, init)
    for eta in ds.eta.values:
        must = int(np.sum(ETA_CRIT < eta))
        assert np.all(nc.sel(eta=eta).values >= must), (eta, nc.sel(eta=eta).values)
    assert np.all(ds["collapsed_fraction"].sel(eta=0.3).values == 1.0)
    # Effective rank counts only the live modes.
    er = ds["effective_rank"].values
    assert np.all(er <= 3 - ds["n_collapsed"].values + 1e-9)


def test_same_seed_same_result(small_sweep, tmp_path):
    model, _, ds = small_sweep
    # Same arguments as the fixture, so the compiled programs are reused.
    assert main(["--model", model, *SMALL, "--no-plot", "--out", str(tmp_path)]) == 0
    again = xr.open_dataset(tmp_path / f"sweep_{model}.nc")
    np.testing.assert_array_equal(again["sv"].values, ds["sv"].values)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "linear", "--eta", "-1"], "eta must be >= 0, got '-1'"),
        (["--model", "linear", "--x-eig", "2", "1"], "--x-eig needs LO <= HI, got 2 1"),
        (["--model", "permode", "--n1", "3", "--n2", "4"], "--n2 4 differs from --n1 3"),
        (["--model", "tensor"], "invalid choice: 'tensor'"),
        (["--model", "linear", "--phase", "eta", "eta"], "--phase needs two different axes"),
    ],
)
def test_bad_input(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_modes_below_their_saddle_node_survive_at_the_closed_form(small_sweep):
    """The survival side of the phase diagram. A mode j (data variance d_j, a_j = d_j + sigma2)
    that survives sits at its non-trivial fixed point: with weight decay in the loss,
    phi = p_+ = (d_j + sqrt(d_j^2 - 4 a_j eta)) / (2 a_j) and theta^2 = eta p_+ / (d_j - a_j p_+)
    = p_+^2, so its singular value is p_+ (docs/theory.md 3, per mode). So every singular value at
    t1 is either collapsed or the p_+ of a mode below its threshold, and every mode below its
    threshold survives from at least one of the 3 initial states (observed: from all 3 in the
    matrix model, from 2 or 3 per-mode): a bug that collapses every mode fails here. Runs at
    rtol 1e-7 over t1 = 300: observed error 1e-12 (matrix) and 7e-9 (per-mode), checked to 1e-6."""
    _, _, ds = small_sweep
    assert ds.attrs["convention"] == "loss"
    d = np.array([1.5, 1.0, 0.5])  # the x_eig grid of SMALL (default --x-eig 0.5 1.5, n1 = 3)
    a = d + 0.5
    eta_crit = d**2 / (4 * a)
    np.testing.assert_allclose(eta_crit, ETA_CRIT, rtol=1e-15)
    sv = ds["sv"].squeeze(drop=True)  # dims (eta, init, mode)
    # the collapse count is the number of singular values below collapse_tol = 1e-3
    np.testing.assert_array_equal(ds["n_collapsed"].squeeze(drop=True).values,
                                  (sv.values <= 1e-3).sum(-1))
    for eta in ds.eta.values:
        below = eta_crit > eta
        live = ((d + np.sqrt(d**2 - 4 * a * eta, where=below, out=np.zeros(3))) / (2 * a))[below]
        vals = sv.sel(eta=eta).values  # (init, mode)
        for row in vals:
            alive = row[row > 1e-3]
            assert alive.size <= live.size, (eta, row)
            if alive.size:
                err = np.min(np.abs(alive[:, None] - live[None, :]), axis=1)
                assert np.all(err < 1e-6), (eta, row, live)
        for p in live:
            assert np.any(np.abs(vals - p) < 1e-6), (eta, p, vals)
