"""The InfoNCE family: linear InfoNCE / SimCLR over temperature, weight decay and random starts.

``python -m dynamics.sweep --model infonce`` sweeps :class:`~dynamics.models.InfoNCELinear`
(gradients through both branches, the variant labelled ``infonce``) on the matrix families'
data, ``X = Q diag(x_eig) Q^T``, ``X' = sigma2 I``. The temperature is a lane axis (``--tau``
takes several values); the batch size is that of sgd (``--batch``): the flow is the
large-batch limit (docs/theory.md, "InfoNCE and MoCo"). Beside the final spectrum it stores
the closed forms: mode ``k`` survives weight decay exactly while ``eta < 2 gamma_k / tau``,
and ends at ``u*`` (:meth:`~dynamics.models.InfoNCELinear.mode_fixed_point`), smaller the
stronger the augmentation.

This module and :mod:`dynamics.models.infonce` are all that the model costs.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from dynamics.models import InfoNCELinear
from dynamics.models.infonce import INFONCE
from dynamics.sweep._planes import plane_figure, table
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import EncoderFamily, MatrixFamily
from dynamics.types import State


@dataclasses.dataclass(frozen=True)
class InfoNCEOptions:
    """Model size, temperatures, data spectrum and random initial states."""

    n1: int = option(4, "dimension of W (n1 x n1)", positive=True, integer=True)
    tau: tuple = option((0.5, 1.0, 2.0), "temperature(s), a lane axis", positive=True,
                        nargs="+", metavar="TAU")
    x_eig: tuple = option((0.5, 1.5), "eigenvalues of the data correlation X, evenly spaced",
                          positive=True, nargs=2, metavar=("LO", "HI"))
    n_init: int = option(4, "random initial states per hyperparameter cell",
                         positive=True, integer=True)
    init_scale: float = option(0.5, "W0 entries ~ N(0, scale^2 / n1)", positive=True)


@register
class InfoNCEFamily(EncoderFamily):
    name = "infonce"
    description = (
        "Sweep linear InfoNCE / SimCLR (mean_i -log softmax_j(-|z2_i - z1_j|^2 / (2 tau))[i], "
        "in-batch negatives, gradients through both branches; the flow is the large-batch "
        "limit) over temperature and weight decay; keep the spectrum of W beside the "
        "closed-form thresholds eta_crit = 2 gamma_k / tau and fixed points u*; write "
        "OUT/sweep_infonce.nc and a tau x eta phase diagram."
    )
    Options = InfoNCEOptions
    variants = {INFONCE.name: INFONCE}
    ignores = ("eps", "beta", "convention")
    lane_axes = ("tau", "init")
    defaults = dict(SHARED_DEFAULTS, variant=(INFONCE.name,), eps=(1.0,),
                    eta=(0.0, 0.7, 1.3, 2.2, 2.8, 4.0, 5.3, 7.0), t1=80.0, lr=0.01, batch=64,
                    rtol=1e-8, atol=1e-10, chunk=2048)
    t1_default = {m: 80.0 for m in ("flow", "gd", "sgd")}
    #: no predictor: eps sets no time scale
    stiff_eps = 0.0
    help = dict(MatrixFamily.help, sigma2="augmentation covariance X' = sigma2 I",
                eta="weight decay of W: W' = -(dL/dW + eta W)",
                batch="sgd minibatch: the in-batch negatives of the sampled loss",
                seed="seed of X's eigenvectors, the initial states and SGD (same seed, same "
                     "result)")

    def axis_values(self, config):
        o = config.options
        return dict(tau=np.asarray(o.tau, float), init=np.arange(o.n_init))

    def axis_sizes(self, config):
        return (len(config.options.tau), config.options.n_init)

    def build(self, config, ctx, variant, eps, lanes):
        X, Xp, W = self.lane_data(config, ctx, lanes)
        model = InfoNCELinear(X, Xp, jnp.asarray(lanes["tau"], float))
        return model, self.encoder_hyper(lanes), State(W, None)

    def closed_forms(self, config, ctx):
        d = np.asarray(ctx["d"])
        tau = np.asarray(config.options.tau, float)
        eta, s2 = np.asarray(config.eta, float), np.asarray(config.sigma2, float)
        u = InfoNCELinear.mode_fixed_point(d[None, None, None, :], s2[None, None, :, None],
                                           tau[:, None, None, None], eta[None, :, None, None])
        return {
            "x_eig": ("mode_x", d, {"long_name": "eigenvalues gamma_k of the data correlation X"}),
            "eta_crit": (("tau", "mode_x"),
                         np.asarray(InfoNCELinear.eta_crit(d[None], tau[:, None])),
                         {"long_name": "closed-form threshold 2 gamma_k / tau: mode k survives "
                                       "iff eta < it"}),
            "u_star": (("tau", "eta", "sigma2", "mode_x"), np.asarray(u), {
                "long_name": "closed-form fixed point u* = w*^2 of mode k (0 past eta_crit)"}),
        }

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        del data_vars["commutator"]
        attrs.update(data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I",
                     flow="gradient flow of the large-batch limit of the InfoNCE loss")
        return data_vars, coords, attrs

    def summarize(self, ds) -> str:
        crit = "; ".join(f"tau {t:g}: "
                         + " ".join(f"{e:.3g}" for e in ds["eta_crit"].sel(tau=t).values)
                         for t in ds.tau.values)
        return (table(ds, "collapsed_fraction", "tau", "eta",
                      "mean collapsed-mode fraction (over init, sigma2)")
                + f"\nclosed form: mode k collapses iff eta >= 2 gamma_k / tau ({crit})")

    def figures(self, ds, config):
        marks = [(float(e), i, "--") for i, t in enumerate(ds.tau.values)
                 for e in ds["eta_crit"].sel(tau=t).values]
        panels = [("collapsed_fraction", "collapsed-mode fraction", "magma", 1.0),
                  ("effective_rank", "effective rank of W(t1)", "viridis", ds.sizes["mode"])]
        return [(f"phase_{self.name}_{v}{'' if len(ds.method) == 1 else '_' + str(m)}.png",
                 lambda v=str(v), m=str(m): plane_figure(
                     ds, v, m, "tau", "eta", panels, marks,
                     "; dashed: eta_crit = 2 gamma_k / tau"))
                for v in ds.variant.values for m in ds.method.values]
