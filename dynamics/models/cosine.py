"""Cosine SimSiam / BYOL: the negative cosine loss the published methods use, on the linear
model's Gaussian views (docs/theory.md section "Cosine SimSiam / BYOL").

Encoder ``W`` (n2 x n1), predictor ``Wp`` (n2 x n2), target ``T`` (``W`` itself for SimSiam,
an EMA copy for BYOL; the stop-gradient is placed by the variant). Per sample, with
``p = Wp W x1`` and ``z = T x2``,

    l = -cos(p, z) = -p.z / (|p| |z|),

and :meth:`CosineSiamese.loss` is its mean over a minibatch (the loss as published). The
expectation of a cosine of Gaussian vectors has no closed form for ``n2 > 1``, so the flow
integrates the *cosine of the second moments* (the cosine in the space of random vectors),

    Lbar = -E[p.z] / sqrt(E|p|^2 E|z|^2)
         = -tr(M X T^T) / sqrt(tr(M S M^T) tr(T S T^T)),     M = Wp W,  S = X + X'.

The two differ (for ``n2 = 1`` exactly by ``E[cos] = (2/pi) arcsin(rho)``, ``rho`` the moment
cosine: :meth:`CosineSiamese.mean_cosine_1d`); both are invariant under ``W -> cW`` and
``Wp -> cWp`` (``c > 0``) and depend on the online branch only through ``M``, which is all the
conservation laws below use, so they hold for either.

Closed forms (section "Cosine SimSiam / BYOL"): the gradient is orthogonal to ``W`` and to
``Wp`` (Euler's identity of a scale-invariant loss), so the gradient flow keeps ``||W||_F`` and
``||Wp||_F`` (with weight decay ``eta``: ``||W(t)|| = e^{-eta_theta t} ||W0||``); a GD step of
size ``h`` grows ``||W||^2`` by exactly ``h^2 ||g||^2``; with the stop-gradient,
``W W^T - eps Wp^T Wp`` is conserved (Tian et al.'s Theorem 1 for this loss). Without a
predictor the flow is ``W' = (W X - rho W S) / Q`` (``Q = tr(W S W^T)``, ``rho = tr(W X W^T)/Q``):
modes whose signal-to-noise ratio ``d/(d + sigma2)`` is above the weighted mean ``rho`` grow, the
others shrink; the representation collapses onto the top-SNR direction.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dynamics.models.base import per_lane
from dynamics.models.linear import LinearViews, check_data_matrices

#: the predictor of a cosine model: trained, fixed where it starts, or the identity
COSINE_PREDICTORS = ("trained", "fixed", "none")


def _cosine(p, z):
    return jnp.sum(p * z, axis=-1) / (jnp.linalg.norm(p, axis=-1) * jnp.linalg.norm(z, axis=-1))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CosineSiamese(LinearViews):
    """Linear SimSiam/BYOL with the negative cosine loss (see the module docstring).

    Attributes:
        X: (n1, n1) data correlation of the augmentation-averaged input (symmetric PSD).
        Xp: (n1, n1) augmentation covariance ``X'``.
        predictor: ``"trained"`` (``Wp`` follows its gradient), ``"fixed"`` (``Wp`` stays
            where it starts, e.g. a fixed random predictor) or ``"none"`` (``Wp = I``, the
            ``pred`` slot unused) (static).

    Run it with SimSiam's or BYOL's variants (stop-gradient or not). The encoder must not
    start at zero (the cosine is undefined there; the flow keeps ``||W||``).
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    predictor: str = dataclasses.field(default="trained", metadata=dict(static=True))

    names = ("W", "Wp", "Wa")
    label = "cosine"

    def __post_init__(self):
        if self.predictor not in COSINE_PREDICTORS:
            raise ValueError(f"unknown predictor {self.predictor!r}: expected one of "
                             f"{', '.join(COSINE_PREDICTORS)}")
        check_data_matrices(self)

    @classmethod
    def isotropic(cls, n1: int, sigma2: float = 0.5, **kw) -> "CosineSiamese":
        """``X = I``, ``X' = sigma2 I``."""
        if not sigma2 >= 0:
            raise ValueError(f"sigma2 must be >= 0, got {sigma2}")
        eye = jnp.eye(n1)
        return cls(eye, sigma2 * eye, **kw)

    @property
    def trains_predictor(self) -> bool:
        return self.predictor == "trained"

    def predictor_matrix(self, W, pred):
        """The predictor applied to the online features (``I`` without one)."""
        if self.predictor == "none":
            return jnp.eye(W.shape[0], dtype=W.dtype)
        return pred

    # --- loss ---------------------------------------------------------------------------

    def loss(self, W, pred, tgt, batch):
        """``-mean_b cos(Wp W x1_b, T x2_b)`` over ``batch = (x1, x2)``, each (B, n1)."""
        x1, x2 = batch
        M = self.predictor_matrix(W, pred) @ W
        return -jnp.mean(_cosine(x1 @ M.T, x2 @ tgt.T))

    def moment_cosine(self, M, tgt):
        """``E[p.z] / sqrt(E|p|^2 E|z|^2)`` for ``p = M x1``, ``z = T x2``."""
        S = self.S
        num = jnp.sum((M @ self.X) * tgt)
        return num / jnp.sqrt(jnp.sum((M @ S) * M) * jnp.sum((tgt @ S) * tgt))

    def expected_loss(self, W, pred, tgt):
        """The negative cosine of the second moments (module docstring), the flow's loss."""
        return -self.moment_cosine(self.predictor_matrix(W, pred) @ W, tgt)

    def collapse_measure(self, W):
        """Singular values of ``W / ||W||_F``: the loss does not see the scale (and the flow
        keeps it), so collapse here is dimensional, a mode's share of the encoder vanishing."""
        sv = self.singular_values(W)
        return sv / jnp.sqrt(jnp.sum(sv**2, axis=-1, keepdims=True))

    # --- closed forms (docs/theory.md, "Cosine SimSiam / BYOL") -----------------------------

    @staticmethod
    def balance(W, Wp, eps=1.0):
        """``W W^T - eps Wp^T Wp``: conserved by the stop-gradient flow at zero weight decay
        (decays as ``exp(-2 eta t)`` in Tian et al.'s convention, ``eta_phi = eps eta``)."""
        return W @ W.T - eps * Wp.T @ Wp

    @staticmethod
    def norm_at(norm0, eta, t):
        """``||W(t)|| = exp(-eta t) ||W0||`` under weight decay ``eta`` (the gradient is
        orthogonal to ``W``, so only the decay changes the norm; ``eta = 0``: conserved)."""
        return jnp.asarray(norm0) * jnp.exp(-jnp.asarray(eta) * jnp.asarray(t))

    @staticmethod
    def gd_norm_growth(g, h):
        """``||W - h g||^2 - ||W||^2 = h^2 ||g||^2`` for a gradient ``g`` orthogonal to ``W``."""
        return h**2 * jnp.sum(jnp.asarray(g) ** 2)

    @staticmethod
    def mean_cosine_1d(rho):
        """``E[cos(p, z)] = E[sign(p z)] = (2/pi) arcsin(rho)`` for jointly Gaussian scalars
        with correlation ``rho`` (Sheppard's formula): the per-sample loss's expectation when
        ``n2 = 1``, against the moment cosine ``rho`` the flow uses."""
        return 2.0 / jnp.pi * jnp.arcsin(jnp.asarray(rho))

    def optimal_direction(self, tgt):
        """The online map ``M`` that maximises the moment cosine for a fixed target, up to a
        positive factor: ``T X S^{-1}`` (a trained predictor's stationary points satisfy
        ``Wp W`` parallel to it)."""
        return tgt @ self.X @ jnp.linalg.inv(self.S)

    def no_predictor_rates(self, W):
        """``(d/dt log w_j)`` of each mode of an aligned ``W = U diag(w) V^T`` without a
        predictor, stop-gradient: ``(d_j - rho c_j) / Q`` with ``d_j``, ``c_j`` the variances
        of ``X`` and ``S`` on ``X``'s eigenvectors ``v_j`` (descending ``d``),
        ``Q = sum c_j w_j^2``, ``rho = sum d_j w_j^2 / Q``. Exact when ``X'`` commutes with
        ``X``."""
        d, V = jnp.linalg.eigh(0.5 * (self.X + self.X.T))
        d, V = d[::-1], V[:, ::-1]
        c = jnp.einsum("ij,ik,kj->j", V, self.S, V)
        w2 = jnp.sum((W @ V) ** 2, axis=0)
        Q = jnp.sum(c * w2)
        rho = jnp.sum(d * w2) / Q
        return (d - rho * c) / Q
