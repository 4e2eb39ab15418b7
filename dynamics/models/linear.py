"""Linear SimSiam / BYOL (Tian, Chen & Ganguli 2021; docs/theory.md section 3).

Online encoder ``W`` (n2 x n1), predictor ``Wp`` (n2 x n2), target ``Wa`` (n2 x n1; SimSiam's
target is ``W`` itself). Data: ``x ~ N(0, X)`` is the augmentation-averaged input and the two views
are ``x_i = x + xi_i`` with independent augmentation noise ``xi_i ~ N(0, X')``, so
``E[x1 x1^T] = X + X'`` and ``E[x1 x2^T] = X``. The per-sample loss is

    l = 1/2 || Wp W x1 - Wa x2 ||^2

and its expectation, with ``S = X + X'``, is

    Lbar = 1/2 tr(Wp W S W^T Wp^T) - tr(Wp W X Wa^T) + 1/2 tr(Wa S Wa^T).

As for the scalar model, the loss takes the online parameters and the target as separate
arguments and the stop-gradient is placed by :mod:`dynamics.flow`.

Predictor modes (``predictor=``):

``"trained"``
    ``Wp`` is the ``pred`` parameter and follows its gradient.
``"symmetric"``
    ``Wp = (P + P^T)/2`` with ``P`` the ``pred`` parameter: the gradient flow of ``P`` is the
    symmetrised predictor update assumed by Tian et al.'s Theorem 3.
``"fixed"``
    ``Wp`` is the ``pred`` parameter and never moves (a fixed random predictor when ``pred`` is
    drawn at random, see :func:`random_state`).
``"none"``
    ``Wp = I`` (``pred`` is ignored).
``"optimal"``
    the least-squares predictor computed from the current encoder and target:
    ``Wp* = Wa X W^T (W S W^T)^+`` for the expected loss, and the same formula with the
    minibatch second moments for a sampled loss. ``pred`` is ignored. Since ``Wp*`` minimises
    the loss in ``Wp``, differentiating through it adds nothing to the encoder gradient.
``"directpred"`` / ``"directpred_code"``
    DirectPred: ``pred`` holds the running feature correlation ``Fhat`` (n2 x n2); ``Wp`` is
    built from its eigendecomposition ``Fhat = U diag(s) U^T`` as ``U diag(p) U^T`` with
    ``p_j = sqrt(s_j) + eps_dp * max(s)`` (the paper) or ``p_j = sqrt(s_j / max(s)) + eps_dp``
    (the authors' code). ``Fhat`` relaxes towards the feature correlation ``E[f f^T]``,
    ``f = W x_i``, through :meth:`LinearSiamese.predictor_drift`:
    ``eps dFhat/dt = E[f f^T] - Fhat``. In discrete time with step ``h`` this is the EMA
    ``Fhat <- rho Fhat + (1 - rho) F_batch`` with ``rho = 1 - h/eps``. The Jacobian through the
    eigendecomposition is undefined where ``Fhat`` has repeated eigenvalues.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from dynamics.checks import (
    as_leaf,
    check_choice,
    check_count,
    check_psd_matrix,
    check_real,
    concrete,
)
from dynamics.models.base import Model, per_lane
from dynamics.models.permode import mode_eta_crit
from dynamics.types import State, Variant

PREDICTORS = ("trained", "symmetric", "fixed", "none", "optimal", "directpred", "directpred_code")


def psd_sqrt(m):
    """Symmetric square root of a positive semi-definite matrix (eigenvalues clipped at 0)."""
    w, v = jnp.linalg.eigh(0.5 * (m + m.T))
    return (v * jnp.sqrt(jnp.clip(w, 0.0))) @ v.T


def sample_views(key, X, Xp, batch_size: int, dtype=jnp.float64):
    """Two views of a minibatch: ``x ~ N(0, X)``, ``x_i = x + N(0, Xp)``; each (B, n1)."""
    n1 = X.shape[-1]
    kx, k1, k2 = jax.random.split(key, 3)
    LX, LXp = psd_sqrt(X.astype(dtype)), psd_sqrt(Xp.astype(dtype))
    x = jax.random.normal(kx, (batch_size, n1), dtype) @ LX
    x1 = x + jax.random.normal(k1, (batch_size, n1), dtype) @ LXp
    x2 = x + jax.random.normal(k2, (batch_size, n1), dtype) @ LXp
    return x1, x2


def check_data_matrices(model) -> None:
    """Check (and turn lists into arrays) a linear model's ``X`` and ``Xp``: each a finite,
    symmetric, positive semi-definite square matrix (or a stack of them on a lane axis), both
    of one size. Placeholders and tracers (while JAX rebuilds the pytree) pass unchecked."""
    for name in ("X", "Xp"):
        object.__setattr__(model, name, as_leaf(getattr(model, name)))
        check_psd_matrix(name, getattr(model, name))
    X, Xp = concrete(model.X), concrete(model.Xp)
    if X is not None and Xp is not None and X.shape[-1] != Xp.shape[-1]:
        raise ValueError(f"X and Xp differ in size: {tuple(X.shape)} vs {tuple(Xp.shape)}")


class LinearViews(Model):
    """What every linear model on Gaussian views shares: data ``X``, augmentation ``Xp``.

    Subclasses declare the fields ``X`` and ``Xp`` (n1 x n1) and build the map ``A`` the
    online view goes through; the per-sample loss is ``1/2 || A x1 - T x2 ||^2`` with target
    ``T``, its expectation :meth:`view_loss`.
    """

    @property
    def n1(self) -> int:
        return self.X.shape[-1]

    @property
    def S(self):
        """Second moment of one view, ``X + X'``."""
        return self.X + self.Xp

    def view_loss(self, A, tgt):
        """``E 1/2 || A x1 - T x2 ||^2 = 1/2 tr(A S A^T) - tr(A X T^T) + 1/2 tr(T S T^T)``."""
        S, X = self.S, self.X
        return 0.5 * jnp.sum((A @ S) * A) - jnp.sum((A @ X) * tgt) + 0.5 * jnp.sum((tgt @ S) * tgt)

    def sampled_view_loss(self, A, tgt, batch):
        """The mean of ``1/2 || A x1 - T x2 ||^2`` over ``batch = (x1, x2)``, each (B, n1)."""
        x1, x2 = batch
        r = x1 @ A.T - x2 @ tgt.T
        return 0.5 * jnp.mean(jnp.sum(r**2, axis=-1))

    def sample(self, key, batch_size: int, dtype=jnp.float64):
        """Two views of a minibatch: ``x ~ N(0, X)``, ``x_i = x + N(0, X')``; each (B, n1)."""
        return sample_views(key, self.X, self.Xp, batch_size, dtype)

    def encoder_norm(self, W):
        """Frobenius norm of ``W``, used by the collapse criterion."""
        return jnp.sqrt(jnp.sum(W**2, axis=(-2, -1)))

    def singular_values(self, W):
        """Singular values of ``W`` (descending), shape (..., min(n1, n2))."""
        return jnp.linalg.svd(W, compute_uv=False)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LinearSiamese(LinearViews):
    """Linear two-view model with data correlation ``X`` and augmentation covariance ``Xp``.

    Attributes:
        X: (n1, n1) symmetric positive semi-definite correlation of the augmentation-averaged
            input.
        Xp: (n1, n1) symmetric positive semi-definite augmentation covariance ``X'``.
        predictor: one of :data:`PREDICTORS` (static).
        eps_dp: DirectPred's regulariser ``eps`` (static).

    Both matrices are pytree leaves. The batched solvers share 2-d ``X``, ``Xp`` across lanes
    (their lane rank is 2, :func:`~dynamics.models.base.per_lane`); give them shape
    ``(lanes, n1, n1)`` to vary them per lane.
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    predictor: str = dataclasses.field(default="trained", metadata=dict(static=True))
    eps_dp: float = dataclasses.field(default=0.0, metadata=dict(static=True))

    names = ("W", "Wp", "Wa")

    def __post_init__(self):
        check_choice("predictor", self.predictor, PREDICTORS)
        check_real("eps_dp", self.eps_dp, nonneg=True)
        check_data_matrices(self)

    @classmethod
    def isotropic(cls, n1: int, sigma2: float = 0.5, **kw) -> "LinearSiamese":
        """``X = I``, ``X' = sigma2 I`` (the setting of Tian et al.'s Theorem 3)."""
        check_real("sigma2", sigma2, nonneg=True)
        n1 = check_count("n1", n1)
        eye = jnp.eye(n1)
        return cls(eye, sigma2 * eye, **kw)

    @property
    def trains_predictor(self) -> bool:
        return self.predictor in ("trained", "symmetric")

    @property
    def pred_rule(self) -> str:
        if self.predictor.startswith("directpred"):
            return "drift"
        return super().pred_rule

    # --- the predictor actually applied --------------------------------------------------

    def _directpred(self, fhat):
        s, u = jnp.linalg.eigh(0.5 * (fhat + fhat.T))
        s = jnp.clip(s, 0.0)
        smax = jnp.max(s)
        if self.predictor == "directpred":
            p = jnp.sqrt(s) + self.eps_dp * smax
        else:
            p = jnp.sqrt(s / jnp.where(smax > 0, smax, 1.0)) + self.eps_dp
        return (u * p) @ u.T

    def predictor_matrix(self, W, pred, tgt, moments=None):
        """The predictor ``Wp`` that multiplies the online features.

        ``moments = (S_, X_)``: second moments ``E[x1 x1^T]`` and ``E[x2 x1^T]`` used by the
        optimal predictor (defaults to the population ones).
        """
        mode = self.predictor
        if mode in ("trained", "fixed"):
            return pred
        if mode == "symmetric":
            return 0.5 * (pred + pred.T)
        if mode == "none":
            return jnp.eye(W.shape[0], dtype=W.dtype)
        if mode == "optimal":
            S_, X_ = (self.S, self.X) if moments is None else moments
            return tgt @ X_ @ W.T @ jnp.linalg.pinv(W @ S_ @ W.T)
        return self._directpred(pred)

    def effective_predictor(self, variant: Variant, state: State):
        """``Wp`` applied at ``state`` (population moments), e.g. for alignment analyses."""
        tgt = state.tgt if variant.has_target else state.enc
        return self.predictor_matrix(state.enc, state.pred, tgt)

    def predictor_drift(self, W, pred, tgt, batch=None, hyper=None):
        """DirectPred's relaxation ``E[f f^T] - Fhat`` (``None`` for the other modes).

        :mod:`dynamics.flow` moves ``pred`` by ``drift / eps`` instead of its gradient
        (:attr:`pred_rule` is ``"drift"`` for the DirectPred modes).
        """
        if not self.predictor.startswith("directpred"):
            return None
        if batch is None:
            F = W @ self.S @ W.T
        else:
            x1, x2 = batch
            f = jnp.concatenate([x1, x2], axis=0) @ W.T
            F = f.T @ f / f.shape[0]
        return F - pred

    # --- loss ---------------------------------------------------------------------------

    def loss(self, W, pred, tgt, batch):
        """Mean per-sample loss over a minibatch ``batch = (x1, x2)``, arrays of shape (B, n1)."""
        x1, x2 = batch
        moments = None
        if self.predictor == "optimal":
            B = x1.shape[0]
            moments = (x1.T @ x1 / B, x2.T @ x1 / B)
        Wp = self.predictor_matrix(W, pred, tgt, moments)
        return self.sampled_view_loss(Wp @ W, tgt, batch)

    def expected_loss(self, W, pred, tgt):
        """Closed-form expectation of :meth:`loss` through ``X`` and ``X'``."""
        return self.view_loss(self.predictor_matrix(W, pred, tgt) @ W, tgt)

    # --- closed forms ---------------------------------------------------------------------

    def data_modes(self):
        """``(d, dp)``: eigenvalues ``d_j`` of ``X`` (descending) and ``d'_j = v_j^T X' v_j``
        on its eigenvectors; the variances of the per-mode reduction when ``X`` and ``X'``
        commute (e.g. ``X' = sigma2 I``)."""
        d, v = jnp.linalg.eigh(0.5 * (self.X + self.X.T))
        d, v = d[::-1], v[:, ::-1]
        dp = jnp.einsum("ij,ik,kj->j", v, self.Xp, v)
        return d, dp

    @property
    def eta_crit(self):
        """(n1,) per-mode thresholds ``d_j^2 / (4 (d_j + d'_j))`` of :meth:`data_modes`
        (``d_j^2 / (4 (d_j + sigma2))`` when ``X' = sigma2 I``); valid when ``X`` and ``X'``
        commute."""
        return mode_eta_crit(*self.data_modes())


def random_spd(key, n: int, eig_min: float = 0.5, eig_max: float = 2.0, dtype=jnp.float64):
    """A random symmetric positive-definite matrix with eigenvalues spread in [eig_min, eig_max].

    The eigenvectors are a Haar-random orthogonal matrix; the eigenvalues are evenly spaced,
    so the matrix is non-isotropic whenever ``eig_min < eig_max``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= eig_min <= eig_max:
        raise ValueError(f"need 0 <= eig_min <= eig_max, got eig_min={eig_min}, eig_max={eig_max}")
    q = random_orthogonal(key, n, dtype)
    w = jnp.linspace(eig_max, eig_min, n, dtype=dtype)
    return (q * w) @ q.T


def random_orthogonal(key, n: int, dtype=jnp.float64):
    """A Haar-random ``n x n`` orthogonal matrix (QR of a Gaussian matrix, signs fixed)."""
    g = jax.random.normal(key, (n, n), dtype)
    q, r = jnp.linalg.qr(g)
    return q * jnp.sign(jnp.diag(r))


def random_state(
    key, model: LinearSiamese, variant: Variant, n2: int, *, scale: float = 0.5,
    pred_scale: float | None = None, target0: str = "online",
) -> State:
    """A random initial state: Gaussian ``W`` and ``Wp`` with entries of std ``scale/sqrt(n)``.

    BYOL's target starts as ``target0`` says: ``"online"`` (the default) at ``W``,
    ``Wa(0) = W(0)``; ``"zero"`` at ``Wa(0) = 0``, Tian, Chen & Ganguli's (2021) choice in all
    their figures (Eqn. 15, Fig. 7). For DirectPred the ``pred`` slot (``Fhat``) starts at the
    current feature correlation ``W S W^T``; for ``"symmetric"`` it is symmetrised; for
    ``"none"``/``"optimal"`` it is the identity (unused).
    """
    if n2 < 1:
        raise ValueError(f"n2 must be >= 1, got {n2}")
    n1 = model.n1
    kw, kp = jax.random.split(key)
    pred_scale = scale if pred_scale is None else pred_scale
    W = scale * jax.random.normal(kw, (n2, n1)) / jnp.sqrt(n1)
    mode = model.predictor
    if mode.startswith("directpred"):
        pred = W @ model.S @ W.T
    elif mode in ("none", "optimal"):
        pred = jnp.eye(n2)
    else:
        pred = pred_scale * jax.random.normal(kp, (n2, n2)) / jnp.sqrt(n2)
        if mode == "symmetric":
            pred = 0.5 * (pred + pred.T)
    if target0 not in ("online", "zero"):
        raise ValueError(f"unknown target0 {target0!r}: expected 'online' or 'zero'")
    tgt = None
    if variant.has_target:
        tgt = W if target0 == "online" else jnp.zeros_like(W)
    return State(W, pred, tgt)
