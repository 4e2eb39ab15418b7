"""The cosine family: linear SimSiam with the negative cosine loss against the Euclidean one, and
the predictor ablations of the SimSiam paper, on the same data and random starts.

``python -m dynamics.sweep --model cosine`` runs, under SimSiam's stop-gradient, one arm per
variant label (docs/theory.md, "Cosine SimSiam / BYOL" and "Predictor ablations"):

- ``euclidean``: :class:`~dynamics.models.LinearSiamese`, trained predictor (the reference);
- ``cosine``: :class:`~dynamics.models.CosineSiamese`, trained predictor;
- ``no-predictor``: Euclidean loss, ``Wp = I``: ``W' = -(X' + eta) W``, every mode collapses;
- ``fixed-predictor``: Euclidean loss, ``Wp`` random and never trained: a linear flow
  ``W' = (Wp^T X - Wp^T Wp S) W``-like with no non-zero rest point: modes vanish or blow up;
- ``normalized``: cosine loss, ``Wp = I`` (the output normalisation alone): the norm is kept,
  but every mode but the top signal-to-noise one vanishes (dimensional collapse).

A mode is collapsed when its collapse measure is below ``collapse_tol``: the singular value of
``W`` for the Euclidean arms, the singular value of ``W / ||W||`` for the cosine ones (their
loss does not see the scale). This module and :mod:`dynamics.models.cosine` are all the model
costs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dynamics.models import CosineSiamese, LinearSiamese
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, register
from dynamics.sweep.matrix import MatrixFamily, data_matrices, init_keys
from dynamics.types import Hyper, State, Variant

#: each arm: its label, and the model class and predictor it runs
ARMS = {
    "euclidean": (LinearSiamese, "trained"),
    "cosine": (CosineSiamese, "trained"),
    "no-predictor": (LinearSiamese, "none"),
    "fixed-predictor": (LinearSiamese, "fixed"),
    "normalized": (CosineSiamese, "none"),
}
#: every arm runs SimSiam's stop-gradient, under its own label
COSINE_VARIANTS = {name: Variant("simsiam", label=name) for name in ARMS}


@dataclasses.dataclass(frozen=True)
class CosineOptions:
    """Model size, data spectrum, random initial states and the phase diagram's axes."""

    n1: int = option(4, "dimension of W (n1 x n1) and Wp (n1 x n1)", positive=True, integer=True)
    x_eig: tuple = option((0.5, 1.5), "eigenvalues of the data correlation X, evenly spaced",
                          positive=True, nargs=2, metavar=("LO", "HI"))
    n_init: int = option(8, "random initial states per hyperparameter cell",
                         positive=True, integer=True)
    init_scale: float = option(1.0, "W0 entries ~ N(0, scale^2 / n1)", positive=True)
    pred_scale: float = option(0.5, "Wp0 entries ~ N(0, scale^2 / n1)", positive=True)
    phase: tuple = option(("eta", "sigma2"), "axes of the phase diagram, from eta, sigma2, eps",
                          nargs=2, metavar=("Y", "X"), choices=("eta", "sigma2", "eps"))


@register
class CosineFamily(MatrixFamily):
    name = "cosine"
    description = (
        "Sweep linear SimSiam with the negative cosine loss against the Euclidean loss, and the "
        "SimSiam paper's predictor ablations (no predictor, a fixed random predictor, output "
        "normalisation alone), over weight decay, augmentation and random initial states; "
        "write OUT/sweep_cosine.nc and a phase diagram per arm."
    )
    Options = CosineOptions
    variants = COSINE_VARIANTS
    ignores = ("beta",)
    defaults = dict(SHARED_DEFAULTS, variant=tuple(ARMS), eps=(1.0,), eta=(0.0,),
                    sigma2=(0.25, 1.0, 4.0), t1=200.0, lr=0.01, batch=64, rtol=1e-7, atol=1e-9,
                    chunk=2048)
    t1_default = {m: 200.0 for m in ("flow", "gd", "sgd")}
    help = dict(MatrixFamily.help,
                eps="predictor time scale: eps * dWp/dt = -dL/dWp - eta_phi*Wp",
                sigma2="augmentation covariance X' = sigma2 I",
                eta="weight decay (the cosine loss keeps ||W|| without it; with it "
                    "||W(t)|| = exp(-eta t) ||W0||)",
                seed="seed of X's eigenvectors, the initial states and SGD (same seed, same "
                     "result)")

    def check(self, config) -> None:
        o = config.options
        if o.phase[0] == o.phase[1]:
            raise ValueError(f"--phase needs two different axes, got {o.phase[0]} twice")
        lo, hi = o.x_eig
        if not lo <= hi:
            raise ValueError(f"--x-eig needs LO <= HI, got {lo:g} {hi:g}")

    def sizes(self, config):
        n1 = config.options.n1
        return dict(n1=n1, n2=n1, r=n1, state=2 * n1 * n1, data=2 * n1 * n1, what=f"--n1 {n1}")

    def prepare(self, config):
        o = config.options
        X, d = data_matrices(o.n1, o.x_eig, config.seed)
        kw, kp = init_keys(config.seed)
        W = o.init_scale * jax.random.normal(kw, (o.n_init, o.n1, o.n1)) / jnp.sqrt(o.n1)
        Wp = o.pred_scale * jax.random.normal(kp, (o.n_init, o.n1, o.n1)) / jnp.sqrt(o.n1)
        return dict(X=X, d=d, W=W, Wp=Wp)

    def build(self, config, ctx, variant, eps, lanes):
        cls, predictor = ARMS[variant.name]
        eta, sigma2 = jnp.asarray(lanes["eta"]), jnp.asarray(lanes["sigma2"])
        ii = jnp.asarray(lanes["init"].astype(int))
        n, n1 = ii.shape[0], ctx["X"].shape[0]
        model = cls(jnp.broadcast_to(ctx["X"], (n, n1, n1)),
                    sigma2[:, None, None] * jnp.eye(n1)[None], predictor=predictor)
        hyper = Hyper.from_convention(config.convention, eta, jnp.full_like(eta, eps),
                                      jnp.ones_like(eta))
        Wp = ctx["Wp"][ii] if predictor != "none" else jnp.broadcast_to(jnp.eye(n1), (n, n1, n1))
        return model, hyper, State(ctx["W"][ii], Wp)

    def summarize(self, ds) -> str:
        return summarize(ds)

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        del data_vars["commutator"]
        coords["x_eig"] = ("mode_x", ctx["d"], {"long_name": "eigenvalues of X"})
        attrs.update(pred_scale=config.options.pred_scale,
                     data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I",
                     arms="; ".join(f"{k}: {c.__name__}, predictor {p}"
                                    for k, (c, p) in ARMS.items()),
                     collapse_rule="a mode is collapsed when its collapse measure is below "
                                   "collapse_tol: the singular value of W (Euclidean arms), of "
                                   "W/||W|| (cosine arms)")
        return data_vars, coords, attrs


def summarize(ds) -> str:
    """Per arm and sigma2: the mean collapsed-mode fraction and effective rank (over the
    initial states and the other axes), and the lanes that did not finish."""
    s2 = ds.sigma2.values
    head = f"{'arm':<17}{'method':<7}{'eta':>6}  " + " ".join(f"{'s2=' + format(v, '.3g'):>9}"
                                                          for v in s2)
    lines = ["collapsed-mode fraction / effective rank of W(t1), mean over the initial states",
             head]
    for v in ds.variant.values:
        for m in ds.method.values:
            for e in ds.eta.values:
                at = {"variant": v, "method": m, "eta": e}
                cf = ds["collapsed_fraction"].sel(at)
                er = ds["effective_rank"].sel(at)
                keep = [k for k in cf.dims if k != "sigma2"]
                cells = [f"{a:.2f}/{b:.2f}" for a, b in zip(cf.mean(keep).values,
                                                             er.mean(keep).values)]
                lines.append(f"{v:<17}{m:<7}{e:>6.3g}  " + " ".join(f"{c:>9}" for c in cells))
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size} (a fixed predictor can blow up)")
    return "\n".join(lines)
