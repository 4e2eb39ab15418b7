"""Tian, Chen & Ganguli (2021), Fig. 3: ``(p, s)`` phase planes of one mode.

Each mode of linear SimSiam at ``tau = 1`` is the scalar system with ``s = theta^2``,
``p = phi``: flow lines, nullclines, the invariant parabola ``s = p^2 / alpha_p`` and the fixed
points by stability, for weight decays on both sides of ``eta_c = 1/(4a)``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.analysis import stability
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

__all__ = ["build", "data", "draw"]


def _line_kinds(model, variant, hyper, pts):
    """Stability of sampled points on a line of fixed points (neutral direction ignored)."""
    w, _ = C.eigen_at(model, variant, hyper, pts)
    return [stability(x) for x in w]


def _check_fixed(model, variant, hyper, pts, tol=1e-10):
    y = C.make_state(variant, pts[:, 0], pts[:, 1], pts[:, 2] if pts.shape[1] > 2 else None)
    f = C.field_at(model, variant, hyper, y)
    res = max(float(np.max(np.abs(np.asarray(x)))) for x in f if x is not None)
    if res > tol:
        raise RuntimeError(f"points passed as fixed points have |f| = {res:.2e}")


def data(etas=(0.0, 0.01, 1.0), sigma2=0.5, alpha_p=1.0, p_range=(-0.6, 1.4),
         s_range=(0.0, 1.2), n=60):
    """``(p, s)`` planes of the per-mode system (SimSiam, ``tau = 1``, Tian convention).

    Each mode is the scalar system with ``s = theta^2``, ``p = phi``; the field in ``(p, s)``
    is ``(phi', 2 theta theta')`` evaluated at ``theta = sqrt(s)``.
    """
    model = ScalarSiamese(sigma2=sigma2)
    v = VARIANTS["simsiam"]
    a = 1.0 + sigma2
    p = np.linspace(*p_range, n)
    s = np.linspace(max(s_range[0], 1e-4), s_range[1], n)
    panels = []
    for eta in etas:
        hyper = Hyper.tian(eta, alpha_p)
        P, S = np.meshgrid(p, s)
        TH = np.sqrt(S)
        f = C.field_at(model, v, hyper, C.make_state(v, TH, P))
        dP = np.asarray(f.pred)
        dS = 2.0 * TH * np.asarray(f.enc)
        fixed, lines = [], []
        if eta > 0:
            seeds = C.seed_grid((0.0, np.sqrt(s_range[1])), p_range)
            for q in C.fixed_points(model, v, hyper, seeds):
                th, ph = q["z"]
                if th >= -1e-12:
                    fixed.append((ph, th**2, q["kind"]))
        else:
            # eta = 0: the lines theta = 0 and phi = 1/a are fixed (docs/theory.md section 2)
            pl = np.linspace(*p_range, 161)
            pts = np.stack([np.zeros_like(pl), pl], 1)
            _check_fixed(model, v, hyper, pts)
            lines.append((pl, np.zeros_like(pl), _line_kinds(model, v, hyper, pts)))
            sl = np.linspace(1e-3, s_range[1], 80)
            pts = np.stack([np.sqrt(sl), np.full_like(sl, 1.0 / a)], 1)
            _check_fixed(model, v, hyper, pts)
            lines.append((np.full_like(sl, 1.0 / a), sl, _line_kinds(model, v, hyper, pts)))
        panels.append(dict(eta=eta, P=P, S=S, dP=dP, dS=dS, fixed=fixed, lines=lines,
                           parabola=(p, p**2 / alpha_p), eta_crit=1.0 / (4 * a)))
    return dict(panels=panels, params=dict(etas=list(etas), sigma2=sigma2, alpha_p=alpha_p,
                                           tau=1.0, p_range=list(p_range),
                                           s_range=list(s_range), n=n,
                                           paper="Eqns. 11-12 at tau = 1, alpha_p = 1, eta in "
                                                 "{0, 0.01, 1}",
                                           differences="sigma2 is not stated in the paper; "
                                                       "0.5 puts eta = 1 past eta_c = 1/(4a). "
                                                       "Colours: green stable, red unstable "
                                                       "(the paper: red stable, green "
                                                       "unstable)"))


def draw(data):
    """(p, s) phase planes for several weight decays: flow lines, nullclines, parabola,
    fixed points coloured by stability (Tian et al. 2021, Fig. 3)."""
    panels, pr = data["panels"], data["params"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.6), squeeze=False)
    for ax, d in zip(axes[0], panels):
        plot.draw_field(ax, d["P"], d["S"], d["dP"], d["dS"], density=1.1)
        plot.draw_nullclines(ax, d["P"], d["S"], d["dP"], d["dS"], names=("$p$", "$s$"))
        pp, ss = d["parabola"]
        ax.plot(pp, ss, color="purple", ls="--", lw=1.4,
                label=r"invariant parabola $s = p^2/\alpha_p$")
        for xs, ys, kinds in d["lines"]:
            plot.draw_fixed_line(ax, xs, ys, kinds)
        if d["fixed"]:
            plot.draw_fixed_points(ax, [f[0] for f in d["fixed"]], [f[1] for f in d["fixed"]],
                              [f[2] for f in d["fixed"]], size=9)
        ax.set_xlim(d["P"][0, 0], d["P"][0, -1])
        ax.set_ylim(-0.03 * d["S"][-1, 0], d["S"][-1, 0])
        if d["fixed"]:
            txt = "\n".join(f"{k}: $(p,s)$=({x:.3g}, {y:.2g})" for x, y, k in d["fixed"])
            ax.text(0.98, 0.03, txt, transform=ax.transAxes, ha="right", va="bottom",
                    fontsize=7, bbox=dict(fc="white", ec="0.7", alpha=0.85))
        reg = ("no decay" if d["eta"] == 0 else
               "$\\eta<\\eta_c$" if d["eta"] < d["eta_crit"] else "$\\eta>\\eta_c$")
        ax.set_title(rf"$\eta$ = {d['eta']:g} ({reg}, $\eta_c = 1/(4a)$ = {d['eta_crit']:.3g})",
                     fontsize=10)
        ax.set_xlabel(r"predictor eigenvalue $p$")
        ax.set_ylabel(r"encoder eigenvalue $s$ ($=\theta^2$)")
        plot.dedup_legend(ax, loc="upper left", fontsize=6.5)
    fig.suptitle(
        rf"Per-mode dynamics in the $(p, s)$ plane (Tian et al. 2021, Fig. 3): SimSiam, "
        rf"$\tau$={pr['tau']:g}, $\alpha_p$={pr['alpha_p']:g}, $\sigma^2$={pr['sigma2']:g}; "
        "fixed points and their stability from the autodiff Jacobian" "\n"
        "colours: green = stable, red = unstable, orange = saddle (the paper draws stable "
        "points in red and unstable ones in green)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


@register(
    "tian3",
    "Tian et al. (2021) Fig. 3: (p, s) phase planes of one mode for eta in "
    "{0, 0.01, 1}: flow lines, nullclines, invariant parabola, fixed points by stability.",
)
def build(quick):
    d = data(n=24 if quick else 60)
    return draw(d), d["params"]
