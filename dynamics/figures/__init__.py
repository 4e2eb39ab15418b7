"""``python -m dynamics.figures``: regenerate the paper figures into ``figures/``.

Every figure is registered in :data:`FIGURES` with a builder ``build(quick) -> (fig, params)``.
Figures rewritten against their papers live in one module each, data and layout together,
registered with ``@register(name, caption)`` (``post_toy``, ``tian8``, ``tian9``, ``tian10``,
``wd_conventions``); the others compute their data in ``dynamics.figures.scalar`` /
``.linear`` and draw it with a :mod:`dynamics.plot` function. Each run writes ``NAME.png`` and
``NAME.pdf`` atomically and records, in ``OUT/manifest.json``, the command, parameters
(the paper's, and any deliberate difference) and caption of every file.

Usage::

    python -m dynamics.figures                 # all figures into figures/
    python -m dynamics.figures basins tian3    # some of them
    python -m dynamics.figures --list          # names and captions
    python -m dynamics.figures --quick --out /tmp/f   # small settings (tests)
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from dynamics.figures._registry import FIGURES, FigureSpec, register

__all__ = ["FIGURES", "FigureSpec", "build_figure", "main", "register", "write_figure"]


def _basins(quick):
    from dynamics import plot
    from dynamics.figures import scalar

    kw = dict(eps=(1.0, 0.1), n=12) if quick else dict(eps=(1.0, 0.1, 0.01), n=64)
    d = scalar.basin_data(**kw)
    return plot.basins_with_boundary(d), d["params"]


def _tian3(quick):
    from dynamics import plot
    from dynamics.figures import scalar

    d = scalar.tian_fig3_data(n=24 if quick else 60)
    return plot.tian_fig3(d), d["params"]


def _tian4(quick):
    from dynamics import plot
    from dynamics.figures import scalar

    d = scalar.tian_fig4_data(n_eta=21 if quick else 101)
    return plot.tian_fig4(d), d["params"]


def _slowfast(quick):
    from dynamics import plot
    from dynamics.figures import scalar

    d = scalar.slowfast_data(eps=(0.3, 0.03) if quick else (0.3, 0.1, 0.03, 0.01, 0.003))
    return plot.slowfast_figure(d), d["params"]


def _sweep_basins(quick):
    from dynamics import plot
    from dynamics.figures import compute as C
    from dynamics.figures.scalar import seed_grid
    from dynamics.flow import VARIANTS, Hyper
    from dynamics.models import ScalarSiamese
    from dynamics.sweep import build_parser, run_sweep

    argv = ["--eps", "1", "0.01", "--variant", "simsiam"] + (["--n", "12"] if quick else [])
    args = build_parser().parse_args(argv + ["--quiet"])
    ds = run_sweep(args)
    (eta,), (sigma2,) = args.eta, args.sigma2
    fig = plot.basin_map(ds, "simsiam", suptitle=(
        f"collapse basins, scalar SimSiam with stop-gradient, eta = {eta:g}, "
        f"sigma2 = {sigma2:g}, {args.convention} convention, t1 = {ds.attrs['t1']:g}\nblack: basin "
        "boundary from theory (stable manifolds of the saddles)"))
    model, v = ScalarSiamese(sigma2=sigma2), VARIANTS["simsiam"]
    th, ph = ds["theta0"].values, ds["phi0"].values
    box = (float(th[0]), float(th[-1]), float(ph[0]), float(ph[-1]))
    for ax, e in zip(fig.axes, ds["eps"].values):
        hyper = Hyper.from_convention(args.convention, eta, float(e))
        fps = C.fixed_points(model, v, hyper, seed_grid(box[:2], box[2:]))
        first = True
        for p in fps:
            if p["kind"] != "saddle":
                continue
            for m in C.stable_manifold(model, v, hyper, p, bound=3.0):
                ax.plot(m[:, 0], m[:, 1], color="k", lw=1.8,
                        label="theory: basin boundary" if first else None)
                first = False
        plot.draw_fixed_points(ax, [p["z"][0] for p in fps], [p["z"][1] for p in fps],
                               [p["kind"] for p in fps], size=7)
        ax.set_xlim(box[:2])
        ax.set_ylim(box[2:])
        plot.dedup_legend(ax, loc="upper left", fontsize=6)
    params = dict(sweep_command="python -m dynamics.sweep " + " ".join(argv),
                  eps=args.eps, eta=args.eta, sigma2=args.sigma2, convention=args.convention,
                  n=args.n, t1=ds.attrs["t1"], overlay="stable manifolds of the saddles (theory)",
                  paper="none: the default sweep of this project")
    return fig, params


def _tian5(quick):
    from dynamics import plot
    from dynamics.figures import linear

    kw = dict(n=4, T=60.0) if quick else {}
    d = linear.tian_fig5_data(**kw)
    return plot.tian_fig5(d), d["params"]


def _tian7(quick):
    from dynamics import plot
    from dynamics.figures import linear

    kw = dict(n=4, repeats=3, T=20.0) if quick else {}
    d = linear.tian_fig7_data(**kw)
    return plot.tian_fig7(d), d["params"]


def _phase(quick):
    import numpy as np

    from dynamics import plot
    from dynamics.figures import linear

    if quick:
        kw = dict(n1=2, etas=(0.0, 0.1, 0.2, 0.3), epss=(1.0, 0.1), betas=(0.3, 3.0), n_init=1,
                  t1=50.0)
    else:
        kw = {}
    d = linear.phase_diagram_data(**kw)
    return plot.phase_diagrams(d), d["params"]


_LINEAR = [
    FigureSpec(
        "tian5",
        "Tian et al. (2021) Fig. 5: linear BYOL with a symmetric predictor, target from "
        "W_a(0) = 0, Euler step 0.01, sweeps of eta (beta = 0.4) and of beta (eta = 0.04): "
        "lambda_min(K), predictor eigenvalues p_j(t), eigenvalues s_j(t) of W W^T; early on a "
        "smaller beta keeps lambda_min(K) larger.",
        _tian5,
    ),
    FigureSpec(
        "tian7",
        "Tian et al. (2021) Fig. 7: full matrix BYOL from W_a(0) = 0, sigma = 0.03, "
        "correlation between W_a and W over time for EMA coefficients gamma_a = 0.999, 0.996 "
        "(the paper's), 0.99, 0.9 and weight decays eta in {0, 0.01, 0.1}; mean and standard "
        "deviation over 10 runs, as in the paper.",
        _tian7,
    ),
    FigureSpec(
        "phase",
        "Collapse phase diagrams of the linear model (dynamics.sweep --model linear): mean "
        "collapsed-mode fraction over (eta, eps) for SimSiam and (eta, beta) for BYOL, with "
        "each mode's saddle-node eta_c = d_j^2 / (4 (d_j + sigma2)).",
        _phase,
    ),
]


for _spec in (
    FigureSpec(
        "basins",
        "Collapse basins of scalar SimSiam over (theta0, phi0) for several predictor time "
        "scales eps, with and without stop-gradient, with the theoretical basin boundary "
        "(stable manifold of the saddle) and the fixed points overlaid.",
        _basins,
    ),
    FigureSpec(
        "tian3",
        "Tian et al. (2021) Fig. 3: (p, s) phase planes of one mode for eta in "
        "{0, 0.01, 1}: flow lines, nullclines, invariant parabola, fixed points by stability.",
        _tian3,
    ),
    FigureSpec(
        "tian4",
        "Tian et al. (2021) Fig. 4: 1-D predictor dynamics on the invariant parabola in "
        "three regimes of eta, and the saddle-node bifurcation diagram in eta with its fold "
        "point (eta_c, p) = (1/(4a), 1/(2a)).",
        _tian4,
    ),
    FigureSpec(
        "slowfast",
        "Slow-fast scalar SimSiam (weight decay in the loss): full basin boundaries for "
        "shrinking eps against the reduced flow's, full vs reduced trajectories, the "
        "reduction error against eps (O(eps) once both flows end in the same basin, with a "
        "start-dependent constant that is large near the boundary), and the predictor's "
        "relaxation rate against the slow eigenvalues; it vanishes at theta = 0 without decay.",
        _slowfast,
    ),
    FigureSpec(
        "sweep_basins_simsiam",
        "The default sweep's basin map (python -m dynamics.sweep --eps 1 0.01): scalar "
        "SimSiam with stop-gradient, eta = 0.15, sigma2 = 0.5, decay in the loss, a slow "
        "(eps = 1) against a fast (eps = 0.01) predictor, with the theory's basin boundary "
        "(stable manifolds of the saddles) and fixed points overlaid.",
        _sweep_basins,
    ),
    *_LINEAR,
):
    register(_spec.name, _spec.caption)(_spec.build)

# figures written as one module each (data and drawing together) register themselves
from dynamics.figures import post_toy, tian8, tian9, tian10, wd_conventions  # noqa: E402,F401


def _git_revision() -> str:
    from dynamics.sweep import _git_revision as rev

    return rev()


def _jsonable(x):
    import numpy as np

    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, set)):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def build_figure(name: str, quick: bool = False):
    """Build one registered figure; returns ``(fig, params)``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}: expected one of {', '.join(FIGURES)}")
    return FIGURES[name].build(quick)


def write_figure(name: str, out: Path, quick: bool = False, dpi: int = 130) -> dict:
    """Build figure ``name``, save ``out/name.png`` and ``.pdf``; return its manifest entry."""
    import matplotlib.pyplot as plt

    from dynamics._io import save_figure

    t0 = time.perf_counter()
    fig, params = build_figure(name, quick)
    files = []
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        # no creation date in the PDF: same data, same bytes
        meta = {"CreationDate": None} if ext == "pdf" else None
        save_figure(fig, path, dpi=dpi, metadata=meta)
        files.append(path.name)
    plt.close(fig)
    command = "python -m dynamics.figures " + name + (" --quick" if quick else "")
    return dict(files=files, command=command, quick=quick, params=params,
                caption=FIGURES[name].caption, seconds=round(time.perf_counter() - t0, 1))


def _load_manifest(path: Path) -> dict:
    if path.exists():
        try:
            m = json.loads(path.read_text())
            if isinstance(m, dict) and isinstance(m.get("figures"), dict):
                return m
        except json.JSONDecodeError:
            pass
    return dict(figures={})


def _save_manifest(path: Path, manifest: dict):
    from dynamics._io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n")


from dynamics._cli import OneLineParser as _Parser  # noqa: E402
from dynamics._cli import number as _number  # noqa: E402

#: the largest --dpi: a figure 17 inches wide is then 20400 pixels across
MAX_DPI = 1200


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dynamics.figures",
        description="Regenerate the paper figures (PNG and PDF) and OUT/manifest.json.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="figures to make (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--quick", action="store_true", help="small settings (for tests)")
    p.add_argument("--out", default="figures", help="output directory")
    p.add_argument("--dpi", type=_number("dpi", positive=True, integer=True, maximum=MAX_DPI),
                   default=130, help="PNG resolution")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        width = max(map(len, FIGURES)) + 2
        for s in FIGURES.values():
            print(f"{s.name:<{width}}{s.caption}")
        return 0
    for n in args.names:
        if n not in FIGURES:
            parser.error(f"unknown figure {n!r} (choose from {', '.join(FIGURES)})")
    if args.dpi <= 0:
        parser.error(f"--dpi must be > 0, got {args.dpi}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        parser.error(f"--out {args.out!r} exists and is not a directory")
    names = list(dict.fromkeys(args.names)) or list(FIGURES)

    import dynamics

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / "manifest.json"
    for n in names:
        t0 = time.perf_counter()
        entry = write_figure(n, out, quick=args.quick, dpi=args.dpi)
        manifest = _load_manifest(mpath)
        # entries of figures no longer registered (renamed or removed) are dropped
        manifest["figures"] = {k: v for k, v in manifest["figures"].items() if k in FIGURES}
        manifest["figures"][n] = entry
        manifest.update(
            package_version=dynamics.__version__,
            git_revision=_git_revision(),
            updated=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            regenerate="python -m dynamics.figures [NAME ...] [--quick] [--out DIR]",
        )
        _save_manifest(mpath, manifest)
        print(f"{n}: wrote {', '.join(entry['files'])} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return 0
