"""Linear InfoNCE / SimCLR (Chen et al. 2020; the dynamics of Jing et al., ICLR 2022;
docs/theory.md section "InfoNCE and MoCo").

Encoder ``W`` (n2 x n1), no predictor, no target of its own: both views go through ``W`` and
the gradient flows through both branches (the variant :data:`INFONCE`). Views as in the linear
models, ``x ~ N(0, X)``, ``x_i = x + N(0, X')``. On a batch of ``B`` pairs with
``z1_j = W x1_j`` and ``z2_i = W x2_i`` the loss is, with in-batch negatives,

    L = mean_i -log softmax_j( -|z2_i - z1_j|^2 / (2 tau) )[i].

**The batch gradient identity.** ``dL/dW = -W X_alpha / tau`` with

    X_alpha = 1/B sum_ij alpha_ij d_ij d_ij^T  -  1/B sum_i d_ii d_ii^T,   d_ij = x2_i - x1_j,

``alpha_ij`` the softmax weights: the softmax-weighted spread of the pairs minus the
augmentation covariance of the positive pairs (:meth:`InfoNCELinear.batch_X_alpha`).

**The flow** is the gradient flow of the *large-batch limit* (``B -> infinity``, less the
constant ``log B``), which is closed form for Gaussian views: with ``A = W S W^T``,
``S = X + X'``,

    Lbar = tr(W X' W^T) / tau - 1/2 log det(I + A/tau) - 1/2 tr((tau I + A)^{-1} A).

Its gradient is ``-W Xbar_alpha / tau`` with the symmetric ``Xbar_alpha = tau M^{-1} +
tau^2 M^{-1} S^{-1} M^{-1} - 2 X'``, ``M = tau S^{-1} + W^T W``
(:meth:`InfoNCELinear.X_alpha`); at ``W = 0`` it is ``2 X``. The sampled loss (sgd) is the
batch loss above.

``layers = 2`` composes two matrices, ``enc = (W1, W2)`` and ``W = W2 W1`` (Jing et al.'s
two-layer case: a balanced aligned mode obeys ``sigma' = lambda sigma^3`` while ``X_alpha``
stays near its small-``W`` value ``2 X``, :meth:`InfoNCELinear.two_layer_solution`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from dynamics.models.base import per_lane
from dynamics.models.linear import LinearViews, check_data_matrices
from dynamics.types import Variant

#: InfoNCE's gradient placement: through both branches (no stop-gradient, no target)
INFONCE = Variant("simsiam", stop_grad=False, label="infonce")


def check_tau(tau) -> None:
    """``ValueError`` (one line) unless a concrete temperature is a finite number > 0."""
    if isinstance(tau, (int, float)) and not (0 < tau < float("inf")):
        raise ValueError(f"tau must be a finite number > 0, got {tau!r}")


def gaussian_logmeanexp(A, P, tau):
    """``E_q log E_k exp(-|q - k|^2 / (2 tau))`` for ``k ~ N(0, A)`` and ``q ~ N(0, P)``:
    ``-1/2 log det(I + A/tau) - 1/2 tr((tau I + A)^{-1} P)`` (two Gaussian integrals)."""
    n = A.shape[-1]
    K = tau * jnp.eye(n, dtype=A.dtype) + A
    _, logdet = jnp.linalg.slogdet(K)
    return -0.5 * (logdet - n * jnp.log(tau)) - 0.5 * jnp.trace(jnp.linalg.solve(K, P))


def contrastive_batch_loss(q, keys, pos, tau, mask=None):
    """``mean_i -log softmax_j(-|q_i - keys_j|^2/(2 tau))[pos_i]``: ``q`` (B, d), ``keys``
    (N, d); ``pos`` (B,) the index of each query's positive key; ``mask`` (B, N) drops keys
    (``False``) from a query's softmax."""
    d2 = jnp.sum((q[:, None, :] - keys[None, :, :]) ** 2, axis=-1)
    s = -d2 / (2.0 * tau)
    if mask is not None:
        s = jnp.where(mask, s, -jnp.inf)
    lse = jax.scipy.special.logsumexp(s, axis=1)
    return jnp.mean(lse - jnp.take_along_axis(s, pos[:, None], axis=1)[:, 0])


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class InfoNCELinear(LinearViews):
    """Linear InfoNCE on Gaussian views (see the module docstring).

    Attributes:
        X: (n1, n1) data correlation of the augmentation-averaged input (symmetric PSD).
        Xp: (n1, n1) augmentation covariance ``X'`` (symmetric PSD).
        tau: temperature, ``> 0``.
        layers: 1 (``enc = W``) or 2 (``enc = (W1, W2)``, ``W = W2 W1``), static.

    Run it with :data:`INFONCE` (gradients through both branches); ``pred`` is unused.
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    tau: Any = 1.0
    layers: int = dataclasses.field(default=1, metadata=dict(static=True))

    names = ("W", "pred", "W")
    label = "infonce"

    def __post_init__(self):
        check_tau(self.tau)
        if self.layers not in (1, 2):
            raise ValueError(f"layers must be 1 or 2, got {self.layers!r}")
        check_data_matrices(self)

    @classmethod
    def isotropic(cls, n1: int, sigma2: float = 0.5, tau: float = 1.0) -> "InfoNCELinear":
        """``X = I``, ``X' = sigma2 I``."""
        if not sigma2 >= 0:
            raise ValueError(f"sigma2 must be >= 0, got {sigma2}")
        eye = jnp.eye(n1)
        return cls(eye, sigma2 * eye, tau)

    @property
    def trains_predictor(self) -> bool:
        return False

    def embedding(self, enc):
        """The map ``W`` of the views: ``enc`` itself, or ``W2 W1`` for two layers."""
        if self.layers == 2:
            W1, W2 = enc
            return W2 @ W1
        return enc

    # --- loss ---------------------------------------------------------------------------

    def loss(self, enc, pred, tgt, batch):
        """The batch loss with in-batch negatives; ``batch = (x1, x2)``, each (B, n1).
        ``tgt`` maps the first view (the keys ``z1``), ``enc`` the second (``z2``)."""
        x1, x2 = batch
        z1 = x1 @ self.embedding(tgt).T
        z2 = x2 @ self.embedding(enc).T
        return contrastive_batch_loss(z2, z1, jnp.arange(x1.shape[0]), self.tau)

    def expected_loss(self, enc, pred, tgt):
        """The large-batch limit of :meth:`loss` less ``log B`` (module docstring)."""
        W, T = self.embedding(enc), self.embedding(tgt)
        S = self.S
        pos = (jnp.sum((W @ S) * W) - 2.0 * jnp.sum((W @ self.X) * T)
               + jnp.sum((T @ S) * T)) / (2.0 * self.tau)
        return pos + gaussian_logmeanexp(T @ S @ T.T, W @ S @ W.T, self.tau)

    def encoder_norm(self, enc):
        W = self.embedding(enc)
        return jnp.sqrt(jnp.sum(W**2, axis=(-2, -1)))

    def singular_values(self, enc):
        return jnp.linalg.svd(self.embedding(enc), compute_uv=False)

    # --- closed forms (docs/theory.md, "InfoNCE and MoCo") --------------------------------

    def batch_X_alpha(self, W, batch):
        """``X_alpha`` of a batch (n1, n1): ``1/B sum_ij alpha_ij d_ij d_ij^T - 1/B sum_i
        d_ii d_ii^T``, ``d_ij = x2_i - x1_j``, ``alpha_ij = softmax_j(-|W d_ij|^2/(2 tau))``;
        then ``dL/dW = -W X_alpha / tau`` (one layer, both branches)."""
        x1, x2 = batch
        B = x1.shape[0]
        d = x2[:, None, :] - x1[None, :, :]
        s = -jnp.sum((d @ W.T) ** 2, axis=-1) / (2.0 * self.tau)
        alpha = jax.nn.softmax(s, axis=1)
        ii = jnp.arange(B)
        dii = d[ii, ii]
        return (jnp.einsum("ij,ija,ijb->ab", alpha, d, d) - dii.T @ dii) / B

    def X_alpha(self, W):
        """The large-batch ``Xbar_alpha(W) = tau M^{-1} + tau^2 M^{-1} S^{-1} M^{-1} - 2 X'``,
        ``M = tau S^{-1} + W^T W``: ``dLbar/dW = -W Xbar_alpha / tau``; ``2 X`` at ``W = 0``."""
        tau, S = self.tau, self.S
        Sinv = jnp.linalg.inv(S)
        Minv = jnp.linalg.inv(tau * Sinv + W.T @ W)
        return tau * Minv + tau**2 * Minv @ Sinv @ Minv - 2.0 * self.Xp

    @staticmethod
    def mode_slope(u, gamma, sigma2, tau):
        """``dLbar/du`` of one aligned mode, ``u = w^2`` (``X``, ``X'`` commuting with
        eigenvalues ``gamma``, ``sigma2`` on it): ``sigma2/tau - s/(2v) - s tau/(2 v^2)``,
        ``s = gamma + sigma2``, ``v = tau + u s``. The mode moves by ``u' = -4 u dLbar/du - 2
        eta u``."""
        s = gamma + sigma2
        v = tau + u * s
        return sigma2 / tau - s / (2 * v) - s * tau / (2 * v**2)

    @staticmethod
    def eta_crit(gamma, tau):
        """Mode ``k`` keeps a non-zero fixed point exactly while ``eta < 2 gamma_k / tau``
        (the slope is increasing in ``u``, its value at 0 is ``-gamma/tau``)."""
        return 2.0 * jnp.asarray(gamma) / tau

    @staticmethod
    def mode_fixed_point(gamma, sigma2, tau, eta=0.0):
        """The stable ``u* = w*^2`` of an aligned mode, the root of ``2 dLbar/du + eta = 0``:
        ``v = tau + u s`` solves ``(2 sigma2/tau + eta) v^2 - s v - s tau = 0``; 0 where
        ``eta >= 2 gamma / tau``."""
        gamma, sigma2 = jnp.asarray(gamma), jnp.asarray(sigma2)
        s = gamma + sigma2
        c = 2.0 * sigma2 / tau + eta
        v = (s + jnp.sqrt(s**2 + 4.0 * c * s * tau)) / (2.0 * c)
        return jnp.clip((v - tau) / s, 0.0)

    @staticmethod
    def two_layer_solution(sigma0, lam, t):
        """Jing et al.'s balanced aligned two-layer mode under a fixed ``X_alpha`` with
        eigenvalue ``lam tau`` on it: ``sigma' = lam sigma^3``,
        ``sigma(t) = sigma0 / sqrt(1 - 2 lam sigma0^2 t)``."""
        sigma0, lam, t = jnp.asarray(sigma0), jnp.asarray(lam), jnp.asarray(t)
        return sigma0 / jnp.sqrt(1.0 - 2.0 * lam * sigma0**2 * t)
