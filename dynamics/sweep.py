"""``python -m dynamics.sweep``: collapse basins of the scalar SimSiam/BYOL models.

A sweep is the Cartesian product of its axes: a grid of initial conditions ``(theta0, phi0)``
crossed with every value given for ``--eps``, ``--eta``, ``--sigma2``, ``--beta``, every
``--variant`` and every ``--method``. Each lane is integrated to ``--t1`` and classified by the
rule in :mod:`dynamics.classify` (SGD lanes by the statistics of their trailing window).
Results go to ``OUT/sweep.nc`` (an xarray Dataset, one coordinate per axis, named after its
symbol) and ``OUT/basins_<variant>.png``, through a :class:`dynamics._io.ResultSet`: the folder
is checked and locked before any work and the files appear together or not at all.
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
    MAX_SEED,
    OneLineParser,
    add_integration_arguments,
    add_swept_arguments,
    check_memory,
    check_sweep_lists,
    discrete_steps,
    guarded,
    number,
    open_results,
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
    t1=None,
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

#: integration time of each method when --t1 is not given: sgd's lanes settle by t ~ 40 at the
#: default eps, eta, sigma2 (the slowest, near the basin boundary, by about t ~ 55)
T1_DEFAULT = {"flow": 200.0, "gd": 200.0, "sgd": 60.0}
#: a gd/sgd run is cut into this many equal segments: the progress bar moves once a segment
#: and the last SGD_WINDOW segment ends form sgd's trailing window (dynamics.classify)
SEGMENTS = 50
SGD_WINDOW = 10
#: estimates of what a sweep holds in memory / writes to disk per lane, and what one sgd
#: minibatch element costs (x, two noises, float64, with the step's temporaries)
RESULT_BYTES_PER_LANE = 200
FILE_BYTES_PER_LANE = 80
FIGURE_BYTES = 400_000
SAMPLE_BYTES = 4 * 3 * 8
SGD_CHUNK_BYTES = 512 << 20
RESULT_PATTERNS = ("sweep.nc", "basins_*.png")

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
        t1_help="integration time in ODE time units (default: "
                + ", ".join(f"{v:g} for {k}" for k, v in T1_DEFAULT.items())
                + "; gd/sgd take t1/lr steps)",
    )
    g.add_argument("--seed", type=number("seed", nonneg=True, integer=True, maximum=MAX_SEED),
                   default=d["seed"], help="PRNG seed of sgd (same seed, same result)")
    g.add_argument("--engine", choices=ENGINES, default=None,
                   help="integrator of flow: batched (dynamics.solve.engine, per-lane adaptive steps) or "
                        "diffrax (jit(vmap(diffeqsolve))); default batched, or diffrax when "
                        "--solver names a diffrax-only solver")
    g.add_argument("--solver", choices=("auto", "rodas4", "tsit5", "dopri5", "kvaerno5", "kvaerno3"),
                   default=d["solver"],
                   help="ODE solver for flow; auto = batched engine: rodas4 (Rosenbrock) for "
                        "eps < 0.3, else dopri5; diffrax: tsit5 for eps >= 5e-3, else kvaerno5. "
                        "rodas4 is batched-only; tsit5, kvaerno5, kvaerno3 diffrax-only")
    g = p.add_argument_group("collapse criterion (see dynamics.classify)")
    g.add_argument("--ftol", type=number("ftol", positive=True), default=1e-6,
                   help="flow, gd: converged when max|gradient + decay| at y_T <= ftol")
    g.add_argument("--collapse-tol", type=number("collapse-tol", positive=True), default=1e-3,
                   help="collapsed when |theta_T| <= collapse-tol (sgd: its mean over the last "
                        f"{SGD_WINDOW} of {SEGMENTS} segments of the run)")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=d["out"], help="output folder")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an earlier sweep's results in --out (else such a folder is refused)")
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


def t1_for(method: str, t1: float | None) -> float:
    """The integration time of ``method``: ``t1``, or the method's default when ``None``."""
    return T1_DEFAULT[method] if t1 is None else float(t1)


def segments(n_steps: int) -> tuple[int, int, int]:
    """``(first, length, count)``: a gd/sgd run of ``n_steps`` is a first segment of ``first``
    steps and ``count - 1`` more of ``length`` (at most :data:`SEGMENTS` in all; the remainder
    goes into the first, so the trailing window is evenly spaced)."""
    count = min(SEGMENTS, n_steps)
    length = n_steps // count
    return n_steps - length * (count - 1), length, count


def plan_sweep(*, n_theta: int, n_phi: int, n_blocks: int, n_inner: int, methods, t1, lr: float,
               batch: int, chunk: int | None, memory: int | None = None) -> dict:
    """Check that a sweep can run before any work; return its plan.

    Args:
        n_theta, n_phi: grid points; n_blocks: (variant, method, eps) blocks; n_inner: lanes
        per block; methods: the methods swept; t1: ``--t1`` (``None``: per-method default);
        lr, batch: gd/sgd step and sgd minibatch; chunk: ``--chunk`` (``None``: default);
        memory: bytes allowed (default: this machine's memory).

    Returns:
        ``{"lanes", "steps": {method: n}, "sgd_chunk", "result_bytes", "file_bytes"}``.

    Raises:
        ValueError: one line naming the value and the limit it breaks.
    """
    lanes = n_blocks * n_inner
    need = lanes * RESULT_BYTES_PER_LANE + n_inner * 5 * 8 * 2
    check_memory(need, f"a grid of {n_theta} x {n_phi} initial states ({lanes:.4g} lanes in all)",
                 memory)
    steps = {m: discrete_steps(t1_for(m, t1), lr) for m in methods if m != "flow"}
    sgd_chunk = None
    if "sgd" in methods:
        check_memory(batch * SAMPLE_BYTES, f"--batch {batch} (one lane's minibatch)", memory)
        sgd_chunk = max(1, min(chunk or 4096, n_inner, SGD_CHUNK_BYTES // (batch * SAMPLE_BYTES)))
    return dict(lanes=lanes, steps=steps, sgd_chunk=sgd_chunk, result_bytes=need,
                file_bytes=lanes * FILE_BYTES_PER_LANE)


def run_sweep(args, progress=None, plan=None):
    """Run the sweep described by parsed ``args``; return an xarray Dataset.

    ``plan`` is :func:`plan_sweep`'s result (computed here when ``None``); ``progress`` has an
    ``update(lanes)`` method (a tqdm bar)."""
    import jax
    import jax.numpy as jnp
    import xarray as xr

    import dynamics
    from dynamics.solve import engine as batched
    from dynamics.classify import Criterion, WindowCriterion, classify_batch, classify_window_batch
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
    names = ("theta", "phi", "theta_a", "fnorm", "lam_max", "enc_mean", "drift")
    out = {k: np.full(shape, np.nan) for k in names}
    status = np.zeros(shape, np.int8)
    outcome = np.zeros(shape, np.int8)
    decided = np.zeros(shape, bool)
    collapsed = np.zeros(shape, bool)

    # lanes within one (variant, method, eps) block: product over (eta, sigma2, beta, phi0, theta0)
    inner = np.stack(
        np.meshgrid(args.eta, args.sigma2, args.beta, phi0, theta0, indexing="ij"), -1
    ).reshape(-1, 5)
    n_inner = inner.shape[0]
    if plan is None:
        plan = plan_sweep(n_theta=n_th, n_phi=n_ph, n_blocks=int(np.prod(shape[:3])),
                          n_inner=n_inner, methods=args.method, t1=args.t1, lr=args.lr,
                          batch=args.batch, chunk=args.chunk)
    engine = engine_for(args)
    solvers = {}
    base_key = jax.random.PRNGKey(args.seed)
    for iv, iv_name in enumerate(args.variant):
        variant = VARIANTS[iv_name]
        for im, method in enumerate(args.method):
            crit = Criterion(ftol=args.ftol, collapse_tol=args.collapse_tol)
            wcrit = WindowCriterion(collapse_tol=args.collapse_tol)
            t1 = t1_for(method, args.t1)
            if method == "sgd":
                chunk = plan["sgd_chunk"]
            elif args.chunk is not None:
                chunk = min(args.chunk, n_inner)
            elif method == "flow" and engine == "batched":
                chunk = min(batched.CHUNK_SIZE, n_inner)
            else:
                chunk = min(4096, n_inner)
            for ie, eps in enumerate(args.eps):
                solver = solver_for(eps, args.solver, engine)
                if method == "flow":
                    solvers[f"eps={eps:g}"] = f"{solver} ({engine})"
                block = {k: np.full(n_inner, np.nan) for k in names}
                block_status = np.empty(n_inner, np.int8)
                block_cls = {k: np.empty(n_inner, t) for k, t in
                             (("outcome", np.int8), ("decided", bool), ("collapsed", bool))}
                for start in range(0, n_inner, chunk):
                    stop = min(start + chunk, n_inner)
                    m = stop - start
                    idx = np.arange(start, start + chunk)
                    idx = np.minimum(idx, n_inner - 1)  # pad the last chunk: one program shape
                    lanes = inner[idx]
                    eta, sigma2, beta, ph0, th0 = (jnp.asarray(lanes[:, j]) for j in range(5))
                    model = ScalarSiamese(sigma2=sigma2)
                    hyper = Hyper.from_convention(args.convention, eta, jnp.full_like(eta, eps), beta)
                    th0 = jnp.asarray(th0)
                    y0 = State(th0, jnp.asarray(ph0), th0 if variant.has_target else None)
                    if method == "flow":
                        if engine == "batched":
                            sol = batched.flow_batch(
                                model, variant, hyper, y0, t1=t1, method=solver,
                                rtol=args.rtol, atol=args.atol, max_steps=args.max_steps,
                                chunk_size=chunk,
                            )
                        else:
                            sol = solve_batch(
                                model, variant, hyper, y0, integrator="diffrax", t1=t1, solver=solver,
                                rtol=args.rtol, atol=args.atol, max_steps=args.max_steps,
                            )
                        y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
                        st = sol.status
                        cls = classify_batch(model, variant, hyper, y, st, crit)
                        if progress is not None:
                            progress.update(m)
                    else:
                        keys = None
                        if method == "sgd":
                            block_id = (iv * len(args.method) + im) * len(args.eps) + ie
                            gidx = block_id * n_inner + jnp.asarray(idx)
                            keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(gidx)
                        y, st, window = _run_segments(
                            batched, model, variant, hyper, y0, args.lr, keys,
                            n_steps=plan["steps"][method], batch=args.batch if keys is not None else None,
                            window=SGD_WINDOW if method == "sgd" else 0,
                            progress=None if progress is None else _lane_progress(progress, m),
                        )
                        if method == "sgd":
                            cls = classify_window_batch(model, variant, hyper, window, st, wcrit)
                            block["enc_mean"][start:stop] = np.asarray(cls["enc_mean"])[:m]
                            block["drift"][start:stop] = np.asarray(cls["drift"])[:m]
                        else:
                            cls = classify_batch(model, variant, hyper, y, st, crit)
                    block["theta"][start:stop] = np.asarray(y.enc)[:m]
                    block["phi"][start:stop] = np.asarray(y.pred)[:m]
                    block["theta_a"][start:stop] = np.asarray(y.tgt if variant.has_target else y.enc)[:m]
                    block["fnorm"][start:stop] = np.asarray(cls["fnorm"])[:m]
                    block["lam_max"][start:stop] = np.asarray(cls["lam_max"])[:m]
                    block_status[start:stop] = np.asarray(st)[:m]
                    for k in block_cls:
                        block_cls[k][start:stop] = np.asarray(cls[k])[:m]
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
        "collapsed": (AXES, collapsed, {"long_name": "decided and |theta(t1)| <= collapse_tol "
                                        "(sgd: its mean over the trailing window)"}),
        "decided": (AXES, decided,
                    {"long_name": "converged to a fixed point that is not a saddle (sgd: "
                                  "stationary about one; see dynamics.classify)"}),
        "outcome": (AXES, outcome, {
            "long_name": "0 non-collapsed, 1 collapsed, 2 undecided, 3 failed",
            "flag_values": np.arange(4, dtype=np.int8),
            "flag_meanings": "non-collapsed collapsed undecided failed",
        }),
        "fnorm": (AXES, out["fnorm"], {"long_name": "max |gradient + decay| at y(t1) (the flow "
                                       "with eps = 1; sgd: at the window-averaged state)"}),
        "lam_max": (AXES, out["lam_max"],
                    {"long_name": "largest real part of the Jacobian eigenvalues at y(t1) "
                                  "(sgd: at the window-averaged state)"}),
        "enc_mean": (AXES, out["enc_mean"],
                     {"long_name": "sgd: mean |theta| over the trailing window (NaN for flow, gd)"}),
        "drift": (AXES, out["drift"],
                  {"long_name": "sgd: relative change of |theta| across the trailing window"}),
    }
    t1s = {m: t1_for(m, args.t1) for m in args.method}
    ds = xr.Dataset(
        data_vars,
        coords={
            **coords,
            "eta_theta": ("eta", eta_arr, {"long_name": "effective encoder weight decay"}),
            "eta_phi": (("eps", "eta"), eta_phi, {"long_name": "effective predictor weight decay"}),
            "alpha_p": ("eps", 1.0 / eps_arr, {"long_name": "predictor lr ratio 1/eps"}),
            "t1": ("method", [t1s[m] for m in args.method], {"long_name": "integration time"}),
            "lr": args.lr,
        },
    )
    dev = jax.devices()[0]
    uniform_t1 = len(set(t1s.values())) == 1
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
        rtol=args.rtol, atol=args.atol, max_steps=args.max_steps,
        t1=next(iter(t1s.values())) if uniform_t1 else ", ".join(f"{m}: {v:g}" for m, v in t1s.items()),
        lr=args.lr,
        n_steps=", ".join(f"{m}: {n}" for m, n in plan["steps"].items()) or "none (flow only)",
        batch=args.batch, seed=args.seed,
        ftol=args.ftol,
        collapse_tol=args.collapse_tol,
        collapse_rule=(
            "flow, gd: converged: status ok and max|g(y_T)| <= ftol (g: the flow at eps = 1); "
            "decided: converged and (|theta_T| <= collapse_tol or max Re eig J(y_T) <= 1e-9); "
            "collapsed: decided and |theta_T| <= collapse_tol. sgd: over the last "
            f"{SGD_WINDOW} of {SEGMENTS} segment ends, collapsed when mean |theta| <= collapse_tol; "
            "non-collapsed when the fitted |theta| changes by <= 10% across the window, "
            "mean - 3 std > collapse_tol and the Jacobian at the mean state has no eigenvalue "
            "with real part > 1e-9; else undecided"
        ),
        collapsed_percent="collapsed lanes / all lanes (undecided and failed lanes count in "
                          "the denominator)",
    )
    return ds


def _lane_progress(bar, lanes):
    """A ``progress(done_steps, n_steps)`` callback that moves ``bar`` by whole lanes: ``lanes``
    in all once ``done_steps == n_steps``."""
    shown = [0]

    def update(done, total):
        now = lanes * done // total
        bar.update(now - shown[0])
        shown[0] = now

    return update


def _run_segments(batched, model, variant, hyper, y0, lr, keys, *, n_steps, batch, window,
                  progress=None):
    """A gd (``keys`` None) or sgd run of ``n_steps`` as :func:`segments`; segment ``s`` of lane
    ``i`` samples with ``fold_in(keys[i], s)``. Returns the final state, the status and, when
    ``window`` > 0, the last ``window`` segment ends (``State`` leaves (lanes, window, ...))."""
    import jax
    import jax.numpy as jnp

    from dynamics.solve import STATUS_NONFINITE, STATUS_OK

    first, length, count = segments(n_steps)
    y = y0
    n = y0.enc.shape[0]
    bad = np.zeros(n, bool)
    ends = []
    lrs = jnp.full((n,), lr)
    for s in range(count):
        seg_keys = None if keys is None else jax.vmap(lambda k: jax.random.fold_in(k, s))(keys)
        steps = first if s == 0 else length
        sol = batched.discrete_batch(model, variant, hyper, y, lrs, seg_keys, n_steps=steps,
                                         batch_size=batch)
        y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
        bad |= np.asarray(sol.status) != STATUS_OK
        if window and s >= count - window:
            ends.append(y)
        if progress is not None:
            progress(first + s * length, n_steps)
    status = np.where(bad, STATUS_NONFINITE, STATUS_OK).astype(np.int8)
    win = None
    if window:
        while len(ends) < 2:  # runs of fewer steps than segments: repeat the last state
            ends.insert(0, ends[0] if ends else y)
        win = jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs], axis=1), *ends)
    return y, status, win


#: the one definition of the percentages the sweep reports (table, basin maps, README)
PERCENT_NOTE = ("percent of all lanes: collapsed + non-collapsed + undecided + failed = 100 "
                "(undecided: not settled at a stable point by t1)")


def summarize(ds) -> str:
    """Per variant, method and eps: the share of all lanes in each outcome."""
    lines = [f"{'variant':<14}{'method':<7}{'eps':>9}  {'collapsed':>9}  {'non-coll.':>9}  "
             f"{'undecided':>9}  {'failed':>6}  lanes"]
    for v, m, e in itertools.product(ds.variant.values, ds.method.values, ds.eps.values):
        o = ds["outcome"].sel({"variant": v, "method": m, "eps": e}).values
        lines.append(
            f"{v:<14}{m:<7}{e:>9.3g}  {np.mean(o == 1):>9.1%}  {np.mean(o == 0):>9.1%}  "
            f"{np.mean(o == 2):>9.1%}  {np.mean(o == 3):>6.1%}  {o.size}"
        )
    lines.append(PERCENT_NOTE)
    return "\n".join(lines)


def basin_title(ds, variant: str) -> str:
    """The basin map's title: model, variant, convention and how each method ran."""
    how = []
    for m in ds.method.values:
        t1 = float(ds["t1"].sel({"method": m}))
        if m == "flow":
            how.append(f"gradient flow to t1={t1:g}")
        elif m == "gd":
            how.append(f"GD, lr {ds.attrs['lr']:g}, to t1={t1:g}")
        else:
            how.append(f"SGD, minibatch {ds.attrs['batch']}, lr {ds.attrs['lr']:g}, to t1={t1:g}, "
                       f"seed {ds.attrs['seed']}")
    return (f"collapse basins, scalar {variant}, {ds.attrs['convention']} convention\n"
            + "\n".join(how))


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
    return guarded(parser.prog, lambda guard: _main(parser, args, guard))


def _main(parser, args, guard) -> int:
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
    n_ph = args.n_phi or args.n
    n_inner = len(args.eta) * len(args.sigma2) * len(args.beta) * args.n * n_ph
    n_blocks = len(args.variant) * len(args.method) * len(args.eps)
    try:
        plan = plan_sweep(n_theta=args.n, n_phi=n_ph, n_blocks=n_blocks, n_inner=n_inner,
                          methods=args.method, t1=args.t1, lr=args.lr, batch=args.batch,
                          chunk=args.chunk)
    except ValueError as e:
        parser.error(str(e))
    n_figs = 0 if args.no_plot else len(args.variant)
    open_results(guard, args.out, "sweep", RESULT_PATTERNS, overwrite=args.overwrite,
                 min_free=plan["file_bytes"] + n_figs * FIGURE_BYTES)
    from tqdm import tqdm

    if not args.no_compile_cache:
        from dynamics.runtime import enable_compilation_cache

        enable_compilation_cache()

    n_lanes = plan["lanes"]
    if not args.quiet:
        what = [f"{n_lanes} lanes ({args.n} x {n_ph} initial states x {n_blocks * n_inner // (args.n * n_ph)} "
                f"settings)"]
        for m, n in plan["steps"].items():
            what.append(f"{m}: {n} steps a lane (t1 {t1_for(m, args.t1):g} / lr {args.lr:g})"
                        + (f", minibatch {args.batch}" if m == "sgd" else ""))
        print("sweep: " + "; ".join(what), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with tqdm(total=n_lanes, unit="lane", delay=0.0, mininterval=0.5, disable=args.quiet,
              file=sys.stderr, desc="sweep",
              bar_format="{l_bar}{bar}| {n:.0f}/{total} lanes [{elapsed}<{remaining}]") as bar:
        ds = run_sweep(args, progress=bar, plan=plan)
    elapsed = time.perf_counter() - t0
    figures = []
    if not args.no_plot:
        from dynamics.plot import basin_map

        figures = [
            (f"basins_{v}.png", lambda v=str(v): basin_map(ds, v, suptitle=basin_title(ds, v)))
            for v in ds.variant.values
        ]
    write_results(guard, ds, "sweep.nc", figures, quiet=args.quiet, summary=summarize(ds),
                  n_lanes=n_lanes, elapsed=elapsed, kind="basin map")
    return 0


if __name__ == "__main__":
    sys.exit(main())
