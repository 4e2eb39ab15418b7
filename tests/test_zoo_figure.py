"""The collapse-zoo figure agrees with the README's table, and every sweep family runs.

The figure's data come from its own data function (no solver is re-run here); the table's
claims are read from the README."""

import dataclasses
import re
from pathlib import Path

import numpy as np

from dynamics.figures import zoo
from dynamics.sweep import FAMILIES, SweepConfig, axes, run

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_figure_and_table_agree_on_the_no_predictor_arm_and_simsiam():
    section = README[README.index("## The collapse zoo"):]
    assert "figures/zoo.png" in section
    row = next(ln for ln in section.splitlines() if ln.startswith("| no predictor"))
    assert "every mode, at every `sigma2`" in row  # the table's claim
    d = zoo.data(quick=True, labels=["SimSiam (Euclidean)", "no predictor"])
    nop, sim = d["runs"]["no predictor"], d["runs"]["SimSiam (Euclidean)"]
    assert (nop["status"] == 0).all() and (sim["status"] == 0).all()
    # no predictor: every mode collapsed at every sigma2 and start
    assert (nop["collapsed_fraction"] == 1).all() and (nop["effective_rank"] == 0).all()
    # SimSiam: never completely collapsed, and fewer modes at the strongest augmentation than
    # at the weakest, as the table says (the closed form: mode j keeps a non-zero fixed point
    # only while eta <= d_j^2 / (4 (d_j + sigma2)): at sigma2 = 8 only the top mode does; a
    # mode just past it is still decaying at t1, so the count is not checked at t1)
    assert (sim["effective_rank"] >= 1).all()
    dd = np.linspace(1.5, 0.5, 4)
    assert np.sum(dd**2 / (4 * (dd + d["sigma2"][-1])) >= zoo.ETA) == 1
    assert sim["effective_rank"][-1].mean() < sim["effective_rank"][0].mean() - 1


def _tiny(options):
    """The family's options with every lane axis cut to its first value and one start."""
    changes = {}
    for f in dataclasses.fields(options):
        v = getattr(options, f.name)
        if f.metadata.get("nargs") == "+" and isinstance(v, tuple):
            changes[f.name] = v[:1]
        elif f.name in ("n_init",):
            changes[f.name] = 1
        elif f.name in ("n", "n_phi"):
            changes[f.name] = 2
    return dataclasses.replace(options, **changes)


def test_every_family_runs_a_tiny_gd_sweep_in_process():
    assert {"scalar", "linear", "barlow", "cosine", "directcopy", "dino", "swav"} <= set(FAMILIES)
    for name, fam in FAMILIES.items():
        d = fam.defaults
        cfg = SweepConfig(model=name, method=("gd",), eta=d["eta"][:1], sigma2=d["sigma2"][:1],
                          variant=tuple(d["variant"])[:1], eps=tuple(d.get("eps", (1.0,)))[:1],
                          t1=10 * d.get("lr", 0.01), options=_tiny(fam.Options()))
        ds = run(cfg)
        assert (ds["status"].values == "ok").all(), name
        assert set(axes(cfg)) <= set(ds.dims), name
        assert list(ds.variant.values) == list(cfg.variant), name
        assert ds["status"].dims == axes(cfg), name
        # besides the status, per-lane results over every lane axis
        per_lane = [k for k, v in ds.data_vars.items()
                    if k != "status" and v.dims[:len(axes(cfg))] == axes(cfg)]
        assert per_lane, name


def test_vicreg_stops_where_the_closed_form_has_no_smooth_fixed_point_and_says_so():
    """VICReg's flow rests on the hinge's corner exactly where the top data direction's
    closed-form standard deviation S* = 2 var s / (d (4 inv sigma2 + eta)), s = gamma + sigma2
    (docs/theory.md 5g), is >= 1; the solver stops there, and the figure draws and records
    those settings instead of dropping them."""
    d = zoo.data(quick=True, labels=["VICReg"])
    run, sig = d["runs"]["VICReg"], d["sigma2"]
    stopped = (run["status"] != 0).any(axis=1)
    var = inv = 25.0  # the paper's weights, the figure's row
    s_top = 1.5 + sig  # X's largest eigenvalue is 1.5
    no_smooth = 2 * var * s_top / (d["n1"] * (4 * inv * sig + zoo.ETA)) >= 1
    assert no_smooth.any() and not no_smooth.all()  # both kinds of setting are on the grid
    assert stopped.tolist() == no_smooth.tolist()
    assert (run["status"][stopped] != 0).all()  # the corner holds every start
    assert np.isnan(run["effective_rank"][stopped]).all()
    assert d["params"]["stopped"] == {"VICReg": [float(v) for v in sig[stopped]]}
    fig = zoo.draw(d)
    marks = [ln for ax in fig.axes for ln in ax.lines if ln.get_marker() == "x"
             and len(ln.get_xdata())]
    assert len(marks) == 1 and np.allclose(marks[0].get_xdata(), sig[stopped])
