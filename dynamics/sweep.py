"""``python -m dynamics.sweep``: collapse basins of the scalar SimSiam/BYOL models.

A sweep is the Cartesian product of its axes: a grid of initial conditions ``(theta0, phi0)``
crossed with every value given for ``--eps``, ``--eta``, ``--sigma2``, ``--beta``, every
``--variant`` and every ``--method``. Each lane is integrated to ``--t1`` and classified by the
rule in :mod:`dynamics.classify`. Results go to ``OUT/sweep.nc`` (an xarray Dataset, one
coordinate per axis, named after its symbol) and ``OUT/basins_<variant>.png``.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dynamics._cli import (
    OneLineParser,
    add_integration_arguments,
    add_swept_arguments,
    check_sweep_lists,
    number,
    write_results,
)
from dynamics.solve.policy import flow_solver

DEFAULTS = dict(
    eps=[0.01],
    eta=[0.15],
    sigma2=[0.5],
    beta=[1.0],
    variant=["simsiam", "simsiam-nosg"],
    method=["flow"],
    convention="loss",
    theta_range=(-1.0, 1.0),
    phi_range=(-1.0, 2.0),
    n=64,
    n_phi=None,
    t1=200.0,
    lr=0.005,
    batch=16,
    seed=0,
    rtol=1e-8,
    atol=1e-10,
    solver="auto",
    max_steps=200_000,
    chunk=None,
    out="sweep_results",
)

ENGINES = ("batched", "diffrax")
DIFFRAX_ONLY = ("tsit5", "kvaerno5", "kvaerno3")
AXES = ("variant", "method", "eps", "eta", "sigma2", "beta", "phi0", "theta0")


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = OneLineParser(
        prog="python -m dynamics.sweep",
        description=(
            "Sweep the scalar SimSiam/BYOL toy models over a grid of initial conditions "
            "(theta0, phi0) and any lists of hyperparameters; classify every lane as "
            "collapsed / non-collapsed / undecided; write OUT/sweep.nc and a basin map per variant."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", choices=("scalar", "linear", "permode"), default="scalar",
                   help="linear / permode: the matrix model or its per-mode reduction, an "
                        "eta x eps collapse phase diagram (see --model linear --help)")
    add_swept_arguments(
        p, d,
        eps_help="predictor time scale: eps * dphi/dt = -dL/dphi - eta_phi*phi",
        sigma2_help="augmentation noise variance (a = 1 + sigma2)",
        beta_help="EMA rate of the BYOL target, dtheta_a/dt = beta (theta - theta_a)",
    )
    g = p.add_argument_group("initial-condition grid")
    g.add_argument("--theta-range", nargs=2, type=number("theta-range"), metavar=("LO", "HI"),
                   default=d["theta_range"], help="range of theta0")
    g.add_argument("--phi-range", nargs=2, type=number("phi-range"), metavar=("LO", "HI"),
                   default=d["phi_range"], help="range of phi0")
    g.add_argument("--n", type=number("n", positive=True, integer=True), default=d["n"],
                   help="grid points along theta0 (and phi0 unless --n-phi)")
    g.add_argument("--n-phi", type=number("n-phi", positive=True, integer=True), default=None,
                   help="grid points along phi0 (default: --n)")
    g = add_integration_arguments(
        p, d,
        convention_help="loss: weight decay inside the loss, eta_theta = eta_phi = eta; "
                        "tian: Tian et al. 2021, alpha_p = 1/eps, eta_theta = eta, eta_phi = eps*eta",
    )
    g.add_argument("--seed", type=number("seed", nonneg=True, integer=True), default=d["seed"],
                   help="PRNG seed of sgd (same seed, same result)")
    g.add_argument("--engine", choices=ENGINES, default=None,
                   help="integrator of flow: batched (dynamics.engine, per-lane adaptive steps) or "
                        "diffrax (jit(vmap(diffeqsolve))); default batched, or diffrax when "
                        "--solver names a diffrax-only solver")
    g.add_argument("--solver", choices=("auto", "rodas4", "tsit5", "dopri5", "kvaerno5", "kvaerno3"),
                   default=d["solver"],
                   help="ODE solver for flow; auto = batched engine: rodas4 (Rosenbrock) for "
                        "eps < 0.3, else dopri5; diffrax: tsit5 for eps >= 5e-3, else kvaerno5. "
                        "rodas4 is batched-only; tsit5, kvaerno5, kvaerno3 diffrax-only")
    g = p.add_argument_group("collapse criterion (see dynamics.classify)")
    g.add_argument("--ftol", type=number("ftol", positive=True), default=None,
                   help="converged when max|gradient + decay| at y_T <= ftol (default 1e-6; sgd: 1e-2)")
    g.add_argument("--collapse-tol", type=number("collapse-tol", positive=True), default=1e-3,
                   help="collapsed when |theta_T| <= collapse-tol")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=d["out"], help="output directory")
    g.add_argument("--chunk", type=number("chunk", positive=True, integer=True),
                   default=d["chunk"], help="lanes per compiled batch (bounds memory); default "
                   "65536 for flow on the batched engine (about 100 bytes a lane), else 4096")
    g.add_argument("--no-plot", action="store_true", help="skip the PNG basin maps")
    g.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache (in the user cache dir, "
                        "or $DYNAMICS_COMPILE_CACHE; 0 there also turns it off)")
    g.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def solver_for(eps: float, choice: str, engine: str = "diffrax") -> str:
    """The flow method for one eps: the stiffness policy of :mod:`dynamics.solve.policy`."""
    return flow_solver(eps, choice, "engine" if engine == "batched" else engine)


def engine_for(args) -> str:
    """The flow integrator: ``--engine``, else diffrax for a diffrax-only ``--solver``."""
    if args.engine is not None:
        return args.engine
    return "diffrax" if args.solver in DIFFRAX_ONLY else "batched"


def _git_revision() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unknown"


def run_sweep(args, progress=None):
    """Run the sweep described by parsed ``args``; return an xarray Dataset."""
    import jax
    import jax.numpy as jnp
    import xarray as xr

    import dynamics
    from dynamics.classify import Criterion, classify_batch
    from dynamics.flow import VARIANTS, Hyper, State
    from dynamics.models import ScalarSiamese
    from dynamics.solve import STATUS_NAMES, solve_batch

    n_th = args.n
    n_ph = args.n_phi or args.n
    theta0 = np.linspace(*args.theta_range, n_th)
    phi0 = np.linspace(*args.phi_range, n_ph)
    coords = dict(
        variant=list(args.variant), method=list(args.method), eps=list(args.eps),
        eta=list(args.eta), sigma2=list(args.sigma2), beta=list(args.beta), phi0=phi0,
        theta0=theta0,
    )
    shape = tuple(len(coords[a]) for a in AXES)
    out = {k: np.full(shape, np.nan) for k in ("theta", "phi", "theta_a", "fnorm", "lam_max")}
    status = np.zeros(shape, np.int8)
    outcome = np.zeros(shape, np.int8)
    decided = np.zeros(shape, bool)
    collapsed = np.zeros(shape, bool)

    # lanes within one (variant, method, eps) block: product over (eta, sigma2, beta, phi0, theta0)
    inner = np.stack(
        np.meshgrid(args.eta, args.sigma2, args.beta, phi0, theta0, indexing="ij"), -1
    ).reshape(-1, 5)
    n_inner = inner.shape[0]
    engine = engine_for(args)
    if args.chunk is not None:
        chunk = min(args.chunk, n_inner)
    elif engine == "batched" and set(args.method) == {"flow"}:
        from dynamics.solve import CHUNK_SIZE

        chunk = min(CHUNK_SIZE, n_inner)
    else:
        chunk = min(4096, n_inner)
    n_steps = max(1, int(round(args.t1 / args.lr)))
    solvers = {}
    base_key = jax.random.PRNGKey(args.seed)
    for iv, iv_name in enumerate(args.variant):
        variant = VARIANTS[iv_name]
        for im, method in enumerate(args.method):
            ftol = args.ftol if args.ftol is not None else (1e-2 if method == "sgd" else 1e-6)
            crit = Criterion(ftol=ftol, collapse_tol=args.collapse_tol)
            for ie, eps in enumerate(args.eps):
                solver = solver_for(eps, args.solver, engine)
                if method == "flow":
                    solvers[f"eps={eps:g}"] = f"{solver} ({engine})"
                block = {k: np.empty(n_inner) for k in ("theta", "phi", "theta_a", "fnorm", "lam_max")}
                block_status = np.empty(n_inner, np.int8)
                block_cls = {k: np.empty(n_inner, t) for k, t in
                             (("outcome", np.int8), ("decided", bool), ("collapsed", bool))}
                for start in range(0, n_inner, chunk):
                    stop = min(start + chunk, n_inner)
                    idx = np.arange(start, start + chunk)
                    idx = np.minimum(idx, n_inner - 1)  # pad the last chunk: one program shape
                    lanes = inner[idx]
                    eta, sigma2, beta, ph0, th0 = (jnp.asarray(lanes[:, j]) for j in range(5))
                    model = ScalarSiamese(sigma2=sigma2)
                    hyper = Hyper.from_convention(args.convention, eta, jnp.full_like(eta, eps), beta)
                    th0 = jnp.asarray(th0)
                    y0 = State(th0, jnp.asarray(ph0), th0 if variant.has_target else None)
                    if method == "flow" and engine == "batched":
                        sol = solve_batch(
                            model, variant, hyper, y0, t1=float(args.t1), solver=solver,
                            rtol=args.rtol, atol=args.atol, max_steps=args.max_steps,
                            chunk_size=chunk,
                        )
                    elif method == "flow":
                        sol = solve_batch(
                            model, variant, hyper, y0, integrator="diffrax", t1=float(args.t1),
                            solver=solver, rtol=args.rtol, atol=args.atol,
                            max_steps=args.max_steps,
                        )
                    else:
                        keys = None
                        batch = None
                        if method == "sgd":
                            block_id = (iv * len(args.method) + im) * len(args.eps) + ie
                            gidx = block_id * n_inner + jnp.asarray(idx)
                            keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(gidx)
                            batch = args.batch
                        sol = solve_batch(
                            model, variant, hyper, y0, method=method, integrator="diffrax",
                            lr=jnp.full_like(eta, args.lr), keys=keys, n_steps=n_steps,
                            batch_size=batch,
                        )
                    y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
                    cls = classify_batch(model, variant, hyper, y, sol.status, crit)
                    m = stop - start
                    block["theta"][start:stop] = np.asarray(y.enc)[:m]
                    block["phi"][start:stop] = np.asarray(y.pred)[:m]
                    block["theta_a"][start:stop] = np.asarray(y.tgt if variant.has_target else y.enc)[:m]
                    block["fnorm"][start:stop] = np.asarray(cls["fnorm"])[:m]
                    block["lam_max"][start:stop] = np.asarray(cls["lam_max"])[:m]
                    block_status[start:stop] = np.asarray(sol.status)[:m]
                    for k in block_cls:
                        block_cls[k][start:stop] = np.asarray(cls[k])[:m]
                    if progress is not None:
                        progress.update(m)
                inner_shape = shape[3:]
                for k in block:
                    out[k][iv, im, ie] = block[k].reshape(inner_shape)
                status[iv, im, ie] = block_status.reshape(inner_shape)
                outcome[iv, im, ie] = block_cls["outcome"].reshape(inner_shape)
                decided[iv, im, ie] = block_cls["decided"].reshape(inner_shape)
                collapsed[iv, im, ie] = block_cls["collapsed"].reshape(inner_shape)

    eps_arr = np.asarray(args.eps, float)
    eta_arr = np.asarray(args.eta, float)
    eta_phi = eta_arr[None, :] * (eps_arr[:, None] if args.convention == "tian" else 1.0)
    eta_phi = np.broadcast_to(eta_phi, (len(eps_arr), len(eta_arr)))
    data_vars = {
        "theta": (AXES, out["theta"], {"long_name": "final encoder weight theta(t1)"}),
        "phi": (AXES, out["phi"], {"long_name": "final predictor weight phi(t1)"}),
        "theta_a": (AXES, out["theta_a"],
                    {"long_name": "final target weight theta_a(t1) (SimSiam: equals theta)"}),
        "status": (AXES, np.asarray(STATUS_NAMES)[status],
                   {"long_name": "solver status per lane: ok / max_steps / nonfinite"}),
        "collapsed": (AXES, collapsed, {"long_name": "decided and |theta(t1)| <= collapse_tol"}),
        "decided": (AXES, decided,
                    {"long_name": "converged to a fixed point that is not a saddle (see dynamics.classify)"}),
        "outcome": (AXES, outcome, {
            "long_name": "0 non-collapsed, 1 collapsed, 2 undecided, 3 failed",
            "flag_values": np.arange(4, dtype=np.int8),
            "flag_meanings": "non-collapsed collapsed undecided failed",
        }),
        "fnorm": (AXES, out["fnorm"], {"long_name": "max |gradient + decay| at y(t1) (the flow with eps = 1)"}),
        "lam_max": (AXES, out["lam_max"],
                    {"long_name": "largest real part of the Jacobian eigenvalues at y(t1)"}),
    }
    ds = xr.Dataset(
        data_vars,
        coords={
            **coords,
            "eta_theta": ("eta", eta_arr, {"long_name": "effective encoder weight decay"}),
            "eta_phi": (("eps", "eta"), eta_phi, {"long_name": "effective predictor weight decay"}),
            "alpha_p": ("eps", 1.0 / eps_arr, {"long_name": "predictor lr ratio 1/eps"}),
            "lr": args.lr,
        },
    )
    dev = jax.devices()[0]
    ds.attrs.update(
        command=" ".join(["python -m dynamics.sweep", *sys.argv[1:]]),
        package_version=dynamics.__version__,
        git_revision=_git_revision(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        dtype=str(jnp.zeros(()).dtype),
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        jax_version=jax.__version__,
        convention=args.convention,
        solver=", ".join(f"{k}: {v}" for k, v in solvers.items()) or "none (discrete methods)",
        rtol=args.rtol, atol=args.atol, t1=args.t1, max_steps=args.max_steps,
        lr=args.lr, n_steps=n_steps, batch=args.batch, seed=args.seed,
        ftol=args.ftol if args.ftol is not None else "1e-6 (flow, gd), 1e-2 (sgd)",
        collapse_tol=args.collapse_tol,
        collapse_rule=(
            "converged: status ok and max|g(y_T)| <= ftol (g: the flow at eps = 1); decided: converged and "
            "(|theta_T| <= collapse_tol or max Re eig J(y_T) <= 1e-9); collapsed: decided "
            "and |theta_T| <= collapse_tol"
        ),
    )
    return ds


def summarize(ds) -> str:
    """Per variant, method and eps: collapse fraction among decided lanes, undecided, failed."""
    lines = [f"{'variant':<14}{'method':<7}{'eps':>9}  {'collapsed':>10}  {'undecided':>9}  {'failed':>6}  lanes"]
    for v, m, e in itertools.product(ds.variant.values, ds.method.values, ds.eps.values):
        o = ds["outcome"].sel({"variant": v, "method": m, "eps": e}).values
        dec = (o == 0) | (o == 1)
        frac = (o == 1).sum() / max(dec.sum(), 1)
        lines.append(
            f"{v:<14}{m:<7}{e:>9.3g}  {frac:>10.1%}  {np.mean(o == 2):>9.1%}  {np.mean(o == 3):>6.1%}  {o.size}"
        )
    lines.append("collapsed: fraction of decided lanes; undecided/failed: fraction of all lanes")
    return "\n".join(lines)


def _matrix_model(argv) -> bool:
    """Whether ``--model linear|permode`` was asked for (handled by dynamics.sweep_linear)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="scalar")
    known, _ = pre.parse_known_args(argv)
    return known.model in ("linear", "permode")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if _matrix_model(argv):
        from dynamics import sweep_linear

        return sweep_linear.main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    from dynamics.runtime import split_cpu_cores

    try:
        split_cpu_cores()  # before any JAX computation: one device per core for the engine
    except ValueError as e:
        parser.error(str(e))
    for name in ("theta_range", "phi_range"):
        lo, hi = getattr(args, name)
        if not lo < hi:
            parser.error(f"--{name.replace('_', '-')} needs LO < HI, got {lo:g} {hi:g}")
    if args.n < 2 or (args.n_phi is not None and args.n_phi < 2):
        parser.error(f"grid needs at least 2 points per axis, got --n {args.n}"
                     + (f" --n-phi {args.n_phi}" if args.n_phi is not None else ""))
    check_sweep_lists(parser, args)
    if args.engine == "batched" and args.solver in DIFFRAX_ONLY:
        parser.error(f"--solver {args.solver} needs --engine diffrax")
    if args.engine == "diffrax" and args.solver == "rodas4":
        parser.error("--solver rodas4 needs --engine batched")
    from tqdm import tqdm

    if not args.no_compile_cache:
        from dynamics.runtime import enable_compilation_cache

        enable_compilation_cache()

    n_lanes = (len(args.variant) * len(args.method) * len(args.eps) * len(args.eta)
               * len(args.sigma2) * len(args.beta) * args.n * (args.n_phi or args.n))
    t0 = time.perf_counter()
    with tqdm(total=n_lanes, unit="lane", delay=3.0, disable=args.quiet, file=sys.stderr,
              desc="sweep") as bar:
        ds = run_sweep(args, progress=bar)
    elapsed = time.perf_counter() - t0
    out = Path(args.out)
    figures = []
    if not args.no_plot:
        from dynamics.plot import basin_map

        title = "collapse basins, scalar {}, " + f"{args.convention} convention, t1={args.t1:g}"
        figures = [
            (out / f"basins_{v}.png",
             lambda v=str(v): basin_map(ds, v, suptitle=title.format(v)))
            for v in ds.variant.values
        ]
    write_results(ds, out / "sweep.nc", figures, quiet=args.quiet, summary=summarize(ds),
                  n_lanes=n_lanes, elapsed=elapsed, kind="basin map")
    return 0


if __name__ == "__main__":
    sys.exit(main())
