"""Collapse phase diagrams of the linear model from the linear sweep.

Linear SimSiam over ``eta x eps`` and linear BYOL (``eps = 1``) over ``eta x beta``
(:mod:`dynamics.sweep_linear`): the mean collapsed-mode fraction on each plane, with every
mode's saddle-node ``eta_c = d_j^2 / (4 (d_j + sigma2))``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.figures.registry import register
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.matrix import MatrixOptions

__all__ = ["build", "data", "draw"]


def data(n1=4, sigma2=0.5, etas=tuple(np.round(np.linspace(0.0, 0.35, 15), 4)),
         epss=(1.0, 0.3, 0.1, 0.03), betas=(0.1, 0.3, 1.0, 3.0, 10.0), n_init=6,
         t1=300.0, lr=0.01, x_eig=(0.5, 1.5), seed=0, convention="loss", target0="zero"):
    """Collapse phase diagrams from the linear sweep (:mod:`dynamics.sweep.matrix`).

    Linear SimSiam over ``eta x eps`` and linear BYOL (``eps = 1``) over ``eta x beta``; data
    ``X`` with eigenvalues evenly spaced in ``x_eig`` (so mode ``j`` loses its non-trivial fixed
    points at ``eta_j = d_j^2 / (4 (d_j + sigma2))``), ``X' = sigma2 I``, ``n_init`` random
    initial states per cell, explicit Euler (``--method gd``, step ``lr``) to ``t1``. BYOL's
    target starts as ``target0`` says (``zero``: ``Wa(0) = 0``, Tian et al.'s start, so that
    the EMA rate acts from ``tau(0) = 0``; ``online``: ``Wa(0) = W(0)``). Returns the mean
    collapsed-mode fraction on each plane.
    """
    options = MatrixOptions(n1=n1, n_init=n_init, x_eig=tuple(x_eig))
    common = ["--n1", str(n1), "--sigma2", str(sigma2), "--eta", *map(str, etas),
              "--n-init", str(n_init), "--method", "gd", "--lr", str(lr), "--t1", str(t1),
              "--x-eig", *map(str, x_eig),
              "--seed", str(seed), "--convention", convention, "--quiet", "--no-plot"]
    planes = {}
    for key, variant, extra, axis, axis_values in (
        ("eta_eps", "simsiam", ["--eps", *map(str, epss)], "eps", dict(eps=tuple(epss))),
        ("eta_beta", "byol", ["--eps", "1", "--beta", *map(str, betas), "--target0", target0],
         "beta", dict(eps=(1.0,), beta=tuple(betas), target0=target0)),
    ):
        argv = ["--variant", variant, *extra, *common]
        ds = run(SweepConfig(model="linear", variant=(variant,), sigma2=(sigma2,),
                             eta=tuple(float(e) for e in etas), method=("gd",), lr=lr, t1=t1,
                             seed=seed, convention=convention, options=options,
                             **axis_values))
        frac = ds["collapsed_fraction"].isel(variant=0, method=0, sigma2=0)
        frac = frac.mean(dim=[d for d in frac.dims if d not in ("eta", axis)]).sortby([axis, "eta"])
        planes[key] = dict(frac=frac.transpose("eta", axis).values, axis=frac[axis].values,
                           command="python -m dynamics.sweep --model linear " + " ".join(argv[:-2]))
        eta_crit = np.asarray(ds["eta_crit"].values[0])
        x_modes = np.asarray(ds["x_eig"].values)
    return dict(etas=np.sort(np.asarray(etas, float)), eta_crit=eta_crit, x_eig=x_modes, **planes,
                params=dict(n1=n1, n2=n1, sigma2=sigma2, etas=list(etas), epss=list(epss),
                            betas=list(betas), n_init=n_init, t1=t1, lr=lr, x_eig=list(x_eig),
                            seed=seed, convention=convention,
                            init=f"W0 entries ~ N(0, {options.init_scale:g}^2 / n1), Wp0 entries "
                                 f"~ N(0, {options.pred_scale:g}^2 / n1) (the linear sweep's "
                                 f"defaults), {n_init} draws from seed {seed}; BYOL target "
                                 f"Wa(0) = {'0' if target0 == 'zero' else 'W(0)'} "
                                 f"(--target0 {target0})",
                            target0=target0,
                            paper="none: this project's phase diagrams of Tian et al.'s "
                                  "linear model",
                            sweeps=[planes["eta_eps"]["command"], planes["eta_beta"]["command"]]))


def draw(data):
    """Collapse phase diagrams of the linear model: mean collapsed-mode fraction over
    (eta, eps) for SimSiam and (eta, beta) for BYOL, with every mode's eta_c marked."""
    pr = data["params"]
    etas = data["etas"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    # one colour and one dash pattern per mode, so no two eta_c lines look alike
    styles = ("-", "--", ":", "-.", (0, (1, 4)))
    colors = ("c", "m", "w", "orange", "r")
    wa0 = "0" if pr.get("target0", "online") == "zero" else "W(0)"
    for ax, key, sym, title in ((axes[0], "eta_eps", r"\varepsilon", "linear SimSiam"),
                                (axes[1], "eta_beta", r"\beta",
                                 rf"linear BYOL ($\varepsilon$ = 1), target from "
                                 rf"$W_a(0)$ = {wa0}")):
        d = data[key]
        mesh = plot.phase_diagram(ax, d["axis"], etas, d["frac"])
        cb = fig.colorbar(mesh, ax=ax)
        cb.set_label("collapsed-mode fraction (mean over initial states)")
        for k, (ec, xe) in enumerate(zip(data["eta_crit"], data["x_eig"])):
            if etas[0] <= ec <= etas[-1]:
                ax.axhline(ec, color=colors[k % len(colors)], lw=1.4, ls=styles[k % len(styles)],
                           label=rf"$\eta_c$ of the mode with $d_j$={xe:.3g}: {ec:.3g}")
        ax.set_xlabel(rf"${sym}$ (log scale)")
        ax.set_ylabel(r"weight decay $\eta$")
        ax.set_title(title, fontsize=10)
        plot.dedup_legend(ax, loc="upper left", fontsize=6.5)
    fig.suptitle(
        rf"Collapse phase diagrams of the linear model ($n_1=n_2$={pr['n1']}), "
        rf"$X$ with eigenvalues $d_j$ in [{pr['x_eig'][0]:g}, {pr['x_eig'][1]:g}], "
        rf"$X'=\sigma^2 I$, $\sigma^2$={pr['sigma2']:g}, '{pr['convention']}' decay convention" "\n"
        rf"{pr['n_init']} random initial states per cell, Euler step {pr['lr']:g} "
        rf"to $t_1$={pr['t1']:g}; a mode is "
        r"collapsed when its singular value of $W(t_1)$ is below $10^{-3}$; "
        r"$\eta_c = d_j^2 / (4(d_j+\sigma^2))$", fontsize=9.5)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


@register(
    "phase",
    "Collapse phase diagrams of the linear model (dynamics.sweep --model linear): mean "
    "collapsed-mode fraction over (eta, eps) for SimSiam and (eta, beta) for BYOL, with "
    "each mode's saddle-node eta_c = d_j^2 / (4 (d_j + sigma2)).",
)
def build(quick):
    if quick:
        kw = dict(n1=2, etas=(0.0, 0.1, 0.2, 0.3), epss=(1.0, 0.1), betas=(0.3, 3.0), n_init=1,
                  t1=50.0)
    else:
        kw = {}
    d = data(**kw)
    return draw(d), d["params"]
