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
