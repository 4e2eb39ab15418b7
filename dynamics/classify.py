"""The collapse criterion: which kind of fixed point did a run end at?

Rule (applied per lane to the final state ``y_T`` of a run):

1. *converged*: the run finished (status ``ok``) and the gradient residual is small there:
   ``max |g(y_T)| <= ftol`` where ``g`` is the vector field with ``eps = 1`` (the loss gradient
   plus decay of every group; dividing the predictor's by a tiny ``eps`` would turn round-off
   into a residual). This rule is for flows and GD; SGD lanes use :func:`classify_window`.
2. *decided*: converged, and the point is not a saddle — either the representation has
   collapsed (rule 3) or every eigenvalue of the autodiff Jacobian at ``y_T`` has real part
   ``<= jtol``. A lane parked on the stable manifold of a saddle (the basin boundary) stays
   undecided instead of being given a label by accident.
3. *collapsed*: decided and every per-mode score of the model's collapse measure
   (:meth:`dynamics.models.Model.collapse_measure`; by default the encoder's singular values,
   ``|theta|`` for the scalar model), measured against the scale of the non-trivial fixed
   point, is small: ``score <= collapse_tol * encoder_scale(hyper)``.

**Scale-free.** A surviving encoder sits at ``theta*^2 = (eta_phi / eta_theta) p^2``
(docs/theory.md sections 2 and 4; per mode for the matrix models): ``sqrt(eps) p_+`` in Tian's
convention, ``p_+`` with the decay in the loss. A fixed threshold on ``|theta|`` therefore calls
Tian-convention survivors collapsed once ``sqrt(eps) p_+ < collapse_tol`` (eps below about
5e-6 at the default sweep's eta). :func:`encoder_scale` is ``sqrt(eta_phi / eta_theta)``
(1 when either decay is 0: without decay the survivors' size is set by the start, not by a
fixed point), so the rule is the same in the coordinate ``theta / sqrt(eps)`` in which
Tian's convention does not depend on ``eps`` (the scaling symmetry of section 2).

``outcome`` combines them (``OUTCOME_NAMES``): 0 non-collapsed, 1 collapsed, 2 undecided
(including runs that hit ``max_steps``), 3 failed (a non-finite number appeared).

SGD iterates never come to rest: they fluctuate about a fixed point (and are biased away from
it by O(lr)), so no gradient tolerance can be met there. :func:`classify_window` judges an SGD
lane by the statistics of its last snapshots instead (the *trailing window*, states
``y_1 .. y_W`` at equally spaced steps; ``n_k`` the largest collapse score of each, ``|theta|``
for the scalar model):

1. *collapsed*: the window mean of ``n_k`` is ``<= collapse_tol * encoder_scale(hyper)``. The
   collapsed state is absorbing (every encoder gradient is proportional to the encoder), so a
   collapsed lane's norm decays geometrically and stays below the threshold.
2. *non-collapsed* (decided): the lane is stationary, its fluctuations stay clear of the
   threshold, and it fluctuates about a stable point rather than a saddle:
   - stationary: a least-squares line through ``n_k`` changes by at most
     ``drift_rtol`` (relative to the window mean) across the window;
   - noise-aware margin: ``mean(n) - z * std(n) > collapse_tol * encoder_scale(hyper)``;
   - no saddle: every eigenvalue of the expected-loss Jacobian at the window-averaged state
     has real part ``<= jtol`` (lanes that linger near the saddle on the basin boundary stay
     undecided).
3. anything else is undecided; a non-finite number anywhere makes the lane failed.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.flow import jacobian_matrix, vector_field
from dynamics.models.base import Model
from dynamics.solve import STATUS_NONFINITE, STATUS_OK, broadcast_lanes, n_lanes
from dynamics.types import Outcome

OUTCOME_NAMES = Outcome.labels()


@dataclasses.dataclass(frozen=True)
class Criterion:
    """Tolerances of the collapse rule (see module docstring)."""

    ftol: float = 1e-6
    collapse_tol: float = 1e-3
    jtol: float = 1e-9


def encoder_scale(hyper):
    """The scale of the encoder's non-trivial fixed point, ``sqrt(eta_phi / eta_theta)``
    (``sqrt(eps)`` in Tian's convention, 1 with the decay in the loss), and 1 where either
    decay is 0. Collapse is judged on ``encoder_norm / encoder_scale`` (module docstring)."""
    eta_t = jnp.asarray(hyper.eta_theta)
    eta_p = jnp.asarray(hyper.eta_phi)
    both = (eta_t > 0) & (eta_p > 0)
    return jnp.where(both, jnp.sqrt(jnp.where(both, eta_p, 1.0) / jnp.where(both, eta_t, 1.0)),
                     1.0)


def _residual_and_spectrum(model, variant, hyper, y):
    """Rule 1's residual ``max |g(y)|`` (the field at ``eps = 1``) and the largest real part of
    the Jacobian's eigenvalues at ``y``."""
    unit = dataclasses.replace(hyper, eps=jnp.ones_like(jnp.asarray(hyper.eps)))
    f = ravel_pytree(vector_field(model, variant, unit, y))[0]
    lam_max = jnp.max(jnp.linalg.eigvals(jacobian_matrix(model, variant, hyper, y)).real)
    return jnp.max(jnp.abs(f)), lam_max


def collapse_score(model, enc):
    """The largest per-mode collapse score of ``enc``
    (:meth:`~dynamics.models.Model.collapse_measure`); a model that does not subclass the interface is judged by its ``encoder_norm``."""
    if isinstance(model, Model):
        return jnp.max(model.collapse_measure(enc))
    return jnp.max(jnp.atleast_1d(model.encoder_norm(enc)))


def _outcome(failed, decided, collapsed):
    """The ``Outcome`` code of a lane from its flags (failed wins, then undecided)."""
    return jnp.where(
        failed, int(Outcome.FAILED), jnp.where(
            ~decided, int(Outcome.UNDECIDED),
            jnp.where(collapsed, int(Outcome.COLLAPSED), int(Outcome.NON_COLLAPSED))),
    ).astype(jnp.int8)


def _over_lanes(rule, model, variant, hyper, y, status, criterion):
    """``rule`` vmapped over a leading lane axis of ``y``/``status`` (scalar model/hyper leaves
    shared by every lane)."""
    n = n_lanes(y)
    model, hyper = broadcast_lanes(model, n), broadcast_lanes(hyper, n)
    return jax.vmap(lambda m, h, yy, s: rule(m, variant, h, yy, s, criterion))(
        model, hyper, y, status
    )


def classify(model, variant, hyper, y, status, criterion: Criterion = Criterion()):
    """Classify one final state. Returns a dict of scalars (vmap for lanes).

    Keys: ``converged``, ``decided``, ``collapsed`` (bools), ``outcome`` (int8, index into
    ``OUTCOME_NAMES``), ``fnorm`` (max |g|, the residual of rule 1), ``lam_max`` (largest real part of the Jacobian's
    eigenvalues), ``enc_norm`` (``model.encoder_norm``, reported beside the collapse measure).
    """
    finite = jnp.all(jnp.isfinite(ravel_pytree(y)[0]))
    y_safe = jax.tree_util.tree_map(lambda x: jnp.where(finite, x, jnp.zeros_like(x)), y)
    fnorm, lam_max = _residual_and_spectrum(model, variant, hyper, y_safe)
    enc_norm = jnp.max(jnp.atleast_1d(model.encoder_norm(y_safe.enc)))
    ok = (status == STATUS_OK) & finite
    converged = ok & (fnorm <= criterion.ftol)
    small = collapse_score(model, y_safe.enc) <= criterion.collapse_tol * encoder_scale(hyper)
    decided = converged & (small | (lam_max <= criterion.jtol))
    collapsed = decided & small
    failed = (status == STATUS_NONFINITE) | ~finite
    outcome = _outcome(failed, decided, collapsed)
    return dict(
        converged=converged,
        decided=decided,
        collapsed=collapsed,
        outcome=outcome,
        fnorm=jnp.where(finite, fnorm, jnp.inf),
        lam_max=jnp.where(finite, lam_max, jnp.nan),
        enc_norm=jnp.where(finite, enc_norm, jnp.inf),
    )


@functools.partial(jax.jit, static_argnames=("variant", "criterion"))
def classify_batch(model, variant, hyper, y, status, criterion: Criterion = Criterion()):
    """:func:`classify` vmapped over a leading lane axis (scalar model/hyper leaves shared)."""
    return _over_lanes(classify, model, variant, hyper, y, status, criterion)


@dataclasses.dataclass(frozen=True)
class WindowCriterion:
    """Tolerances of the trailing-window rule for SGD (see module docstring)."""

    collapse_tol: float = 1e-3
    drift_rtol: float = 0.1
    z: float = 3.0
    jtol: float = 1e-9


def classify_window(model, variant, hyper, ys, status, criterion: WindowCriterion = WindowCriterion()):
    """Classify one noisy lane from its trailing window ``ys`` (a ``State`` whose leaves have a
    leading axis of ``W >= 2`` snapshots at equally spaced steps). Returns the keys of
    :func:`classify` plus ``enc_mean``, ``enc_std`` (of the encoder norm over the window) and
    ``drift`` (relative change of its fitted line across the window); ``fnorm`` and
    ``lam_max`` are taken at the window-averaged state."""
    flat = jax.vmap(lambda y: ravel_pytree(y)[0])(ys)
    finite = jnp.all(jnp.isfinite(flat))
    ys = jax.tree_util.tree_map(lambda x: jnp.where(finite, x, jnp.zeros_like(x)), ys)
    norms = jax.vmap(lambda e: collapse_score(model, e))(ys.enc)
    w = norms.shape[0]
    k = jnp.arange(w) - (w - 1) / 2.0
    mean = jnp.mean(norms)
    std = jnp.std(norms)
    slope = jnp.sum(k * norms) / jnp.sum(k * k)
    drift = jnp.abs(slope) * (w - 1) / jnp.where(mean > 0, mean, 1.0)
    y_avg = jax.tree_util.tree_map(lambda x: jnp.mean(x, axis=0), ys)
    fnorm, lam_max = _residual_and_spectrum(model, variant, hyper, y_avg)
    ok = (status == STATUS_OK) & finite
    tol = criterion.collapse_tol * encoder_scale(hyper)
    collapsed = ok & (mean <= tol)
    stationary = drift <= criterion.drift_rtol
    clear = mean - criterion.z * std > tol
    alive = ok & ~collapsed & stationary & clear & (lam_max <= criterion.jtol)
    decided = collapsed | alive
    failed = (status == STATUS_NONFINITE) | ~finite
    outcome = _outcome(failed, decided, collapsed)
    return dict(
        converged=ok & (collapsed | stationary),
        decided=decided,
        collapsed=collapsed,
        outcome=outcome,
        fnorm=jnp.where(finite, fnorm, jnp.inf),
        lam_max=jnp.where(finite, lam_max, jnp.nan),
        enc_norm=jnp.where(finite, norms[-1], jnp.inf),
        enc_mean=jnp.where(finite, mean, jnp.inf),
        enc_std=jnp.where(finite, std, jnp.nan),
        drift=jnp.where(finite, drift, jnp.nan),
    )


@functools.partial(jax.jit, static_argnames=("variant", "criterion"))
def classify_window_batch(model, variant, hyper, ys, status,
                          criterion: WindowCriterion = WindowCriterion()):
    """:func:`classify_window` vmapped over a leading lane axis (``ys`` leaves: (lanes, W, ...))."""
    return _over_lanes(classify_window, model, variant, hyper, ys, status, criterion)
