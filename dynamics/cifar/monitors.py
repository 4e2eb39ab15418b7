"""Monitors: collapse statistics, kNN accuracy, predictor/F eigenspace alignment, linear probe.

All functions are pure; arrays are float32.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics.analysis.collapse_metrics import normalized_std, top_direction_share  # noqa: F401  (re-exported)

F32 = jnp.float32


def neg_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
    """Mean negative cosine similarity of rows of ``p`` and ``z`` (``[B, d]`` each); min -1."""
    p = p.astype(F32)
    z = z.astype(F32)
    pn = p / jnp.maximum(jnp.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    zn = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)
    return -jnp.mean(jnp.sum(pn * zn, axis=-1))


@partial(jax.jit, static_argnames=("k", "num_classes", "chunk"))
def knn_predict(bank: jax.Array, bank_labels: jax.Array, query: jax.Array, k: int = 200,
                temperature: float = 0.1, num_classes: int = 10, chunk: int = 500) -> jax.Array:
    """Weighted kNN classifier (InstDisc/SimSiam monitor convention).

    Args:
        bank: ``[N, f]`` features of the training images (normalised here).
        bank_labels: ``[N]`` int labels.
        query: ``[M, f]`` features to classify; ``M`` a multiple of ``chunk`` (pad beforehand).

    Returns:
        ``[M]`` int32 predicted labels: class with the largest sum of ``exp(cos / temperature)``
        over the ``k`` nearest (cosine) bank features.
    """
    norm = lambda x: x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # noqa: E731
    bank = norm(bank.astype(F32))
    query = norm(query.astype(F32)).reshape(-1, chunk, bank.shape[1])
    k = min(k, bank.shape[0])
    onehot = jax.nn.one_hot(bank_labels, num_classes, dtype=F32)

    def one(q):
        sim = q @ bank.T
        top, idx = jax.lax.top_k(sim, k)
        w = jnp.exp(top / temperature)
        votes = jnp.einsum("mk,mkc->mc", w, onehot[idx])
        return jnp.argmax(votes, axis=-1).astype(jnp.int32)

    return jax.lax.map(one, query).reshape(-1)


def knn_accuracy(bank, bank_labels, query, query_labels, k: int = 200, temperature: float = 0.1,
                 chunk: int = 500) -> float:
    """Fraction of ``query`` rows whose kNN prediction equals ``query_labels``."""
    m = query.shape[0]
    chunk = min(chunk, m)
    pad = (-m) % chunk
    q = jnp.pad(jnp.asarray(query, F32), ((0, pad), (0, 0)))
    pred = knn_predict(jnp.asarray(bank, F32), jnp.asarray(bank_labels), q, k=k, temperature=temperature,
                       chunk=chunk)
    return float(np.mean(np.asarray(pred[:m]) == np.asarray(query_labels)))


def eigen_alignment(wp: jax.Array, f: jax.Array) -> dict[str, float]:
    """How well the predictor ``Wp`` (``[d, d]``) shares eigenvectors with ``F = E[z z^T]`` (``[d, d]``).

    Both numbers are taken on ``A = sym(Wp) - (tr Wp / d) I``, the part of ``Wp`` that carries
    its eigenvectors: a multiple of the identity commutes with everything, so a predictor near
    its identity initialisation would otherwise read as aligned from the first step.

    Returns ``diag_fraction``: share of ``||A||_F^2`` on the diagonal in ``F``'s eigenbasis
    (1 when ``Wp`` and ``F`` commute; about ``2 / (d + 1)`` for unrelated random matrices), and
    ``commutator``: ``||[F, A]||_F / (||F||_F ||A||_F)`` (0 when they commute).
    """
    wp = jnp.asarray(wp, F32)
    f = jnp.asarray(f, F32)
    d = wp.shape[0]
    a = 0.5 * (wp + wp.T) - (jnp.trace(wp) / d) * jnp.eye(d, dtype=F32)
    _, u = jnp.linalg.eigh(0.5 * (f + f.T))
    m = u.T @ a @ u
    diag = float(jnp.sum(jnp.diag(m) ** 2) / jnp.maximum(jnp.sum(m**2), 1e-30))
    comm = float(jnp.linalg.norm(f @ a - a @ f) / jnp.maximum(jnp.linalg.norm(f) * jnp.linalg.norm(a), 1e-30))
    return {"diag_fraction": diag, "commutator": comm}


def directpred_matrix(f: jax.Array, eps: float) -> jax.Array:
    """DirectPred predictor from ``F`` (``[d, d]``): ``U diag(sqrt(s / s_max) + eps) U^T``."""
    s, u = jnp.linalg.eigh(0.5 * (f + f.T).astype(F32))
    s = jnp.maximum(s, 0.0)
    p = jnp.sqrt(s / jnp.maximum(jnp.max(s), 1e-12)) + eps
    return ((u * p) @ u.T).astype(F32)


def linear_probe(train_f, train_y, test_f, test_y, steps: int = 500, lr: float = 0.01, wd: float = 1e-4,
                 seed: int = 0, num_classes: int = 10) -> float:
    """Test accuracy of a softmax classifier trained full-batch (Adam) on frozen features.

    Features ``[N, f]`` are standardised with the training mean and std.
    """
    xtr = jnp.asarray(train_f, F32)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    xtr = (xtr - mu) / sd
    xte = (jnp.asarray(test_f, F32) - mu) / sd
    ytr = jnp.asarray(train_y)
    d = xtr.shape[1]
    params = {"w": jnp.zeros((d, num_classes), F32), "b": jnp.zeros((num_classes,), F32)}
    tx = optax.adamw(lr, weight_decay=wd)

    def loss(p):
        logits = xtr @ p["w"] + p["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, ytr).mean()

    @jax.jit
    def run(p):
        def body(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(body, (p, tx.init(p)), None, length=steps)
        return p

    params = run(params)
    pred = np.asarray(jnp.argmax(xte @ params["w"] + params["b"], axis=-1))
    return float(np.mean(pred == np.asarray(test_y)))
