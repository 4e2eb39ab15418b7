"""Eigenspace alignment of the predictor with the feature correlation (Tian et al. 2021, sec. 5).

``F = W X W^T`` is the correlation of the online features; DirectPred's premise and Theorem 3
say the predictor ``Wp`` comes to share ``F``'s eigenvectors. The measures here work on single
matrices (use ``jax.vmap`` over trajectories). Theorem 2's ``H`` is obtained by autodiff from
the model's own no-stop-gradient flow; Theorem 3's ``K`` is the paper's expression for the
isotropic case (``X = I``, ``X' = sigma2 I``, symmetric ``Wp``, ``Wa = tau W``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dynamics.flow import State, Variant, vector_field


def feature_correlation(W, X=None):
    """``F = W X W^T`` (``X = I`` when omitted)."""
    return W @ W.T if X is None else W @ X @ W.T


def commutator(A, B):
    return A @ B - B @ A


def commutator_norm(F, Wp):
    """``||[F, Wp]||_F``; 0 when ``F`` and ``Wp`` share an eigenbasis."""
    return jnp.linalg.norm(commutator(F, Wp))


def sym_antisym(Wp):
    """``(||sym(Wp)||_F, ||antisym(Wp)||_F)``."""
    s = 0.5 * (Wp + Wp.T)
    return jnp.linalg.norm(s), jnp.linalg.norm(Wp - s)


def eigen_alignment(F, Wp):
    """Per-eigenvector alignment of ``Wp`` with ``F``.

    For each unit eigenvector ``u_j`` of ``F`` (descending eigenvalue), the cosine between
    ``Wp u_j`` and ``u_j``: ``|u_j^T Wp u_j| / ||Wp u_j||`` (1 when ``u_j`` is an eigenvector of
    ``Wp``). Returns ``(eigenvalues of F, cosines, Rayleigh quotients u_j^T Wp u_j)``.
    """
    s, U = jnp.linalg.eigh(0.5 * (F + F.T))
    s, U = s[::-1], U[:, ::-1]
    WU = Wp @ U
    rq = jnp.sum(U * WU, axis=0)
    nrm = jnp.linalg.norm(WU, axis=0)
    cos = jnp.abs(rq) / jnp.where(nrm > 0, nrm, 1.0)
    return s, cos, rq


def theorem3_K(F, Wp, sigma2, alpha_p, tau, eta):
    """``K = a (alpha_p/2 F + Wp^2 - tau/a Wp) + 3/2 eta I`` with ``a = 1 + sigma2``.

    Under Theorem 3's assumptions ``[F, Wp]' = -[F, Wp] K - K [F, Wp]``; ``lambda_min(K) > 0``
    makes the commutator decay.
    """
    a = 1.0 + sigma2
    n = F.shape[0]
    return a * (0.5 * alpha_p * F + Wp @ Wp - (tau / a) * Wp) + 1.5 * eta * jnp.eye(n, dtype=F.dtype)


def lambda_min_sym(M):
    """Smallest eigenvalue of the symmetric part of ``M``."""
    return jnp.linalg.eigvalsh(0.5 * (M + M.T))[0]


@jax.jit
def theorem2_H(model, hyper, state: State):
    """Theorem 2's ``H`` by autodiff: ``-d W'/d vec(W)`` of the no-stop-gradient SimSiam flow at
    fixed predictor (column-major ``vec``, matching ``X' (x) (Wp^T Wp + I) + ...``).

    The no-stop-gradient encoder field is linear in ``W`` for fixed ``Wp``, so
    ``vec(W)' = -H vec(W)`` exactly.
    """
    variant = Variant("simsiam", False)
    W, Wp = state.enc, state.pred
    n2, n1 = W.shape

    def f(w):
        Wm = w.reshape(n1, n2).T
        return vector_field(model, variant, hyper, State(Wm, Wp, None)).enc.T.reshape(-1)

    return -jax.jacfwd(f)(W.T.reshape(-1))


def alignment_summary(state: State, X=None, Wp=None, sigma2=None, alpha_p=None, tau=1.0, eta=None):
    """Commutator norm, mean eigen-alignment, sym/antisym norms and (when the isotropic
    parameters are given) ``lambda_min(K)``, as a dict."""
    W = state.enc
    Wp = state.pred if Wp is None else Wp
    F = feature_correlation(W, X)
    _, cos, _ = eigen_alignment(F, Wp)
    sn, an = sym_antisym(Wp)
    out = dict(commutator=commutator_norm(F, Wp), alignment=jnp.mean(cos), sym_norm=sn, antisym_norm=an)
    if sigma2 is not None and alpha_p is not None and eta is not None:
        out["lambda_min_K"] = lambda_min_sym(theorem3_K(F, 0.5 * (Wp + Wp.T), sigma2, alpha_p, tau, eta))
    return out
