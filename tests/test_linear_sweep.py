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
