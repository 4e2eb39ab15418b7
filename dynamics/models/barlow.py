"""Linear Barlow Twins (Zbontar et al. 2021; the dynamics of Simon et al. 2023; docs/theory.md
section "Barlow Twins").

Encoder ``W`` (n2 x n1), no predictor, no target of its own: both views go through ``W`` and
the gradient flows through both branches (the variant :data:`BARLOW`, SimSiam's target without
stop-gradient under its own label). Data as in the linear SimSiam model: ``x ~ N(0, X)``,
views ``x_i = x + N(0, X')``. With ``z_i = W x_i`` the cross-correlation is taken
*un-normalised*, ``C = E[z1 z2^T] = W X W^T`` (the augmentation covariance drops out of it),
and the loss is

    L = sum_i (1 - C_ii)^2 + lam * sum_{i != j} C_ij^2.

On a minibatch ``C`` is the batch mean ``z1^T z2 / B`` (so the sampled loss is a biased
estimate of the expected one: it is not linear in ``C``).

Closed forms (``lam = 1``, or any ``lam`` when ``W``'s left singular vectors are the axes, so
that ``C`` is diagonal): with ``X = V diag(gamma) V^T`` and the aligned ``W = U diag(s) V^T``,
each mode ``u_k = gamma_k s_k^2`` (the k-th eigenvalue of ``C``) follows the logistic
``u' = 8 gamma u (1 - u)`` (weight decay ``eta``: ``u' = r u (1 - u/K)``,
``K = 1 - eta/(4 gamma)``, ``r = 8 gamma K``). From a small random start the modes are learnt
one at a time, mode ``k`` at ``t_k = ln(1/u0_k - 1) / (8 gamma_k)`` (``u0_k``:
:meth:`BarlowTwinsLinear.initial_modes`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from dynamics.checks import check_real
from dynamics.models.base import per_lane
from dynamics.models.linear import LinearViews, check_data_matrices
from dynamics.types import Variant

#: Barlow Twins' gradient placement: through both branches (no stop-gradient, no target)
BARLOW = Variant("simsiam", stop_grad=False, label="barlow")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class BarlowTwinsLinear(LinearViews):
    """Linear Barlow Twins on Gaussian views (see the module docstring).

    Attributes:
        X: (n1, n1) data correlation of the augmentation-averaged input (symmetric PSD).
        Xp: (n1, n1) augmentation covariance ``X'`` (enters only the sampled loss).
        lam: weight of the off-diagonal (redundancy-reduction) term, ``>= 0``.

    Run it with :data:`BARLOW` (gradients through both branches). ``pred`` is unused (give
    ``None``).
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    lam: Any = 1.0

    names = ("W", "pred", "W")
    label = "barlow"

    def __post_init__(self):
        check_real("lam", self.lam, nonneg=True)
        check_data_matrices(self)

    @classmethod
    def isotropic(cls, n1: int, sigma2: float = 0.5, lam: float = 1.0) -> "BarlowTwinsLinear":
        """``X = I``, ``X' = sigma2 I``."""
        if not sigma2 >= 0:
            raise ValueError(f"sigma2 must be >= 0, got {sigma2}")
        eye = jnp.eye(n1)
        return cls(eye, sigma2 * eye, lam)

    @property
    def trains_predictor(self) -> bool:
        return False

    # --- loss ---------------------------------------------------------------------------

    def correlation_loss(self, C):
        """``sum_i (1 - C_ii)^2 + lam sum_{i != j} C_ij^2`` of a cross-correlation ``C``."""
        diag = jnp.diagonal(C, axis1=-2, axis2=-1)
        off = jnp.sum(C**2, axis=(-2, -1)) - jnp.sum(diag**2, axis=-1)
        return jnp.sum((1.0 - diag) ** 2, axis=-1) + self.lam * off

    def cross_correlation(self, W, tgt):
        """The expected ``C = E[(W x1)(T x2)^T] = W X T^T`` (``T = W`` on the flow)."""
        return W @ self.X @ tgt.T

    def loss(self, W, pred, tgt, batch):
        """The loss of the minibatch cross-correlation ``z1^T z2 / B``, ``batch = (x1, x2)``."""
        x1, x2 = batch
        C = (x1 @ W.T).T @ (x2 @ tgt.T) / x1.shape[0]
        return self.correlation_loss(C)

    def expected_loss(self, W, pred, tgt):
        """The loss of the expected cross-correlation ``W X T^T``."""
        return self.correlation_loss(self.cross_correlation(W, tgt))

    # --- closed forms (docs/theory.md, "Barlow Twins") -------------------------------------

    def mode_gamma(self):
        """``(gamma, V)``: the eigenvalues of ``X`` (descending), the per-mode rates of the
        logistic, and its eigenvectors (columns)."""
        g, v = jnp.linalg.eigh(0.5 * (self.X + self.X.T))
        return g[::-1], v[:, ::-1]

    @staticmethod
    def mode_u(W, X, V):
        """``u_k = gamma_k s_k^2`` read off a state: ``(V^T W^T W V)_kk gamma_k`` on the
        eigenvectors ``V`` of ``X`` (exact for an aligned ``W``)."""
        WV = W @ V
        gamma = jnp.einsum("ik,ij,jk->k", V, X, V)
        return gamma * jnp.sum(WV**2, axis=0)

    def initial_modes(self, W0):
        """``u0_k`` of a small random start, for :meth:`step_times`: ``gamma_k R_kk^2`` with
        ``W0 V = Q R`` (QR, modes by decreasing ``gamma``). Mode ``k`` can only grow in the
        output directions the modes learnt before it leave free, so its start is the part of
        ``W0 v_k`` orthogonal to ``W0 v_1 .. W0 v_{k-1}`` (docs/theory.md, "Barlow Twins")."""
        gamma, V = self.mode_gamma()
        R = jnp.linalg.qr(W0 @ V, mode="r")
        return gamma * jnp.diagonal(R) ** 2

    @staticmethod
    def eta_crit(gamma):
        """Mode ``k`` keeps a non-zero fixed point while ``eta < 4 gamma_k``."""
        return 4.0 * jnp.asarray(gamma)

    @staticmethod
    def fixed_point(gamma, eta=0.0):
        """The stable ``u* = 1 - eta / (4 gamma)`` of each mode (0 where ``eta >= 4 gamma``)."""
        return jnp.clip(1.0 - eta / (4.0 * jnp.asarray(gamma)), 0.0)

    @staticmethod
    def aligned_solution(gamma, u0, t, eta=0.0):
        """The logistic ``u(t) = K / (1 + (K/u0 - 1) exp(-r t))``, ``K = 1 - eta/(4 gamma)``,
        ``r = 8 gamma K`` of an aligned mode (``eta = 0``: ``u' = 8 gamma u (1 - u)``)."""
        gamma, u0, t = jnp.asarray(gamma), jnp.asarray(u0), jnp.asarray(t)
        K = 1.0 - eta / (4.0 * gamma)
        return K / (1.0 + (K / u0 - 1.0) * jnp.exp(-8.0 * gamma * K * t))

    @staticmethod
    def step_times(gamma, u0):
        """``t_k = ln(1/u0_k - 1) / (8 gamma_k)``: when mode ``k`` crosses ``u = 1/2`` (exact
        for an aligned start, the asymptotic step time from a small random one)."""
        return jnp.log(1.0 / jnp.asarray(u0) - 1.0) / (8.0 * jnp.asarray(gamma))
