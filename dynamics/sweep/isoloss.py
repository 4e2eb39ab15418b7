"""The IsoLoss family: linear SimSiam with the predictor ``(W W^T)^alpha`` (Halvagal et al. 2023).

``python -m dynamics.sweep --model isoloss`` sweeps :class:`~dynamics.models.IsoLossLinear`
(IsoLoss or the Euclidean loss, ``--kind``) on isotropic data, ``X = I``, ``X' = sigma2 I``,
from random encoders. Besides the matrix families' spectrum and collapse measures it keeps the
eigenvalues ``s`` of ``F = W W^T`` at ``t1`` and, beside them, the model's closed-form fixed
point ``s*`` per ``(eta, sigma2)`` (docs/theory.md section 5), so that a sweep checks itself:
with stop-gradient every non-collapsed eigenvalue ends at ``s*``.

This module is the whole of what the family costs: its options, its initial states, how it
builds its model and what it reads. The sweep core and the CLI are untouched by it.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.flow import initial_state
from dynamics.models.isoloss import KINDS, IsoLossLinear
from dynamics.plot import fixed_point_figure
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import MatrixFamily, init_keys
from dynamics.types import Hyper


@dataclasses.dataclass(frozen=True)
class IsoLossOptions:
    """Model size, loss, predictor exponent and random initial states."""

    n1: int = option(4, "dimension of W (n1 x n1)", positive=True, integer=True)
    kind: str = option("iso", "iso: IsoLoss, s' = 2 s (1 - a s^alpha); euclidean: the plain "
                       "loss, s' = 2 s^(1+alpha) (1 - a s^alpha)", choices=KINDS)
    alpha: float = option(1.0, "predictor exponent: Wp = (W W^T)^alpha", positive=True)
    n_init: int = option(4, "random initial states per hyperparameter cell",
                         positive=True, integer=True)
    init_scale: float = option(1.0, "W0 entries ~ N(0, scale^2 / n1)", positive=True)
    phase: tuple = option(("sigma2", "eta"), "axes of the phase diagram, from eps, eta, "
                          "sigma2, beta; the other axes are averaged over",
                          nargs=2, metavar=("Y", "X"), choices=("eps", "eta", "sigma2", "beta"))


@register
class IsoLossFamily(MatrixFamily):
    order = 3
    name = "isoloss"
    description = (
        "Sweep linear SimSiam with the predictor (W W^T)^alpha under IsoLoss or the Euclidean "
        "loss (Halvagal et al. 2023) on isotropic data over hyperparameters and random "
        "initial states; keep the eigenvalues of W W^T beside their closed-form fixed point; "
        "write OUT/sweep_isoloss.nc and a phase diagram per variant."
    )
    Options = IsoLossOptions
    defaults = dict(SHARED_DEFAULTS, eps=(1.0,), eta=(0.0, 0.05, 0.1), sigma2=(0.25, 0.5, 1.0),
                    t1=60.0, lr=0.01, batch=64, rtol=1e-8, atol=1e-10, chunk=2048)
    t1_default = {m: 60.0 for m in ("flow", "gd", "sgd")}
    #: the predictor is a function of W, not a parameter: eps sets no time scale, so the flow
    #: is never stiff (and the Jacobian through eigh is undefined at repeated eigenvalues)
    stiff_eps = 0.0
    help = dict(MatrixFamily.help, eps="unused by this model (no predictor parameter of its own)",
                sigma2="augmentation covariance X' = sigma2 I (a = 1 + sigma2)",
                convention="loss: eta_theta = eta; tian: the same here (no predictor decay)",
                seed="seed of the initial states and SGD (same seed, same result)")

    def sizes(self, config):
        n1 = config.options.n1
        return dict(n1=n1, n2=n1, r=n1, state=2 * n1 * n1, data=2 * n1 * n1, what=f"--n1 {n1}")

    def prepare(self, config):
        o = config.options
        kw, _ = init_keys(config.seed)
        W = o.init_scale * jax.random.normal(kw, (o.n_init, o.n1, o.n1)) / jnp.sqrt(o.n1)
        return dict(W=W)

    def build(self, config, ctx, variant, eps, lanes):
        o = config.options
        eta, sigma2, beta = (jnp.asarray(lanes[k]) for k in ("eta", "sigma2", "beta"))
        ii = jnp.asarray(lanes["init"].astype(int))
        eye = jnp.eye(o.n1)
        n = ii.shape[0]
        model = IsoLossLinear(jnp.broadcast_to(eye, (n, o.n1, o.n1)),
                              sigma2[:, None, None] * eye[None], jnp.full(n, o.alpha), o.kind)
        hyper = Hyper.from_convention(config.convention, eta, jnp.full_like(eta, eps), beta)
        W = ctx["W"][ii]
        return model, hyper, initial_state(variant, W, None, target0=config.target0)

    def extra_dims(self, name):
        return ("mode",) if name in ("sv", "score", "s") else ()

    def read(self, config, ctx, method, model, variant, hyper, y, status, window):
        out = super().read(config, ctx, method, model, variant, hyper, y, status, window)
        F = jnp.einsum("nij,nkj->nik", y.enc, y.enc)
        out["s"] = -jnp.sort(-jnp.linalg.eigvalsh(F), axis=-1)
        return out

    def closed_forms(self, config, ctx):
        o = config.options
        eta = np.asarray(config.eta, float)
        s_star = np.stack([np.asarray(IsoLossLinear.isotropic(o.n1, v, o.alpha, o.kind)
                                      .fixed_point(eta)) for v in config.sigma2])
        return {"s_star": (("sigma2", "eta"), s_star, {
            "long_name": "closed-form stable eigenvalue s* of W W^T (SimSiam, stop-gradient; "
                         "NaN past the Euclidean loss's saddle-node)"})}

    def summarize(self, ds) -> str:
        return summarize(ds)

    def figures(self, ds, config):
        out = []
        for v in ds.variant.values:
            for meth in ds.method.values:
                suffix = "" if len(ds.method) == 1 else f"_{meth}"
                out.append((f"phase_{self.name}_{v}{suffix}.png",
                            lambda v=str(v), meth=str(meth): fixed_point_figure(ds, v, meth)))
        return out

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        data_vars["s"] = (dims + ("mode",), values["s"],
                          {"long_name": "eigenvalues of F = W W^T at t1, descending"})
        del data_vars["commutator"]
        attrs.update(kind=config.options.kind, alpha=config.options.alpha,
                     data="X = I, X' = sigma2 I")
        return data_vars, coords, attrs


def summarize(ds) -> str:
    """One row per setting (variant, method, eps, eta, sigma2; beta when swept): the collapsed-mode
    fraction, the mean final eigenvalue ``s`` of the modes that did not collapse, the closed-form
    ``s*`` and the largest relative distance of those modes from it."""
    swept_beta = ds.sizes.get("beta", 1) > 1
    dims = ("variant", "method", "eps", "eta", "sigma2") + (("beta",) if swept_beta else ())
    lines = [f"{'variant':<14}{'method':<7}{'eps':>7}{'eta':>7}{'sigma2':>8}"
             + (f"{'beta':>7}" if swept_beta else "")
             + f"  {'collapsed':>9}  {'mean s':>8}  {'s*':>8}  {'max|s-s*|/s*':>13}"]
    tol = float(ds.attrs.get("collapse_tol", 1e-3))
    for values in itertools.product(*(ds[d].values for d in dims)):
        at = dict(zip(dims, values))
        cf = float(ds["collapsed_fraction"].sel(at).mean(skipna=True))
        sv = ds["sv"].sel(at).values
        s = ds["s"].sel(at).values[sv > tol]  # the modes that did not collapse
        star = float(ds["s_star"].sel({"eta": at["eta"], "sigma2": at["sigma2"]}))
        mean_s = float(np.mean(s)) if s.size else np.nan
        dev = float(np.max(np.abs(s - star)) / star) if s.size and np.isfinite(star) else np.nan
        lines.append(f"{values[0]:<14}{values[1]:<7}{values[2]:>7.3g}{values[3]:>7.3g}"
                     f"{values[4]:>8.3g}" + (f"{values[5]:>7.3g}" if swept_beta else "")
                     + f"  {cf:>9.1%}  {mean_s:>8.4g}  {star:>8.4g}  {dev:>13.2e}")
    lines.append("collapsed: share of modes with singular value <= collapse_tol; mean s and "
                 "max|s-s*|/s* over the other modes (s: eigenvalue of W W^T at t1; s*: the "
                 "closed-form fixed point, NaN where there is none)")
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size}")
    return "\n".join(lines)
