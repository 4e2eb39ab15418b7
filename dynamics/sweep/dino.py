"""The DINO family: the DINO toy over the teacher temperature and the centre's rate.

``python -m dynamics.sweep --model dino`` sweeps :class:`~dynamics.models.DinoToy` (``N``
data points with common-mode gain ``g``, a linear student into ``K`` logits, an EMA teacher
(variant ``dino``) or a stop-gradient copy of the student (``dino-sg``), a centre with rate
``eta_c``) over ``tau_t`` x ``eta_c`` from small random students, and labels each lane by what
its outputs do at ``t1``: *uniform* (every output uniform: no sharpening), *one-output* (every
sample on the same output: no centering), *spread* (samples told apart), or *not settled*.
Beside them it stores the closed forms of docs/theory.md ("DINO"): ``lambda_d`` per ``tau_t``
(the between-sample modes grow iff ``lambda_d > eta``) and the centre rate of the Hopf
bifurcation of the common mode (``g lambda_d - eta`` for ``dino-sg``).

The model has no predictor: ``--eps`` and ``--convention`` are not offered; ``--beta`` is the
teacher's EMA rate. This module and :mod:`dynamics.models.dino` are all that the model costs.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.models import DinoToy
from dynamics.models.dino import DINO, DINO_SG, whitened_data
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import MatrixFamily, fnorm_lanes, init_keys, plan_sweep
from dynamics.types import Hyper, SlotState

#: the outcome labels, by code
OUTCOMES = ("spread", "uniform", "one-output", "not-settled", "failed")


@dataclasses.dataclass(frozen=True)
class DinoOptions:
    """Data, temperatures, centre rates and random initial students."""

    n_samples: int = option(3, "number of data points N", positive=True, integer=True)
    k: int = option(3, "number of outputs K", positive=True, integer=True)
    gain: float = option(4.0, "common-mode gain g of the data (x x^T / N has eigenvalue g on "
                         "the all-samples mode, 1 on the others)", positive=True)
    tau_s: float = option(0.1, "student temperature", positive=True)
    tau_t: tuple = option((0.04, 0.06, 0.08, 0.09, 0.1, 0.12),
                          "teacher temperatures (lane axis)", positive=True, nargs="+",
                          metavar="TAU")
    eta_c: tuple = option((0.0, 3.0, 10.0, 30.0, 100.0, 300.0),
                          "rates of the centre's EMA (lane axis; 0: no centering)", nonneg=True,
                          nargs="+", metavar="RATE")
    n_init: int = option(3, "random initial students per cell", positive=True, integer=True)
    init_scale: float = option(0.01, "W0 entries ~ N(0, scale^2)", positive=True)
    ftol: float = option(1e-6, "a lane has settled when max |f| <= ftol at t1", positive=True)


def _distinct(name, values):
    if len(set(values)) != len(values):
        raise ValueError(f"--{name} gives a value twice: {' '.join(f'{v:g}' for v in values)}")


@register
class DinoFamily(MatrixFamily):
    name = "dino"
    description = (
        "Sweep the DINO toy (student/teacher softmax cross-entropy over K outputs, teacher "
        "temperature tau_t, EMA teacher, centre with rate eta_c) over tau_t x eta_c from small "
        "random students; label each lane uniform / one-output / spread beside the closed "
        "forms lambda_d and the Hopf centre rate; write OUT/sweep_dino.nc and a phase diagram."
    )
    Options = DinoOptions
    variants = {DINO.name: DINO, DINO_SG.name: DINO_SG}
    ignores = ("eps", "convention")
    lane_axes = ("tau_t", "eta_c", "init")
    defaults = dict(SHARED_DEFAULTS, variant=(DINO.name, DINO_SG.name), eps=(1.0,), eta=(1.0,),
                    beta=(10.0,), sigma2=(0.0,), t1=60.0, lr=0.002, batch=16, rtol=1e-8,
                    atol=1e-10, chunk=4096)
    t1_default = {m: 60.0 for m in ("flow", "gd", "sgd")}
    stiff_eps = 0.0
    help = dict(MatrixFamily.help, eta="weight decay of the student W: W' = -(dL/dW + eta W)",
                beta="rate of the teacher's EMA, T' = beta (W - T) (variant dino)",
                sigma2="variance of the views' noise (only sgd sees it)",
                seed="seed of the initial students and SGD (same seed, same result)",
                collapse_tol="a lane has collapsed when the mutual information between sample "
                             "and output, over log K, is below this")

    def check(self, config) -> None:
        o = config.options
        _distinct("tau-t", o.tau_t)
        _distinct("eta-c", o.eta_c)
        if o.n_samples < 2 or o.k < 2:
            raise ValueError(f"--n-samples and --k must be >= 2, got {o.n_samples} and {o.k}")

    def sizes(self, config):
        o = config.options
        N, K = o.n_samples, o.k
        return dict(n1=N, n2=K, r=1, state=2 * K * N + K, data=N * N + 4,
                    what=f"--n-samples {N} --k {K}")

    def axis_values(self, config):
        o = config.options
        return dict(tau_t=np.asarray(o.tau_t, float), eta_c=np.asarray(o.eta_c, float),
                    init=np.arange(o.n_init))

    def axis_sizes(self, config):
        o = config.options
        return (len(o.tau_t), len(o.eta_c), o.n_init)

    def prepare(self, config):
        o = config.options
        kw, _ = init_keys(config.seed)
        W = o.init_scale * jax.random.normal(kw, (o.n_init, o.k, o.n_samples))
        return dict(x=whitened_data(o.n_samples, o.gain), W=W)

    def build(self, config, ctx, variant, eps, lanes):
        o = config.options
        eta, sigma2, beta = (jnp.asarray(lanes[k]) for k in ("eta", "sigma2", "beta"))
        ii = jnp.asarray(lanes["init"].astype(int))
        n = ii.shape[0]
        model = DinoToy(jnp.broadcast_to(ctx["x"], (n,) + ctx["x"].shape),
                        jnp.full(n, o.tau_s), jnp.asarray(lanes["tau_t"]),
                        jnp.asarray(lanes["eta_c"]), sigma2)
        hyper = Hyper(eps=jnp.ones_like(eta), eta_theta=eta, eta_phi=jnp.zeros_like(eta),
                      beta=beta)
        W = ctx["W"][ii]
        return model, hyper, SlotState(W, None, W if variant.has_target else None,
                                       {"center": jnp.zeros((n, o.k))})

    def extra_dims(self, name):
        return ()

    def read(self, config, ctx, method, model, variant, hyper, y, status, window):
        h_s, h_m, info = jax.vmap(lambda m, W: m.outputs(W))(model, y.enc)
        return dict(h_sample=h_s, h_marginal=h_m, info=info,
                    norm=jnp.linalg.norm(y.enc, axis=(-2, -1)),
                    fnorm=fnorm_lanes(model, variant, hyper, y))

    def finish(self, config, ctx, dims, values):
        o = config.options
        data_vars = output_vars(dims, values, o.ftol, config.collapse_tol, config.method)
        # closed forms (docs/theory.md, "DINO") from the model's own methods
        K = o.k
        lam = np.array([float(DinoToy(ctx["x"], o.tau_s, t).lambda_d(K)) for t in o.tau_t])
        hopf = np.array([[[[DinoToy(ctx["x"], o.tau_s, t).hopf_eta_c(
            K, e, b if self.variants[v].has_target else None) for t in o.tau_t]
            for b in config.beta] for e in config.eta] for v in config.variant])
        data_vars.update({
            "hopf_eta_c": (("variant", "eta", "beta", "tau_t"), hopf, {
                "long_name": "closed-form centre rate of the common mode's Hopf bifurcation "
                             "(stable above it; nan: stable for every eta_c)"}),
        })
        coords = dict(lambda_d=("tau_t", lam, {
            "long_name": "(1/tau_t - 1/tau_s)/(K tau_s): between-sample growth rate at the "
                         "uniform state (grow iff lambda_d > eta)"}))
        attrs = dict(n_samples=o.n_samples, K=K, gain=o.gain, tau_s=o.tau_s,
                     init_scale=o.init_scale, ftol=o.ftol,
                     data="x = sqrt(N) (I + (sqrt(g) - 1) 1 1^T / N): x x^T/N has gain 1 on "
                          "the between-sample modes, g on the common mode")
        return data_vars, coords, attrs

    def plan(self, config, n_inner, n_lanes, memory=None, held=None):
        s = self.sizes(config)
        p = plan_sweep(state=s["state"], data=s["data"], r=4, what=s["what"],
                       n_lanes=n_lanes, n_inner=n_inner, methods=config.method, n1=s["n1"],
                       batch=config.batch, chunk=config.chunk, memory=memory, held=held)
        return dict(p, chunk={m: p["chunk"] for m in config.method})

    def describe(self, config, n_lanes):
        o = config.options
        return (f"{n_lanes} lanes, N = {o.n_samples} samples, K = {o.k} outputs, gain "
                f"{o.gain:g}, tau_s = {o.tau_s:g}")

    def summarize(self, ds) -> str:
        return summarize(ds)

    def figures(self, ds, config):
        out = []
        for v, meth in itertools.product(ds.variant.values, ds.method.values):
            suffix = "" if len(ds.method) == 1 else f"_{meth}"
            out.append((f"phase_dino_{v}{suffix}.png",
                        lambda v=str(v), meth=str(meth): phase_figure(ds, v, meth)))
        return out


def output_vars(dims, values, ftol, collapse_tol, methods) -> dict:
    """The per-lane variables of a softmax-output family (DINO, SwAV): the output measures,
    and the outcome: *failed* (status not ok), *not-settled* (flow and gd: ``max |f| > ftol``
    at t1; sgd iterates never come to rest and are judged by their last state), else
    *spread* when the mutual information exceeds ``collapse_tol``, else *uniform* (mean
    per-sample entropy >= 1/2 of ``log K``) or *one-output*."""
    ok = values["status"] == "ok"
    shape = [1] * len(dims)
    shape[dims.index("method")] = len(methods)
    sgd = np.asarray([m == "sgd" for m in methods]).reshape(shape)
    settled = ok & ((values["fnorm"] <= ftol) | sgd)
    collapsed = values["info"] <= collapse_tol
    outcome = np.where(~ok, 4, np.where(~settled, 3, np.where(
        ~collapsed, 0, np.where(values["h_sample"] >= 0.5, 1, 2)))).astype(np.int8)
    return {
        "info": (dims, values["info"], {
            "long_name": "mutual information of sample and output over log K at t1 "
                         "(the collapse measure: 0 in both collapses)"}),
        "h_sample": (dims, values["h_sample"], {
            "long_name": "mean entropy of the outputs over log K (1: uniform)"}),
        "h_marginal": (dims, values["h_marginal"], {
            "long_name": "entropy of the mean output over log K (0: one output for all)"}),
        "norm": (dims, values["norm"], {"long_name": "||W(t1)||_F"}),
        "fnorm": (dims, values["fnorm"], {"long_name": "max |f(y(t1))| of the flow"}),
        "collapsed": (dims, collapsed & settled, {"long_name": "settled and info <= tol"}),
        "outcome": (dims, np.asarray(OUTCOMES)[outcome], {
            "long_name": "spread / uniform / one-output / not-settled / failed"}),
        "status": (dims, values["status"],
                   {"long_name": "solver status per lane: ok / max_steps / nonfinite"}),
    }


def shares(ds, variant, method, row="tau_t", col="eta_c"):
    """``{outcome: (eta, beta, row, col) array}``: the share of initial states (and sigma2)
    with each outcome."""
    o = ds["outcome"].sel({"variant": variant, "method": method}).transpose(
        "eta", "beta", row, col, ...)
    vals = o.values.reshape(o.shape[:4] + (-1,))
    return {k: (vals == k).mean(-1) for k in OUTCOMES}


def summarize(ds) -> str:
    """Per variant, method, eta and beta: a row per tau_t, a column per eta_c; each cell the
    majority outcome (S spread, U uniform, O one-output, N not settled, F failed) and its
    share; beside each row lambda_d and the closed-form Hopf centre rate."""
    letters = dict(zip(OUTCOMES, "SUONF"))
    lines = ["outcome of the students at t1 (S spread, U uniform, O one-output, N not settled, "
             "F failed) and its share of the initial states; columns: eta_c; hopf: the "
             "closed-form eta_c above which the common mode is stable (-: stable for every "
             "eta_c)"]
    for v, m in itertools.product(ds.variant.values, ds.method.values):
        sh = shares(ds, v, m)
        stack = np.stack([sh[k] for k in OUTCOMES])
        for ie, e in enumerate(ds.eta.values):
            for ib, b in enumerate(ds.beta.values):
                ema = DinoFamily.variants[str(v)].has_target  # beta moves only an EMA teacher
                lines.append(f"{v} {m}  eta {e:g}" + (f"  beta {b:g}" if ema else ""))
                lines.append(f"{'tau_t':>7} {'lambda_d':>9} {'hopf':>8}  "
                             + " ".join(f"{c:>6g}" for c in ds.eta_c.values))
                for it, t in enumerate(ds.tau_t.values):
                    cells = []
                    for ic in range(ds.sizes["eta_c"]):
                        col = stack[:, ie, ib, it, ic]
                        k = int(np.argmax(col))
                        cells.append(f"{letters[OUTCOMES[k]]}{col[k]:5.2f}")
                    hopf = float(ds["hopf_eta_c"].sel(variant=v).values[ie, ib, it])
                    hopf_s = f"{hopf:>8.3g}" if np.isfinite(hopf) else f"{'-':>8}"
                    lines.append(f"{t:>7g} {float(ds.lambda_d.values[it]):>9.3g} "
                                 f"{hopf_s}  " + " ".join(cells))
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size}")
    return "\n".join(lines)


def phase_figure(ds, variant, method):
    """The majority outcome over ``(tau_t, eta_c)`` (first eta and beta), its share written in
    each cell, with the closed forms: ``lambda_d = eta`` (the between-sample modes grow to the
    left of it) and the Hopf centre rate (the common mode is stable above it)."""
    eta = float(ds.eta.values[0])
    lam = ds.lambda_d.values
    hopf = ds["hopf_eta_c"].sel(variant=variant).values[0, 0]
    return outcome_figure(
        ds, variant, method, "tau_t", "eta_c", "teacher temperature tau_t", "centre rate eta_c",
        f"DINO toy, {variant} ({method}): majority outcome and its share\n"
        f"tau_s = {ds.attrs['tau_s']:g}, K = {ds.attrs['K']}, N = {ds.attrs['n_samples']}, "
        f"gain {ds.attrs['gain']:g}, eta = {eta:g}",
        vline=(row_index(eta, lam), "lambda_d = eta (between modes grow to the left)"),
        curve=(_rate_index(hopf, ds.eta_c.values), "Hopf centre rate (common mode stable above)"))


def row_index(value, along):
    """Fractional index at which the monotone ``along`` (one number per row) equals ``value``;
    ``nan`` outside."""
    along = np.asarray(along, float)
    order = np.argsort(along)
    return float(np.interp(value, along[order], np.arange(len(along))[order], left=np.nan,
                           right=np.nan))


def outcome_figure(ds, variant, method, row, col, xlabel, ylabel, title, vline=None, curve=None):
    """The majority outcome over ``(row, col)`` (``row`` across, ``col`` up; first eta and
    beta) with its share written in each cell; ``vline = (x, label)`` a dashed vertical line at
    a fractional row index, ``curve = (y per row, label)`` a line at fractional column indices."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    sh = shares(ds, variant, method, row, col)
    stack = np.stack([sh[k] for k in OUTCOMES])[:, 0, 0]  # (outcome, row, col)
    major = np.argmax(stack, axis=0)
    xs, ys = ds[row].values, ds[col].values
    colors = ["#2ca02c", "#aaaaaa", "#d62728", "#ff7f0e", "#000000"]
    fig, ax = plt.subplots(figsize=(7.5, 5.0), constrained_layout=True)
    ax.imshow(major.T, origin="lower", aspect="auto", cmap=ListedColormap(colors), vmin=-0.5,
              vmax=len(OUTCOMES) - 0.5, extent=(-0.5, len(xs) - 0.5, -0.5, len(ys) - 0.5))
    for i, j in itertools.product(range(len(xs)), range(len(ys))):
        ax.text(i, j, f"{stack[major[i, j], i, j]:.2f}", ha="center", va="center", fontsize=8)
    if vline is not None and np.isfinite(vline[0]):
        ax.axvline(vline[0], color="k", ls="--", lw=1.5, label=vline[1])
    if curve is not None:
        ax.plot(np.arange(len(xs)), curve[0], "k-", lw=2, marker="o", ms=3, label=curve[1])
    ax.set_xticks(range(len(xs)), [f"{t:g}" for t in xs])
    ax.set_yticks(range(len(ys)), [f"{r:g}" for r in ys])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for c, name in zip(colors, OUTCOMES):
        ax.plot([], [], "s", color=c, ms=10, label=name)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig


def _rate_index(values, rates):
    """Fractional row positions of centre rates on the figure's index axis (log-spaced rows;
    a zero row, if any, sits below them), ``nan`` outside."""
    rates = np.asarray(rates, float)
    pos = rates > 0
    idx = np.arange(len(rates))[pos]
    lr = np.log(rates[pos])
    out = np.full(len(values), np.nan)
    for k, v in enumerate(values):
        if np.isfinite(v) and v > 0 and len(lr) > 1:
            out[k] = np.interp(np.log(v), lr, idx, left=np.nan, right=np.nan)
    return out
