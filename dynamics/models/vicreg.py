"""Linear VICReg (Bardes, Ponce & LeCun, ICLR 2022; docs/theory.md section "VICReg").

Encoder ``W`` (n2 x n1), no predictor, no target of its own; both views go through ``W`` and
the gradient flows through both branches (the variant :data:`VICREG`). Views as in the linear
models. With ``Z = W x1`` and ``Z' = W x2`` over a batch of ``B`` and ``d = n2`` the paper's
three terms are

    L = inv * 1/B sum_b |z_b - z'_b|^2
      + var * [v(Z) + v(Z')],   v(Z) = 1/d sum_j max(0, 1 - sqrt(Var(z^j) + epsilon))
      + cov * [c(Z) + c(Z')],   c(Z) = 1/d sum_{i != j} C(Z)_ij^2,

(``gamma = 1`` in the hinge; ``Var`` and ``C`` the unbiased batch variance and covariance).
The flow is the large-batch limit: with ``A = W S W^T`` (the covariance of either view),

    Lbar = 2 inv tr(W X' W^T) + 2 var/d sum_j max(0, 1 - sqrt(A_jj + epsilon))
         + 2 cov/d sum_{i != j} A_ij^2.

Aligned modes (``X``, ``X'`` diagonal on the same basis, rows of ``W`` on distinct data
directions) decouple; see :meth:`VICRegLinear.mode_std`, :meth:`VICRegLinear.mode_fixed_point`
and :meth:`VICRegLinear.rotation_block` for the fixed points and their stability.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.models.base import per_lane
from dynamics.models.linear import LinearViews, check_data_matrices
from dynamics.types import Variant

#: VICReg's placement: through both branches (no stop-gradient, no target)
VICREG = Variant("simsiam", stop_grad=False, label="vicreg")


def _check_weight(name, value, positive=False) -> None:
    if isinstance(value, (int, float)) and not (
            (value > 0 if positive else value >= 0) and value < float("inf")):
        raise ValueError(f"{name} must be a finite number {'>' if positive else '>='} 0, "
                         f"got {value!r}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class VICRegLinear(LinearViews):
    """Linear VICReg on Gaussian views (see the module docstring).

    Attributes:
        X, Xp: (n1, n1) data correlation and augmentation covariance.
        inv, var, cov: the weights of the three terms, ``>= 0`` (the paper: 25, 25, 1).
        epsilon: the hinge's ``epsilon`` (the paper: 1e-4), ``> 0``.
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    inv: Any = 25.0
    var: Any = 25.0
    cov: Any = 1.0
    epsilon: Any = 1e-4

    names = ("W", "pred", "W")
    label = "vicreg"

    def __post_init__(self):
        for name in ("inv", "var", "cov"):
            _check_weight(name, getattr(self, name))
        _check_weight("epsilon", self.epsilon, positive=True)
        check_data_matrices(self)

    @property
    def trains_predictor(self) -> bool:
        return False

    # --- loss ---------------------------------------------------------------------------

    def terms(self, A, d):
        """``(variance, covariance)`` terms of one branch from its covariance ``A``."""
        std = jnp.sqrt(jnp.diagonal(A, axis1=-2, axis2=-1) + self.epsilon)
        v = jnp.sum(jnp.maximum(0.0, 1.0 - std), axis=-1) / d
        off = jnp.sum(A**2, axis=(-2, -1)) - jnp.sum(jnp.diagonal(A, axis1=-2, axis2=-1) ** 2, -1)
        return v, off / d

    def loss(self, W, pred, tgt, batch):
        """The paper's loss on ``batch = (x1, x2)``; ``tgt`` maps the second view."""
        x1, x2 = batch
        Z, Zp = x1 @ W.T, x2 @ tgt.T
        B, d = Z.shape
        inv = jnp.mean(jnp.sum((Z - Zp) ** 2, axis=-1))
        out = self.inv * inv
        for z in (Z, Zp):
            zc = z - jnp.mean(z, axis=0)
            v, c = self.terms(zc.T @ zc / (B - 1), d)
            out = out + self.var * v + self.cov * c
        return out

    def expected_loss(self, W, pred, tgt):
        """The large-batch limit (module docstring)."""
        S, d = self.S, W.shape[0]
        inv = (jnp.sum((W @ S) * W) - 2.0 * jnp.sum((W @ self.X) * tgt) + jnp.sum((tgt @ S) * tgt))
        out = self.inv * inv
        for M in (W, tgt):
            v, c = self.terms(M @ S @ M.T, d)
            out = out + self.var * v + self.cov * c
        return out

    # --- closed forms (docs/theory.md, "VICReg") ------------------------------------------

    def mode_std(self, gamma, sigma2, d, eta=0.0):
        """The standard deviation ``sqrt(A_jj + epsilon)`` of an aligned output at its
        non-zero fixed point, ``S* = 2 var s / (d (4 inv sigma2 + eta))``, ``s = gamma +
        sigma2`` (valid while ``sqrt(epsilon) < S* < 1``: the hinge is active)."""
        s = jnp.asarray(gamma) + jnp.asarray(sigma2)
        return 2.0 * self.var * s / (d * (4.0 * self.inv * jnp.asarray(sigma2) + eta))

    def mode_fixed_point(self, gamma, sigma2, d, eta=0.0):
        """``u* = w*^2 = (S*^2 - epsilon) / s`` of an aligned mode; 0 where ``S* <= sqrt(
        epsilon)`` (the mode collapses); ``nan`` where ``S* >= 1`` (no smooth fixed point:
        the flow rests on the hinge's corner ``A_jj + epsilon = 1``)."""
        s = jnp.asarray(gamma) + jnp.asarray(sigma2)
        S = self.mode_std(gamma, sigma2, d, eta)
        u = jnp.clip((S**2 - self.epsilon) / s, 0.0)
        return jnp.where(S < 1.0, u, jnp.nan)

    def origin_rate(self, gamma, sigma2, d, eta=0.0):
        """The growth rate of an aligned mode at ``w = 0``: ``2 var s/(d sqrt(epsilon)) - 4
        inv sigma2 - eta`` (``w' = rate w``); the mode collapses where it is negative, which
        is :meth:`mode_std` ``<= sqrt(epsilon)``."""
        s = jnp.asarray(gamma) + jnp.asarray(sigma2)
        return 2.0 * self.var * s / (d * jnp.sqrt(self.epsilon)) - 4.0 * self.inv * jnp.asarray(
            sigma2) - eta

    def rotation_block(self, gamma, sigma2, w, d, eta=0.0):
        """The 2x2 Jacobian of the flow in ``(W_jk, W_kj)`` (j != k) at an aligned fixed
        point with mode amplitudes ``w`` on data eigenvalues ``gamma``, ``sigma2`` (numpy;
        docs/theory.md): ``a_jk - c p_k^2`` and ``a_kj - c p_j^2`` on the diagonal,
        ``-c p_j p_k`` off it, ``p = w s``, ``c = 8 cov/d``, ``a_jk = 2 var s_k/(d S_j) -
        4 inv sigma2_k - eta``, ``S_j = sqrt(w_j^2 s_j + epsilon)``. Returns a function of
        ``(j, k)``."""
        gamma, sigma2, w = (np.asarray(v, float) for v in (gamma, sigma2, w))
        s = gamma + sigma2
        Sd = np.sqrt(w**2 * s + float(self.epsilon))
        p = w * s
        c = 8.0 * float(self.cov) / d

        def block(j, k):
            a_jk = 2 * float(self.var) * s[k] / (d * Sd[j]) - 4 * float(self.inv) * sigma2[k] - eta
            a_kj = 2 * float(self.var) * s[j] / (d * Sd[k]) - 4 * float(self.inv) * sigma2[j] - eta
            return np.array([[a_jk - c * p[k] ** 2, -c * p[j] * p[k]],
                             [-c * p[j] * p[k], a_kj - c * p[j] ** 2]])

        return block

    def rank_one_state(self, gamma, sigma2, d, eta=0.0):
        """``(k*, u1)``: at ``cov = 0`` every row of ``W`` settles on the data direction ``k*``
        of the largest :meth:`mode_std` (each output's variance hinge is satisfied most
        cheaply there), so ``W`` has rank one with squared singular value ``u1 = d u*_{k*}``
        (``d`` rows of ``w*_{k*}`` each)."""
        S = np.asarray(self.mode_std(gamma, sigma2, d, eta))
        k = int(np.argmax(S))
        return k, d * float(np.asarray(self.mode_fixed_point(gamma, sigma2, d, eta))[k])

    def cov_crit(self, gamma, sigma2, d, eta=0.0):
        """The smallest ``cov`` at which the aligned fixed point (every mode at
        :meth:`mode_fixed_point`, rows on distinct data directions) is stable against every
        rotation block; numpy. Each block's determinant and trace are linear in ``c = 8
        cov/d`` (``p`` does not depend on ``cov``), so each pair gives a bound; ``0`` when the
        modes are alike (``s_j / (4 inv sigma2_j + eta)`` all equal), where the block is
        neutral at ``cov = 0``; ``nan`` where a mode has no smooth fixed point (its ``S* >= 1``:
        the flow rests on the hinge's corner), so that there is no aligned point to be stable."""
        gamma, sigma2 = np.asarray(gamma, float), np.asarray(sigma2, float)
        u = np.asarray(self.mode_fixed_point(gamma, sigma2, d, eta))
        if not np.all(np.isfinite(u)):
            return float("nan")
        w = np.sqrt(u)
        base = dataclasses.replace(self, cov=0.0).rotation_block(gamma, sigma2, w, d, eta)
        unit = dataclasses.replace(self, cov=d / 8.0).rotation_block(gamma, sigma2, w, d, eta)
        need = 0.0
        for j in range(len(gamma)):
            for k in range(j + 1, len(gamma)):
                M0, M1 = base(j, k), unit(j, k)
                dM = M1 - M0  # the block is M0 + c dM
                # det(M0 + c dM) is linear in c here: dM has rank one
                det0, det1 = np.linalg.det(M0), np.linalg.det(M1)
                tr0, tr1 = np.trace(M0), np.trace(M1)
                for f0, f1, sign in ((det0, det1, 1.0), (tr0, tr1, -1.0)):
                    g0, g1 = sign * f0, sign * (f1 - f0)   # need g0 + c g1 > 0
                    if g0 <= 0:
                        need = max(need, np.inf if g1 <= 0 else -g0 / g1)
        return need * d / 8.0
