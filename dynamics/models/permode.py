"""Per-mode reduction of linear SimSiam / BYOL (docs/theory.md section 3).

When ``X = V diag(d) V^T`` and ``X' = V diag(d') V^T`` commute and the initial weights are
aligned with their eigenbasis, ``W = U diag(theta) V^T``, ``Wp = U diag(phi) U^T``,
``Wa = U diag(theta_a) V^T``, the linear model's flow keeps that form and each mode ``j`` is an
independent copy of the scalar model with data variance ``d_j`` and augmentation variance
``d'_j``. This model is that system, defined like every other by its loss:

    l = 1/2 sum_j (phi_j theta_j x1_j - target_j x2_j)^2,
    x ~ N(0, diag(d)),   x_i = x + N(0, diag(d')),

    Lbar = 1/2 sum_j [a_j phi_j^2 theta_j^2 - 2 d_j phi_j theta_j target_j + a_j target_j^2],
    a_j = d_j + d'_j.

Tian et al. write the mode dynamics in ``(p_j, s_j, tau_j) = (phi_j, theta_j^2,
theta_a_j / theta_j)``; :func:`to_pst` and :func:`from_pst` change coordinates.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.checks import as_leaf, check_choice, check_count, check_real, concrete
from dynamics.models.base import Model, per_lane
from dynamics.models.scalar import (
    PREDICTOR_MODES,
    FixedPoints,
    saddle_node_eta,
    saddle_node_fixed_points,
)
from dynamics.types import State


def mode_eta_crit(d, dp):
    """Per-mode saddle-node weight decay ``d_j^2 / (4 (d_j + d'_j))`` (docs/theory.md section 3):
    mode ``j`` collapses from every start once ``eta`` exceeds it."""
    return saddle_node_eta(d, d + dp)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class PerModeSiamese(Model):
    """``n`` decoupled scalar modes.

    Attributes:
        d: (n,) data variances (eigenvalues of ``X``), > 0.
        dp: (n,) augmentation variances (eigenvalues of ``X'``), >= 0.
        predictor: ``"trained"`` or ``"none"`` (every ``phi_j`` fixed, usually at 1).
    """

    d: jax.Array = per_lane(1)
    dp: jax.Array = per_lane(1)
    predictor: str = dataclasses.field(default="trained", metadata=dict(static=True))

    names = ("theta", "phi", "theta_a")

    def __post_init__(self):
        check_choice("predictor", self.predictor, PREDICTOR_MODES)
        object.__setattr__(self, "d", as_leaf(self.d))
        object.__setattr__(self, "dp", as_leaf(self.dp))
        check_real("d", self.d, positive=True)
        check_real("dp", self.dp, nonneg=True)
        d, dp = concrete(self.d), concrete(self.dp)
        for name, v in (("d", d), ("dp", dp)):
            if v is not None and (v.ndim == 0 or v.shape[-1] == 0):
                raise ValueError(f"{name} must hold at least one mode (shape (n,) or "
                                 f"(lanes, n)), got shape {v.shape}")
        if d is not None and dp is not None:
            try:
                same = d.shape[-1] == dp.shape[-1] and bool(np.broadcast_shapes(d.shape, dp.shape))
            except ValueError:
                same = False
            if not same:
                raise ValueError(f"d and dp must give one value per mode, got shapes {d.shape} "
                                 f"and {dp.shape}")

    @classmethod
    def isotropic(cls, n: int, sigma2: float = 0.5, **kw) -> "PerModeSiamese":
        """``n`` identical modes with ``d = 1``, ``d' = sigma2`` (``a = 1 + sigma2``)."""
        check_real("sigma2", sigma2, nonneg=True)
        n = check_count("n", n)
        return cls(jnp.ones(n), jnp.full(n, float(sigma2)), **kw)

    @property
    def a(self):
        return self.d + self.dp

    @property
    def trains_predictor(self) -> bool:
        return self.predictor == "trained"

    def _phi(self, phi):
        return phi if self.predictor == "trained" else jnp.ones_like(phi)

    def loss(self, theta, phi, target, batch):
        """Mean per-sample loss on ``batch = (x1, x2)``, arrays of shape (B, n)."""
        x1, x2 = batch
        r = self._phi(phi) * theta * x1 - target * x2
        return 0.5 * jnp.mean(jnp.sum(r**2, axis=-1))

    def expected_loss(self, theta, phi, target):
        p = self._phi(phi)
        return 0.5 * jnp.sum(
            self.a * p**2 * theta**2 - 2.0 * self.d * p * theta * target + self.a * target**2
        )

    def sample(self, key, batch_size: int, dtype=jnp.float64):
        n = jnp.shape(self.d)[-1]
        kx, k1, k2 = jax.random.split(key, 3)
        x = jax.random.normal(kx, (batch_size, n), dtype) * jnp.sqrt(self.d)
        s = jnp.sqrt(self.dp)
        x1 = x + s * jax.random.normal(k1, (batch_size, n), dtype)
        x2 = x + s * jax.random.normal(k2, (batch_size, n), dtype)
        return x1, x2

    def encoder_norm(self, theta):
        """Frobenius norm of the equivalent ``W``: ``sqrt(sum_j theta_j^2)``."""
        return jnp.sqrt(jnp.sum(theta**2, axis=-1))

    def singular_values(self, theta):
        """Singular values of the equivalent ``W`` (descending)."""
        return -jnp.sort(-jnp.abs(theta), axis=-1)

    # --- closed forms (each mode is the scalar model with data variance d_j) -------------

    @property
    def eta_crit(self):
        """(n,) per-mode thresholds ``d_j^2 / (4 a_j)``, ``a_j = d_j + d'_j``."""
        return mode_eta_crit(self.d, self.dp)

    def fixed_points(self, eta, eps=1.0, convention: str = "tian") -> FixedPoints:
        """Per-mode non-trivial fixed points (SimSiam, stop-gradient, ``eta > 0``), each (n,):
        ``phi_pm = (d +- sqrt(d^2 - 4 a eta)) / (2a)``, ``theta^2 = eps phi^2`` (Tian) or
        ``phi^2`` (decay in the loss); NaN for modes past their :attr:`eta_crit`."""
        return saddle_node_fixed_points(self.d, self.a, eta, eps, convention)


def to_pst(state: State):
    """``(p, s, tau) = (phi, theta^2, theta_a/theta)``; SimSiam has ``tau = 1``."""
    theta, phi, tgt = state.enc, state.pred, state.tgt
    tau = jnp.ones_like(theta) if tgt is None else tgt / theta
    return phi, theta**2, tau


def from_pst(p, s, tau=None, sign=1.0) -> State:
    """Inverse of :func:`to_pst` on the branch ``sign(theta) = sign``; ``tau=None`` is SimSiam."""
    theta = sign * jnp.sqrt(s)
    return State(theta, p, None if tau is None else tau * theta)


def embed(model: PerModeSiamese, state: State, U, V):
    """The linear-model state and data matrices equivalent to a per-mode state.

    Args:
        U: (n2, n) orthonormal columns (output eigenbasis), V: (n1, n) orthonormal columns.

    Returns:
        ``(X, Xp, State(W, Wp, Wa))`` with ``W = U diag(theta) V^T`` etc. Directions of
        ``R^{n1}`` outside ``V`` get zero data and augmentation variance.
    """
    theta, phi, tgt = state.enc, state.pred, state.tgt
    X = (V * model.d) @ V.T
    Xp = (V * model.dp) @ V.T
    W = (U * theta) @ V.T
    Wp = (U * phi) @ U.T
    Wa = None if tgt is None else (U * tgt) @ V.T
    return X, Xp, State(W, Wp, Wa)
