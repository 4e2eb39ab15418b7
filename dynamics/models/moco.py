"""Linear MoCo (He et al. 2020): InfoNCE against an EMA key encoder and a FIFO queue of keys
(docs/theory.md section "InfoNCE and MoCo").

Query encoder ``W`` (n2 x n1, trained), key encoder ``W_k`` (the target slot: an EMA of
``W``, ``W_k' = beta (W - W_k)``, momentum ``m = 1 - beta lr`` per step; the variant
:data:`MOCO`, stop-gradient on the keys) and a queue: the extra state slot ``"queue"``, a
stack of ``L`` key encoders ``K_1 .. K_L`` (L, n2, n1) of which the first ``queue`` are read.
The queue is a delay line, declared as a drift:

    K_1' = r (W_k - K_1),   K_l' = r (K_{l-1} - K_l),

whose Euler step with ``r lr = 1`` is exactly the FIFO push (``K_1 <- W_k``, ``K_l <- K_{l-1}``)
of one batch of keys a step: ``r`` (``push_rate``) is the number of pushes per unit time, the
sweep's ``1 / lr``. With queries ``q_i = W x2_i`` and positive keys ``k_i = W_k x1_i`` the
sampled loss is

    L = mean_i -log softmax( -|q_i - k_i|^2/(2 tau),  -|q_i - K_l x1_j|^2/(2 tau) )[positive]

over the queued encoders ``l <= queue`` applied to the batch's other samples ``j != i``. The
flow is its large-batch limit, with the queue's keys taken as Gaussian with their second
moment ``A_q = mean_l K_l S K_l^T``: exact whenever the queued encoders are equal (every fixed
point), and equal to the mixture's to first order about such a point, so that the Jacobian
there, and with it every stability result, is exact:

    Lbar = E|W x2 - W_k x1|^2 / (2 tau) - 1/2 log det(I + A_q/tau)
           - 1/2 tr((tau + A_q)^{-1} W S W^T).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.models.base import per_lane
from dynamics.models.infonce import (
    check_tau,
    contrastive_batch_loss,
    gaussian_logmeanexp,
)
from dynamics.models.linear import LinearViews, check_data_matrices
from dynamics.types import Variant

#: MoCo's placement: an EMA key encoder, no gradient through the keys
MOCO = Variant("byol", stop_grad=True, label="moco")


def check_queue(queue) -> None:
    """``ValueError`` (one line) unless a concrete queue length is an integer >= 1."""
    if isinstance(queue, (int, float)) and not isinstance(queue, bool) and not (
            queue >= 1 and float(queue) == int(queue)):
        raise ValueError(f"queue must be an integer >= 1, got {queue!r}")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MoCoLinear(LinearViews):
    """Linear MoCo on Gaussian views (see the module docstring).

    Attributes:
        X, Xp: (n1, n1) data correlation and augmentation covariance.
        tau: temperature, ``> 0``.
        queue: number of queued key encoders read (``1 <= queue <= L``, the slot's length).
        push_rate: pushes per unit time ``r > 0`` (``1/lr`` makes a gd step one FIFO push).

    State: ``SlotState(W, None, W_k, {"queue": K})`` with ``K`` of shape (L, n2, n1).
    """

    X: jax.Array = per_lane(2)
    Xp: jax.Array = per_lane(2)
    tau: Any = 1.0
    queue: Any = 1
    push_rate: Any = 1.0

    names = ("W", "pred", "W_k")
    label = "moco"
    slots = {"queue": "drift"}

    def __post_init__(self):
        check_tau(self.tau)
        check_queue(self.queue)
        r = self.push_rate
        if isinstance(r, (int, float)) and not (0 < r < float("inf")):
            raise ValueError(f"push_rate must be a finite number > 0, got {r!r}")
        check_data_matrices(self)

    @property
    def trains_predictor(self) -> bool:
        return False

    def check_state(self, state) -> None:
        """The declared slot, and (for a concrete ``queue``) no more entries read than it holds."""
        super().check_state(state)
        q, L = self.queue, state.aux["queue"].shape[0]
        if isinstance(q, (int, float)) and q > L:
            raise ValueError(f"queue = {q!r} reads more key encoders than the queue slot holds "
                             f"({L}): give aux['queue'] of shape ({int(q)}, n2, n1) or more")

    def queue_weights(self, L: int):
        """(L,) weights ``1/queue`` on the first ``queue`` entries, 0 beyond."""
        live = jnp.arange(L) < self.queue
        return live / jnp.asarray(self.queue, dtype=float)

    def queue_moment(self, K):
        """``A_q = mean_l K_l S K_l^T`` over the read entries of the queue ``K`` (L, n2, n1)."""
        w = self.queue_weights(K.shape[0])
        return jnp.einsum("l,lij,jk,lmk->im", w, K, self.S, K)

    # --- loss ---------------------------------------------------------------------------

    def loss(self, W, pred, Wk, batch, aux):
        """The sampled loss (module docstring); ``batch = (x1, x2)``, each (B, n1)."""
        x1, x2 = batch
        K = aux["queue"]
        L, B = K.shape[0], x1.shape[0]
        q = x2 @ W.T
        pos = x1 @ Wk.T
        neg = jnp.einsum("lij,bj->lbi", K, x1).reshape(L * B, -1)
        keys = jnp.concatenate([pos, neg], axis=0)
        live = jnp.repeat(jnp.arange(L) < self.queue, B)
        other = jnp.tile(jnp.arange(B), L)[None, :] != jnp.arange(B)[:, None]
        mask = jnp.concatenate([jnp.eye(B, dtype=bool), live[None, :] & other], axis=1)
        return contrastive_batch_loss(q, keys, jnp.arange(B), self.tau, mask)

    def expected_loss(self, W, pred, Wk, aux):
        """The large-batch limit less ``log(queue B)`` (module docstring)."""
        S = self.S
        pos = (jnp.sum((W @ S) * W) - 2.0 * jnp.sum((W @ self.X) * Wk)
               + jnp.sum((Wk @ S) * Wk)) / (2.0 * self.tau)
        return pos + gaussian_logmeanexp(self.queue_moment(aux["queue"]), W @ S @ W.T, self.tau)

    def slot_drift(self, state, batch=None, hyper=None) -> dict:
        """The delay line: ``K_1' = r (W_k - K_1)``, ``K_l' = r (K_{l-1} - K_l)``."""
        K = state.aux["queue"]
        prev = jnp.concatenate([state.tgt[None], K[:-1]], axis=0)
        return {"queue": self.push_rate * (prev - K)}

    # --- closed forms (docs/theory.md, "InfoNCE and MoCo") --------------------------------

    @staticmethod
    def eta_crit(gamma, tau):
        """At ``W = W_k = K_l`` an aligned mode keeps a non-zero fixed point exactly while
        ``eta < gamma / tau`` (half of InfoNCE's ``2 gamma / tau``: the keys get no gradient)."""
        return jnp.asarray(gamma) / tau

    @staticmethod
    def mode_fixed_point(gamma, sigma2, tau, eta=0.0):
        """``u* = w*^2 = tau (gamma - eta tau) / (s (sigma2 + eta tau))``, ``s = gamma +
        sigma2``, at every momentum and queue length (0 past :meth:`eta_crit`)."""
        gamma, sigma2 = jnp.asarray(gamma), jnp.asarray(sigma2)
        s = gamma + sigma2
        return jnp.clip(tau * (gamma - eta * tau) / (s * (sigma2 + eta * tau)), 0.0)

    @staticmethod
    def mode_spectrum(gamma, sigma2, tau, eta, beta, queue: int, push_rate):
        """The eigenvalues of one aligned mode's linearisation at its fixed point, state
        ``(w, w_k, k_1 .. k_queue)``: the roots of
        ``(lam + g)(lam + beta) - g beta + c beta/Q sum_{l<=Q} (r/(lam + r))^l = 0`` times
        ``(lam + r)^Q``, with ``g = gamma/tau``, ``c = 2 u* (sigma2/tau + eta)^2``
        (docs/theory.md). numpy, for one set of scalars."""
        g = gamma / tau
        u = float(MoCoLinear.mode_fixed_point(gamma, sigma2, tau, eta))
        c = 2.0 * u * (sigma2 / tau + eta) ** 2
        P = np.polynomial.polynomial
        lin = lambda a: np.array([a, 1.0])  # noqa: E731  (a + lam)
        Q = int(queue)
        head = P.polysub(P.polymul(lin(g), lin(beta)), [g * beta])
        poly = P.polymul(head, P.polypow(lin(push_rate), Q))
        for l in range(1, Q + 1):
            term = P.polymul([c * beta / Q * push_rate**l], P.polypow(lin(push_rate), Q - l))
            poly = P.polyadd(poly, term)
        return np.sort_complex(P.polyroots(poly))

    def frozen_key_solution(self, Wk, eta=0.0):
        """Momentum -> 1 (``beta = 0``): ``W_k`` stays put, the queue relaxes to it, and ``W``
        goes to the minimiser of the then quadratic loss: ``W (S/tau + eta) - (tau + A)^{-1}
        W S = W_k X / tau``, ``A = W_k S W_k^T`` (solved as a linear system)."""
        S, tau = self.S, self.tau
        n2, n1 = Wk.shape
        A = Wk @ S @ Wk.T
        Kinv = jnp.linalg.inv(tau * jnp.eye(n2) + A)
        # row-major vec: vec(P W Q) = kron(P, Q^T) vec(W)
        M = jnp.kron(jnp.eye(n2), (S / tau + eta * jnp.eye(n1)).T) - jnp.kron(Kinv, S.T)
        return jnp.linalg.solve(M, (Wk @ self.X / tau).reshape(-1)).reshape(n2, n1)
