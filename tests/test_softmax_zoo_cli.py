"""The DINO and SwAV families' command lines on tiny settings: a table, a dataset and a figure
that show the two collapses and the band between them where the closed forms put them
(docs/theory.md 5d, 5e)."""

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr


def _run(*args):
    return subprocess.run([sys.executable, "-m", "dynamics.sweep", *args], capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("model, axes, result", [
    ("dino", ["--variant", "dino-sg", "--tau-t", "0.06", "0.12", "--eta-c", "0", "300"],
     {(0.06, 0.0): "one-output", (0.06, 300.0): "spread", (0.12, 0.0): "uniform",
      (0.12, 300.0): "uniform"}),
    ("swav", ["--eps-ent", "0.05", "0.15", "--n-iter", "0", "1"],
     {(0.05, 0): "one-output", (0.05, 1): "spread", (0.15, 0): "uniform", (0.15, 1): "uniform"}),
])
def test_cli_writes_a_table_a_dataset_and_a_figure(tmp_path, model, axes, result):
    out = tmp_path / model
    r = _run("--model", model, *axes, "--n-init", "2", "--t1", "40", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = xr.open_dataset(out / f"sweep_{model}.nc")
    row, col = ("tau_t", "eta_c") if model == "dino" else ("eps_ent", "n_iter")
    for (a, b), want in result.items():
        got = ds["outcome"].sel({row: a, col: b}).values.ravel()
        assert (got == want).all(), (a, b, got)
    # the closed-form rate decides which rows can separate the samples (eta = 1)
    rate = ds["lambda_d" if model == "dino" else "lambda_q"].values
    assert rate[0] > 1.0 > rate[1]
    # one-output: the mean output sits on one entry; spread: every output used equally
    bal = ds["h_marginal"]
    one = [k for k, v in result.items() if v == "one-output"][0]
    spread = [k for k, v in result.items() if v == "spread"][0]
    assert (bal.sel({row: one[0], col: one[1]}).values < 0.2).all()
    assert (bal.sel({row: spread[0], col: spread[1]}).values > 0.99).all()
    assert "lanes not ok: 0 of 8" in r.stdout and "S 1.00" in r.stdout
    pngs = list(out.glob(f"phase_{model}_*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 10_000
