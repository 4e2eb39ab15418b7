"""A DINO toy (Caron et al. 2021; docs/theory.md section "DINO"): self-distillation with a
sharpened, centred EMA teacher and no negatives.

``N`` data points ``x_i`` (rows of ``x``, shape (N, n)) go through a linear student ``W``
(K x n) and a teacher ``T`` (K x n) into ``K`` logits. The student's output is
``p_i = softmax(W x_i / tau_s)``, the teacher's ``q_i = softmax((T x_i - c) / tau_t)`` with a
centre ``c`` (K,) that follows the teacher's mean output,

    c' = eta_c (mean_i T x_i - c)              (an EMA with rate eta_c: the state slot "center")

and the loss is the cross-entropy of the teacher's output against the student's,

    L = mean_i H(q_i, p_i) = -mean_i sum_k q_ik log p_ik.

The teacher is held constant when differentiating: :data:`DINO` is an EMA teacher
``T' = beta (W - T)`` (BYOL's placement, under its own label), :data:`DINO_SG` the limit
``beta -> infinity``, the teacher a stop-gradient copy of the student (SimSiam's placement).
The expected loss is the loss on the clean data points; a minibatch draws ``B`` of them with
replacement and adds Gaussian noise of variance ``sigma2`` to each of two views (the student
sees one, the teacher the other, and the loss is symmetrised).

Closed forms (docs/theory.md, "DINO"), for data whose sample-space second moment
``M = x x^T / N`` has the all-ones vector as an eigenvector (eigenvalue ``g``, the gain of
the common mode; :meth:`DinoToy.whitened` builds such data with unit eigenvalue on the
between-sample modes): at the uniform state ``W = T = 0``, ``c = 0`` the between-sample modes
grow at ``mu lambda_d - eta`` (``mu`` an eigenvalue of ``M`` off the common mode, 1 for
whitened data), ``lambda_d = (1/tau_t - 1/tau_s) / (K tau_s)``; with the teacher equal to the
student the common mode and the centre form a 2 x 2 block that is stable iff
``eta_c > g lambda_d - eta`` and loses stability there through a complex pair (a Hopf
bifurcation); :meth:`DinoToy.uniform_spectrum` gives the whole spectrum, also for an EMA
teacher.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.models.base import Model, per_lane
from dynamics.types import Variant

#: DINO's placement: an EMA teacher held constant in the gradient
DINO = Variant("byol", True, label="dino")
#: the teacher a stop-gradient copy of the student (the EMA's beta -> infinity limit)
DINO_SG = Variant("simsiam", True, label="dino-sg")


def check_positive(name, value):
    """``ValueError`` naming ``name`` unless a plain number ``value`` is finite and > 0
    (arrays, e.g. per-lane values inside a sweep, are checked where they are made)."""
    if isinstance(value, (int, float)) and not (0 < value < float("inf")):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_nonneg(name, value):
    """As :func:`check_positive`, for a finite number >= 0."""
    if isinstance(value, (int, float)) and not (0 <= value < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def output_measures(logits):
    """``(h_sample, h_marginal, info)`` of a set of outputs ``softmax(logits)`` (N, K), each
    divided by ``log K``: the mean per-sample entropy (1: every output uniform), the entropy
    of the mean output (0: every sample on the same output) and their difference, the mutual
    information between the sample and the output (0 in both collapses)."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    K = logits.shape[-1]
    h_sample = -jnp.mean(jnp.sum(p * logp, axis=-1), axis=-1)
    pbar = jnp.mean(p, axis=-2)
    h_marg = -jnp.sum(jnp.where(pbar > 0, pbar * jnp.log(jnp.where(pbar > 0, pbar, 1.0)), 0.0),
                      axis=-1)
    return h_sample / jnp.log(K), h_marg / jnp.log(K), (h_marg - h_sample) / jnp.log(K)


def common_gain(x):
    """``g = 1^T M 1 / N^2`` with ``M = x x^T`` (N x N): the eigenvalue of ``x x^T / N`` on the
    common (all-samples) mode, when that is an eigenvector."""
    x = np.asarray(x)
    N = x.shape[0]
    return float(np.sum(x @ x.T) / N**2)


def between_gains(x):
    """Eigenvalues of ``M = x x^T / N`` on the between-sample modes (orthogonal to 1)."""
    x = np.asarray(x)
    N = x.shape[0]
    M = x @ x.T / N
    Q = np.linalg.qr(np.column_stack([np.ones(N), np.eye(N)[:, : N - 1]]))[0][:, 1:]
    return np.linalg.eigvalsh(Q.T @ M @ Q)


def whitened_data(N: int, g: float = 1.0):
    """``N`` points in ``R^N`` with ``x x^T / N = I + (g - 1) 1 1^T / N``: unit gain on every
    between-sample mode and gain ``g`` on the common mode (``x = sqrt(N) (I + alpha 1 1^T/N)``,
    ``alpha = sqrt(g) - 1``: a shared input component when ``g > 1``)."""
    if not (isinstance(N, int) and N >= 2):
        raise ValueError(f"N must be an integer >= 2, got {N!r}")
    check_positive("g", g)
    alpha = np.sqrt(g) - 1.0
    return jnp.asarray(np.sqrt(N) * (np.eye(N) + alpha * np.ones((N, N)) / N))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class DinoToy(Model):
    """The DINO toy (see the module docstring).

    Attributes:
        x: (N, n) the data points.
        tau_s, tau_t: student and teacher temperatures (> 0; the teacher sharpens when
            ``tau_t < tau_s``).
        eta_c: rate of the centre's EMA (>= 0; 0 leaves the centre where it starts).
        sigma2: variance of the views' Gaussian noise (>= 0; only the sampled loss sees it).

    State: ``SlotState(W, None, T, {"center": c})`` with :data:`DINO`, ``SlotState(W, None,
    None, {"center": c})`` with :data:`DINO_SG`.
    """

    x: jax.Array = per_lane(2)
    tau_s: Any = 0.1
    tau_t: Any = 0.05
    eta_c: Any = 1.0
    sigma2: Any = 0.0

    names = ("W", "pred", "T")
    slots = {"center": "drift"}
    label = "dino"

    def __post_init__(self):
        check_positive("tau_s", self.tau_s)
        check_positive("tau_t", self.tau_t)
        check_nonneg("eta_c", self.eta_c)
        check_nonneg("sigma2", self.sigma2)
        shape = getattr(self.x, "shape", None)
        if shape is not None and len(shape) < 2:
            raise ValueError(f"x must be an (N, n) array of data points, got shape {tuple(shape)}")

    @classmethod
    def whitened(cls, N: int, g: float = 1.0, **kw) -> "DinoToy":
        """The toy on :func:`whitened_data` (``N`` points, common-mode gain ``g``)."""
        return cls(whitened_data(N, g), **kw)

    @property
    def trains_predictor(self) -> bool:
        return False

    # --- loss -------------------------------------------------------------------------------

    def cross_entropy(self, W, T, c, xs, xt):
        """``mean_i H(q_i, p_i)``: student logits from ``xs``, teacher's from ``xt``."""
        logp = jax.nn.log_softmax(xs @ W.T / self.tau_s, axis=-1)
        q = jax.nn.softmax((xt @ T.T - c) / self.tau_t, axis=-1)
        return -jnp.mean(jnp.sum(q * logp, axis=-1))

    def expected_loss(self, W, pred, T, aux):
        """The loss on the clean data points (both views equal)."""
        return self.cross_entropy(W, T, aux["center"], self.x, self.x)

    def loss(self, W, pred, T, batch, aux):
        """The symmetrised loss of two noisy views ``batch = (x1, x2)``."""
        x1, x2 = batch
        c = aux["center"]
        return 0.5 * (self.cross_entropy(W, T, c, x1, x2) + self.cross_entropy(W, T, c, x2, x1))

    def sample(self, key, batch_size: int, dtype=jnp.float64):
        ki, k1, k2 = jax.random.split(key, 3)
        idx = jax.random.randint(ki, (batch_size,), 0, self.x.shape[-2])
        xb = self.x[idx].astype(dtype)
        sd = jnp.sqrt(jnp.asarray(self.sigma2, dtype))
        return (xb + sd * jax.random.normal(k1, xb.shape, dtype),
                xb + sd * jax.random.normal(k2, xb.shape, dtype))

    def slot_drift(self, state, batch=None, hyper=None):
        """The centre's EMA toward the teacher's mean output (on the batch's views when
        given)."""
        T = state.enc if state.tgt is None else state.tgt
        xs = self.x if batch is None else jnp.concatenate(batch, axis=0)
        return {"center": self.eta_c * (jnp.mean(xs @ T.T, axis=0) - state.aux["center"])}

    # --- measures ---------------------------------------------------------------------------

    def encoder_norm(self, W):
        return jnp.linalg.norm(W, axis=(-2, -1))

    def singular_values(self, W):
        return jnp.linalg.svd(W, compute_uv=False)

    def outputs(self, W):
        """``(h_sample, h_marginal, info)`` of the student's outputs on the data
        (:func:`output_measures`)."""
        return output_measures(self.x @ jnp.swapaxes(W, -1, -2) / self.tau_s)

    def collapse_measure(self, W):
        """One score, the mutual information between sample and output over ``log K``: 0 when
        every output is uniform and when every sample lands on the same output (the two
        collapses of DINO), up to ``log min(N, K) / log K`` when samples are told apart."""
        return self.outputs(W)[2][..., None]

    # --- closed forms (docs/theory.md, "DINO") ---------------------------------------------

    def lambda_d(self, K: int):
        """``(1/tau_t - 1/tau_s) / (K tau_s)``: the growth rate of a between-sample mode of unit
        gain at the uniform state, teacher equal to student, no weight decay."""
        return (1.0 / self.tau_t - 1.0 / self.tau_s) / (K * self.tau_s)

    def hopf_eta_c(self, K: int, eta: float = 0.0, beta: float | None = None):
        """The centre rate at which the common mode changes stability (a Hopf bifurcation):
        ``g lambda_d - eta`` with the teacher equal to the student (``beta=None``); for an EMA
        teacher the positive root of the Routh-Hurwitz condition of the 3 x 3 block
        (docs/theory.md). ``nan`` when the common mode is stable for every ``eta_c >= 0``."""
        g = common_gain(self.x)
        a = 1.0 / (K * float(self.tau_s))
        A, B = g * a / float(self.tau_s), g * a / float(self.tau_t)
        D = A + eta
        if beta is None:
            e = B - D
        else:
            b2, b1, b0 = beta + D, (beta + D) ** 2 - beta * B, beta * (beta + D) * (D - B)
            e = (-b1 + np.sqrt(b1**2 - 4 * b2 * b0)) / (2 * b2) if b0 < 0 else -1.0
        return e if e > 0 else float("nan")

    def uniform_blocks(self, K: int, eta: float = 0.0, beta: float | None = None):
        """The linearisation at the uniform state ``W = T = 0, c = 0`` as ``[(matrix,
        multiplicity), ...]`` (docs/theory.md, "DINO"): per between-sample gain ``mu`` a block
        on (student, teacher) of multiplicity ``K - 1``; the common mode with the centre
        (multiplicity ``K - 1``); the logit shift along ``1_K``, which the softmax ignores.
        ``beta=None``: the teacher is the student (its rows and columns dropped)."""
        a = 1.0 / (K * float(self.tau_s))
        ts, tt, ec = float(self.tau_s), float(self.tau_t), float(self.eta_c)
        N = self.x.shape[-2]
        g = common_gain(self.x)
        blocks = []
        for mu in between_gains(self.x):
            A, B = mu * a / ts, mu * a / tt
            if beta is None:
                blocks.append((np.array([[B - A - eta]]), K - 1))
            else:
                blocks.append((np.array([[-A - eta, B], [beta, -beta]]), K - 1))
        A, B = g * a / ts, g * a / tt
        if beta is None:
            blocks.append((np.array([[B - A - eta, -B], [ec, -ec]]), K - 1))
            blocks.append((np.array([[-eta]]), N))
        else:
            blocks.append((np.array([[-A - eta, B, -B], [beta, -beta, 0.0], [0.0, ec, -ec]]),
                           K - 1))
            blocks.append((np.array([[-eta, 0.0], [beta, -beta]]), N))
        blocks.append((np.array([[-ec]]), 1))  # the centre's shift along 1_K
        null = K * (self.x.shape[-1] - N)  # W on directions no data point spans: decay only
        if null > 0:
            blocks.append((np.array([[-eta]]) if beta is None
                           else np.array([[-eta, 0.0], [beta, -beta]]), null))
        return blocks

    def uniform_spectrum(self, K: int, eta: float = 0.0, beta: float | None = None):
        """All eigenvalues of the Jacobian at the uniform state, from :meth:`uniform_blocks`."""
        return np.concatenate([np.repeat(np.linalg.eigvals(m), k)
                               for m, k in self.uniform_blocks(K, eta, beta)])
