"""A SwAV toy (Caron et al. 2020; docs/theory.md section "SwAV"): swapped prediction of
Sinkhorn-equipartitioned codes.

``N`` data points ``x_i`` (rows of ``x``, shape (N, n)) go through a linear map ``W`` (K x n)
into scores against ``K`` prototypes, ``s_i = W x_i`` (the prototypes are folded into ``W``:
the smallest linear encoder into K logits). The prediction is ``p_i = softmax(s_i / tau)``;
the code ``q_i`` is computed from the scores of the *target* (the encoder held constant: the
codes get no gradient) by Sinkhorn-Knopp with entropy weight ``eps_ent`` and ``n_iter``
iterations over the batch,

    Q <- exp(S / eps_ent);  n_iter times: Q_ik <- Q_ik / sum_j Q_jk (each prototype gets the
    same total), then Q_ik <- Q_ik / sum_l Q_il (each sample a distribution)

(SwAV's ``distributed_sinkhorn`` up to its global scalings, which cancel; with ``n_iter = 0``
the last step alone, the unconstrained code: a sharpened softmax of the sample's own scores). The loss is the swapped
prediction, each view predicting the other's code,

    L = -1/2 mean_i sum_k [q_ik(x2) log p_ik(x1) + q_ik(x1) log p_ik(x2)],

which on the clean data (the expected loss) is ``-mean_i sum_k q_ik log p_ik``. The variant
:data:`SWAV` is SimSiam's placement under its own label: the target is the encoder itself, held
constant.

Closed forms (docs/theory.md, "SwAV"), for data whose ``x x^T / N`` has the all-ones vector as
an eigenvector (gain ``g``; :func:`~dynamics.models.dino.whitened_data`): at the uniform state
``W = 0`` a between-sample mode of gain ``mu`` grows at ``mu lambda_q - eta`` with
``lambda_q = (1/eps_ent - 1/tau) / (K tau)``; the common mode (every sample towards the same
prototype) grows at ``g lambda_q - eta`` without the constraint (``n_iter = 0``) and decays at
``-g / (K tau^2) - eta`` with it (one iteration already removes it from the codes to first
order).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.models.base import Model, per_lane
from dynamics.models.dino import (
    between_gains,
    check_nonneg,
    check_positive,
    common_gain,
    output_measures,
    whitened_data,
)
from dynamics.types import Variant

#: SwAV's placement: the codes come from the encoder held constant (no gradient through them)
SWAV = Variant("simsiam", True, label="swav")


def sinkhorn(scores, eps_ent, n_iter):
    """Codes (B, K) of ``scores`` (B, K): ``exp(scores / eps_ent)``, then ``n_iter`` rounds of
    equal prototype totals and per-sample normalisation, and a last per-sample normalisation
    (see the module docstring; ``n_iter = 0`` gives the per-sample softmax). ``n_iter`` may
    be traced."""
    Q = jnp.exp((scores - jnp.max(scores, axis=(-2, -1), keepdims=True)) / eps_ent)

    def round_(_, Q):
        Q = Q / jnp.sum(Q, axis=-2, keepdims=True)
        return Q / jnp.sum(Q, axis=-1, keepdims=True)

    Q = jax.lax.fori_loop(0, jnp.asarray(n_iter, jnp.int32), round_, Q)
    return Q / jnp.sum(Q, axis=-1, keepdims=True)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SwAVToy(Model):
    """The SwAV toy (see the module docstring).

    Attributes:
        x: (N, n) the data points.
        tau: temperature of the prediction softmax (> 0).
        eps_ent: entropy weight of the Sinkhorn codes (> 0; the codes are sharper than the
            predictions when ``eps_ent < tau``).
        n_iter: Sinkhorn iterations (an integer >= 0; 0 drops the equipartition constraint).
        sigma2: variance of the views' Gaussian noise (>= 0; only the sampled loss sees it).

    State: ``State(W, None)`` with :data:`SWAV`.
    """

    x: jax.Array = per_lane(2)
    tau: Any = 0.1
    eps_ent: Any = 0.05
    n_iter: Any = 3
    sigma2: Any = 0.0

    names = ("W", "pred", "W")
    label = "swav"

    def __post_init__(self):
        check_positive("tau", self.tau)
        check_positive("eps_ent", self.eps_ent)
        check_nonneg("sigma2", self.sigma2)
        k = self.n_iter
        if isinstance(k, (bool, float)) or (isinstance(k, int) and k < 0):
            raise ValueError(f"n_iter must be an integer >= 0, got {k!r}")
        shape = getattr(self.x, "shape", None)
        if shape is not None and len(shape) < 2:
            raise ValueError(f"x must be an (N, n) array of data points, got shape {tuple(shape)}")

    @classmethod
    def whitened(cls, N: int, g: float = 1.0, **kw) -> "SwAVToy":
        """The toy on :func:`~dynamics.models.dino.whitened_data` (``N`` points, gain ``g``)."""
        return cls(whitened_data(N, g), **kw)

    @property
    def trains_predictor(self) -> bool:
        return False

    # --- loss -------------------------------------------------------------------------------

    def codes(self, T, xs):
        """The Sinkhorn codes of the points ``xs`` under the target ``T``."""
        return sinkhorn(xs @ T.T, self.eps_ent, self.n_iter)

    def swapped(self, W, T, xa, xb):
        """``-mean_i sum_k q_ik(xb) log p_ik(xa)``: predict ``xb``'s code from ``xa``."""
        logp = jax.nn.log_softmax(xa @ W.T / self.tau, axis=-1)
        return -jnp.mean(jnp.sum(self.codes(T, xb) * logp, axis=-1))

    def expected_loss(self, W, pred, T):
        """The loss on the clean data points (both views equal)."""
        return self.swapped(W, T, self.x, self.x)

    def loss(self, W, pred, T, batch):
        """The swapped prediction of two noisy views ``batch = (x1, x2)`` (codes per batch)."""
        x1, x2 = batch
        return 0.5 * (self.swapped(W, T, x1, x2) + self.swapped(W, T, x2, x1))

    def sample(self, key, batch_size: int, dtype=jnp.float64):
        ki, k1, k2 = jax.random.split(key, 3)
        idx = jax.random.randint(ki, (batch_size,), 0, self.x.shape[-2])
        xb = self.x[idx].astype(dtype)
        sd = jnp.sqrt(jnp.asarray(self.sigma2, dtype))
        return (xb + sd * jax.random.normal(k1, xb.shape, dtype),
                xb + sd * jax.random.normal(k2, xb.shape, dtype))

    # --- measures ---------------------------------------------------------------------------

    def encoder_norm(self, W):
        return jnp.linalg.norm(W, axis=(-2, -1))

    def singular_values(self, W):
        return jnp.linalg.svd(W, compute_uv=False)

    def outputs(self, W):
        """``(h_sample, h_marginal, info)`` of the predictions on the data, over ``log K``
        (:func:`~dynamics.models.dino.output_measures`)."""
        return output_measures(self.x @ jnp.swapaxes(W, -1, -2) / self.tau)

    def assignments(self, W):
        """Share of the data points whose largest score is each prototype, shape (..., K)."""
        s = self.x @ jnp.swapaxes(W, -1, -2)
        K = s.shape[-1]
        return jnp.mean(jax.nn.one_hot(jnp.argmax(s, axis=-1), K), axis=-2)

    def collapse_measure(self, W):
        """One score, the mutual information between sample and prediction over ``log K``:
        0 when every prediction is uniform and when every sample goes to one prototype."""
        return self.outputs(W)[2][..., None]

    # --- closed forms (docs/theory.md, "SwAV") ---------------------------------------------

    def lambda_q(self, K: int):
        """``(1/eps_ent - 1/tau) / (K tau)``: the growth rate of a between-sample mode of unit
        gain at the uniform state without weight decay."""
        return (1.0 / self.eps_ent - 1.0 / self.tau) / (K * self.tau)

    def common_rate(self, K: int, eta: float = 0.0):
        """The common mode's rate at the uniform state: ``g lambda_q - eta`` without the
        equipartition constraint (``n_iter = 0``), ``-g / (K tau^2) - eta`` with it."""
        g = common_gain(self.x)
        if int(self.n_iter) == 0:
            return g * float(self.lambda_q(K)) - eta
        return -g / (K * float(self.tau) ** 2) - eta

    def uniform_spectrum(self, K: int, eta: float = 0.0):
        """Every eigenvalue of the Jacobian at ``W = 0``: ``mu lambda_q - eta`` per between-sample
        gain ``mu`` (``K - 1`` each), :meth:`common_rate` (``K - 1``), ``-eta`` for the shift of
        each sample's scores along ``1_K`` and for directions no data point spans."""
        N, n = self.x.shape[-2], self.x.shape[-1]
        lam = float(self.lambda_q(K))
        parts = [np.full(K - 1, mu * lam - eta) for mu in between_gains(self.x)]
        parts.append(np.full(K - 1, self.common_rate(K, eta)))
        parts.append(np.full(N + K * (n - N), -eta))
        return np.concatenate(parts)
