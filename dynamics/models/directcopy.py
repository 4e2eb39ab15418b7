"""DirectCopy (Wang, Chen, Du & Tian 2022): the predictor is the running feature correlation
itself, plus a multiple of the identity, with no eigendecomposition (docs/theory.md section
"DirectCopy").

Encoder ``W`` (n2 x n1), target ``T`` (``W`` itself for SimSiam, stop-gradient), the Euclidean
loss of the linear model, ``l = 1/2 || Wp W x1 - T x2 ||^2``, with the predictor

    Wp = F + reg I,

where ``F`` is an extra state slot (:attr:`DirectCopyLinear.slots`, rule ``"drift"``): the
running correlation of the features ``f = W x_i`` of both views,

    eps dF/dt = E[f f^T] - F          (expected: E[f f^T] = W S W^T, S = X + X'),

whose Euler step of size ``h`` is the EMA ``F <- rho F + (1 - rho) F_batch``, ``rho = 1 - h/eps``
(the paper's ``F_hat``). The predictor is not differentiated through ``F`` (it enters the loss
as a plain value), and ``pred`` is unused (give ``None``). The paper normalises ``F_hat``
before copying it; this toy copies it as it is, which keeps the per-mode fixed points in closed
form (a normalised copy makes the predictor scale-free, and then no mode has a fixed size).

Closed forms, per aligned mode (``X = V diag(d) V^T``, ``X'`` commuting with it,
``c = d + d'``, ``w`` the mode of ``W``, ``f = c w^2`` at rest, ``p = f + reg``):

    w' = w (p d - c p^2 - eta),     eps f' = c w^2 - f.

A mode at rest has ``p = p_pm = (d +- sqrt(d^2 - 4 c eta)) / (2 c)`` (SimSiam's roots) and
``w^2 = (p - reg) / c``: ``p_+`` stable, ``p_-`` a saddle; real only while
``eta <= d^2 / (4 c)``. At ``w = 0`` the predictor is ``reg``: the collapsed state is unstable
exactly when ``p_- < reg < p_+`` (no collapse basin at all), and every mode collapses when
``reg >= p_+`` (the copied predictor is then too large for any mode to grow).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from dynamics.checks import check_real
from dynamics.models.base import per_lane
from dynamics.models.linear import LinearViews, check_data_matrices


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DirectCopyLinear(LinearViews):
    """Linear SimSiam whose predictor is the running feature correlation plus ``reg I``.

    Attributes:
        X: (n1, n1) data correlation of the augmentation-averaged input (symmetric PSD).
        Xp: (n1, n1) augmentation covariance ``X'``.
        reg: the multiple of the identity added to the copied correlation (``>= 0``).

    The state is a :class:`~dynamics.types.SlotState` with ``aux = {"F": (n2, n2)}``; ``F``
    relaxes to the feature correlation on the predictor's time scale ``eps``.
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    reg: Any = 0.0

    names = ("W", "pred", "Wa")
    label = "directcopy"
    slots = {"F": "drift"}

    def __post_init__(self):
        check_real("reg", self.reg, nonneg=True)
        check_data_matrices(self)

    @property
    def trains_predictor(self) -> bool:
        return False

    def predictor_matrix(self, F):
        """``Wp = F + reg I``."""
        return F + self.reg * jnp.eye(F.shape[-1], dtype=F.dtype)

    def feature_correlation(self, W, batch=None):
        """``E[f f^T] = W S W^T`` (``batch=None``), or the minibatch mean over both views."""
        if batch is None:
            return W @ self.S @ W.T
        f = jnp.concatenate(batch, axis=0) @ W.T
        return f.T @ f / f.shape[0]

    def initial_F(self, W):
        """The running correlation at rest for the encoder ``W``: ``W S W^T``."""
        return self.feature_correlation(W)

    # --- loss and the slot's rule ---------------------------------------------------------

    def loss(self, W, pred, tgt, batch, aux):
        """Mean of ``1/2 || (F + reg I) W x1 - T x2 ||^2`` over ``batch = (x1, x2)``."""
        return self.sampled_view_loss(self.predictor_matrix(aux["F"]) @ W, tgt, batch)

    def expected_loss(self, W, pred, tgt, aux):
        """The expectation of :meth:`loss` through ``X`` and ``X'``."""
        return self.view_loss(self.predictor_matrix(aux["F"]) @ W, tgt)

    def slot_drift(self, state, batch=None, hyper=None):
        """``dF/dt = (E[f f^T] - F) / eps`` (``eps``: the predictor's time scale)."""
        eps = 1.0 if hyper is None else hyper.eps
        F = state.aux["F"]
        return {"F": (self.feature_correlation(state.enc, batch) - F) / eps}

    # --- closed forms (docs/theory.md, "DirectCopy") ---------------------------------------

    def data_modes(self):
        """``(d, c)``: eigenvalues ``d_j`` of ``X`` (descending) and ``c_j = v_j^T S v_j``."""
        d, V = jnp.linalg.eigh(0.5 * (self.X + self.X.T))
        d, V = d[::-1], V[:, ::-1]
        return d, jnp.einsum("ij,ik,kj->j", V, self.S, V)

    @staticmethod
    def mode_roots(d, c, eta=0.0):
        """``(p_-, p_+)``, the roots of ``c p^2 - d p + eta = 0`` (NaN past ``eta_crit``)."""
        d, c = jnp.asarray(d), jnp.asarray(c)
        disc = jnp.sqrt(d**2 - 4.0 * c * eta)
        return (d - disc) / (2.0 * c), (d + disc) / (2.0 * c)

    @staticmethod
    def eta_crit(d, c):
        """A mode keeps non-zero fixed points while ``eta <= d^2 / (4 c)``."""
        return jnp.asarray(d) ** 2 / (4.0 * jnp.asarray(c))

    @classmethod
    def fixed_modes(cls, d, c, reg, eta=0.0):
        """``w^2 = (p - reg) / c`` at ``p_-`` and ``p_+``: ``(w2_minus, w2_plus)`` (a value
        ``<= 0`` or NaN: no such fixed point)."""
        pm, pp = cls.mode_roots(d, c, eta)
        return (pm - reg) / jnp.asarray(c), (pp - reg) / jnp.asarray(c)

    @staticmethod
    def origin_rate(d, c, reg, eta=0.0):
        """Growth rate ``reg d - c reg^2 - eta`` of a mode at ``w = 0``: positive (no collapse
        basin) exactly when ``p_- < reg < p_+``."""
        return reg * jnp.asarray(d) - jnp.asarray(c) * reg**2 - eta

    @staticmethod
    def mode_eigenvalues(d, c, reg, p, eps):
        """The two eigenvalues of a mode's ``(w, f)`` system at rest at ``p`` (``p_pm``):
        the roots of ``lambda^2 + lambda/eps - 2 (p - reg)(d - 2 c p)/eps = 0``."""
        k = 2.0 * (p - reg) * (jnp.asarray(d) - 2.0 * jnp.asarray(c) * p) / eps
        disc = jnp.sqrt((1.0 / eps) ** 2 + 4.0 * k + 0j)
        return (-1.0 / eps - disc) / 2.0, (-1.0 / eps + disc) / 2.0
