"""Collapse basins of scalar SimSiam with the theory's basin boundary.

The simulated outcome over a grid of ``(theta0, phi0)`` starts (the sweep,
:mod:`dynamics.sweep`) for several predictor time scales ``eps``, with and without
stop-gradient; overlaid, the fixed points and the stable manifolds of the saddles (backward
flow from each saddle along its stable eigenvector), which bound the basins.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.scalar import ScalarOptions

__all__ = ["build", "data", "draw"]


def data(eps=(1.0, 0.1, 0.01), eta=0.1, sigma2=0.5, convention="loss", n=64, t1=200.0,
         theta_range=(-1.0, 1.0), phi_range=(-1.0, 2.0),
         variants=("simsiam", "simsiam-nosg")):
    """Simulated basins (``dynamics.sweep``) plus fixed points and saddle stable manifolds.

    Returns ``dict(ds=Dataset, theory={(variant, eps): dict(fixed=[...], manifolds=[...])})``;
    the manifolds are arrays (n, 2) of ``(theta, phi)``.
    """
    ds = run(SweepConfig(eps=tuple(eps), eta=(eta,), sigma2=(sigma2,), variant=tuple(variants),
                         convention=convention, t1=t1,
                         options=ScalarOptions(theta_range=tuple(theta_range),
                                               phi_range=tuple(phi_range), n=n)))
    model = ScalarSiamese(sigma2=sigma2)
    theory = {}
    box = max(abs(x) for x in (*theta_range, *phi_range)) * 1.5
    for vn in variants:
        v = VARIANTS[vn]
        for e in eps:
            hyper = Hyper.from_convention(convention, eta, e)
            fps = C.fixed_points(model, v, hyper, C.seed_grid(theta_range, phi_range))
            mans = []
            for p in fps:
                if p["kind"] == "saddle":
                    mans.extend(C.stable_manifold(model, v, hyper, p, bound=box))
            theory[(vn, float(e))] = dict(fixed=fps, manifolds=mans)
    params = dict(eps=list(eps), eta=eta, sigma2=sigma2, convention=convention, n=n, t1=t1,
                  theta_range=list(theta_range), phi_range=list(phi_range),
                  variants=list(variants), paper="none: this project's basin analysis")
    return dict(ds=ds, theory=theory, params=params)


def draw(data):
    """Simulated basins of scalar SimSiam (rows: variant, columns: eps) with the theory's
    basin boundary (stable manifolds of the saddles) and fixed points overlaid."""
    ds, theory, pr = data["ds"], data["theory"], data["params"]
    variants = list(ds.variant.values)
    eps_list = list(ds.eps.values)
    nr, nc = len(variants), len(eps_list)
    fig, axes = plt.subplots(nr, nc, figsize=(3.9 * nc + 0.4, 3.6 * nr + 1.2), squeeze=False)
    th, ph = ds["theta0"].values, ds["phi0"].values
    extent = (th[0], th[-1], ph[0], ph[-1])
    for i, v in enumerate(variants):
        for j, e in enumerate(eps_list):
            ax = axes[i, j]
            o = ds["outcome"].sel(variant=v, eps=e).isel(method=0, eta=0, sigma2=0, beta=0)
            panel = o.transpose("phi0", "theta0").values
            plot.draw_outcomes(ax, panel, extent, alpha=0.85)
            t = theory[(str(v), float(e))]
            for k, m in enumerate(t["manifolds"]):
                ax.plot(m[:, 0], m[:, 1], color="k", lw=2.0, zorder=5,
                        label="theory: stable manifold of saddle" if k == 0 else None)
            if not t["manifolds"]:
                ax.plot([], [], " ", label="theory: no saddle, every start collapses")
            fx = [p["z"] for p in t["fixed"]]
            if fx:
                plot.draw_fixed_points(ax, [z[0] for z in fx], [z[1] for z in fx],
                                  [p["kind"] for p in t["fixed"]])
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
            frac = np.mean(panel == 1)
            sg = "with stop-grad" if not str(v).endswith("nosg") else "without stop-grad"
            ax.set_title(rf"{sg}, $\varepsilon$={e:g}; collapsed {frac:.0%}", fontsize=9)
            ax.set_xlabel(r"$\theta_0$ (encoder)")
            ax.set_ylabel(r"$\varphi_0$ (predictor)")
            plot.dedup_legend(ax, loc="upper left", fontsize=6)
    plot.outcome_legend(fig, title="simulated outcome at $t_1$")
    conv = ("weight decay in the loss, $\\eta_\\theta=\\eta_\\varphi=\\eta$"
            if pr["convention"] == "loss" else "Tian convention, $\\eta_\\varphi=\\varepsilon\\eta$")
    fig.suptitle(
        rf"Collapse basins of scalar SimSiam, $\sigma^2$={pr['sigma2']:g}, $\eta$={pr['eta']:g} "
        rf"({conv}), gradient flow to $t_1$={pr['t1']:g}, {pr['n']}$\times${pr['n']} starts" "\n"
        "black: basin boundary from theory = stable manifold of the saddle "
        "(backward flow from the saddle along its stable eigenvector)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return fig


@register(
    "basins",
    "Collapse basins of scalar SimSiam over (theta0, phi0) for several predictor time "
    "scales eps, with and without stop-gradient, with the theoretical basin boundary "
    "(stable manifold of the saddle) and the fixed points overlaid.",
)
def build(quick):
    kw = dict(eps=(1.0, 0.1), n=12) if quick else dict(eps=(1.0, 0.1, 0.01), n=64)
    d = data(**kw)
    return draw(d), d["params"]
