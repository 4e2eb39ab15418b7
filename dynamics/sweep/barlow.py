"""The Barlow Twins family: linear Barlow Twins over weight decay and random initial states.

``python -m dynamics.sweep --model barlow`` sweeps :class:`~dynamics.models.BarlowTwinsLinear`
(gradients through both branches, the variant labelled ``barlow``) on the matrix families'
data, ``X = Q diag(x_eig) Q^T``, ``X' = sigma2 I``, from random encoders, and keeps the final
spectrum and collapse measures. Beside them it stores the closed-form threshold of each mode,
``eta_crit = 4 gamma_k`` (``gamma_k`` the eigenvalues of ``X``): mode ``k`` survives weight
decay ``eta`` exactly when ``eta < 4 gamma_k``, so the collapsed fraction steps up at those
values (docs/theory.md, "Barlow Twins").

The model has no predictor and no target of its own: ``--eps``, ``--beta`` and
``--convention`` are not offered. This module and :mod:`dynamics.models.barlow` are all that
the model costs.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from dynamics.models import BarlowTwinsLinear
from dynamics.models.barlow import BARLOW
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import EncoderFamily, MatrixFamily
from dynamics.types import State


@dataclasses.dataclass(frozen=True)
class BarlowOptions:
    """Model size, redundancy weight, data spectrum and random initial states."""

    n1: int = option(4, "dimension of W (n1 x n1)", positive=True, integer=True)
    lam: float = option(1.0, "weight of the off-diagonal term of the loss", nonneg=True)
    x_eig: tuple = option((0.5, 1.5), "eigenvalues of the data correlation X, evenly spaced",
                          positive=True, nargs=2, metavar=("LO", "HI"))
    n_init: int = option(8, "random initial states per hyperparameter cell",
                         positive=True, integer=True)
    init_scale: float = option(0.5, "W0 entries ~ N(0, scale^2 / n1)", positive=True)
    phase: tuple = option(("sigma2", "eta"), "axes of the phase diagram, from eta, sigma2; "
                          "the other axes are averaged over", nargs=2, metavar=("Y", "X"),
                          choices=("eta", "sigma2"))


@register
class BarlowFamily(EncoderFamily):
    name = "barlow"
    description = (
        "Sweep linear Barlow Twins (C = E[z1 z2^T], loss sum (1 - C_ii)^2 + lam sum_{i!=j} "
        "C_ij^2, gradients through both branches) over weight decay and random initial "
        "states; keep the spectrum of W beside the closed-form thresholds eta_crit = 4 gamma_k; "
        "write OUT/sweep_barlow.nc and a phase diagram."
    )
    Options = BarlowOptions
    variants = {BARLOW.name: BARLOW}
    ignores = ("eps", "beta", "convention", "target0")
    defaults = dict(SHARED_DEFAULTS, variant=(BARLOW.name,), eps=(1.0,),
                    eta=(0.0, 1.0, 2.5, 3.5, 4.5, 5.5, 7.0), t1=60.0, lr=0.005, batch=64,
                    rtol=1e-8, atol=1e-10, chunk=2048)
    t1_default = {m: 60.0 for m in ("flow", "gd", "sgd")}
    #: no predictor: eps sets no time scale, the flow is never stiff
    stiff_eps = 0.0
    help = dict(MatrixFamily.help, sigma2="augmentation covariance X' = sigma2 I (only the "
                "sampled loss sees it: the expected C = W X W^T does not)",
                eta="weight decay of W: W' = -(dL/dW + eta W)",
                seed="seed of X's eigenvectors, the initial states and SGD (same seed, same "
                     "result)")

    def build(self, config, ctx, variant, eps, lanes):
        X, Xp, W = self.lane_data(config, ctx, lanes)
        model = BarlowTwinsLinear(X, Xp, jnp.full(X.shape[0], config.options.lam))
        return model, self.encoder_hyper(lanes), State(W, None)

    def closed_forms(self, config, ctx):
        d = np.asarray(ctx["d"])
        return {
            "x_eig": ("mode_x", d, {"long_name": "eigenvalues gamma_k of the data correlation X"}),
            "eta_crit": ("mode_x", np.asarray(BarlowTwinsLinear.eta_crit(d)), {
                "long_name": "closed-form threshold 4 gamma_k: mode k survives iff eta < it"}),
        }

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        del data_vars["commutator"]
        attrs.update(lam=config.options.lam,
                     data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I")
        return data_vars, coords, attrs
