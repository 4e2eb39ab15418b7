"""The DirectCopy family: linear SimSiam whose predictor is the running feature correlation
``F + reg I``, over ``reg`` and the size of the random initial encoders.

``python -m dynamics.sweep --model directcopy`` sweeps :class:`~dynamics.models.DirectCopyLinear`
(SimSiam's stop-gradient; ``F`` a drift slot relaxing to ``W S W^T`` on the time scale ``eps``)
on the matrix families' data, ``X = Q diag(x_eig) Q^T``, ``X' = sigma2 I``, from random encoders
of several sizes (``--init-scales``), and keeps the final spectrum and collapse measures. Beside
them it stores each mode's closed forms (docs/theory.md, "DirectCopy"): the roots
``p_pm = (d +- sqrt(d^2 - 4 c eta)) / (2 c)``, ``c = d + sigma2``. At ``W = 0`` a mode grows at
``reg d - c reg^2 - eta``, so

- ``p_- < reg < p_+``: the collapsed state is unstable, there is no collapse basin: every start,
  however small, keeps the mode;
- ``reg >= p_+``: the mode collapses from every start;
- ``reg <= p_-``: both are stable; which one a start reaches depends on its size (a basin).

The collapsed-mode fraction therefore steps up by ``1/n1`` as ``reg`` passes each mode's ``p_+``
and depends on the initial scale only where ``reg`` is below some mode's ``p_-``.

The model has no trained predictor and no target: ``--beta``, ``--convention`` and
``--target0`` are not offered; ``--eps`` is the time scale of the running correlation. This
module and :mod:`dynamics.models.directcopy` are all that the model costs.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.models import DirectCopyLinear
from dynamics.plot import reg_band_figure
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import MatrixFamily, data_matrices, init_keys
from dynamics.types import Hyper, SlotState, Variant

#: SimSiam's stop-gradient under the model's own label
DIRECTCOPY = Variant("simsiam", label="directcopy")


def _distinct(name, values):
    if len(set(values)) != len(values):
        raise ValueError(f"--{name} gives a value twice: {' '.join(f'{v:g}' for v in values)}")


@dataclasses.dataclass(frozen=True)
class DirectCopyOptions:
    """Model size, data spectrum, the values of reg and the random initial encoders."""

    n1: int = option(4, "dimension of W (n1 x n1)", positive=True, integer=True)
    x_eig: tuple = option((0.5, 1.5), "eigenvalues of the data correlation X, evenly spaced",
                          positive=True, nargs=2, metavar=("LO", "HI"))
    reg: tuple = option((0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.69, 0.8),
                        "multiples of the identity added to the copied correlation (lane axis)",
                        nonneg=True, nargs="+", metavar="REG")
    init_scales: tuple = option((0.01, 0.1, 1.0), "sizes of the initial encoders: W0 entries ~ "
                                "N(0, scale^2 / n1) (lane axis)", positive=True, nargs="+",
                                metavar="SCALE")
    n_init: int = option(4, "random initial directions per cell", positive=True, integer=True)


@register
class DirectCopyFamily(MatrixFamily):
    name = "directcopy"
    description = (
        "Sweep DirectCopy (linear SimSiam with the predictor F + reg I, F the running feature "
        "correlation, no eigendecomposition) over reg and the size of random initial encoders; "
        "keep the spectrum of W beside each mode's closed-form p_pm (no collapse basin for "
        "p_- < reg < p_+, every start collapses for reg >= p_+); write OUT/sweep_directcopy.nc "
        "and a reg x scale phase diagram."
    )
    Options = DirectCopyOptions
    variants = {DIRECTCOPY.name: DIRECTCOPY}
    ignores = ("beta", "convention", "target0")
    lane_axes = ("reg", "scale", "init")
    defaults = dict(SHARED_DEFAULTS, variant=(DIRECTCOPY.name,), eps=(1.0,), eta=(0.05,),
                    t1=400.0, lr=0.01, batch=64, rtol=1e-7, atol=1e-9, chunk=2048)
    t1_default = {m: 400.0 for m in ("flow", "gd", "sgd")}
    help = dict(MatrixFamily.help,
                eps="time scale of the running correlation: eps dF/dt = E[f f^T] - F",
                eta="weight decay of W: W' = -(dL/dW + eta W)",
                sigma2="augmentation covariance X' = sigma2 I",
                seed="seed of X's eigenvectors, the initial states and SGD (same seed, same "
                     "result)",
                collapse_tol="a mode is collapsed when its singular value of W(t1) is below this")

    def check(self, config) -> None:
        o = config.options
        lo, hi = o.x_eig
        if not lo <= hi:
            raise ValueError(f"--x-eig needs LO <= HI, got {lo:g} {hi:g}")
        _distinct("reg", o.reg)
        _distinct("init-scales", o.init_scales)

    def sizes(self, config):
        n1 = config.options.n1
        return dict(n1=n1, n2=n1, r=n1, state=2 * n1 * n1, data=2 * n1 * n1, what=f"--n1 {n1}")

    def axis_values(self, config):
        o = config.options
        return dict(reg=np.asarray(o.reg, float), scale=np.asarray(o.init_scales, float),
                    init=np.arange(o.n_init))

    def axis_sizes(self, config):
        o = config.options
        return (len(o.reg), len(o.init_scales), o.n_init)

    def prepare(self, config):
        o = config.options
        X, d = data_matrices(o.n1, o.x_eig, config.seed)
        kw, _ = init_keys(config.seed)
        # one set of directions, drawn once and scaled: the scales differ only in size
        W = jax.random.normal(kw, (o.n_init, o.n1, o.n1)) / jnp.sqrt(o.n1)
        return dict(X=X, d=d, W=W)

    def build(self, config, ctx, variant, eps, lanes):
        o = config.options
        eta, sigma2 = jnp.asarray(lanes["eta"]), jnp.asarray(lanes["sigma2"])
        ii = jnp.asarray(lanes["init"].astype(int))
        n = ii.shape[0]
        model = DirectCopyLinear(jnp.broadcast_to(ctx["X"], (n, o.n1, o.n1)),
                                 sigma2[:, None, None] * jnp.eye(o.n1)[None],
                                 jnp.asarray(lanes["reg"]))
        # F has no decay and no predictor trains: eta_phi = 0 (the collapse scale is then 1)
        hyper = Hyper(eps=jnp.full_like(eta, eps), eta_theta=eta, eta_phi=jnp.zeros_like(eta),
                      beta=jnp.ones_like(eta))
        W = jnp.asarray(lanes["scale"])[:, None, None] * ctx["W"][ii]
        F = jax.vmap(lambda m, w: m.initial_F(w))(model, W)
        return model, hyper, SlotState(W, None, None, {"F": F})

    def closed_forms(self, config, ctx):
        d = np.asarray(ctx["d"])
        s2 = np.asarray(config.sigma2, float)[:, None, None]
        eta = np.asarray(config.eta, float)[None, :, None]
        c = d[None, None, :] + s2
        with np.errstate(invalid="ignore"):
            pm, pp = (np.asarray(v) for v in DirectCopyLinear.mode_roots(d[None, None, :], c, eta))
        dims = ("sigma2", "eta", "mode_x")
        return {
            "x_eig": ("mode_x", d, {"long_name": "eigenvalues d_j of the data correlation X"}),
            "p_minus": (dims, pm, {"long_name": "closed-form p_- = (d - sqrt(d^2 - 4 c eta)) "
                                   "/ (2 c), c = d + sigma2 (NaN: no fixed point)"}),
            "p_plus": (dims, pp, {"long_name": "closed-form p_+ = (d + sqrt(d^2 - 4 c eta)) "
                                  "/ (2 c): for p_- < reg < p_+ the mode has no collapse "
                                  "basin; for reg >= p_+ it collapses from every start"}),
        }

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        del data_vars["commutator"]
        attrs.update(data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I",
                     init="W0 = scale * G / sqrt(n1), G with N(0, 1) entries from seed (the "
                          "same G at every scale); F(0) = W0 S W0^T")
        return data_vars, coords, attrs

    def summarize(self, ds) -> str:
        return summarize(ds)

    def figures(self, ds, config):
        out = []
        for v in ds.variant.values:
            for meth in ds.method.values:
                suffix = "" if len(ds.method) == 1 else f"_{meth}"
                out.append((f"phase_{self.name}_{v}{suffix}.png",
                            lambda v=str(v), meth=str(meth): reg_band_figure(ds, v, meth)))
        return out


def predicted_fractions(ds, sigma2, eta):
    """``(certain, open)`` per ``reg``: the fraction of modes the closed forms collapse from
    every start (``reg >= p_+``, or no fixed point), and the fraction whose fate depends on the
    start (``reg <= p_-``); the rest keep their mode from every start."""
    pm = ds["p_minus"].sel(sigma2=sigma2, eta=eta).values
    pp = ds["p_plus"].sel(sigma2=sigma2, eta=eta).values
    reg = ds["reg"].values[:, None]
    none = ~np.isfinite(pp)
    certain = (none | (reg >= np.where(none, 0.0, pp))).mean(-1)
    open_ = (~none & (reg <= np.where(none, 0.0, pm))).mean(-1)
    return certain, open_


def summarize(ds) -> str:
    """Per (method, eps, eta, sigma2): the mean collapsed-mode fraction over the initial
    directions, one row per initial scale, columns ``reg``; below them the closed forms'
    share of modes that collapse from every start and of those whose fate depends on it."""
    regs = ds.reg.values
    cols = " ".join(f"{r:>6.3g}" for r in regs)
    lines = ["collapsed-mode fraction of W(t1), mean over the initial directions; columns: reg"]
    for v, m, e, eta, s2 in itertools.product(ds.variant.values, ds.method.values, ds.eps.values,
                                              ds.eta.values, ds.sigma2.values):
        lines.append(f"{v} ({m}), eps {e:g}, eta {eta:g}, sigma2 {s2:g}")
        lines.append(f"  {'init scale':<25}{cols}")
        cf = ds["collapsed_fraction"].sel({"variant": v, "method": m, "eps": e, "eta": eta,
                                           "sigma2": s2})
        cf = cf.mean([k for k in cf.dims if k not in ("reg", "scale")], skipna=True)
        for sc in ds.scale.values:
            row = cf.sel(scale=sc).values
            lines.append(f"  {sc:<25.3g}" + " ".join(f"{x:>6.2f}" for x in row))
        certain, open_ = predicted_fractions(ds, s2, eta)
        lines.append(f"  {'theory: from any start':<25}" + " ".join(f"{x:>6.2f}" for x in certain))
        lines.append(f"  {'theory: start-dependent':<25}" + " ".join(f"{x:>6.2f}" for x in open_))
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size}")
    return "\n".join(lines)
