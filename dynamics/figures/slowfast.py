"""Slow-fast scalar SimSiam: the full flow against the reduced flow on the critical manifold.

Weight decay in the loss, shrinking predictor time scales ``eps``: the full basin boundaries
(saddle stable manifolds) against the reduced flow's, full vs reduced trajectories, the
reduction error against ``eps``, and the predictor's relaxation rate against the slow
eigenvalues.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

__all__ = ["build", "data", "draw"]


def data(eps=(0.3, 0.1, 0.03, 0.01, 0.003), eta=0.1, sigma2=0.5, t1=150.0,
         starts=((0.5, -0.5), (0.15, -0.8)), rate_etas=(0.1, 0.01, 0.0), rate_eps=0.01):
    """Scalar SimSiam, weight decay in the loss (``eta_phi = eta``), for shrinking ``eps``.

    - the critical manifold ``phi*(theta)`` and the reduced flow's basin boundary
      (``|theta| = theta_saddle``) against the full basin boundaries (saddle stable manifolds);
    - ``theta(t)`` full vs reduced from each start, and ``sup_t |theta_full - theta_red|``;
    - the predictor's relaxation rate ``(a theta^2 + eta_phi)/eps`` for several decays: where it
      is not large against the slow rates (small ``theta``, small ``eta``) the reduction fails.
    """
    model = ScalarSiamese(sigma2=sigma2)
    v = VARIANTS["simsiam"]
    th_grid = np.linspace(-1.0, 1.0, 401)
    starts = np.asarray(starts, float)
    full, red, bounds, err = {}, {}, {}, np.zeros((len(eps), len(starts)))
    same_basin = np.zeros((len(eps), len(starts)), bool)
    fixed = None
    slow = {}
    for i, e in enumerate(eps):
        hyper = Hyper.loss_decay(eta, e)
        ts, ys, st = C.trajectories(model, v, hyper, starts[:, 0], starts[:, 1], t1=t1)
        tr, er, pr = C.reduced_trajectories(model, v, hyper, starts[:, 0], t1=t1, n_save=len(ts))
        full[e] = dict(theta=ys.enc, phi=ys.pred, status=st)
        red[e] = dict(theta=er, phi=pr)
        err[i] = np.max(np.abs(ys.enc - er), axis=1)
        same_basin[i] = (np.abs(ys.enc[:, -1]) > 1e-3) == (np.abs(er[:, -1]) > 1e-3)
        fps = C.fixed_points(model, v, hyper, C.seed_grid((-1, 1), (-1, 2)))
        if fixed is None:
            fixed = fps
        # slow eigenvalue (smallest |Re|) at each kind of fixed point, at this eps
        slow = {}
        for p in fps:
            key = "origin" if np.allclose(p["z"], 0.0) else p["kind"]
            slow[key] = float(np.min(np.abs(np.real(p["eigs"]))))
        bounds[e] = [m for p in fps if p["kind"] == "saddle"
                     for m in C.stable_manifold(model, v, hyper, p, bound=3.0)]
    hyper = Hyper.loss_decay(eta, eps[0])
    crit = C.critical_predictor(model, v, hyper, th_grid)
    theta_s = sorted(abs(p["z"][0]) for p in fixed if p["kind"] == "saddle")
    rates = {}
    for et in rate_etas:
        rates[et] = C.predictor_rate(model, v, Hyper.loss_decay(et, rate_eps), th_grid)
    return dict(ts=ts, full=full, red=red, err=err, same_basin=same_basin, slow_rates=slow,
                bounds=bounds, fixed=fixed,
                theta_grid=th_grid, crit=np.asarray(crit), theta_saddle=theta_s[0] if theta_s else None,
                rates=rates, starts=starts, eps=list(eps),
                params=dict(eps=list(eps), eta=eta, sigma2=sigma2, t1=t1,
                            starts=starts.tolist(), rate_etas=list(rate_etas), rate_eps=rate_eps,
                            convention="loss", paper="none: this project's slow-fast analysis"))


def draw(data):
    """Full slow-fast flow against the reduced flow on the critical manifold."""
    pr = data["params"]
    eps = data["eps"]
    cols = plt.cm.plasma(np.linspace(0.05, 0.8, len(eps)))
    fig, axes = plt.subplots(2, 2, figsize=(13, 10))
    ax1, ax2, ax3, ax4 = axes = axes.ravel()
    th = data["theta_grid"]
    ax1.plot(th, data["crit"], "k--", lw=1.6, label=r"critical manifold $\varphi^*(\theta)$")
    ts_ = data["theta_saddle"]
    if ts_ is not None:
        for sgn in (-1, 1):
            ax1.axvline(sgn * ts_, color="k", ls=":", lw=1.4,
                        label=r"reduced boundary $|\theta| = \theta_s$" if sgn > 0 else None)
    for c, e in zip(cols, eps):
        for k, m in enumerate(data["bounds"][e]):
            ax1.plot(m[:, 0], m[:, 1], color=c, lw=1.6,
                     label=rf"full boundary, $\varepsilon$={e:g}" if k == 0 else None)
    plot.draw_fixed_points(ax1, [p["z"][0] for p in data["fixed"]], [p["z"][1] for p in data["fixed"]],
                      [p["kind"] for p in data["fixed"]])
    for j, (t0, p0) in enumerate(data["starts"]):
        ax1.plot(t0, p0, marker="s", color="k", ms=6, linestyle="none",
                 label="starts A, B" if j == 0 else None)
        ax1.annotate("AB"[j] if j < 2 else str(j), (t0, p0), xytext=(4, 4),
                     textcoords="offset points", fontsize=9)
        for c, e in zip(cols, eps):
            f = data["full"][e]
            ax1.plot(f["theta"][j], f["phi"][j], color=c, lw=0.9, alpha=0.8)
    ax1.set_xlim(-1, 1)
    ax1.set_ylim(-1, 2)
    ax1.set_xlabel(r"encoder $\theta$")
    ax1.set_ylabel(r"predictor $\varphi$")
    ax1.set_title("basin boundaries: full (stable manifolds) vs reduced", fontsize=9)
    t = data["ts"]
    for j, ls in zip(range(len(data["starts"])), ("-", "-")):
        ax = ax2
        for c, e in zip(cols, eps):
            ax.plot(t, data["full"][e]["theta"][j], color=c, lw=1.5, ls=ls,
                    label=rf"full, $\varepsilon$={e:g}" if j == 0 else None)
        ax.plot(t, data["red"][eps[-1]]["theta"][j], "k--", lw=1.5,
                label="reduced (slow) flow" if j == 0 else None)
        ax.annotate("AB"[j], (t[0], data["red"][eps[-1]]["theta"][j][0]), xytext=(-12, 0),
                    textcoords="offset points", fontsize=9)
    ax2.set_xlabel("time $t$")
    ax2.set_ylabel(r"encoder $\theta(t)$")
    ax2.set_title("full vs reduced trajectories from A and B", fontsize=9)
    e_arr = np.asarray(eps)
    err_cols = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for j in range(len(data["starts"])):
        c = err_cols[j % len(err_cols)]
        ax3.loglog(e_arr, data["err"][:, j], "o-", color=c, lw=1.5, label=f"start {'AB'[j]}")
        other = ~data["same_basin"][:, j]
        if np.any(other):
            ax3.loglog(e_arr[other], data["err"][other, j], "x", color="k", ms=9, mew=2,
                       label="full and reduced flows end in different basins")
        k = data["err"][-1, j] / e_arr[-1]
        ax3.loglog(e_arr, k * e_arr, ":", color=c, lw=1.2,
                   label=rf"{k:.2g}$\,\varepsilon$ (fitted at the smallest $\varepsilon$)")
    ax3.set_xlabel(r"predictor time scale $\varepsilon$")
    ax3.set_ylabel(r"$\sup_t |\theta_{full} - \theta_{red}|$")
    ax3.set_title("reduction error: O(eps) once both flows end in the same basin\n"
                  "(start-dependent constant, large near the basin boundary)", fontsize=9)
    for et, r in data["rates"].items():
        ax4.semilogy(th, r, lw=1.6, label=rf"$\eta_\varphi$={et:g}")
    names = {"stable": "stable point", "saddle": "saddle", "origin": "origin"}
    for (key, rate), ls in zip(sorted(data["slow_rates"].items()), (":", "--", "-.")):
        ax4.axhline(rate, color="k", ls=ls, lw=1.1,
                    label=rf"slow eigenvalue at the {names.get(key, key)}: $|\lambda|$ = {rate:.3g}")
    ax4.set_xlabel(r"encoder $\theta$")
    ax4.set_ylabel(r"predictor relaxation rate $(a\theta^2+\eta_\varphi)/\varepsilon$")
    ax4.set_title(rf"the predictor is fast only where this $\gg$ the slow rates "
                  rf"($\varepsilon$={pr['rate_eps']:g})", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
        plot.dedup_legend(ax, loc="best", fontsize=6.5)
    fig.suptitle(
        rf"Slow-fast scalar SimSiam: full flow vs reduced flow on the critical manifold, "
        rf"$\sigma^2$={pr['sigma2']:g}, $\eta$={pr['eta']:g} (in the loss, $\eta_\varphi=\eta$), "
        rf"$\varepsilon$ in {{{', '.join(f'{e:g}' for e in eps)}}}, $t_1$={pr['t1']:g}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


@register(
    "slowfast",
    "Slow-fast scalar SimSiam (weight decay in the loss): full basin boundaries for "
    "shrinking eps against the reduced flow's, full vs reduced trajectories, the "
    "reduction error against eps (O(eps) once both flows end in the same basin, with a "
    "start-dependent constant that is large near the boundary), and the predictor's "
    "relaxation rate against the slow eigenvalues; it vanishes at theta = 0 without decay.",
)
def build(quick):
    d = data(eps=(0.3, 0.03) if quick else (0.3, 0.1, 0.03, 0.01, 0.003))
    return draw(d), d["params"]
