"""Linear SimSiam with the predictor tied to the encoder, ``Wp = (W W^T)^alpha``, and IsoLoss.

Halvagal, Laborieux & Zenke (NeurIPS 2023) study the linear model whose predictor is a fixed
function of the representation correlation, ``Wp = F^alpha`` with ``F = W W^T``. With the
ordinary Euclidean loss the eigenvalues ``s`` of ``F`` learn at a rate modulated by the
predictor, ``s' = 2 s^{1+alpha} (1 - a s^alpha)``; they propose a loss ("IsoLoss") whose
gradient drops that modulation, ``s' = 2 s (1 - a s^alpha)``. Both go to ``s* = a^{-1/alpha}``
(docs/theory.md section 5). ``a = 1 + sigma2`` for ``X = I``, ``X' = sigma2 I``.

The losses, written (as for every model here) with the online encoder ``W`` and the target
``T`` as separate arguments, and the predictor built from the *target*,
``P = (T T^T)^alpha``, so that the stop-gradient flow treats it as a constant:

``"euclidean"``
    ``l = 1/2 || P W x1 - T x2 ||^2``. Its partial gradient in ``W`` at ``T = W`` is
    ``P (a P - I) W`` (isotropic data), so ``F' = -2 P (a P - I) F`` and each eigenvalue
    follows ``s' = 2 s^{1+alpha} (1 - a s^alpha)``.
``"iso"``
    ``l = 1/2 || W x1 - (T x2 - (P - I) T x1) ||^2``: the online branch without the
    predictor, compared with the target view corrected by ``(P - I)`` applied to the (held)
    online view. The partial gradient in ``W`` is ``A S - T X`` with ``A = W + (P - I) T``,
    which at ``T = W`` is ``(a P - I) W``: ``F' = -2 (a P - I) F`` and
    ``s' = 2 s (1 - a s^alpha)``.

Both expectations are ``1/2 tr(A S A^T) - tr(A X T^T) + 1/2 tr(T S T^T)`` with ``S = X + X'``
and ``A = P W`` (Euclidean) or ``A = W + (P - I) T`` (IsoLoss). ``F`` keeps its eigenvectors
(``F'`` is a function of ``F``), so the eigenvalue ODEs hold from any start. The predictor has
no parameter: states are ``State(W, None)``. The closed forms assume ``X = I``,
``X' = sigma2 I`` (:meth:`IsoLossLinear.isotropic`) and SimSiam with stop-gradient.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dynamics.checks import as_leaf, check_choice, check_count, check_real
from dynamics.models.base import per_lane
from dynamics.models.linear import LinearViews, check_data_matrices

KINDS = ("iso", "euclidean")


def correlation_power(T, alpha):
    """``(T T^T)^alpha`` through the eigendecomposition (eigenvalues clipped at 0).

    Its derivative is undefined where ``T T^T`` has repeated eigenvalues (implicit solvers
    need it; the explicit ones do not).
    """
    s, u = jnp.linalg.eigh(T @ T.T)
    return (u * jnp.clip(s, 0.0) ** alpha) @ u.T


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class IsoLossLinear(LinearViews):
    """Linear two-view model with the predictor ``(W W^T)^alpha`` and the Euclidean or IsoLoss.

    Attributes:
        X, Xp: (n1, n1) data correlation and augmentation covariance (as in
            :class:`~dynamics.models.LinearSiamese`).
        alpha: predictor exponent (> 0), a pytree leaf.
        kind: ``"iso"`` or ``"euclidean"`` (static).
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    alpha: float = 1.0
    kind: str = dataclasses.field(default="iso", metadata=dict(static=True))

    names = ("W", "Wp", "Wa")

    def __post_init__(self):
        check_choice("kind", self.kind, KINDS)
        object.__setattr__(self, "alpha", as_leaf(self.alpha))
        check_real("alpha", self.alpha, positive=True)
        check_data_matrices(self)

    @classmethod
    def isotropic(cls, n1: int, sigma2: float = 0.5, alpha: float = 1.0,
                  kind: str = "iso") -> "IsoLossLinear":
        """``X = I``, ``X' = sigma2 I``: the setting of the closed forms (``a = 1 + sigma2``)."""
        check_real("sigma2", sigma2, nonneg=True)
        n1 = check_count("n1", n1)
        eye = jnp.eye(n1)
        return cls(eye, sigma2 * eye, alpha, kind)

    @property
    def a(self):
        """``a = 1 + sigma2`` of the isotropic setting (the mean diagonal of ``X + X'``)."""
        return jnp.mean(jnp.diagonal(self.S, axis1=-2, axis2=-1), axis=-1)

    @property
    def trains_predictor(self) -> bool:
        return False

    def _online_map(self, W, tgt):
        P = correlation_power(tgt, self.alpha)
        if self.kind == "euclidean":
            return P @ W
        return W + (P - jnp.eye(P.shape[0], dtype=P.dtype)) @ tgt

    def loss(self, W, pred, tgt, batch):
        """Mean per-sample loss on ``batch = (x1, x2)``, arrays of shape (B, n1)."""
        return self.sampled_view_loss(self._online_map(W, tgt), tgt, batch)

    def expected_loss(self, W, pred, tgt):
        return self.view_loss(self._online_map(W, tgt), tgt)

    # --- closed forms (X = I, X' = sigma2 I, SimSiam with stop-gradient) -----------------

    def eigenvalue_rate(self, s, eta=0.0):
        """``ds/dt`` of an eigenvalue ``s`` of ``W W^T`` with encoder weight decay ``eta``:
        IsoLoss ``2 s (1 - eta - a s^alpha)``, Euclidean ``2 s (s^alpha (1 - a s^alpha) - eta)``."""
        q = s**self.alpha
        if self.kind == "iso":
            return 2.0 * s * (1.0 - eta - self.a * q)
        return 2.0 * s * (q * (1.0 - self.a * q) - eta)

    def fixed_point(self, eta=0.0):
        """The non-zero stable eigenvalue ``s*``; ``a^{-1/alpha}`` at ``eta = 0`` for both
        losses. IsoLoss: ``((1 - eta)/a)^{1/alpha}``; Euclidean: ``q_+^{1/alpha}`` with
        ``q_+ = (1 + sqrt(1 - 4 a eta)) / (2a)`` (NaN past the saddle-node ``eta = 1/(4a)``)."""
        a = self.a
        if self.kind == "iso":
            return ((1.0 - eta) / a) ** (1.0 / self.alpha)
        disc = 1.0 - 4.0 * a * eta
        q = (1.0 + jnp.sqrt(jnp.where(disc >= 0, disc, jnp.nan))) / (2.0 * a)
        return q ** (1.0 / self.alpha)

    def eigenvalue_trajectory(self, s0, t, eta=0.0):
        """IsoLoss only: the exact ``s(t)`` from ``s(0) = s0 > 0``.

        With ``u = s^{-alpha}`` and ``c = 1 - eta`` the ODE is linear,
        ``u' = -2 alpha (c u - a)``, so ``u(t) = a/c + (u0 - a/c) exp(-2 alpha c t)``.
        """
        if self.kind != "iso":
            raise ValueError("the explicit trajectory is IsoLoss's; for the Euclidean loss "
                             "use time_to_reach")
        c, a, al = 1.0 - eta, self.a, self.alpha
        u = a / c + (s0 ** (-al) - a / c) * jnp.exp(-2.0 * al * c * t)
        return u ** (-1.0 / al)

    def time_to_reach(self, s0, s):
        """The exact time an eigenvalue takes from ``s0`` to ``s`` (``eta = 0``; ``s`` between
        ``s0`` and ``s*``), with ``u = s^{-alpha}``:

        IsoLoss ``t = ln((u0 - a)/(u - a)) / (2 alpha)``; Euclidean (``u' = -2 alpha (u - a)/u``)
        ``t = (u0 - u + a ln((u0 - a)/(u - a))) / (2 alpha)``.
        """
        a, al = self.a, self.alpha
        u0, u = s0 ** (-al), s ** (-al)
        log = jnp.log((u0 - a) / (u - a))
        if self.kind == "iso":
            return log / (2.0 * al)
        return (u0 - u + a * log) / (2.0 * al)
