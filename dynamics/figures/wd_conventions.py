"""Both weight-decay conventions over the predictor time scale eps (scalar SimSiam).

``loss``: decay inside the loss, ``eta_theta = eta_phi = eta`` (the slow-fast system).
``tian``: Tian, Chen & Ganguli (2021), ``alpha_p = 1/eps``, ``eta_theta = eta``,
``eta_phi = eps * eta``. At ``eps = 1`` they coincide. The non-trivial stable fixed point has
``phi = p_+ = (1 + sqrt(1 - 4 a eta)) / (2a)`` in both; the encoder there is

    tian:  theta*^2 = eps p_+^2               (shrinks like sqrt(eps): Tian's Obs. 2)
    loss:  theta*^2 = eta p_+ / (1 - a p_+)   (independent of eps)

At the default sweep's ``eta = 0.15``, ``sigma2 = 0.5``: ``|theta*| = 0.439`` for every eps in
the loss convention, and ``0.439 -> 0.044`` from ``eps = 1`` to ``0.01`` in Tian's; a fast
predictor lets fewer starts collapse in Tian's convention, but the encoder it keeps is small.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.figures.registry import register
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.scalar import ScalarOptions

__all__ = ["build", "data", "draw", "theta_star"]

CONVENTIONS = ("loss", "tian")


def theta_star(convention, eps, eta, sigma2):
    """``|theta|`` at the stable non-trivial fixed point (nan past ``eta = 1/(4a)``)."""
    a = 1.0 + sigma2
    disc = 1.0 - 4.0 * a * eta
    if disc < 0:
        return np.full(np.shape(eps), np.nan)
    p = (1.0 + np.sqrt(disc)) / (2.0 * a)
    eps = np.asarray(eps, float)
    if convention == "tian":
        return np.sqrt(eps) * p
    if convention == "loss":
        return np.full(eps.shape, np.sqrt(eta * p / (1.0 - a * p)))
    raise ValueError(f"unknown convention {convention!r}: expected 'loss' or 'tian'")


def data(eps=(1.0, 0.3, 0.1, 0.03, 0.01), eta=0.15, sigma2=0.5, n=32, t1=200.0):
    """Sweeps (``dynamics.sweep``) of both conventions over ``eps``: collapsed fraction and the
    final ``|theta|`` of the lanes that did not collapse."""
    out, commands = {}, []
    for conv in CONVENTIONS:
        argv = ["--variant", "simsiam", "--convention", conv, "--eps", *map(str, eps),
                "--eta", str(eta), "--sigma2", str(sigma2), "--n", str(n), "--t1", str(t1)]
        commands.append("python -m dynamics.sweep " + " ".join(argv))
        ds = run(SweepConfig(variant=("simsiam",), convention=conv, eps=tuple(eps), eta=(eta,),
                             sigma2=(sigma2,), t1=t1, options=ScalarOptions(n=n),
                             command=commands[-1]))
        frac, undecided, med, lo, hi = [], [], [], [], []
        for e in eps:
            sub = ds.sel(eps=e).squeeze()
            o = sub["outcome"].values.ravel()
            th = np.abs(sub["theta"].values.ravel())[o == 0]
            frac.append(float(np.mean(o == 1)))
            undecided.append(float(np.mean(o >= 2)))
            med.append(float(np.median(th)) if th.size else np.nan)
            lo.append(float(np.min(th)) if th.size else np.nan)
            hi.append(float(np.max(th)) if th.size else np.nan)
        out[conv] = dict(collapsed=np.array(frac), undecided=np.array(undecided),
                         theta_median=np.array(med), theta_min=np.array(lo),
                         theta_max=np.array(hi), theory=theta_star(conv, eps, eta, sigma2))
    return dict(eps=np.asarray(eps, float), runs=out,
                params=dict(eps=list(eps), eta=eta, sigma2=sigma2, n=n, t1=t1,
                            starts=f"{n} x {n} grid, theta0 in "
                                   f"{list(ScalarOptions(n=n).theta_range)}, phi0 in "
                                   f"{list(ScalarOptions(n=n).phi_range)} (no target: SimSiam)",
                            variant="simsiam", sweeps=commands,
                            paper="Tian et al. (2021) Obs. 2: a very fast predictor (large "
                                  "alpha_p = 1/eps) keeps the encoder from growing",
                            differences="scalar SimSiam at the default sweep's eta and sigma2 "
                                        "rather than the paper's linear model"))


def draw(d):
    pr, eps = d["params"], d["eps"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12.5, 4.6))
    style = {"loss": dict(color="#1b9e77", marker="o"), "tian": dict(color="#d95f02", marker="s")}
    names = {"loss": r"loss ($\eta_\varphi = \eta$)",
             "tian": r"Tian ($\eta_\varphi = \varepsilon\eta$, $\alpha_p = 1/\varepsilon$)"}
    for conv, r in d["runs"].items():
        st = style[conv]
        ax1.semilogx(eps, r["collapsed"], lw=1.8, label=names[conv], **st)
        ax2.loglog(eps, r["theta_median"], lw=0, ms=7, label=f"{names[conv]}: simulated median",
                   **st)
        ax2.fill_between(eps, r["theta_min"], r["theta_max"], color=st["color"], alpha=0.15)
        ax2.loglog(eps, r["theory"], color=st["color"], ls="--", lw=1.4,
                   label=f"{names[conv]}: fixed point " + (r"$\sqrt{\varepsilon}\,p_+$"
                                                           if conv == "tian" else
                                                           r"$\sqrt{\eta p_+/(1-ap_+)}$"))
    t = d["runs"]["tian"]
    for i in (0, len(eps) - 1):
        ax2.annotate(f"{t['theta_median'][i]:.3f}", (eps[i], t["theta_median"][i]),
                     xytext=(-34 if i else 6, -14), textcoords="offset points", fontsize=8,
                     color=style["tian"]["color"])
    ax1.set_xlabel(r"predictor time scale $\varepsilon$ (log)")
    ax1.set_ylabel("fraction of starts that collapse")
    ax1.set_ylim(0, 1)
    ax1.set_title("collapsed fraction", fontsize=10)
    ax2.set_xlabel(r"predictor time scale $\varepsilon$ (log)")
    ax2.set_ylabel(r"final $|\theta|$ of the runs that did not collapse")
    ax2.set_title(r"surviving encoder $|\theta(t_1)|$ (band: min-max over starts)", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
        ax.invert_xaxis()
        plot.dedup_legend(ax, loc="best", fontsize=7)
    fig.suptitle(
        rf"Scalar SimSiam, both weight-decay conventions: $\eta$ = {pr['eta']:g}, "
        rf"$\sigma^2$ = {pr['sigma2']:g}, {pr['n']}$\times${pr['n']} starts in "
        rf"$[-1,1]\times[-1,2]$, flow to $t_1$ = {pr['t1']:g}" "\n"
        r"in Tian's convention a fast predictor lets fewer starts collapse but shrinks the "
        r"surviving encoder like $\sqrt{\varepsilon}$; with the decay in the loss the encoder "
        "keeps its size", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


@register(
    "wd_conventions",
    "Scalar SimSiam over the predictor time scale eps in both weight-decay conventions (decay "
    "in the loss; Tian et al.'s eta_phi = eps * eta): fraction of starts that collapse, and the "
    "final |theta| of the rest against the fixed point (Tian: sqrt(eps) p_+, 0.439 -> 0.044 "
    "from eps = 1 to 0.01; loss: independent of eps).",
)
def build(quick):
    d = data(eps=(1.0, 0.1, 0.01), n=8) if quick else data()
    return draw(d), d["params"]
