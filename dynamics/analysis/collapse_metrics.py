"""Collapse measures of an encoder: singular values, effective rank, collapsed modes, norm.

All functions take the encoder parameter (``theta`` scalar, per-mode vector, or matrix ``W``)
with optional leading batch axes and are jit/vmap friendly. Scalars are treated as ``1 x 1``
matrices and a per-mode vector ``theta`` as ``diag(theta)``: pass ``kind`` to say which when it
is ambiguous, or use :func:`encoder_singular_values` with the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dynamics.compat import duck_hook
from dynamics.models.base import Model

KINDS = ("matrix", "modes", "scalar")


def singular_values(enc, kind: str = "matrix"):
    """Singular values, descending, shape ``(..., r)``.

    ``kind``: ``"matrix"`` (trailing two axes are ``W``), ``"modes"`` (trailing axis holds the
    mode amplitudes ``theta_j``), ``"scalar"`` (every element is one encoder).
    """
    enc = jnp.asarray(enc)
    if kind == "matrix":
        if enc.ndim < 2:
            raise ValueError(f"kind='matrix' needs at least 2 axes, got shape {enc.shape}")
        return jnp.linalg.svd(enc, compute_uv=False)
    if kind == "modes":
        if enc.ndim < 1:
            raise ValueError(f"kind='modes' needs at least 1 axis, got shape {enc.shape}")
        return -jnp.sort(-jnp.abs(enc), axis=-1)
    if kind == "scalar":
        return jnp.abs(enc)[..., None]
    raise ValueError(f"unknown kind {kind!r}: expected one of {', '.join(KINDS)}")


def encoder_singular_values(model, enc):
    """Singular values of a model's encoder (:meth:`dynamics.models.Model.singular_values`;
    the interface's default treats every element as one scalar encoder)."""
    if isinstance(model, Model):
        return model.singular_values(enc)
    hook = duck_hook(model, "singular_values")
    return singular_values(enc, "scalar") if hook is None else hook(enc)


def collapse_scores(model, enc):
    """Per-mode collapse scores of a model's encoder
    (:meth:`dynamics.models.Model.collapse_measure`; the default is the singular values): a mode is collapsed when its score is below the
    threshold."""
    if isinstance(model, Model):
        return model.collapse_measure(enc)
    return encoder_singular_values(model, enc)


def effective_rank(sv, eps: float = 1e-12):
    """Entropy effective rank ``exp(H(p))``, ``p_j = s_j / sum s`` (Roy & Vetterli 2007).

    Between 1 (one mode carries everything) and ``r`` (all equal); 0 for an all-zero encoder.
    """
    sv = jnp.asarray(sv)
    tot = jnp.sum(sv, axis=-1, keepdims=True)
    p = sv / jnp.where(tot > eps, tot, 1.0)
    h = -jnp.sum(jnp.where(p > eps, p * jnp.log(jnp.where(p > eps, p, 1.0)), 0.0), axis=-1)
    return jnp.where(tot[..., 0] > eps, jnp.exp(h), 0.0)


def participation_ratio(sv):
    """``(sum s^2)^2 / sum s^4``: the number of modes the variance is spread over."""
    s2 = jnp.asarray(sv) ** 2
    num = jnp.sum(s2, axis=-1) ** 2
    den = jnp.sum(s2**2, axis=-1)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def n_collapsed(sv, tol: float = 1e-3, relative_to=None):
    """Number of singular values below ``tol`` (times ``relative_to`` when given, e.g. the
    initial largest singular value)."""
    sv = jnp.asarray(sv)
    thr = tol if relative_to is None else tol * jnp.asarray(relative_to)[..., None]
    return jnp.sum(sv < thr, axis=-1)


def collapsed_fraction(sv, tol: float = 1e-3, relative_to=None):
    """Fraction of modes collapsed (see :func:`n_collapsed`)."""
    sv = jnp.asarray(sv)
    return n_collapsed(sv, tol, relative_to) / sv.shape[-1]


def frobenius_norm(sv):
    """``||W||_F`` from the singular values."""
    return jnp.sqrt(jnp.sum(jnp.asarray(sv) ** 2, axis=-1))


@jax.jit
def collapse_summary(sv, tol: float = 1e-3, relative_to=None, scores=None) -> dict:
    """All measures at once, as a dict of arrays with the batch shape of ``sv``.

    ``effective_rank`` counts only the modes that are not collapsed (0 when all are; the
    entropy rank alone is scale-invariant and would call a uniformly shrunk ``W`` full rank);
    ``effective_rank_raw`` is the entropy rank of all singular values. ``scores``: the
    model's per-mode collapse scores (:func:`collapse_scores`), which decide which modes are
    collapsed; default the singular values themselves.
    """
    sv = jnp.asarray(sv)
    scores = sv if scores is None else jnp.asarray(scores)
    thr = tol if relative_to is None else tol * jnp.asarray(relative_to)[..., None]
    live = jnp.where(scores < thr, 0.0, sv)
    return dict(
        norm=frobenius_norm(sv),
        sigma_max=jnp.max(sv, axis=-1),
        sigma_min=jnp.min(sv, axis=-1),
        effective_rank=effective_rank(live),
        effective_rank_raw=effective_rank(sv),
        participation_ratio=participation_ratio(sv),
        n_collapsed=n_collapsed(scores, tol, relative_to),
        collapsed_fraction=collapsed_fraction(scores, tol, relative_to),
    )


# --- collapse of an embedding matrix (the real pipeline's outputs ``z``, ``[B, d]``) ---------


def _unit_rows(z):
    z = jnp.asarray(z, jnp.float32)
    return z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-12)


def normalized_std(z):
    """Mean over channels of the per-channel std of ``z / ||z||``; ``z`` ``[B, d]`` -> scalar.

    About ``1 / sqrt(d)`` for features spread over the unit sphere, 0 at collapse (SimSiam Fig. 2).
    """
    return jnp.mean(jnp.std(_unit_rows(z), axis=0))


def top_direction_share(z):
    """Share of ``E[u u^T]`` (``u = z/||z||``, ``z`` ``[B, d]``) in its largest eigenvalue -> scalar.

    Between ``1/min(B, d)`` (directions spread evenly) and 1 (every ``u`` is ``+v`` or ``-v``: the
    collapse a final BatchNorm still permits, since BN keeps every channel's batch variance at 1
    and so keeps the per-channel std of ``u`` away from 0 even when ``z`` has collapsed to a line).
    """
    u = _unit_rows(z)
    ev = jnp.linalg.eigvalsh(u @ u.T / u.shape[0])
    return ev[-1] / jnp.maximum(jnp.sum(ev), 1e-12)


def embedding_effective_rank(z):
    """Entropy effective rank (:func:`effective_rank`) of the centred embedding ``z`` ``[B, d]``.

    1 when the embeddings lie on a line, ``k`` when they are spread evenly over ``k`` directions.
    """
    z = jnp.asarray(z, jnp.float32)
    return effective_rank(jnp.linalg.svd(z - z.mean(0), compute_uv=False))


def embedding_collapse(z) -> dict[str, float]:
    """The three collapse measures of an embedding ``z`` ``[B, d]`` as floats: ``effective_rank``,
    ``std`` (:func:`normalized_std`), ``std_ratio`` (``std * sqrt(d)``: 1 for an isotropic
    embedding, 0 at collapse) and ``top_share`` (:func:`top_direction_share`)."""
    z = jnp.asarray(z, jnp.float32)
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise ValueError(f"an embedding must be [B, d] with B >= 2 and d >= 1, got shape {tuple(z.shape)}")
    std = float(normalized_std(z))
    return {"effective_rank": float(embedding_effective_rank(z)), "std": std,
            "std_ratio": std * float(z.shape[1]) ** 0.5, "top_share": float(top_direction_share(z))}
