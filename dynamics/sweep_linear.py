"""``python -m dynamics.sweep --model linear|permode``: collapse phase diagrams of the matrix models.

A sweep is the Cartesian product of ``--variant``, ``--method``, ``--eps``, ``--eta``,
``--sigma2``, ``--beta`` and ``--n-init`` random initial states. Every lane is integrated to
``--t1``; the result per lane is the spectrum of the final encoder and the collapse measures of
:mod:`dynamics.analysis.collapse_metrics` (number and fraction of collapsed modes, effective
rank, ``||W||``). Results go to ``OUT/sweep_<model>.nc`` and ``OUT/phase_<model>_<variant>.png``
(mean collapsed-mode fraction over the initial states, ``eta`` across, ``eps`` up).

Data: ``X = Q diag(d) Q^T`` with ``d`` evenly spaced from ``--x-eig HI`` down to ``LO`` and ``Q``
a random rotation drawn from ``--seed``; ``X' = sigma2 I``. Mode ``j`` (eigenvalue ``d_j``) has
non-trivial fixed points only while ``eta <= d_j^2 / (4 (d_j + sigma2))``, so the collapsed
fraction climbs in steps as ``eta`` grows. ``--model permode`` runs the per-mode reduction on
the same spectrum (``n = n1`` modes).

Default size (``python -m dynamics.sweep --model linear``): n1 = n2 = 4, 8 eta x 3 eps x
8 initial states = 192 lanes, SimSiam, flow to t1 = 300.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import sys
import time

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
from dynamics._io import memory_limit
from dynamics.sweep import _git_revision, solver_for

MODELS = ("linear", "permode")
PHASE_AXES = ("eps", "eta", "sigma2", "beta")

DEFAULTS = dict(
    eps=[1.0, 0.1, 0.03],
    eta=[0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35],
    sigma2=[0.5],
    beta=[1.0],
    variant=["simsiam"],
    method=["flow"],
    convention="loss",
    n1=4,
    n2=None,
    x_eig=(0.5, 1.5),
    n_init=8,
    init_scale=1.0,
    pred_scale=0.5,
    t1=300.0,
    lr=0.01,
    batch=64,
    seed=0,
    rtol=1e-7,
    atol=1e-9,
    solver="auto",
    max_steps=200_000,
    chunk=2048,
    collapse_tol=1e-3,
    out="sweep_results",
)


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    p = OneLineParser(
        prog="python -m dynamics.sweep --model linear|permode",
        description=(
            "Sweep linear SimSiam/BYOL (or its per-mode reduction) over hyperparameters and random "
            "initial states; report per lane the singular values of W, the number and fraction of "
            "collapsed modes and the effective rank; write OUT/sweep_<model>.nc and an eta x eps "
            "phase diagram per variant."
        ),
    )
    p.add_argument("--model", choices=("scalar",) + MODELS, default="linear",
                   help="scalar runs the basin sweep of dynamics.sweep")
    add_swept_arguments(
        p, d,
        eps_help="predictor time scale: eps * dWp/dt = -dL/dWp - eta_phi*Wp",
        sigma2_help="augmentation covariance X' = sigma2 I",
        beta_help="EMA rate of the BYOL target",
    )
    g = p.add_argument_group("model and initial states")
    g.add_argument("--n1", type=number("n1", positive=True, integer=True), default=d["n1"],
                   help="input dimension (and number of modes for permode)")
    g.add_argument("--n2", type=number("n2", positive=True, integer=True), default=None,
                   help="output dimension of W (default: n1; linear only)")
    g.add_argument("--x-eig", nargs=2, type=number("x-eig", positive=True), metavar=("LO", "HI"),
                   default=d["x_eig"], help="eigenvalues of the data correlation X, evenly spaced")
    g.add_argument("--n-init", type=number("n-init", positive=True, integer=True),
                   default=d["n_init"], help="random initial states per hyperparameter cell")
    g.add_argument("--init-scale", type=number("init-scale", positive=True),
                   default=d["init_scale"], help="W0 entries ~ N(0, scale^2 / n1)")
    g.add_argument("--pred-scale", type=number("pred-scale", nonneg=True),
                   default=d["pred_scale"], help="Wp0 entries ~ N(0, scale^2 / n2)")
    g.add_argument("--seed", type=number("seed", nonneg=True, integer=True, maximum=MAX_SEED),
                   default=d["seed"],
                   help="seed of X's eigenvectors, the initial states and SGD (same seed, same result)")
    g = add_integration_arguments(
        p, d, convention_help="loss: eta_theta = eta_phi = eta; tian: eta_phi = eps*eta"
    )
    g.add_argument("--solver", choices=("auto", "tsit5", "dopri5", "kvaerno5", "kvaerno3"),
                   default=d["solver"], help="auto = tsit5 for eps >= 5e-3, else kvaerno5")
    g.add_argument("--collapse-tol", type=number("collapse-tol", positive=True),
                   default=d["collapse_tol"], help="a mode is collapsed when its singular value is below this")
    g = p.add_argument_group("output")
    g.add_argument("--out", default=d["out"], help="output folder")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an earlier sweep of this model in --out (else such a folder is refused)")
    g.add_argument("--chunk", type=number("chunk", positive=True, integer=True),
                   default=d["chunk"], help="lanes per compiled batch (bounds memory)")
    g.add_argument("--phase", nargs=2, choices=PHASE_AXES, metavar=("Y", "X"), default=("eps", "eta"),
                   help=f"axes of the phase diagram, from {', '.join(PHASE_AXES)}; the other "
                        "axes are averaged over")
    g.add_argument("--no-plot", action="store_true", help="skip the PNG phase diagrams")
    g.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def data_matrices(n1: int, x_eig, seed: int):
    """``(X, eigenvalues d)``: ``X = Q diag(d) Q^T``, ``d`` from ``hi`` down to ``lo``."""
    import jax
    import jax.numpy as jnp

    from dynamics.models.linear import random_orthogonal

    lo, hi = x_eig
    d = jnp.linspace(hi, lo, n1)
    Q = random_orthogonal(jax.random.fold_in(jax.random.PRNGKey(seed), 1), n1)
    return (Q * d) @ Q.T, d


def _init_states(model_name, n_init, n1, n2, init_scale, pred_scale, seed, has_target):
    import jax
    import jax.numpy as jnp

    from dynamics.flow import State

    k = jax.random.fold_in(jax.random.PRNGKey(seed), 2)
    kw, kp = jax.random.split(k)
    if model_name == "linear":
        W = init_scale * jax.random.normal(kw, (n_init, n2, n1)) / jnp.sqrt(n1)
        Wp = pred_scale * jax.random.normal(kp, (n_init, n2, n2)) / jnp.sqrt(n2)
    else:
        W = init_scale * jax.random.normal(kw, (n_init, n1))
        Wp = pred_scale * jax.random.normal(kp, (n_init, n1))
    return State(W, Wp, W if has_target else None)


#: float64 copies of one lane's state an adaptive solve holds (stages, error estimate, buffers)
STATE_COPIES = 16
#: bytes per sgd minibatch element and input dimension (x, two noises, with temporaries)
SAMPLE_BYTES = 4 * 3 * 8
FIGURE_BYTES = 400_000
#: a sweep runs in at least this many lane chunks, so that its progress bar moves
PROGRESS_CHUNKS = 4


def plan_sweep(*, model: str, n1: int, n2: int, n_lanes: int, n_inner: int, methods, t1: float,
               lr: float, batch: int, chunk: int, memory: int | None = None) -> dict:
    """Check that a matrix-model sweep can run before any work; return its plan.

    Returns ``{"steps", "chunk", "file_bytes"}``: gd/sgd steps a lane, the lanes per compiled
    call (``chunk`` lowered until one call fits in a quarter of the memory, and to a quarter
    of a method's lanes so that progress shows), the estimated file size.

    Raises:
        ValueError: one line naming the value and the limit it breaks.
    """
    memory = memory_limit() if memory is None else int(memory)
    r = min(n1, n2)
    state = n2 * n1 * 2 + n2 * n2 if model == "linear" else 3 * n1
    data = 2 * n1 * n1 if model == "linear" else 2 * n1
    per_lane = 8 * (data + STATE_COPIES * state)
    if "sgd" in methods:
        per_lane += batch * n1 * SAMPLE_BYTES
    what = f"--n1 {n1}" + (f" --n2 {n2}" if model == "linear" and n2 != n1 else "")
    if "sgd" in methods:
        what += f" with --batch {batch}"
    check_memory(per_lane, f"{what} (one lane)", memory)
    check_memory(n_lanes * (r + 8) * 8 * 2, f"{n_lanes} lanes of {r} singular values", memory)
    steps = {m: discrete_steps(t1, lr) for m in methods if m != "flow"}
    fit = max(1, (memory // 4) // per_lane)
    chunk = max(1, min(int(chunk), fit, -(-n_inner // PROGRESS_CHUNKS)))
    return dict(steps=steps, chunk=chunk, file_bytes=n_lanes * (r + 8) * 8)


def run_sweep(args, progress=None, plan=None):
    """Run the sweep described by parsed ``args``; return an xarray Dataset. ``plan`` is
    :func:`plan_sweep`'s result (computed here when ``None``); ``progress`` has an
    ``update(lanes)`` method (a tqdm bar)."""
    import jax
    import jax.numpy as jnp
    import xarray as xr

    import dynamics
    from dynamics.analysis.collapse_metrics import collapse_summary, encoder_singular_values
    from dynamics.flow import VARIANTS, Hyper, State
    from dynamics.models import LinearSiamese, PerModeSiamese
    from dynamics.solve import STATUS_NAMES, solve_batch

    n1 = args.n1
    n2 = n1 if args.model == "permode" else (args.n2 or n1)
    r = min(n1, n2)
    X, d = data_matrices(n1, args.x_eig, args.seed)
    coords = dict(
        variant=list(args.variant), method=list(args.method), eps=list(args.eps),
        eta=list(args.eta), sigma2=list(args.sigma2), beta=list(args.beta),
        init=np.arange(args.n_init), mode=np.arange(r),
    )
    axes = ("variant", "method", "eps", "eta", "sigma2", "beta", "init")
    shape = tuple(len(coords[a]) for a in axes)
    sv_out = np.full(shape + (r,), np.nan)
    fnorm_out = np.full(shape, np.nan)
    comm_out = np.full(shape, np.nan)
    status_out = np.zeros(shape, np.int8)

    # lanes within one (variant, method) block: product over (eps, eta, sigma2, beta, init)
    grid = np.stack(
        np.meshgrid(np.arange(len(args.eps)), args.eta, args.sigma2, args.beta,
                    np.arange(args.n_init), indexing="ij"), -1,
    ).reshape(-1, 5)
    n_inner = grid.shape[0]
    if plan is None:
        plan = plan_sweep(model=args.model, n1=n1, n2=n2, n_lanes=int(np.prod(shape)),
                          n_inner=n_inner, methods=args.method, t1=args.t1, lr=args.lr,
                          batch=args.batch, chunk=args.chunk)
    chunk = min(plan["chunk"], n_inner)
    n_steps = next(iter(plan["steps"].values()), max(1, int(round(args.t1 / args.lr))))
    base_key = jax.random.fold_in(jax.random.PRNGKey(args.seed), 3)
    eps_arr = np.asarray(args.eps, float)
    solvers = sorted({solver_for(e, args.solver) for e in eps_arr})

    for iv, iv_name in enumerate(args.variant):
        variant = VARIANTS[iv_name]
        inits = _init_states(args.model, args.n_init, n1, n2, args.init_scale, args.pred_scale,
                             args.seed, variant.has_target)
        for im, method in enumerate(args.method):
            sv_block = np.empty((n_inner, r))
            fn_block = np.empty(n_inner)
            cm_block = np.full(n_inner, np.nan)
            st_block = np.empty(n_inner, np.int8)
            # one solver per eps group (implicit for small eps)
            for solver in solvers:
                sel = np.flatnonzero(
                    [solver_for(eps_arr[int(g[0])], args.solver) == solver for g in grid]
                )
                if method != "flow" and solver != solvers[0]:
                    continue  # discrete methods need no solver: run every lane once
                if method != "flow":
                    sel = np.arange(n_inner)
                for start in range(0, sel.size, chunk):
                    part = sel[start:start + chunk]
                    m = part.size
                    idx = np.concatenate([part, np.full(chunk - m, part[-1])]) if m < chunk else part
                    g = grid[idx]
                    eps = jnp.asarray(eps_arr[g[:, 0].astype(int)])
                    eta, sigma2, beta = (jnp.asarray(g[:, j]) for j in (1, 2, 3))
                    ii = jnp.asarray(g[:, 4].astype(int))
                    n = idx.size
                    if args.model == "linear":
                        model = LinearSiamese(
                            jnp.broadcast_to(X, (n, n1, n1)),
                            sigma2[:, None, None] * jnp.eye(n1)[None],
                        )
                    else:
                        model = PerModeSiamese(
                            jnp.broadcast_to(d, (n, n1)), sigma2[:, None] * jnp.ones((1, n1))
                        )
                    hyper = Hyper.from_convention(args.convention, eta, eps, beta)
                    y0 = jax.tree_util.tree_map(lambda x: x[ii], inits)
                    if method == "flow":
                        sol = solve_batch(
                            model, variant, hyper, y0, integrator="diffrax", t1=float(args.t1),
                            solver=solver, rtol=args.rtol, atol=args.atol,
                            max_steps=args.max_steps,
                        )
                    else:
                        keys, batch = None, None
                        if method == "sgd":
                            block_id = iv * len(args.method) + im
                            keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(
                                block_id * n_inner + jnp.asarray(idx))
                            batch = args.batch
                        sol = solve_batch(
                            model, variant, hyper, y0, method=method, integrator="diffrax",
                            lr=jnp.full_like(eta, args.lr), keys=keys, n_steps=n_steps,
                            batch_size=batch,
                        )
                    y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
                    sv = jax.vmap(encoder_singular_values)(model, y.enc)
                    fn = _fnorm_lanes(model, variant, hyper, y)
                    sv_block[part] = np.asarray(sv)[:m]
                    fn_block[part] = np.asarray(fn)[:m]
                    if args.model == "linear":
                        cm_block[part] = np.asarray(_commutator_lanes(model, variant, y))[:m]
                    st_block[part] = np.asarray(sol.status)[:m]
                    if progress is not None:
                        progress.update(m)
            inner_shape = shape[2:]
            sv_out[iv, im] = sv_block.reshape(inner_shape + (r,))
            fnorm_out[iv, im] = fn_block.reshape(inner_shape)
            comm_out[iv, im] = cm_block.reshape(inner_shape)
            status_out[iv, im] = st_block.reshape(inner_shape)

    summ = {k: np.asarray(v) for k, v in collapse_summary(jnp.asarray(sv_out), args.collapse_tol).items()}
    finite = np.isfinite(sv_out).all(-1) & (status_out == 0)
    for k in summ:
        summ[k] = np.where(finite, summ[k], np.nan)
    dims = axes
    data_vars = {
        "sv": (dims + ("mode",), sv_out, {"long_name": "singular values of the final encoder W(t1), descending"}),
        "norm": (dims, summ["norm"], {"long_name": "||W(t1)||_F"}),
        "effective_rank": (dims, summ["effective_rank"],
                           {"long_name": "entropy effective rank exp(H(s/sum s)) of the non-collapsed "
                            "singular values of W(t1) (0 when all collapsed)"}),
        "n_collapsed": (dims, summ["n_collapsed"],
                        {"long_name": "number of singular values of W(t1) below collapse_tol"}),
        "collapsed_fraction": (dims, summ["collapsed_fraction"],
                               {"long_name": "fraction of modes collapsed"}),
        "fnorm": (dims, fnorm_out, {"long_name": "max |f(y(t1))| of the expected-loss flow"}),
        "commutator": (dims, comm_out, {
            "long_name": "||[F, Wp]||_F / (||F||_F ||Wp||_F) at t1, F = W X W^T (linear only; "
                         "0 when the predictor shares F's eigenvectors)"}),
        "status": (dims, np.asarray(STATUS_NAMES)[status_out],
                   {"long_name": "solver status per lane: ok / max_steps / nonfinite"}),
    }
    eta_arr = np.asarray(args.eta, float)
    eta_phi = eta_arr[None, :] * (eps_arr[:, None] if args.convention == "tian" else 1.0)
    eta_phi = np.broadcast_to(eta_phi, (len(eps_arr), len(eta_arr)))
    s2 = np.asarray(args.sigma2, float)
    dd = np.asarray(d)
    eta_crit = dd[None, :] ** 2 / (4 * (dd[None, :] + s2[:, None]))
    ds = xr.Dataset(
        data_vars,
        coords={
            **coords,
            "x_eig": ("mode_x", dd, {"long_name": "eigenvalues d_j of the data correlation X"}),
            "eta_crit": (("sigma2", "mode_x"), eta_crit,
                         {"long_name": "per-mode saddle-node d_j^2 / (4 (d_j + sigma2))"}),
            "eta_phi": (("eps", "eta"), eta_phi, {"long_name": "effective predictor weight decay"}),
        },
    )
    dev = jax.devices()[0]
    ds.attrs.update(
        command=" ".join(["python -m dynamics.sweep", *sys.argv[1:]]),
        model=args.model, n1=n1, n2=n2,
        package_version=dynamics.__version__,
        git_revision=_git_revision(),
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        dtype=str(jnp.zeros(()).dtype),
        device=f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        jax_version=jax.__version__,
        convention=args.convention,
        solver=", ".join(f"eps={e:g}: {solver_for(e, args.solver)}" for e in eps_arr),
        rtol=args.rtol, atol=args.atol, t1=args.t1, max_steps=args.max_steps,
        lr=args.lr, n_steps=n_steps, batch=args.batch, seed=args.seed,
        init_scale=args.init_scale, pred_scale=args.pred_scale,
        collapse_tol=args.collapse_tol,
        collapse_rule="a mode is collapsed when its singular value of W(t1) is below collapse_tol; "
                      "measures are NaN on lanes whose status is not ok",
        data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I",
    )
    return ds


def _commutator_one(model, variant, y):
    import jax.numpy as jnp

    from dynamics.analysis.alignment import commutator_norm, feature_correlation

    Wp = model.effective_predictor(variant, y)
    F = feature_correlation(y.enc, model.X)
    scale = jnp.linalg.norm(F) * jnp.linalg.norm(Wp)
    return jnp.where(scale > 0, commutator_norm(F, Wp) / jnp.where(scale > 0, scale, 1.0), 0.0)


def _commutator_lanes(model, variant, y):
    import jax

    if _Lazy.comm is None:
        _Lazy.comm = jax.jit(
            lambda m, yy, variant: jax.vmap(lambda a, b: _commutator_one(a, variant, b))(m, yy),
            static_argnames=("variant",),
        )
    return _Lazy.comm(model, y, variant=variant)


def _fnorm_lanes(model, variant, hyper, y):
    """max |f| of the expected-loss flow at each lane's final state (lanes on every leaf)."""
    return _fnorm_jit(model, variant, hyper, y)


def _fnorm_one(model, variant, hyper, y):
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from dynamics.flow import vector_field

    return jnp.max(jnp.abs(ravel_pytree(vector_field(model, variant, hyper, y))[0]))


def _make_fnorm_jit():
    import functools

    import jax

    @functools.partial(jax.jit, static_argnames=("variant",))
    def f(model, variant, hyper, y):
        return jax.vmap(lambda m, h, yy: _fnorm_one(m, variant, h, yy))(model, hyper, y)

    return f


class _Lazy:
    fn = None
    comm = None


def _fnorm_jit(model, variant, hyper, y):
    if _Lazy.fn is None:
        _Lazy.fn = _make_fnorm_jit()
    return _Lazy.fn(model, variant, hyper, y)


def summarize(ds) -> str:
    """Mean collapsed-mode fraction per (variant, method, eps) across eta."""
    etas = ds.eta.values
    head = f"{'variant':<14}{'method':<7}{'eps':>7}  " + " ".join(f"{e:>6.3g}" for e in etas)
    lines = ["mean collapsed-mode fraction (over init, sigma2, beta); columns: eta", head]
    for v, m, e in itertools.product(ds.variant.values, ds.method.values, ds.eps.values):
        cf = ds["collapsed_fraction"].sel({"variant": v, "method": m, "eps": e})
        row = cf.mean(dim=[k for k in cf.dims if k != "eta"], skipna=True).values
        lines.append(f"{v:<14}{m:<7}{e:>7.3g}  " + " ".join(f"{x:>6.2f}" for x in row))
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size}")
    return "\n".join(lines)


def phase_figure(ds, variant: str, method: str, y: str = "eps", x: str = "eta"):
    """Mean collapsed-mode fraction and effective rank over the ``(y, x)`` plane (other axes
    averaged), with the per-mode ``eta_crit`` marked when ``x`` is ``eta``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def plane(name):
        v = ds[name].sel({"variant": variant, "method": method})
        return v.mean(dim=[k for k in v.dims if k not in (x, y)], skipna=True).transpose(y, x)

    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    xs, ys = ds[x].values, ds[y].values
    for ax, name, title, cmap in ((axs[0], "collapsed_fraction", "collapsed-mode fraction", "magma"),
                                  (axs[1], "effective_rank", "effective rank of W(t1)", "viridis")):
        im = ax.imshow(plane(name).values, origin="lower", aspect="auto", cmap=cmap,
                       extent=(-0.5, len(xs) - 0.5, -0.5, len(ys) - 0.5))
        ax.set_xticks(range(len(xs)), [f"{e:.3g}" for e in xs], rotation=45)
        ax.set_yticks(range(len(ys)), [f"{e:.3g}" for e in ys])
        ax.set_xlabel(x)
        ax.set_ylabel(y)
        ax.set_title(title)
        fig.colorbar(im, ax=ax)
        if x == "eta" and len(xs) > 1:  # per-mode eta_crit (first sigma2), on the index axis
            for ec in np.asarray(ds["eta_crit"].values[0]):
                xi = np.interp(ec, xs, np.arange(len(xs)), left=np.nan, right=np.nan)
                if np.isfinite(xi):
                    ax.axvline(xi, color="c", lw=0.8, ls="--")
    note = "; dashed: per-mode eta_crit" if x == "eta" else ""
    fig.suptitle(f"{ds.attrs['model']} {variant} ({method}), n1={ds.attrs['n1']}, "
                 f"{ds.attrs['convention']} convention, t1={ds.attrs['t1']:g}{note}")
    return fig


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(parser.prog, lambda guard: _main(parser, args, guard))


def _main(parser, args, guard) -> int:
    if args.model == "scalar":
        parser.error("--model scalar is handled by dynamics.sweep")
    lo, hi = args.x_eig
    if not lo <= hi:
        parser.error(f"--x-eig needs LO <= HI, got {lo:g} {hi:g}")
    if args.model == "permode" and args.n2 is not None and args.n2 != args.n1:
        parser.error(f"--model permode has n1 modes; --n2 {args.n2} differs from --n1 {args.n1}")
    check_sweep_lists(parser, args)
    if args.phase[0] == args.phase[1]:
        parser.error(f"--phase needs two different axes, got {args.phase[0]} twice")
    n2 = args.n1 if args.model == "permode" else (args.n2 or args.n1)
    n_inner = len(args.eps) * len(args.eta) * len(args.sigma2) * len(args.beta) * args.n_init
    n_lanes = len(args.variant) * len(args.method) * n_inner
    try:
        plan = plan_sweep(model=args.model, n1=args.n1, n2=n2, n_lanes=n_lanes, n_inner=n_inner,
                          methods=args.method, t1=args.t1, lr=args.lr, batch=args.batch,
                          chunk=args.chunk)
    except ValueError as e:
        parser.error(str(e))
    n_figs = 0 if args.no_plot else len(args.variant) * len(args.method)
    m = args.model
    open_results(guard, args.out, f"sweep-{m}", (f"sweep_{m}.nc", f"phase_{m}_*.png"),
                 overwrite=args.overwrite, min_free=plan["file_bytes"] + n_figs * FIGURE_BYTES)
    from tqdm import tqdm

    if not args.quiet:
        what = [f"{n_lanes} lanes, n1 = {args.n1}"]
        for meth, n in plan["steps"].items():
            what.append(f"{meth}: {n} steps a lane (t1 {args.t1:g} / lr {args.lr:g})")
        print("sweep: " + "; ".join(what), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with tqdm(total=n_lanes, unit="lane", delay=0.0, mininterval=0.5, disable=args.quiet,
              file=sys.stderr, desc="sweep") as bar:
        ds = run_sweep(args, progress=bar, plan=plan)
    elapsed = time.perf_counter() - t0
    figures = []
    if not args.no_plot:
        for v in ds.variant.values:
            for meth in ds.method.values:
                suffix = "" if len(ds.method) == 1 else f"_{meth}"
                figures.append((f"phase_{m}_{v}{suffix}.png",
                                lambda v=str(v), meth=str(meth): phase_figure(ds, v, meth, *args.phase)))
    write_results(guard, ds, f"sweep_{m}.nc", figures, quiet=args.quiet,
                  summary=summarize(ds), n_lanes=ds["status"].size, elapsed=elapsed,
                  kind="phase diagram")
    return 0


if __name__ == "__main__":
    sys.exit(main())
