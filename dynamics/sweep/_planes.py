"""Tables and figures the contrastive and VICReg families share: a measure of the final
encoders over two of a sweep's axes, with the closed-form thresholds marked. Reads a Dataset,
never integrates."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle


def plane(ds, name, variant, method, y, x):
    """``ds[name]`` of one variant and method, averaged over every axis but ``(y, x)``."""
    return _mean_plane(ds[name], variant, method, y, x)


def _mean_plane(v, variant, method, y, x):
    v = v.sel({"variant": variant, "method": method})
    return v.mean(dim=[k for k in v.dims if k not in (x, y)], skipna=True).transpose(y, x)


def plane_figure(ds, variant, method, y, x, panels, marks=(), note=""):
    """One image per ``(name, title, cmap, vmax)`` of ``panels`` over ``(y, x)`` (index axes,
    tick labels the values); ``marks``: ``(x_value, y_index or None, style)`` dashed lines at
    a closed-form threshold (on the row ``y_index``, or across the plane). A cell with lanes
    that did not finish (``status`` not ``ok``: the averages leave them out) is hatched, so
    that a cell drawn from fewer lanes, or from none, is never read as a measurement."""
    fig, axs = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8),
                            constrained_layout=True, squeeze=False)
    xs, ys = ds[x].values, ds[y].values
    stopped = _mean_plane(ds["status"] != "ok", variant, method, y, x).values > 0
    for ax, (name, title, cmap, vmax) in zip(axs[0], panels):
        im = ax.imshow(plane(ds, name, variant, method, y, x).values, origin="lower",
                       aspect="auto", cmap=cmap, vmin=0.0, vmax=vmax,
                       extent=(-0.5, len(xs) - 0.5, -0.5, len(ys) - 0.5))
        ax.set_xticks(range(len(xs)), [f"{e:.3g}" for e in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [f"{e:.3g}" for e in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
        for xv, yi, style in marks:
            xi = np.interp(xv, xs, np.arange(len(xs)), left=np.nan, right=np.nan)
            if not np.isfinite(xi):
                continue
            lo, hi = (-0.5, len(ys) - 0.5) if yi is None else (yi - 0.5, yi + 0.5)
            ax.plot([xi, xi], [lo, hi], color="c", lw=1.0, ls=style, scalex=False,
                    scaley=False)
        for i, j in zip(*np.nonzero(stopped)):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xx",
                                   edgecolor="0.45", lw=0))
    if stopped.any():
        note += "\nhatched: cells with lanes that did not reach t1 (status not ok), left out"
    fig.suptitle(f"{ds.attrs['model']} {variant} ({method}), n1={ds.attrs['n1']}, "
                 f"t1={ds.attrs['t1']:g}{note}")
    return fig


def table(ds, name, y, x, title, fmt="{:>6.2f}"):
    """Rows ``(variant, method, y)``, columns ``x``: ``ds[name]`` averaged over the rest."""
    xs = ds[x].values
    head = f"{'variant':<10}{'method':<7}{y:>8}  " + " ".join(f"{e:>6.3g}" for e in xs)
    lines = [f"{title}; columns: {x}", head]
    for v, m in itertools.product(ds.variant.values, ds.method.values):
        p = plane(ds, name, v, m, y, x).values
        for yv, row in zip(ds[y].values, p):
            lines.append(f"{v:<10}{m:<7}{yv:>8.3g}  " + " ".join(fmt.format(e) for e in row))
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size}")
    return "\n".join(lines)
