"""The default sweep's basin map with the theory's basin boundary.

``python -m dynamics.sweep --eps 1 0.01 --variant simsiam``: scalar SimSiam with
stop-gradient, a slow (``eps = 1``) against a fast (``eps = 0.01``) predictor, drawn by
:func:`dynamics.plot.basin_map`; overlaid, the stable manifolds of the saddles and the fixed
points.
"""

from __future__ import annotations

from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.scalar import ScalarOptions

__all__ = ["build", "data", "draw"]


def data(quick=False):
    """The sweep's Dataset, its parsed arguments, and per ``eps`` the fixed points and the
    saddles' stable manifolds (``theory[i] = (fixed points, [manifold arrays (n, 2)])``)."""
    argv = ["--eps", "1", "0.01", "--variant", "simsiam"] + (["--n", "12"] if quick else [])
    args = SweepConfig(eps=(1.0, 0.01), variant=("simsiam",),
                       options=ScalarOptions(n=12) if quick else ScalarOptions(),
                       command="python -m dynamics.sweep " + " ".join(argv))
    ds = run(args)
    (eta,), (sigma2,) = args.eta, args.sigma2
    model, v = ScalarSiamese(sigma2=sigma2), VARIANTS["simsiam"]
    th, ph = ds["theta0"].values, ds["phi0"].values
    box = (float(th[0]), float(th[-1]), float(ph[0]), float(ph[-1]))
    theory = []
    for e in ds["eps"].values:
        hyper = Hyper.from_convention(args.convention, eta, float(e))
        fps = C.fixed_points(model, v, hyper, C.seed_grid(box[:2], box[2:]))
        mans = [m for p in fps if p["kind"] == "saddle"
                for m in C.stable_manifold(model, v, hyper, p, bound=3.0)]
        theory.append((fps, mans))
    params = dict(sweep_command="python -m dynamics.sweep " + " ".join(argv),
                  eps=list(args.eps), eta=list(args.eta), sigma2=list(args.sigma2),
                  convention=args.convention, n=args.options.n, t1=float(ds.attrs["t1"]),
                  starts=f"{args.options.grid[0]} x {args.options.grid[1]} grid, theta0 in "
                         f"{list(args.options.theta_range)}, phi0 in "
                         f"{list(args.options.phi_range)} (no target: SimSiam)",
                  overlay="stable manifolds of the saddles (theory)",
                  paper="none: the default sweep of this project")
    return dict(ds=ds, theory=theory, box=box, params=params)


def draw(data):
    """The sweep's basin map, one panel per ``eps``, with the theory overlaid."""
    ds, pr, box = data["ds"], data["params"], data["box"]
    (eta,), (sigma2,) = pr["eta"], pr["sigma2"]
    fig = plot.basin_map(ds, "simsiam", suptitle=(
        f"collapse basins, scalar SimSiam with stop-gradient, eta = {eta:g}, "
        f"sigma2 = {sigma2:g}, {pr['convention']} convention, t1 = {pr['t1']:g}\nblack: basin "
        "boundary from theory (stable manifolds of the saddles)"))
    for ax, (fps, mans) in zip(fig.axes, data["theory"]):
        for k, m in enumerate(mans):
            ax.plot(m[:, 0], m[:, 1], color="k", lw=1.8,
                    label="theory: basin boundary" if k == 0 else None)
        plot.draw_fixed_points(ax, [p["z"][0] for p in fps], [p["z"][1] for p in fps],
                               [p["kind"] for p in fps], size=7)
        ax.set_xlim(box[:2])
        ax.set_ylim(box[2:])
        plot.dedup_legend(ax, loc="upper left", fontsize=6)
    return fig


@register(
    "sweep_basins_simsiam",
    "The default sweep's basin map (python -m dynamics.sweep --eps 1 0.01): scalar "
    "SimSiam with stop-gradient, eta = 0.15, sigma2 = 0.5, decay in the loss, a slow "
    "(eps = 1) against a fast (eps = 0.01) predictor, with the theory's basin boundary "
    "(stable manifolds of the saddles) and fixed points overlaid.",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
