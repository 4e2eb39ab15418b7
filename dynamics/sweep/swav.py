"""The SwAV family: the SwAV toy over the Sinkhorn entropy weight and iteration count.

``python -m dynamics.sweep --model swav`` sweeps :class:`~dynamics.models.SwAVToy` (``N`` data
points with common-mode gain ``g``, a linear map into ``K`` prototype scores, swapped
prediction of Sinkhorn codes computed without gradient) over ``eps_ent`` x ``n_iter`` from
small random encoders, and labels each lane as the DINO family does: *uniform* (codes no
sharper than the predictions), *one-output* (every sample on one prototype: no equipartition),
*spread* (samples on different prototypes; ``balance``, the entropy of the mean prediction
over ``log K``, says how evenly), or *not settled*. Beside them: the closed-form rate
``lambda_q`` per ``eps_ent`` (the between-sample modes grow iff ``lambda_q > eta``) and the
common mode's rate with and without the constraint (docs/theory.md, "SwAV").

No predictor, no target of its own: ``--eps``, ``--beta`` and ``--convention`` are not
offered. This module and :mod:`dynamics.models.swav` are all that the model costs.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.models import SwAVToy
from dynamics.models.dino import whitened_data
from dynamics.models.swav import SWAV
from dynamics.sweep.config import option
from dynamics.sweep.dino import (
    OUTCOMES,
    DinoFamily,
    outcome_figure,
    output_vars,
    row_index,
    shares,
)
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import init_keys
from dynamics.types import Hyper, State


@dataclasses.dataclass(frozen=True)
class SwAVOptions:
    """Data, temperatures, Sinkhorn settings and random initial encoders."""

    n_samples: int = option(3, "number of data points N", positive=True, integer=True)
    k: int = option(3, "number of prototypes K", positive=True, integer=True)
    gain: float = option(4.0, "common-mode gain g of the data (x x^T / N has eigenvalue g on "
                         "the all-samples mode, 1 on the others)", positive=True)
    tau: float = option(0.1, "temperature of the predictions", positive=True)
    eps_ent: tuple = option((0.02, 0.03, 0.05, 0.07, 0.1, 0.15),
                            "Sinkhorn entropy weights (lane axis)", positive=True, nargs="+",
                            metavar="EPS")
    n_iter: tuple = option((0, 1, 3), "Sinkhorn iterations (lane axis; 0: no equipartition)",
                           nonneg=True, integer=True, nargs="+", metavar="N")
    n_init: int = option(3, "random initial encoders per cell", positive=True, integer=True)
    init_scale: float = option(0.01, "W0 entries ~ N(0, scale^2)", positive=True)
    ftol: float = option(1e-6, "a lane has settled when max |f| <= ftol at t1", positive=True)


def _distinct(name, values):
    if len(set(values)) != len(values):
        raise ValueError(f"--{name} gives a value twice: {' '.join(f'{v:g}' for v in values)}")


@register
class SwAVFamily(DinoFamily):
    name = "swav"
    description = (
        "Sweep the SwAV toy (swapped prediction of Sinkhorn-equipartitioned codes over K "
        "prototypes, codes without gradient) over the entropy weight eps_ent x the Sinkhorn "
        "iterations n_iter from small random encoders; label each lane uniform / one-output / "
        "spread beside the closed-form rates; write OUT/sweep_swav.nc and a phase diagram."
    )
    Options = SwAVOptions
    variants = {SWAV.name: SWAV}
    ignores = ("eps", "beta", "convention")
    lane_axes = ("eps_ent", "n_iter", "init")
    defaults = dict(SHARED_DEFAULTS, variant=(SWAV.name,), eps=(1.0,), eta=(1.0,),
                    sigma2=(0.0,), t1=60.0, lr=0.002, batch=16, rtol=1e-8, atol=1e-10,
                    chunk=4096)
    t1_default = {m: 60.0 for m in ("flow", "gd", "sgd")}
    help = dict(DinoFamily.help, eta="weight decay of W: W' = -(dL/dW + eta W)",
                seed="seed of the initial encoders and SGD (same seed, same result)")

    def check(self, config) -> None:
        o = config.options
        _distinct("eps-ent", o.eps_ent)
        _distinct("n-iter", o.n_iter)
        if o.n_samples < 2 or o.k < 2:
            raise ValueError(f"--n-samples and --k must be >= 2, got {o.n_samples} and {o.k}")

    def sizes(self, config):
        o = config.options
        N, K = o.n_samples, o.k
        return dict(n1=N, n2=K, r=1, state=K * N, data=N * N + 4,
                    what=f"--n-samples {N} --k {K}")

    def axis_values(self, config):
        o = config.options
        return dict(eps_ent=np.asarray(o.eps_ent, float), n_iter=np.asarray(o.n_iter, int),
                    init=np.arange(o.n_init))

    def axis_sizes(self, config):
        o = config.options
        return (len(o.eps_ent), len(o.n_iter), o.n_init)

    def build(self, config, ctx, variant, eps, lanes):
        o = config.options
        eta, sigma2 = jnp.asarray(lanes["eta"]), jnp.asarray(lanes["sigma2"])
        ii = jnp.asarray(lanes["init"].astype(int))
        n = ii.shape[0]
        model = SwAVToy(jnp.broadcast_to(ctx["x"], (n,) + ctx["x"].shape), jnp.full(n, o.tau),
                        jnp.asarray(lanes["eps_ent"]),
                        jnp.asarray(lanes["n_iter"]).astype(jnp.int32), sigma2)
        hyper = Hyper(eps=jnp.ones_like(eta), eta_theta=eta, eta_phi=jnp.zeros_like(eta),
                      beta=jnp.ones_like(eta))
        return model, hyper, State(ctx["W"][ii], None)

    def prepare(self, config):
        o = config.options
        kw, _ = init_keys(config.seed)
        W = o.init_scale * jax.random.normal(kw, (o.n_init, o.k, o.n_samples))
        return dict(x=whitened_data(o.n_samples, o.gain), W=W)

    def finish(self, config, ctx, dims, values):
        o = config.options
        data_vars = output_vars(dims, values, o.ftol, config.collapse_tol, config.method)
        K = o.k
        # closed forms (docs/theory.md, "SwAV") from the model's own methods
        lam = np.array([float(SwAVToy(ctx["x"], o.tau, e).lambda_q(K)) for e in o.eps_ent])
        common = np.array([[[SwAVToy(ctx["x"], o.tau, e, int(k)).common_rate(K, eta)
                             for k in o.n_iter] for e in o.eps_ent] for eta in config.eta])
        data_vars["common_rate"] = (("eta", "eps_ent", "n_iter"), common, {
            "long_name": "closed-form rate of the common mode at the uniform state (> 0: every "
                         "sample drifts to the same prototype)"})
        coords = dict(lambda_q=("eps_ent", lam, {
            "long_name": "(1/eps_ent - 1/tau)/(K tau): between-sample growth rate at the "
                         "uniform state (grow iff lambda_q > eta)"}))
        attrs = dict(n_samples=o.n_samples, K=K, gain=o.gain, tau=o.tau,
                     init_scale=o.init_scale, ftol=o.ftol,
                     data="x = sqrt(N) (I + (sqrt(g) - 1) 1 1^T / N): x x^T/N has gain 1 on "
                          "the between-sample modes, g on the common mode")
        return data_vars, coords, attrs

    def describe(self, config, n_lanes):
        o = config.options
        return (f"{n_lanes} lanes, N = {o.n_samples} samples, K = {o.k} prototypes, gain "
                f"{o.gain:g}, tau = {o.tau:g}")

    def summarize(self, ds) -> str:
        return summarize(ds)

    def figures(self, ds, config):
        out = []
        for v, meth in itertools.product(ds.variant.values, ds.method.values):
            suffix = "" if len(ds.method) == 1 else f"_{meth}"
            out.append((f"phase_swav_{v}{suffix}.png",
                        lambda v=str(v), meth=str(meth): phase_figure(ds, v, meth)))
        return out


def summarize(ds) -> str:
    """Per method and eta: a row per eps_ent, a column per n_iter; each cell the majority
    outcome (S spread, U uniform, O one-output, N not settled, F failed), its share and the
    mean balance (entropy of the mean prediction over log K); beside each row lambda_q."""
    letters = dict(zip(OUTCOMES, "SUONF"))
    lines = ["outcome at t1 (S spread, U uniform, O one-output, N not settled, F failed), its "
             "share of the initial states / balance (entropy of the mean prediction over log K, "
             "1 = equal use of the prototypes); columns: n_iter"]
    for v, m in itertools.product(ds.variant.values, ds.method.values):
        sh = shares(ds, v, m, "eps_ent", "n_iter")
        stack = np.stack([sh[k] for k in OUTCOMES])
        bal = ds["h_marginal"].sel({"variant": v, "method": m}).transpose(
            "eta", "eps_ent", "n_iter", ...)
        bal = bal.values.reshape(bal.shape[:3] + (-1,)).mean(-1)
        for ie, e in enumerate(ds.eta.values):
            lines.append(f"{v} {m}  eta {e:g}")
            lines.append(f"{'eps_ent':>7} {'lambda_q':>9}  "
                         + " ".join(f"{int(k):>11d}" for k in ds.n_iter.values))
            for i, t in enumerate(ds.eps_ent.values):
                cells = []
                for j in range(ds.sizes["n_iter"]):
                    col = stack[:, ie, 0, i, j]
                    k = int(np.argmax(col))
                    cells.append(f"{letters[OUTCOMES[k]]}{col[k]:5.2f}/{bal[ie, i, j]:4.2f}")
                lines.append(f"{t:>7g} {float(ds.lambda_q.values[i]):>9.3g}  " + " ".join(cells))
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size}")
    return "\n".join(lines)


def phase_figure(ds, variant, method):
    """The majority outcome over ``(eps_ent, n_iter)`` (first eta) with the closed-form line
    ``lambda_q = eta``: to its left the between-sample modes grow."""
    eta = float(ds.eta.values[0])
    return outcome_figure(
        ds, variant, method, "eps_ent", "n_iter", "Sinkhorn entropy weight eps_ent",
        "Sinkhorn iterations n_iter (0: no equipartition)",
        f"SwAV toy ({method}): majority outcome and its share\n"
        f"tau = {ds.attrs['tau']:g}, K = {ds.attrs['K']}, N = {ds.attrs['n_samples']}, "
        f"gain {ds.attrs['gain']:g}, eta = {eta:g}",
        vline=(row_index(eta, ds.lambda_q.values),
               "lambda_q = eta (between modes grow to the left)"))
