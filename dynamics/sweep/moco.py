"""The MoCo family: linear MoCo over momentum, queue length, weight decay and random starts.

``python -m dynamics.sweep --model moco`` sweeps :class:`~dynamics.models.MoCoLinear` (an EMA
key encoder, no gradient through the keys: the variant labelled ``moco``) on the matrix
families' data. The momentum is the shared ``--beta`` (the key encoder's EMA rate, momentum
``m = 1 - beta lr`` a step: ``beta -> 0`` is frozen keys, large ``beta`` keys that copy the
query encoder, SimCLR-like); the queue length is a lane axis (``--queue`` takes several
values; the queue slot has the largest length and each lane reads its own). Beside the final
spectrum it stores the closed forms (docs/theory.md, "InfoNCE and MoCo"): mode ``k`` survives
weight decay exactly while ``eta < gamma_k / tau`` and sits at ``u*``; ``lambda_max``, the
largest real part of the flow's Jacobian at that fixed point (its aligned-mode part is
:meth:`~dynamics.models.MoCoLinear.mode_spectrum`), says whether it is stable: a long queue
(old negatives) with fast keys oscillates away from it and loses a dimension, a slow momentum
restores it.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics.flow import jacobian_matrix
from dynamics.models import MoCoLinear
from dynamics.models.moco import MOCO
from dynamics.sweep._planes import plane, table
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import EncoderFamily, MatrixFamily
from dynamics.types import Hyper, SlotState


@dataclasses.dataclass(frozen=True)
class MoCoOptions:
    """Model size, temperature, queue, data spectrum and random initial states."""

    n1: int = option(3, "dimension of W (n1 x n1)", positive=True, integer=True)
    tau: float = option(0.5, "temperature", positive=True)
    queue: tuple = option((1, 8), "queue length(s) in pushed batches, a lane axis",
                          positive=True, integer=True, nargs="+", metavar="Q")
    push_rate: float = option(1.0, "queue pushes per unit time (1/lr: a gd step is one FIFO "
                              "push)", positive=True)
    x_eig: tuple = option((0.5, 1.5), "eigenvalues of the data correlation X, evenly spaced",
                          positive=True, nargs=2, metavar=("LO", "HI"))
    n_init: int = option(3, "random initial states per hyperparameter cell",
                         positive=True, integer=True)
    init_scale: float = option(0.5, "W0 entries ~ N(0, scale^2 / n1)", positive=True)


@register
class MoCoFamily(EncoderFamily):
    name = "moco"
    description = (
        "Sweep linear MoCo (InfoNCE of queries W x2 against keys of an EMA key encoder and a "
        "FIFO queue of key encoders; the flow is the large-batch limit) over momentum "
        "(--beta), queue length and weight decay; keep the spectrum of W beside the "
        "closed-form fixed points, thresholds eta_crit = gamma_k / tau and the stability "
        "exponent lambda_max; write OUT/sweep_moco.nc and a figure."
    )
    Options = MoCoOptions
    variants = {MOCO.name: MOCO}
    ignores = ("eps", "convention")
    lane_axes = ("queue", "init")
    figure_kind = "figure"
    defaults = dict(SHARED_DEFAULTS, variant=(MOCO.name,), eps=(1.0,), eta=(0.0, 1.4, 2.4),
                    beta=(0.3, 3.0), t1=150.0, lr=0.01, batch=64, rtol=1e-8,
                    atol=1e-10, chunk=2048)
    t1_default = {m: 150.0 for m in ("flow", "gd", "sgd")}
    stiff_eps = 0.0
    help = dict(MatrixFamily.help, sigma2="augmentation covariance X' = sigma2 I",
                eta="weight decay of W: W' = -(dL/dW + eta W)",
                beta="EMA rate of the key encoder, W_k' = beta (W - W_k) (momentum m = "
                     "1 - beta lr a step)",
                seed="seed of X's eigenvectors, the initial states and SGD (same seed, same "
                     "result)")

    def axis_values(self, config):
        o = config.options
        return dict(queue=np.asarray(o.queue, int), init=np.arange(o.n_init))

    def axis_sizes(self, config):
        return (len(config.options.queue), config.options.n_init)

    def sizes(self, config):
        o = config.options
        n = o.n1 * o.n1
        return dict(n1=o.n1, n2=o.n1, r=o.n1, state=(2 + max(o.queue)) * n, data=2 * n,
                    what=f"--n1 {o.n1} --queue {max(o.queue)}")

    def build(self, config, ctx, variant, eps, lanes):
        o = config.options
        X, Xp, W = self.lane_data(config, ctx, lanes)
        n = X.shape[0]
        model = MoCoLinear(X, Xp, jnp.full(n, o.tau), jnp.asarray(lanes["queue"], float),
                           jnp.full(n, o.push_rate))
        hyper = self.encoder_hyper(lanes, beta=jnp.asarray(lanes["beta"]))
        K = jnp.broadcast_to(W[:, None], (n, max(o.queue)) + W.shape[1:])
        return model, hyper, SlotState(W, None, W, {"queue": K})

    def read(self, config, ctx, method, model, variant, hyper, y, status, window):
        out = super().read(config, ctx, method, model, variant, hyper, y, status, window)
        # distance of the final W from the closed-form fixed point, in u = w^2 per mode
        gamma = jnp.linalg.eigvalsh(model.X)[:, ::-1]
        u_star = MoCoLinear.mode_fixed_point(gamma, model.Xp[:, 0, 0][:, None],
                                             model.tau[:, None], hyper.eta_theta[:, None])
        out["off"] = jnp.max(jnp.abs(out["sv"] ** 2 - u_star), axis=-1)
        return out

    def closed_forms(self, config, ctx):
        o = config.options
        d = np.asarray(ctx["d"])
        eta, s2, beta = (np.asarray(getattr(config, k), float) for k in ("eta", "sigma2", "beta"))
        lam = np.zeros((len(eta), len(s2), len(beta), len(o.queue)))
        for (i, e), (j, s), (k, b), (m, q) in itertools.product(
                enumerate(eta), enumerate(s2), enumerate(beta), enumerate(o.queue)):
            lam[i, j, k, m] = fixed_point_growth(d, s, o.tau, e, b, q, max(o.queue),
                                                 o.push_rate)
        return {
            "x_eig": ("mode_x", d, {"long_name": "eigenvalues gamma_k of the data correlation X"}),
            "eta_crit": ("mode_x", np.asarray(MoCoLinear.eta_crit(d, o.tau)), {
                "long_name": "closed-form threshold gamma_k / tau: mode k survives iff eta < it"}),
            "lambda_max": (("eta", "sigma2", "beta", "queue"), lam, {
                "long_name": "largest real part of the flow's Jacobian at the closed-form "
                             "fixed point, the rotations' zero eigenvalues left out (> 0: "
                             "unstable)"}),
        }

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        del data_vars["commutator"]
        data_vars["off"] = (dims, values["off"], {
            "long_name": "max_k |s_k(t1)^2 - u*_k|: distance of W(t1) from the closed-form "
                         "fixed point"})
        o = config.options
        attrs.update(tau=o.tau, push_rate=o.push_rate,
                     data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I",
                     flow="gradient flow of the large-batch limit; the queue a delay line")
        return data_vars, coords, attrs

    def summarize(self, ds) -> str:
        crit = " ".join(f"{e:.3g}" for e in ds["eta_crit"].values)
        lam = ds["lambda_max"].isel(eta=0).mean("sigma2").transpose("queue", "beta").values
        rows = [f"  queue {q:>4d}: " + " ".join(f"{v:>7.3f}" for v in r)
                for q, r in zip(ds.queue.values, lam)]
        return "\n".join([
            table(ds, "collapsed_fraction", "beta", "eta",
                  "mean collapsed-mode fraction (over init, queue, sigma2)"),
            f"closed form: mode k collapses iff eta >= gamma_k / tau ({crit})",
            table(ds.isel(eta=[0]), "off", "queue", "beta",
                  f"distance from the fixed point at eta = {float(ds.eta[0]):g} (> 0.01: not "
                  "at it)", fmt="{:>6.3f}").rsplit("\n", 1)[0],
            "lambda_max, the Jacobian at the closed-form fixed point (> 0: unstable); "
            "columns: beta",
            *rows])

    def figures(self, ds, config):
        return [(f"moco_{v}{'' if len(ds.method) == 1 else '_' + str(m)}.png",
                 lambda v=str(v), m=str(m): moco_figure(ds, v, m))
                for v in ds.variant.values for m in ds.method.values]


@functools.partial(jax.jit, static_argnames=("L",))
def _spectrum(gamma, sigma2, tau, eta, beta, queue, L, push_rate):
    n = gamma.shape[0]
    m = MoCoLinear(jnp.diag(gamma), sigma2 * jnp.eye(n), tau, queue, push_rate)
    W = jnp.diag(jnp.sqrt(MoCoLinear.mode_fixed_point(gamma, sigma2, tau, eta)))
    y = SlotState(W, None, W, {"queue": jnp.broadcast_to(W, (L, n, n))})
    J = jacobian_matrix(m, MOCO, Hyper(eta_theta=eta, beta=beta), y)
    return jnp.linalg.eigvals(J).real


def fixed_point_growth(gamma, sigma2, tau, eta, beta, queue, L, push_rate):
    """The largest real part of the flow's Jacobian at the closed-form fixed point (modes
    aligned with ``X = diag(gamma)``, key encoder and queue equal to ``W``), leaving out the
    zero eigenvalues of the joint rotations ``(W, W_k, K) -> U (W, W_k, K)``; its aligned-mode
    part is :meth:`~dynamics.models.MoCoLinear.mode_spectrum`."""
    ev = np.asarray(_spectrum(jnp.asarray(gamma, float), sigma2, tau, eta, beta, float(queue),
                              int(L), push_rate))
    ev = ev[np.abs(ev) > 1e-9]
    return float(ev.max()) if ev.size else 0.0


def moco_figure(ds, variant, method):
    """Left: the distance from the fixed point over (queue, beta) at the first eta, closed-form
    unstable cells marked; right: the collapsed fraction over (beta, eta), eta_crit dashed."""
    fig, axs = plt.subplots(1, 2, figsize=(10.5, 3.8), constrained_layout=True)
    sub = ds.isel(eta=[0])
    off = plane(sub, "off", variant, method, "queue", "beta").values
    qs, bs = ds.queue.values, ds.beta.values
    im = axs[0].imshow(np.log10(np.maximum(off, 1e-12)), origin="lower", aspect="auto",
                       cmap="viridis", vmin=-10, vmax=0)
    lam = ds["lambda_max"].isel(eta=0).mean("sigma2").transpose("queue", "beta").values
    for i, j in itertools.product(range(len(qs)), range(len(bs))):
        axs[0].text(j, i, "unstable" if lam[i, j] > 0 else "stable", ha="center",
                    va="center", color="w", fontsize=8)
    axs[0].set_xticks(range(len(bs)), [f"{b:.3g}" for b in bs])
    axs[0].set_yticks(range(len(qs)), [str(q) for q in qs])
    axs[0].set_xlabel("beta (key EMA rate; momentum m = 1 - beta lr)")
    axs[0].set_ylabel("queue length")
    axs[0].set_title(f"log10 |u(t1) - u*| at eta = {float(ds.eta[0]):g}\n"
                     "text: the Jacobian at the closed-form fixed point")
    fig.colorbar(im, ax=axs[0])
    cf = plane(ds, "collapsed_fraction", variant, method, "beta", "eta").values
    es = ds.eta.values
    im = axs[1].imshow(cf, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1,
                       extent=(-0.5, len(es) - 0.5, -0.5, len(bs) - 0.5))
    for e in ds["eta_crit"].values:
        xi = np.interp(e, es, np.arange(len(es)), left=np.nan, right=np.nan)
        if np.isfinite(xi):
            axs[1].axvline(xi, color="c", ls="--", lw=1)
    axs[1].set_xticks(range(len(es)), [f"{e:.3g}" for e in es])
    axs[1].set_yticks(range(len(bs)), [f"{b:.3g}" for b in bs])
    axs[1].set_xlabel("eta")
    axs[1].set_ylabel("beta")
    axs[1].set_title("collapsed-mode fraction (dashed: eta_crit = gamma_k / tau)")
    fig.colorbar(im, ax=axs[1])
    fig.suptitle(f"{ds.attrs['model']} {variant} ({method}), n1={ds.attrs['n1']}, "
                 f"tau={ds.attrs['tau']:g}, push rate {ds.attrs['push_rate']:g}, "
                 f"t1={ds.attrs['t1']:g}")
    return fig
