"""Tian, Chen & Ganguli (2021), Fig. 4: predictor dynamics on the invariant parabola.

The 1-D flow ``p'(p)`` on ``s = p^2 / alpha_p`` in three regimes of the weight decay, and the
saddle-node bifurcation diagram in ``eta`` with its fold point ``(1/(4a), 1/(2a))``.
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


def _parabola_field(model, hyper, p, alpha_p):
    """``p'`` on the invariant parabola ``s = p^2 / alpha_p`` (``theta = |p| / sqrt(alpha_p)``)."""
    v = VARIANTS["simsiam"]
    th = np.abs(p) / np.sqrt(alpha_p)
    return np.asarray(C.field_at(model, v, hyper, C.make_state(v, th, p)).pred)


def _roots_1d(p, f, fine):
    """Roots of a sampled 1-D field: sign changes refined by bisection on ``fine``; exact zeros."""
    roots = []
    for i in range(len(p) - 1):
        if f[i] == 0.0 or abs(f[i]) < 1e-14:
            roots.append(p[i])
        elif f[i] * f[i + 1] < 0:
            lo, hi, flo = p[i], p[i + 1], f[i]
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                fm = fine(np.array([mid]))[0]
                if fm * flo > 0:
                    lo, flo = mid, fm
                else:
                    hi = mid
            roots.append(0.5 * (lo + hi))
    return np.array(roots)


def data(etas=(0.0, 0.05, 0.25), sigma2=0.5, alpha_p=1.0, p_range=(-0.3, 1.0),
         eta_range=(0.0, 0.25), n_p=521, n_eta=101):
    """1-D flow ``p' (p)`` on the invariant parabola in three regimes, and its bifurcation diagram.

    Regimes: ``eta = 0`` (line of non-trivial fixed points collapses to ``p = 1/a``),
    ``0 < eta < eta_crit`` (bistable), ``eta > eta_crit`` (collapse only). Stability of a
    root from the sign of ``dp'/dp`` (finite difference; 0 gives 'marginal').
    """
    model = ScalarSiamese(sigma2=sigma2)
    a = 1.0 + sigma2
    p = np.linspace(*p_range, n_p)
    if not np.any(p == 0.0):
        p = np.sort(np.append(p, 0.0))

    def roots_and_kinds(eta):
        hyper = Hyper.tian(eta, alpha_p)

        def fine(q):
            return _parabola_field(model, hyper, q, alpha_p)

        f = fine(p)
        r = _roots_1d(p, f, fine)
        h = 1e-6
        d = (fine(r + h) - fine(r - h)) / (2 * h)
        kinds = ["stable" if x < -1e-7 else "unstable" if x > 1e-7 else "marginal" for x in d]
        return f, r, kinds

    curves = []
    for eta in etas:
        f, r, k = roots_and_kinds(eta)
        curves.append(dict(eta=eta, p=p, dp=f, roots=r, kinds=k))
    eta_grid = np.linspace(*eta_range, n_eta)
    bif = []
    for eta in eta_grid:
        _, r, k = roots_and_kinds(eta)
        bif.extend((eta, x, kk) for x, kk in zip(r, k))
    return dict(curves=curves, bif=bif, eta_crit=1.0 / (4 * a), a=a,
                params=dict(etas=list(etas), sigma2=sigma2, alpha_p=alpha_p,
                            p_range=list(p_range), eta_range=list(eta_range), n_p=n_p,
                            n_eta=n_eta, fold_point=[1.0 / (4 * a), 1.0 / (2 * a)],
                            paper="Eqn. 16 on the invariant parabola: eta = 0, "
                                  "0 < eta < tau^2/(4(1+sigma2)), eta beyond it",
                            differences="sigma2 = 0.5 and the eta values are not stated in "
                                        "the paper; the bifurcation diagram and its fold point "
                                        "are added. Colours: green stable, red unstable (the "
                                        "paper: red stable, green unstable, black saddle)"))


def draw(data):
    """1-D predictor dynamics on the invariant parabola, three regimes, and the bifurcation
    diagram in eta (Tian et al. 2021, Fig. 4)."""
    pr = data["params"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = ("#1b9e77", "#7570b3", "#d95f02", "#e7298a")
    n_cu = len(data["curves"])
    for i, (c, cu) in enumerate(zip(colors, data["curves"])):
        ax1.plot(cu["p"], cu["dp"], color=c, lw=2, label=rf"$\eta$ = {cu['eta']:g}")
        # every curve has a fixed point at p = 0: later curves draw smaller markers on top,
        # edged in the curve's colour, so each one stays visible (concentric) instead of
        # hiding the one below it
        for x, k in zip(cu["roots"], cu["kinds"]):
            st = dict(plot.FIXED_POINT_STYLE[k])
            st.pop("label")
            at0 = abs(x) < 1e-9
            if at0:
                st.update(markeredgecolor=c)
            ax1.plot([x], [0.0], linestyle="none",
                     markersize=7 + 5 * (n_cu - 1 - i) if at0 else 8,
                     markeredgewidth=2.0 if at0 else 1.3, zorder=6 + i, **st)
    for k in ("stable", "unstable", "marginal"):
        st = dict(plot.FIXED_POINT_STYLE[k])
        lab = st.pop("label")
        ax1.plot([], [], linestyle="none", markersize=7, markeredgewidth=1.3, label=lab, **st)
    ax1.plot([], [], linestyle="none", label="$p$ = 0: a marker per curve,\nedged in its colour")
    ax1.axhline(0, color="0.4", lw=0.8)
    ax1.set_ylim(-0.15, 0.15)
    ax1.set_xlabel(r"predictor eigenvalue $p$")
    ax1.set_ylabel(r"$\dot p$ on the parabola $s = p^2/\alpha_p$")
    ax1.set_title(r"$\dot p = -a\,p\,(p - p_-)(p - p_+)$ for $\eta>0$", fontsize=10)
    ax1.grid(alpha=0.3)
    leg = plot.dedup_legend(ax1, loc="lower left", fontsize=7)
    # the curves first (in eta order), then the kinds of fixed point
    handles, labels = leg.legend_handles, [t.get_text() for t in leg.get_texts()]
    order = sorted(range(len(labels)), key=lambda k: (not labels[k].startswith(r"$\eta$"), k))
    ax1.legend([handles[k] for k in order], [labels[k] for k in order], loc="lower left",
               fontsize=7, framealpha=0.85)
    bif = data["bif"]
    for kind in ("stable", "unstable", "marginal"):
        pts = [(e, p) for e, p, k in bif if k == kind]
        if pts:
            e, p = np.array(pts).T
            st = plot.FIXED_POINT_STYLE[kind]
            ax2.plot(e, p, linestyle="none", marker=".", ms=4, color=st["color"],
                     label=st["label"].replace("fixed point", "branch"))
    ax2.axvline(data["eta_crit"], color="k", ls="--", lw=1,
                label=rf"saddle-node $\eta_c = 1/(4a)$ = {data['eta_crit']:.3g}")
    ax2.plot([data["eta_crit"]], [1.0 / (2.0 * data["a"])], marker="D", ms=9, color="k",
             markerfacecolor="yellow", linestyle="none", zorder=7,
             label=rf"fold point $(\eta_c,\ p = 1/(2a))$ = ({data['eta_crit']:.3g}, "
                   rf"{1.0 / (2.0 * data['a']):.3g})")
    ax2.set_xlabel(r"weight decay $\eta$")
    ax2.set_ylabel(r"fixed point $p^*$")
    ax2.set_title("bifurcation diagram of the 1-D flow", fontsize=10)
    ax2.grid(alpha=0.3)
    plot.dedup_legend(ax2, loc="upper right", fontsize=7)
    fig.suptitle(
        rf"Predictor dynamics on the invariant parabola (Tian et al. 2021, Fig. 4): SimSiam, "
        rf"$\alpha_p$={pr['alpha_p']:g}, $\sigma^2$={pr['sigma2']:g} ($a$ = {data['a']:g}); "
        "stability from the sign of $d\\dot p/dp$" "\n"
        "colours: green = stable, red = unstable, grey = marginal (the paper draws stable "
        "points in red, unstable in green, saddles in black)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


@register(
    "tian4",
    "Tian et al. (2021) Fig. 4: 1-D predictor dynamics on the invariant parabola in "
    "three regimes of eta, and the saddle-node bifurcation diagram in eta with its fold "
    "point (eta_c, p) = (1/(4a), 1/(2a)).",
)
def build(quick):
    d = data(n_eta=21 if quick else 101)
    return draw(d), d["params"]
