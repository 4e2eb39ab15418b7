"""Fixed points of any model's flow: multi-start Newton, de-duplication, spectra, classification.

Newton's method runs on the flattened vector field with the autodiff Jacobian. Each step is a
least-squares solve (so singular Jacobians, e.g. on the continuous families of fixed points of
the matrix models, do not break it) followed by a backtracking choice of step length. All
starts run in one vmapped, jitted program.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.analysis.system import as_system, flat_field, flatten, jacobian, unstack_states
from dynamics.compat import moved

_ALPHAS = (1.0, 0.5, 0.25, 0.1, 0.03, 0.01)


class FixedPoint(NamedTuple):
    """One fixed point.

    Attributes:
        state: the fixed point as a model state.
        residual: max-norm of the vector field there.
        eigenvalues: eigenvalues of the Jacobian, sorted by decreasing real part (complex array).
        kind: see :func:`fixed_point_kind`.
        count: how many starts converged to it.
    """

    state: Any
    residual: float
    eigenvalues: np.ndarray
    kind: str
    count: int


def fixed_point_kind(eigenvalues, tol: float = 1e-8) -> str:
    """Type of a fixed point from its Jacobian eigenvalues (not the collapse label of a run:
    that is :mod:`dynamics.classify`).

    ``"non-hyperbolic"`` if some eigenvalue has ``|Re| <= tol * max(1, max|lambda|)``;
    otherwise ``"stable node"`` / ``"stable focus"`` (all ``Re < 0``, focus when some eigenvalue
    is complex), ``"unstable node"`` / ``"unstable focus"`` (all ``Re > 0``), ``"saddle"`` /
    ``"saddle-focus"`` (mixed signs).
    """
    ev = np.asarray(eigenvalues, dtype=complex).ravel()
    if ev.size == 0:
        raise ValueError("fixed_point_kind needs at least one eigenvalue, got an empty array")
    scale = max(1.0, float(np.abs(ev).max()))
    re = ev.real
    if np.any(np.abs(re) <= tol * scale):
        return "non-hyperbolic"
    focus = bool(np.any(np.abs(ev.imag) > tol * scale))
    if np.all(re < 0):
        return "stable focus" if focus else "stable node"
    if np.all(re > 0):
        return "unstable focus" if focus else "unstable node"
    return "saddle-focus" if focus else "saddle"


def stability(eigenvalues, tol: float = 1e-9) -> str:
    """Stability of a fixed point off its neutral directions: ``"stable"``, ``"saddle"``,
    ``"unstable"`` or ``"marginal"``.

    Neutral directions (``|Re lambda| <= tol``: along a line of fixed points, or a frozen
    parameter such as an untrained predictor) are ignored; ``"marginal"`` means all are neutral.
    Where :func:`fixed_point_kind` calls such a point non-hyperbolic, this says how it attracts
    or repels in the other directions (what a phase portrait marks).
    """
    re = np.real(np.asarray(eigenvalues))
    re = re[np.abs(re) > tol]
    if re.size == 0:
        return "marginal"
    if np.all(re < -tol):
        return "stable"
    if np.any(re < -tol):
        return "saddle"
    return "unstable"


def eigenvalues(system, state, variant=None, hyper=None):
    """Eigenvalues of the autodiff Jacobian at ``state``, sorted by decreasing real part."""
    system = as_system(system, variant, hyper)
    J = np.asarray(jacobian(system, state))
    ev = np.linalg.eigvals(J)
    return ev[np.lexsort((-ev.imag, -ev.real))]


def newton_step(f, z):
    """One damped Newton step on ``f(z) = 0`` (least-squares direction, best of a few lengths)."""
    r = f(z)
    J = jax.jacfwd(f)(z)
    dz = jnp.linalg.lstsq(J, -r)[0]
    dz = jnp.where(jnp.all(jnp.isfinite(dz)), dz, jnp.zeros_like(dz))
    # Cap the step so a nearly singular Jacobian cannot throw the iterate to infinity.
    cap = 10.0 * (1.0 + jnp.linalg.norm(z))
    dz = dz * jnp.minimum(1.0, cap / (jnp.linalg.norm(dz) + 1e-300))
    cands = jnp.stack([z + a * dz for a in _ALPHAS])
    norms = jax.vmap(lambda c: jnp.linalg.norm(f(c)))(cands)
    norms = jnp.where(jnp.isfinite(norms), norms, jnp.inf)
    return cands[jnp.argmin(norms)]


@functools.partial(jax.jit, static_argnames=("n_iter",))
def _newton_batch(system, starts, n_iter):
    like = jax.tree_util.tree_map(lambda x: x[0], starts)
    f, _ = flat_field(system, like)
    Z0 = jax.vmap(flatten)(starts)

    def solve(z):
        z = jax.lax.fori_loop(0, n_iter, lambda _, z: newton_step(f, z), z)
        return z, jnp.max(jnp.abs(f(z)))

    return jax.vmap(solve)(Z0)


@jax.jit
def _jacobians(system, states):
    return jax.vmap(lambda s: jacobian(system, s))(states)


def newton(system, starts, variant=None, hyper=None, *, n_iter: int = 40):
    """Run Newton from every start; returns ``(states, residuals)`` (leading start axis)."""
    system = as_system(system, variant, hyper)
    like = jax.tree_util.tree_map(lambda x: x[0], starts)
    Z, res = _newton_batch(system, starts, n_iter)
    _, unravel = flat_field(system, like)
    return jax.vmap(unravel)(Z), res


def find_fixed_points(
    system,
    starts,
    variant=None,
    hyper=None,
    *,
    n_iter: int = 40,
    tol: float = 1e-10,
    dedup_tol: float = 1e-6,
    classify_tol: float = 1e-8,
) -> list[FixedPoint]:
    """Fixed points reached by Newton from ``starts``, de-duplicated and classified.

    Args:
        system: a :class:`~dynamics.analysis.FlowSystem` (or any :class:`~dynamics.flow.System`), or a
            model together with ``variant`` and ``hyper``.
        starts: a state whose leaves carry a leading axis of starting points
            (see :func:`random_starts`).
        tol: a start counts as converged when the field's max-norm there is below ``tol``.
        dedup_tol: two fixed points are the same when their flat states differ by less than
            ``dedup_tol * (1 + |z|)`` in max-norm.

    Returns:
        Fixed points sorted by the norm of the flat state (the origin first).
    """
    system = as_system(system, variant, hyper)
    if n_iter < 1:
        raise ValueError(f"n_iter must be >= 1, got {n_iter}")
    states, res = newton(system, starts, n_iter=n_iter)
    Z = np.asarray(jax.vmap(flatten)(states))
    res = np.asarray(res)
    ok = np.isfinite(res) & (res < tol)
    reps: list[int] = []
    counts: list[int] = []
    for i in np.flatnonzero(ok):
        for k, j in enumerate(reps):
            if np.max(np.abs(Z[i] - Z[j])) < dedup_tol * (1 + np.max(np.abs(Z[j]))):
                counts[k] += 1
                if res[i] < res[j]:
                    reps[k] = i
                break
        else:
            reps.append(i)
            counts.append(1)
    if not reps:
        return []
    idx = np.array(reps)
    picked = jax.tree_util.tree_map(lambda x: x[idx], states)
    Js = np.asarray(_jacobians(system, picked))
    out = []
    for k, (i, s) in enumerate(zip(idx, unstack_states(picked))):
        ev = np.linalg.eigvals(Js[k])
        ev = ev[np.lexsort((-ev.imag, -ev.real))]
        out.append(FixedPoint(s, float(res[i]), ev, fixed_point_kind(ev, classify_tol), counts[k]))
    order = np.argsort([np.linalg.norm(Z[i]) for i in idx], kind="stable")
    return [out[i] for i in order]


def random_starts(key, like, n: int, scale: float = 1.0, center=None):
    """``n`` Gaussian starting points shaped like the state ``like`` (std ``scale``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    leaves, treedef = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(key, len(leaves))
    c_leaves = leaves if center is None else jax.tree_util.tree_leaves(center)
    new = [
        (0.0 if center is None else jnp.asarray(c))
        + scale * jax.random.normal(k, (n,) + jnp.shape(x), jnp.result_type(float))
        for k, x, c in zip(keys, leaves, c_leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, new)


__getattr__ = moved(__name__, {"classify": (f"{__name__}.fixed_point_kind", fixed_point_kind)})
