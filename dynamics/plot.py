"""Plots read results and never integrate.

Functions take data (xarray results of :mod:`dynamics.sweep`, or arrays) and return matplotlib
figures; saving is the caller's business.
"""

from __future__ import annotations

import itertools
import math

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (headless by default; notebooks switch to inline)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

OUTCOME_COLORS = ("#3b6fb6", "#d1495b", "#bdbdbd", "#222222")
OUTCOME_LABELS = ("non-collapsed", "collapsed", "undecided", "failed")

GRID_DIMS = ("phi0", "theta0")


def _panel_title(sel: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sel.items())


def basin_map(ds, variant: str, max_panels: int = 24, suptitle: str | None = None):
    """Basin map of one variant: outcome over the (theta0, phi0) grid, one panel per setting.

    Args:
        ds: results Dataset of the sweep (needs ``outcome`` with dims ending in phi0, theta0).
        variant: which variant to draw.
        max_panels: draw at most this many panels (the first ones in coordinate order).
    """
    sub = ds.sel(variant=variant)
    outer = [d for d in sub["outcome"].dims if d not in GRID_DIMS]
    combos = list(itertools.product(*[range(sub.sizes[d]) for d in outer]))[:max_panels]
    n = len(combos)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(max(3.6 * ncols + 0.6, 6.4), 3.3 * nrows + 1.1), squeeze=False
    )
    th, ph = sub["theta0"].values, sub["phi0"].values
    extent = (th[0], th[-1], ph[0], ph[-1])
    cmap = ListedColormap(OUTCOME_COLORS)
    for ax, idx in zip(axes.flat, combos):
        isel = dict(zip(outer, idx))
        panel = sub["outcome"].isel(isel).transpose("phi0", "theta0").values
        ax.imshow(
            panel, origin="lower", extent=extent, aspect="auto", cmap=cmap, vmin=-0.5, vmax=3.5,
            interpolation="nearest",
        )
        sel = {d: sub[d].values[i].item() for d, i in isel.items() if sub.sizes[d] > 1 or d == "eps"}
        frac = np.mean(panel == 1)
        ax.set_title(_panel_title(sel) + f"\ncollapsed {frac:.0%}", fontsize=9)
        ax.set_xlabel(r"$\theta_0$ (encoder)")
        ax.set_ylabel(r"$\phi_0$ (predictor)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = [Patch(color=c, label=l) for c, l in zip(OUTCOME_COLORS, OUTCOME_LABELS)]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False)
    fig.suptitle(suptitle or f"collapse basins: {variant}", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    return fig


# --- phase-portrait building blocks ---------------------------------------------------------

FIXED_POINT_STYLE = {
    "stable": dict(marker="o", color="#1b7837", markerfacecolor="#1b7837", label="stable fixed point"),
    "saddle": dict(marker="X", color="#e08214", markerfacecolor="#e08214", label="saddle"),
    "unstable": dict(marker="o", color="#b2182b", markerfacecolor="white", label="unstable fixed point"),
    "marginal": dict(marker="s", color="#555555", markerfacecolor="#bbbbbb", label="marginal fixed point"),
}
NULLCLINE_COLORS = ("#2166ac", "#d6604d")


def draw_field(ax, X, Y, U, V, *, density=1.0, color="0.65", label="flow lines"):
    """Streamlines of the precomputed field ``(U, V)`` on the mesh ``(X, Y)``."""
    speed = np.hypot(U, V)
    ok = np.isfinite(speed)
    U = np.where(ok, U, 0.0)
    V = np.where(ok, V, 0.0)
    ax.streamplot(X[0], Y[:, 0], U, V, density=density, color=color, linewidth=0.7,
                  arrowsize=0.8, zorder=1)
    ax.plot([], [], color=color, lw=0.8, label=label)


def draw_nullclines(ax, X, Y, U, V, names=("x", "y")):
    """Zero contours of both components; legend entries name them ``names``."""
    for Z, c, nm in zip((U, V), NULLCLINE_COLORS, names):
        if np.nanmin(Z) < 0 < np.nanmax(Z):
            ax.contour(X, Y, Z, levels=[0.0], colors=[c], linewidths=1.6, zorder=3)
        ax.plot([], [], color=c, lw=1.6, label=f"{nm}-nullcline")


def draw_fixed_points(ax, xs, ys, kinds, *, size=8, zorder=6):
    """Markers for fixed points coloured by stability (one legend entry per kind shown)."""
    seen = set()
    for x, y, k in zip(np.atleast_1d(xs), np.atleast_1d(ys), kinds):
        st = dict(FIXED_POINT_STYLE[k])
        lab = st.pop("label")
        ax.plot([x], [y], linestyle="none", markersize=size, markeredgewidth=1.3, zorder=zorder,
                label=None if k in seen else lab, **st)
        seen.add(k)


def draw_fixed_line(ax, xs, ys, kinds, *, lw=3.0):
    """A curve of non-isolated fixed points, each segment coloured by its stability."""
    xs, ys, kinds = np.asarray(xs), np.asarray(ys), list(kinds)
    seen = set()
    start = 0
    for i in range(1, len(kinds) + 1):
        if i == len(kinds) or kinds[i] != kinds[start]:
            k = kinds[start]
            st = FIXED_POINT_STYLE[k]
            lab = st["label"].replace("fixed point", "fixed points").replace("saddle", "saddles")
            ax.plot(xs[start:i], ys[start:i], color=st["color"], lw=lw, alpha=0.8, zorder=4,
                    solid_capstyle="butt", label=None if k in seen else lab + " (line)")
            seen.add(k)
            start = i


def dedup_legend(ax, **kwargs):
    """Legend without repeated labels."""
    handles, labels = ax.get_legend_handles_labels()
    keep = {}
    for h, l in zip(handles, labels):
        if l and not l.startswith("_") and l not in keep:
            keep[l] = h
    kwargs.setdefault("fontsize", 7)
    kwargs.setdefault("framealpha", 0.85)
    return ax.legend(list(keep.values()), list(keep.keys()), **kwargs)


# --- figure-level drawings (data from dynamics.figures) -------------------------------------

def basins_with_boundary(data):
    """Simulated basins of scalar SimSiam (rows: variant, columns: eps) with the theory's
    basin boundary (stable manifolds of the saddles) and fixed points overlaid."""
    ds, theory, pr = data["ds"], data["theory"], data["params"]
    variants = list(ds.variant.values)
    eps_list = list(ds.eps.values)
    nr, nc = len(variants), len(eps_list)
    fig, axes = plt.subplots(nr, nc, figsize=(3.9 * nc + 0.4, 3.6 * nr + 1.2), squeeze=False)
    th, ph = ds["theta0"].values, ds["phi0"].values
    extent = (th[0], th[-1], ph[0], ph[-1])
    cmap = ListedColormap(OUTCOME_COLORS)
    for i, v in enumerate(variants):
        for j, e in enumerate(eps_list):
            ax = axes[i, j]
            o = ds["outcome"].sel(variant=v, eps=e).isel(method=0, eta=0, sigma2=0, beta=0)
            panel = o.transpose("phi0", "theta0").values
            ax.imshow(panel, origin="lower", extent=extent, aspect="auto", cmap=cmap, vmin=-0.5,
                      vmax=3.5, interpolation="nearest", alpha=0.85)
            t = theory[(str(v), float(e))]
            for k, m in enumerate(t["manifolds"]):
                ax.plot(m[:, 0], m[:, 1], color="k", lw=2.0, zorder=5,
                        label="theory: stable manifold of saddle" if k == 0 else None)
            if not t["manifolds"]:
                ax.plot([], [], " ", label="theory: no saddle, every start collapses")
            fx = [p["z"] for p in t["fixed"]]
            if fx:
                draw_fixed_points(ax, [z[0] for z in fx], [z[1] for z in fx],
                                  [p["kind"] for p in t["fixed"]])
            ax.set_xlim(extent[:2])
            ax.set_ylim(extent[2:])
            frac = np.mean(panel == 1)
            sg = "with stop-grad" if not str(v).endswith("nosg") else "without stop-grad"
            ax.set_title(rf"{sg}, $\varepsilon$={e:g}; collapsed {frac:.0%}", fontsize=9)
            ax.set_xlabel(r"$\theta_0$ (encoder)")
            ax.set_ylabel(r"$\varphi_0$ (predictor)")
            dedup_legend(ax, loc="upper left", fontsize=6)
    handles = [Patch(color=c, label=l) for c, l in zip(OUTCOME_COLORS, OUTCOME_LABELS)]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False,
               title="simulated outcome at $t_1$")
    conv = ("weight decay in the loss, $\\eta_\\theta=\\eta_\\varphi=\\eta$"
            if pr["convention"] == "loss" else "Tian convention, $\\eta_\\varphi=\\varepsilon\\eta$")
    fig.suptitle(
        rf"Collapse basins of scalar SimSiam, $\sigma^2$={pr['sigma2']:g}, $\eta$={pr['eta']:g} "
        rf"({conv}), gradient flow to $t_1$={pr['t1']:g}, {pr['n']}$\times${pr['n']} starts" "\n"
        "black: basin boundary from theory = stable manifold of the saddle "
        "(backward flow from the saddle along its stable eigenvector)", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    return fig


def tian_fig3(data):
    """(p, s) phase planes for several weight decays: flow lines, nullclines, parabola,
    fixed points coloured by stability (Tian et al. 2021, Fig. 3)."""
    panels, pr = data["panels"], data["params"]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.6), squeeze=False)
    for ax, d in zip(axes[0], panels):
        draw_field(ax, d["P"], d["S"], d["dP"], d["dS"], density=1.1)
        draw_nullclines(ax, d["P"], d["S"], d["dP"], d["dS"], names=("$p$", "$s$"))
        pp, ss = d["parabola"]
        ax.plot(pp, ss, color="purple", ls="--", lw=1.4,
                label=r"invariant parabola $s = p^2/\alpha_p$")
        for xs, ys, kinds in d["lines"]:
            draw_fixed_line(ax, xs, ys, kinds)
        if d["fixed"]:
            draw_fixed_points(ax, [f[0] for f in d["fixed"]], [f[1] for f in d["fixed"]],
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
        dedup_legend(ax, loc="upper left", fontsize=6.5)
    fig.suptitle(
        rf"Per-mode dynamics in the $(p, s)$ plane (Tian et al. 2021, Fig. 3): SimSiam, "
        rf"$\tau$={pr['tau']:g}, $\alpha_p$={pr['alpha_p']:g}, $\sigma^2$={pr['sigma2']:g}; "
        "fixed points and their stability from the autodiff Jacobian" "\n"
        "colours: green = stable, red = unstable, orange = saddle (the paper draws stable "
        "points in red and unstable ones in green)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


def tian_fig4(data):
    """1-D predictor dynamics on the invariant parabola, three regimes, and the bifurcation
    diagram in eta (Tian et al. 2021, Fig. 4)."""
    pr = data["params"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    colors = ("#1b9e77", "#7570b3", "#d95f02", "#e7298a")
    for c, cu in zip(colors, data["curves"]):
        ax1.plot(cu["p"], cu["dp"], color=c, lw=2, label=rf"$\eta$ = {cu['eta']:g}")
        draw_fixed_points(ax1, cu["roots"], np.zeros_like(cu["roots"]), cu["kinds"], size=8)
    ax1.axhline(0, color="0.4", lw=0.8)
    ax1.set_ylim(-0.15, 0.15)
    ax1.set_xlabel(r"predictor eigenvalue $p$")
    ax1.set_ylabel(r"$\dot p$ on the parabola $s = p^2/\alpha_p$")
    ax1.set_title(r"$\dot p = -a\,p\,(p - p_-)(p - p_+)$ for $\eta>0$", fontsize=10)
    ax1.grid(alpha=0.3)
    dedup_legend(ax1, loc="lower left", fontsize=7)
    bif = data["bif"]
    for kind in ("stable", "unstable", "marginal"):
        pts = [(e, p) for e, p, k in bif if k == kind]
        if pts:
            e, p = np.array(pts).T
            st = FIXED_POINT_STYLE[kind]
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
    dedup_legend(ax2, loc="upper right", fontsize=7)
    fig.suptitle(
        rf"Predictor dynamics on the invariant parabola (Tian et al. 2021, Fig. 4): SimSiam, "
        rf"$\alpha_p$={pr['alpha_p']:g}, $\sigma^2$={pr['sigma2']:g} ($a$ = {data['a']:g}); "
        "stability from the sign of $d\\dot p/dp$" "\n"
        "colours: green = stable, red = unstable, grey = marginal (the paper draws stable "
        "points in red, unstable in green, saddles in black)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


def _traj_colors(n):
    return plt.cm.viridis(np.linspace(0.05, 0.9, n))


def slowfast_figure(data):
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
    draw_fixed_points(ax1, [p["z"][0] for p in data["fixed"]], [p["z"][1] for p in data["fixed"]],
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
        dedup_legend(ax, loc="best", fontsize=6.5)
    fig.suptitle(
        rf"Slow-fast scalar SimSiam: full flow vs reduced flow on the critical manifold, "
        rf"$\sigma^2$={pr['sigma2']:g}, $\eta$={pr['eta']:g} (in the loss, $\eta_\varphi=\eta$), "
        rf"$\varepsilon$ in {{{', '.join(f'{e:g}' for e in eps)}}}, $t_1$={pr['t1']:g}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


# --- linear-model figures -------------------------------------------------------------------


def sweep_colors(n, cmap="viridis"):
    """``n`` colours from ``cmap`` for the curves of a parameter sweep."""
    return plt.get_cmap(cmap)(np.linspace(0.05, 0.85, n))


def tian_fig5(data):
    """eta and beta sweeps of lambda_min(K), p_j(t), s_j(t) (Tian et al. 2021, Fig. 5)."""
    pr = data["params"]
    ts = data["ts"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.4))
    for row, (sweep, sym, cmap) in enumerate((("eta", r"\eta", "viridis"),
                                               ("beta", r"\beta", "plasma"))):
        runs = [r for r in data["runs"] if r["sweep"] == sweep]
        cols = sweep_colors(len(runs), cmap)
        ax_k, ax_p, ax_s = axes[row]
        for c, r in zip(cols, runs):
            lab = rf"${sym}$ = {r['value']:g}"
            ax_k.semilogx(ts[1:], r["lam_min"][1:], color=c, lw=1.8, label=lab)
            for j in range(r["p"].shape[1]):
                ax_p.plot(ts, r["p"][:, j], color=c, lw=1.0, label=lab if j == 0 else None)
                ax_s.plot(ts, r["s"][:, j], color=c, lw=1.0, label=lab if j == 0 else None)
        ax_k.axhline(0, color="k", lw=0.8, ls=":", label=r"$\lambda_{\min}(K) = 0$")
        fixed = (rf"$\beta$ = {pr['beta0']:g}" if sweep == "eta" else rf"$\eta$ = {pr['eta0']:g}")
        ax_k.set_title(rf"$\lambda_{{\min}}(K)$, sweep of ${sym}$ ({fixed}; log time)", fontsize=10)
        ax_p.set_title(rf"predictor eigenvalues $p_j(t)$, sweep of ${sym}$", fontsize=10)
        ax_s.set_title(rf"eigenvalues $s_j(t)$ of $F = WW^\top$, sweep of ${sym}$", fontsize=10)
        ax_k.set_ylabel(r"$\lambda_{\min}(K)$")
        ax_p.set_ylabel(r"$p_j$")
        ax_s.set_ylabel(r"$s_j$")
        for ax in (ax_k, ax_p, ax_s):
            ax.set_xlabel("time $t$")
            ax.grid(alpha=0.3)
            dedup_legend(ax, loc="best", fontsize=7)
    fig.suptitle(
        rf"Linear BYOL, symmetric predictor (Tian et al. 2021, Fig. 5): $n_1=n_2$={pr['n1']}, "
        rf"$X=I$, $X'=\sigma^2 I$, $\sigma^2$={pr['sigma2']:g}, $\alpha_p$={pr['alpha_p']:g}, "
        rf"Euler step {pr['lr']:g}, target from $W_a(0)$ = {pr['Wa0']}; "
        r"$K = a(\alpha_p F/2 + W_p^2 - \tau W_p/a) + 3\eta I/2$, "
        r"$\tau = \mathrm{tr}(W_aW^\top)/\mathrm{tr}(WW^\top)$" "\n"
        r"early on a smaller $\beta$ keeps $\tau$ small and $\lambda_{\min}(K)$ larger "
        r"(the EMA curriculum), at the cost of slower growth of $p_j$, $s_j$", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def tian_fig7(data):
    """Correlation between the target Wa and the online W in full matrix BYOL
    (Tian et al. 2021, Fig. 7): mean and min-max band over repeats."""
    pr = data["params"]
    ts = data["ts"]
    etas, betas = data["etas"], data["betas"]
    fig, axes = plt.subplots(1, len(etas), figsize=(5.0 * len(etas), 4.3), squeeze=False)
    cols = sweep_colors(len(betas), "plasma")
    gammas = data.get("gammas", [None] * len(betas))
    for i, (ax, eta) in enumerate(zip(axes[0], etas)):
        for j, (c, b, g) in enumerate(zip(cols, betas, gammas)):
            cc = data["corr"][i, j]
            m, sd = cc.mean(0), cc.std(0)
            gl = "" if g is None else rf", $\gamma_a$ = {g:g}"
            ax.plot(ts, m, color=c, lw=2.4 if g == 0.996 else 1.6,
                    label=rf"$\beta$ = {b:g}{gl}" + (" (paper)" if g == 0.996 else ""))
            ax.fill_between(ts, m - sd, np.minimum(m + sd, 1.0), color=c, alpha=0.2)
        ax.plot([], [], color="0.6", lw=6, alpha=0.4,
                label=rf"mean $\pm$ std over {pr['repeats']} runs")
        ax.set_xlabel("time $t$")
        ax.set_ylabel(r"corr$(W_a, W) = \langle W_a, W\rangle / (\|W_a\| \|W\|)$")
        ax.set_title(rf"$\eta$ = {eta:g}", fontsize=10)
        ax.set_ylim(min(0.9, float(np.nanmin(data["corr"][i])) - 0.01), 1.005)
        ax.grid(alpha=0.3)
        dedup_legend(ax, loc="lower right", fontsize=7)
    fig.suptitle(
        rf"Full matrix BYOL (Tian et al. 2021, Fig. 7): $n$={pr['n1']}, $X=I$, "
        rf"$X'=\sigma^2 I$, $\sigma$={pr['sigma']:g}, $W_a(0)=0$, trained predictor, "
        rf"Euler step {pr['lr']:g} (EMA coefficient $\gamma_a = 1 - $" f"{pr['lr']:g}" r"$\beta$), "
        rf"{pr['repeats']} random inits", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


def _lin_edges(x):
    x = np.sort(np.asarray(x, float))
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = 0.5 * (x[1:] + x[:-1])
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def _log_edges(x):
    return np.exp(_lin_edges(np.log(np.asarray(x, float))))


def phase_diagrams(data):
    """Collapse phase diagrams of the linear model: mean collapsed-mode fraction over
    (eta, eps) for SimSiam and (eta, beta) for BYOL, with every mode's eta_c marked."""
    pr = data["params"]
    etas = data["etas"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    styles = ("--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)))
    for ax, key, sym, title in ((axes[0], "eta_eps", r"\varepsilon", "linear SimSiam"),
                                (axes[1], "eta_beta", r"\beta", r"linear BYOL ($\varepsilon$ = 1)")):
        d = data[key]
        ax.set_xscale("log")
        mesh = ax.pcolormesh(_log_edges(d["axis"]), _lin_edges(etas), d["frac"], cmap="magma_r",
                             vmin=0, vmax=1, shading="flat")
        cb = fig.colorbar(mesh, ax=ax)
        cb.set_label("collapsed-mode fraction (mean over initial states)")
        for k, (ec, xe) in enumerate(zip(data["eta_crit"], data["x_eig"])):
            if etas[0] <= ec <= etas[-1]:
                ax.axhline(ec, color="c", lw=1.4, ls=styles[k % len(styles)],
                           label=rf"$\eta_c$ of the mode with $d_j$={xe:.3g}: {ec:.3g}")
        ax.set_xlabel(rf"${sym}$ (log scale)")
        ax.set_ylabel(r"weight decay $\eta$")
        ax.set_title(title, fontsize=10)
        dedup_legend(ax, loc="upper left", fontsize=6.5)
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
