"""Plots read results and never integrate.

Reusable drawing only: basin maps of a sweep Dataset, phase-portrait building blocks (flow
lines, nullclines, fixed points by stability), phase diagrams over two parameters. Functions
take data (xarray results of :mod:`dynamics.sweep`, or arrays) and return matplotlib figures or
artists; saving is the caller's business. The paper figures' layouts live with their data in
:mod:`dynamics.figures`.
"""

from __future__ import annotations

import importlib
import itertools
import math
import warnings

import matplotlib

matplotlib.use("Agg")  # noqa: E402  (headless by default; notebooks switch to inline)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from dynamics.types import Outcome  # noqa: E402

OUTCOME_COLORS = ("#3b6fb6", "#d1495b", "#bdbdbd", "#222222")
OUTCOME_LABELS = Outcome.labels()

GRID_DIMS = ("phi0", "theta0")


def _panel_title(sel: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sel.items())


def draw_outcomes(ax, panel, extent, *, alpha=None):
    """One basin panel: the outcome codes (0 non-collapsed, 1 collapsed, 2 undecided,
    3 failed) of a grid ``panel[phi0, theta0]`` spanning ``extent``, coloured as
    :data:`OUTCOME_COLORS`."""
    return ax.imshow(panel, origin="lower", extent=extent, aspect="auto",
                     cmap=ListedColormap(OUTCOME_COLORS), vmin=-0.5, vmax=3.5,
                     interpolation="nearest", alpha=alpha)


def outcome_legend(fig, *, title=None):
    """The figure-level legend of the outcome colours, centred below the panels."""
    handles = [Patch(color=c, label=l) for c, l in zip(OUTCOME_COLORS, OUTCOME_LABELS)]
    return fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, title=title)


def basin_map(ds, variant: str, suptitle: str | None = None):
    """Basin map of one variant: outcome over the (theta0, phi0) grid, one panel for every
    setting (every combination of the other axes, in coordinate order).

    Args:
        ds: results Dataset of the sweep (needs ``outcome`` with dims ending in phi0, theta0).
        variant: which variant to draw.
    """
    sub = ds.sel(variant=variant)
    outer = [d for d in sub["outcome"].dims if d not in GRID_DIMS]
    combos = list(itertools.product(*[range(sub.sizes[d]) for d in outer]))
    n = len(combos)
    ncols = min(n, max(4, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(max(3.6 * ncols + 0.6, 6.4), 3.3 * nrows + 1.1), squeeze=False
    )
    th, ph = sub["theta0"].values, sub["phi0"].values
    extent = (th[0], th[-1], ph[0], ph[-1])
    for ax, idx in zip(axes.flat, combos):
        isel = dict(zip(outer, idx))
        panel = sub["outcome"].isel(isel).transpose("phi0", "theta0").values
        draw_outcomes(ax, panel, extent)
        sel = {d: sub[d].values[i].item() for d, i in isel.items() if sub.sizes[d] > 1 or d == "eps"}
        frac = np.mean(panel == 1)
        ax.set_title(_panel_title(sel) + f"\ncollapsed {frac:.0%}", fontsize=9)
        ax.set_xlabel(r"$\theta_0$ (encoder)")
        ax.set_ylabel(r"$\phi_0$ (predictor)")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    outcome_legend(fig)
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


# --- sweeps over parameters ------------------------------------------------------------------


def sweep_colors(n, cmap="viridis"):
    """``n`` colours from ``cmap`` for the curves of a parameter sweep."""
    return plt.get_cmap(cmap)(np.linspace(0.05, 0.85, n))


def _lin_edges(x):
    x = np.sort(np.asarray(x, float))
    if x.size == 1:
        return np.array([x[0] - 0.5, x[0] + 0.5])
    mid = 0.5 * (x[1:] + x[:-1])
    return np.concatenate([[2 * x[0] - mid[0]], mid, [2 * x[-1] - mid[-1]]])


def _log_edges(x):
    return np.exp(_lin_edges(np.log(np.asarray(x, float))))


def phase_diagram(ax, x, y, values, *, xlog=True, cmap="magma_r", vmin=0, vmax=1):
    """A phase diagram: ``values[i, j]`` (e.g. a collapsed fraction from a sweep Dataset)
    as cells centred on ``(x[j], y[i])``, ``x`` on a log axis unless ``xlog=False``.
    Returns the mesh (for a colorbar)."""
    if xlog:
        ax.set_xscale("log")
    xe = _log_edges(x) if xlog else _lin_edges(x)
    return ax.pcolormesh(xe, _lin_edges(y), values, cmap=cmap, vmin=vmin, vmax=vmax,
                         shading="flat")


def collapse_phase_figure(ds, variant: str, method: str, y: str = "eps", x: str = "eta"):
    """A matrix-model sweep's phase diagram: mean collapsed-mode fraction and effective rank
    over the ``(y, x)`` plane (other axes averaged), with each mode's ``eta_crit`` dashed when
    ``x`` is ``eta``: on each row its own sigma2's when ``y`` is ``sigma2``, across the plane
    when one sigma2 is swept (else one dashed style per sigma2, named in the title)."""

    def plane(name):
        v = ds[name].sel({"variant": variant, "method": method})
        return v.mean(dim=[k for k in v.dims if k not in (x, y)], skipna=True).transpose(y, x)

    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    xs, ys = ds[x].values, ds[y].values
    r = ds.sizes.get("mode", 1)
    for ax, name, title, cmap, vmax in (
            (axs[0], "collapsed_fraction", "collapsed-mode fraction", "magma", 1.0),
            (axs[1], "effective_rank", "effective rank of W(t1)", "viridis", r)):
        # fixed colour limits: a plane of one value reads as that value, not as noise
        im = ax.imshow(plane(name).values, origin="lower", aspect="auto", cmap=cmap, vmin=0.0,
                       vmax=vmax, extent=(-0.5, len(xs) - 0.5, -0.5, len(ys) - 0.5))
        ax.set_xticks(range(len(xs)), [f"{e:.3g}" for e in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [f"{e:.3g}" for e in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
        if x == "eta" and len(xs) > 1 and "eta_crit" in ds:
            _draw_eta_crit(ax, ds, xs, ys, y)
    note = ""
    if x == "eta" and "eta_crit" in ds:
        note = "; dashed: per-mode eta_crit"
        if y != "sigma2" and ds.sizes.get("sigma2", 1) > 1:
            note += " (" + ", ".join(f"{st}: sigma2={v:g}" for st, v in
                                      zip(ETA_CRIT_STYLES, ds["sigma2"].values)) + ")"
    fig.suptitle(f"{ds.attrs['model']} {variant} ({method}), n1={ds.attrs['n1']}, "
                 f"{ds.attrs['convention']} convention, t1={ds.attrs['t1']:g}{note}")
    return fig


def fixed_point_figure(ds, variant: str, method: str):
    """An IsoLoss sweep: the eigenvalues ``s`` of ``W W^T`` at ``t1`` (dots, every mode and
    initial state) against ``eta``, one colour per ``sigma2``, beside the closed-form fixed
    point ``s*`` (line), and the collapsed-mode fraction over ``(sigma2, eta)``."""
    sel = {"variant": variant, "method": method}
    s = ds["s"].sel(sel)
    etas, sigmas = ds["eta"].values, ds["sigma2"].values
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    ax = axs[0]
    for c, v in zip(sweep_colors(len(sigmas)), sigmas):
        sv = s.sel(sigma2=v)
        pts = sv.transpose("eta", ...).values.reshape(len(etas), -1)
        for e, row in zip(etas, pts):
            ax.plot(np.full(row.shape, e), row, "o", ms=3, color=c, alpha=0.6)
        ax.plot(etas, ds["s_star"].sel(sigma2=v).values, "-", color=c, lw=1.2,
                label=f"sigma2={v:g}: s*")
    ax.set_xlabel("eta")
    ax.set_ylabel("eigenvalue s of W W^T at t1")
    ax.set_title("final eigenvalues (dots) and closed-form s* (lines)")
    ax.legend(fontsize=8)
    cf = ds["collapsed_fraction"].sel(sel)
    plane = cf.mean(dim=[k for k in cf.dims if k not in ("sigma2", "eta")], skipna=True)
    im = axs[1].imshow(plane.transpose("sigma2", "eta").values, origin="lower", aspect="auto",
                       cmap="magma", vmin=0.0, vmax=1.0,
                       extent=(-0.5, len(etas) - 0.5, -0.5, len(sigmas) - 0.5))
    axs[1].set_xticks(range(len(etas)), [f"{e:.3g}" for e in etas], rotation=45)
    axs[1].set_yticks(range(len(sigmas)), [f"{e:.3g}" for e in sigmas])
    axs[1].set_xlabel("eta")
    axs[1].set_ylabel("sigma2")
    axs[1].set_title("collapsed-mode fraction")
    fig.colorbar(im, ax=axs[1])
    fig.suptitle(f"{ds.attrs['model']} ({ds.attrs.get('kind', '')}) {variant} ({method}), "
                 f"n1={ds.attrs['n1']}, t1={ds.attrs['t1']:g}")
    return fig


def reg_band_figure(ds, variant: str, method: str):
    """A DirectCopy sweep: per ``(sigma2, eta)`` row, the collapsed-mode fraction and the
    effective rank of ``W(t1)`` against ``reg``, one line per initial scale (mean over the
    initial directions), over each mode's closed-form ``p_-`` (dotted) and ``p_+`` (dashed)
    from the Dataset's ``p_minus``, ``p_plus``: black steps give the share of modes with
    ``reg >= p_+`` (collapsed from every start); grey shading marks ``reg <= p_-`` of some mode
    (a collapse basin, so the outcome depends on the start), green the band inside every
    mode's ``(p_-, p_+)`` (no collapse basin)."""
    sel = {"variant": variant, "method": method}
    rows = list(itertools.product(ds["sigma2"].values, ds["eta"].values))
    fig, axs = plt.subplots(len(rows), 2, figsize=(10.5, 3.6 * len(rows)), squeeze=False,
                            constrained_layout=True)
    regs = ds["reg"].values
    grid = np.linspace(regs.min(), regs.max(), 400)
    colors = sweep_colors(ds.sizes["scale"])
    r = ds.sizes.get("mode", 1)
    for (s2, eta), (ax0, ax1) in zip(rows, axs):
        at = dict(sel, sigma2=s2, eta=eta)
        pm = ds["p_minus"].sel(sigma2=s2, eta=eta).values
        pp = ds["p_plus"].sel(sigma2=s2, eta=eta).values
        live = np.isfinite(pp)
        certain = ((~live)[None, :] | (grid[:, None] >= np.where(live, pp, 0.0)[None, :])).mean(-1)
        for ax, name, top in ((ax0, "collapsed_fraction", 1.0), (ax1, "effective_rank", r)):
            v = ds[name].sel(at)
            v = v.mean([k for k in v.dims if k not in ("reg", "scale")], skipna=True)
            if live.any() and np.nanmax(pm[live]) > grid[0]:
                ax.axvspan(grid[0], np.nanmax(pm[live]), color="0.85", zorder=0,
                           label="reg <= p_- of a mode: start-dependent")
            if live.all() and np.max(pm) < np.min(pp):
                ax.axvspan(np.max(pm), np.min(pp), color="#d9f0d3", zorder=0,
                           label="p_- < reg < p_+ for every mode: no collapse basin")
            for p in pm[live]:
                ax.axvline(p, color="0.4", ls=":", lw=0.9)
            for p in pp[live]:
                ax.axvline(p, color="0.4", ls="--", lw=0.9)
            for c, sc in zip(colors, ds["scale"].values):
                ax.plot(regs, v.sel(scale=sc).values, "o-", color=c, ms=4, lw=1.2,
                        label=f"init scale {sc:g}")
            if name == "collapsed_fraction":
                ax.step(grid, certain, where="post", color="k", lw=1.0,
                        label="theory: reg >= p_+ (any start)")
            else:
                ax.step(grid, r * (1 - certain), where="post", color="k", lw=1.0,
                        label="theory: modes with reg < p_+ (a bound on the rank)")
            ax.set_ylim(-0.05 * top, 1.05 * top)
            ax.set_xlabel("reg (predictor = F + reg I)")
            ax.set_ylabel(name.replace("_", " "))
            ax.set_title(f"sigma2={s2:g}, eta={eta:g}: {name.replace('_', ' ')} of W(t1)",
                         fontsize=10)
        ax0.legend(fontsize=7, loc="center right")
    fig.suptitle(f"{ds.attrs['model']} {variant} ({method}), n1={ds.attrs['n1']}, "
                 f"t1={ds.attrs['t1']:g}; dotted: each mode's p_-, dashed: p_+")
    return fig


#: the dashes of each sigma2's eta_crit lines when sigma2 is not an axis of the plane
ETA_CRIT_STYLES = ("--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1, 1, 1)))


def eta_crit_segments(ds, xs, ys, y: str) -> list[tuple[float, float, float, int]]:
    """Where :func:`collapse_phase_figure` draws the per-mode ``eta_crit`` on its index axes:
    ``(x, y_low, y_high, k)`` for each mode and sigma2 inside the eta range (``k``: which
    sigma2, for the dash style). With ``y == "sigma2"`` each sigma2's values span its own row."""
    ec = ds["eta_crit"]
    sig = ec.dims[0] if ec.dims and ec.dims[0] == "sigma2" else None
    rows = ec.transpose("sigma2", ...).values.reshape(ds.sizes.get("sigma2", 1), -1) \
        if sig else np.asarray(ec.values).reshape(1, -1)
    out = []
    for k, row in enumerate(rows):
        if sig and y == "sigma2":
            i = int(np.flatnonzero(np.asarray(ys) == ds["sigma2"].values[k])[0])
            lo, hi = i - 0.5, i + 0.5
        else:
            lo, hi = -0.5, len(ys) - 0.5
        for e in row:
            xi = np.interp(e, xs, np.arange(len(xs)), left=np.nan, right=np.nan)
            if np.isfinite(xi):
                out.append((float(xi), lo, hi, k if (sig and y != "sigma2") else 0))
    return out


def _draw_eta_crit(ax, ds, xs, ys, y):
    for xi, lo, hi, k in eta_crit_segments(ds, xs, ys, y):
        ax.plot([xi, xi], [lo, hi], color="c", lw=0.8, scalex=False, scaley=False,
                ls=ETA_CRIT_STYLES[k % len(ETA_CRIT_STYLES)])


# --- old names of the paper layouts, kept for this release -----------------------------------

#: old name here -> the figure module whose ``draw`` it now is
_MOVED_LAYOUTS = {
    "basins_with_boundary": "basins",
    "tian_fig3": "tian3",
    "tian_fig4": "tian4",
    "slowfast_figure": "slowfast",
    "tian_fig5": "tian5",
    "tian_fig7": "tian7",
    "phase_diagrams": "phase",
}


def __getattr__(name):
    """The paper layouts moved to their figure modules (``dynamics.figures.NAME.draw``); the old
    names still work, with a ``DeprecationWarning``. The figure modules import this one, so
    they are looked up on first use rather than imported here."""
    if name not in _MOVED_LAYOUTS:
        raise AttributeError(f"module 'dynamics.plot' has no attribute {name!r}")
    new = f"dynamics.figures.{_MOVED_LAYOUTS[name]}"
    warnings.warn(f"dynamics.plot.{name} is deprecated; use {new}.draw", DeprecationWarning,
                  stacklevel=2)
    return importlib.import_module(new).draw
