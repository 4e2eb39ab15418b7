"""The VICReg family: linear VICReg over the covariance weight, augmentation and random starts.

``python -m dynamics.sweep --model vicreg`` sweeps :class:`~dynamics.models.VICRegLinear`
(gradients through both branches, the variant labelled ``vicreg``) on the matrix families'
data, ``X = Q diag(x_eig) Q^T``, ``X' = sigma2 I``. The covariance weight is a lane axis
(``--cov`` takes several values); ``--inv`` and ``--var`` are options (the paper's 25, 25).
Beside the final spectrum it stores the closed forms (docs/theory.md, "VICReg"): each
aligned mode's fixed point ``u*`` and the covariance weight ``cov_crit`` above which the
aligned, full-rank fixed point is stable. Below it the outputs rotate onto the strongest data
directions: the variance hinge alone keeps every output's variance up but not their rank
(dimensional collapse, which the collapsed-mode fraction and the effective rank show).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from dynamics.models import VICRegLinear
from dynamics.models.vicreg import VICREG
from dynamics.sweep._planes import plane_figure, table
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import EncoderFamily, MatrixFamily
from dynamics.types import State


@dataclasses.dataclass(frozen=True)
class VICRegOptions:
    """Model size, the three weights, data spectrum and random initial states."""

    n1: int = option(3, "dimension of W (n1 x n1)", positive=True, integer=True)
    inv: float = option(25.0, "weight of the invariance term", nonneg=True)
    var: float = option(25.0, "weight of the variance hinge", nonneg=True)
    cov: tuple = option((0.0, 10.0, 30.0, 100.0, 300.0), "weight(s) of the covariance term, a lane "
                        "axis", nonneg=True, nargs="+", metavar="COV")
    epsilon: float = option(1e-4, "epsilon of the hinge's sqrt(Var + epsilon)", positive=True)
    x_eig: tuple = option((0.5, 1.5), "eigenvalues of the data correlation X, evenly spaced",
                          positive=True, nargs=2, metavar=("LO", "HI"))
    n_init: int = option(3, "random initial states per hyperparameter cell",
                         positive=True, integer=True)
    init_scale: float = option(0.5, "W0 entries ~ N(0, scale^2 / n1)", positive=True)


@register
class VICRegFamily(EncoderFamily):
    name = "vicreg"
    description = (
        "Sweep linear VICReg (the paper's invariance, variance-hinge and covariance terms on "
        "both branches; the flow is the large-batch limit) over the covariance weight, "
        "augmentation and weight decay; keep the spectrum of W beside the closed-form fixed "
        "points and the stability threshold cov_crit; write OUT/sweep_vicreg.nc and a "
        "sigma2 x cov phase diagram."
    )
    Options = VICRegOptions
    variants = {VICREG.name: VICREG}
    ignores = ("eps", "beta", "convention")
    lane_axes = ("cov", "init")
    defaults = dict(SHARED_DEFAULTS, variant=(VICREG.name,), eps=(1.0,), eta=(0.0,),
                    sigma2=(0.5, 1.0, 2.0), t1=60.0, lr=2e-4, batch=256, rtol=1e-8,
                    atol=1e-10, chunk=2048)
    t1_default = {m: 60.0 for m in ("flow", "gd", "sgd")}
    stiff_eps = 0.0
    help = dict(MatrixFamily.help, sigma2="augmentation covariance X' = sigma2 I",
                lr="gd/sgd step; the covariance term is quartic in W, so explicit steps need "
                   "lr of about 2e-4 at --cov 300 (1e-3 diverges there)",
                eta="weight decay of W: W' = -(dL/dW + eta W)",
                seed="seed of X's eigenvectors, the initial states and SGD (same seed, same "
                     "result)")

    def axis_values(self, config):
        o = config.options
        return dict(cov=np.asarray(o.cov, float), init=np.arange(o.n_init))

    def axis_sizes(self, config):
        return (len(config.options.cov), config.options.n_init)

    def build(self, config, ctx, variant, eps, lanes):
        o = config.options
        X, Xp, W = self.lane_data(config, ctx, lanes)
        n = X.shape[0]
        model = VICRegLinear(X, Xp, jnp.full(n, o.inv), jnp.full(n, o.var),
                             jnp.asarray(lanes["cov"], float), jnp.full(n, o.epsilon))
        hyper = self.encoder_hyper(lanes)
        return model, hyper, State(W, None)

    def closed_forms(self, config, ctx):
        o = config.options
        d = np.asarray(ctx["d"])
        eta, s2 = np.asarray(config.eta, float), np.asarray(config.sigma2, float)
        m = VICRegLinear(np.diag(d), np.eye(o.n1), o.inv, o.var, 0.0, o.epsilon)
        u = np.array([[np.asarray(m.mode_fixed_point(d, np.full(o.n1, s), o.n1, e)) for s in s2]
                      for e in eta])
        crit = np.array([[m.cov_crit(d, np.full(o.n1, s), o.n1, e) for s in s2] for e in eta])
        return {
            "x_eig": ("mode_x", d, {"long_name": "eigenvalues gamma_k of the data correlation X"}),
            "u_star": (("eta", "sigma2", "mode_x"), u, {
                "long_name": "closed-form fixed point u* = w*^2 of aligned mode k (NaN where "
                             "the hinge's corner holds it: no smooth fixed point)"}),
            "cov_crit": (("eta", "sigma2"), crit, {
                "long_name": "closed-form covariance weight above which the aligned full-rank "
                             "fixed point is stable (NaN where a mode has no smooth fixed "
                             "point)"}),
        }

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        del data_vars["commutator"]
        o = config.options
        attrs.update(inv=o.inv, var=o.var, epsilon=o.epsilon,
                     data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I",
                     flow="gradient flow of the large-batch limit of the VICReg loss")
        return data_vars, coords, attrs

    def summarize(self, ds) -> str:
        crit = "; ".join(f"sigma2 {s:g}: {c:.3g}" if np.isfinite(c) else
                         f"sigma2 {s:g}: none (a mode's S* >= 1: no smooth fixed point, the flow "
                         f"runs onto the hinge's corner and its lanes stop at max_steps)"
                         for s, c in zip(ds.sigma2.values, ds["cov_crit"].isel(eta=0).values))
        return (table(ds, "collapsed_fraction", "sigma2", "cov",
                      "mean collapsed-mode fraction (over init, eta)")
                + "\n" + table(ds, "effective_rank", "sigma2", "cov",
                                "mean effective rank of W(t1)").rsplit("\n", 1)[0]
                + f"\nclosed form (eta = {float(ds.eta[0]):g}): the aligned full-rank fixed point "
                  f"is stable iff cov > cov_crit ({crit}); at cov = 0 every aligned full-rank "
                  "state is a saddle")

    def figures(self, ds, config):
        marks = [(float(c), i, "--") for i, c in enumerate(ds["cov_crit"].isel(eta=0).values)
                 if np.isfinite(c)]
        panels = [("collapsed_fraction", "collapsed-mode fraction", "magma", 1.0),
                  ("effective_rank", "effective rank of W(t1)", "viridis", ds.sizes["mode"])]
        return [(f"phase_{self.name}_{v}{'' if len(ds.method) == 1 else '_' + str(m)}.png",
                 lambda v=str(v), m=str(m): plane_figure(
                     ds, v, m, "sigma2", "cov", panels, marks,
                     f"; inv={ds.attrs['inv']:g}, var={ds.attrs['var']:g}; dashed: cov_crit"))
                for v in ds.variant.values for m in ds.method.values]
