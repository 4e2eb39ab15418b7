"""Slow-fast reduction (docs/theory.md section 4): predictor fast, encoder and target slow.

With ``eps -> 0`` the predictor relaxes onto the critical manifold

    0 = -dL/dpred - eta_phi pred        (the predictor's vector field, times eps)

and the encoder (and BYOL target) move on it. :class:`ReducedSystem` is that slow system:
``pred*(enc, tgt)`` is solved from the model's own predictor field by Newton's method with the
autodiff Jacobian (one step is exact for losses quadratic in the predictor), and the slow field
is the full field evaluated at ``(enc, pred*, tgt)``. Nothing about a particular model is
written here.

Tikhonov's conditions need the predictor's relaxation rate (the smallest ``-Re`` eigenvalue of
``d(pred field)/d pred``; for the scalar model ``(a theta^2 + eta_phi)/eps``) to be much larger
than the slow rates. Near collapse with ``eta_phi -> 0`` it vanishes: :func:`reduction_map`
shows where the reduction breaks.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dynamics.analysis.system import as_system, flatten
from dynamics.flow import FlowSystem, System, vector_field
from dynamics.types import Hyper, State, Variant


def _pred_field(model, variant, hyper, enc, tgt):
    def g(p):
        return vector_field(model, variant, hyper, State(enc, p, tgt)).pred

    return g


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ReducedSystem(System):
    """The slow system on the critical manifold of a model's flow.

    States are ``State(enc, None, tgt)`` (``tgt`` is ``None`` for SimSiam).

    Attributes:
        model, hyper, variant: as for :class:`~dynamics.analysis.FlowSystem`.
        pred_like: an array (pytree) shaped like the predictor; Newton's starting guess.
        n_newton: Newton iterations for ``pred*`` (static).
    """

    model: object
    hyper: Hyper
    pred_like: object
    variant: Variant = dataclasses.field(default=Variant(), metadata=dict(static=True))
    n_newton: int = dataclasses.field(default=4, metadata=dict(static=True))

    @classmethod
    def of(cls, system: FlowSystem, pred_like, n_newton: int = 4) -> "ReducedSystem":
        if not system.model.trains_predictor:
            raise ValueError(
                f"the slow-fast reduction needs a trained predictor, got predictor="
                f"{getattr(system.model, 'predictor', None)!r}"
            )
        return cls(system.model, system.hyper, pred_like, system.variant, n_newton)

    def replace(self, **kw) -> "ReducedSystem":
        return dataclasses.replace(self, **kw)

    def full(self) -> FlowSystem:
        return FlowSystem(self.model, self.hyper, self.variant)

    def critical_pred(self, enc, tgt=None):
        """``pred*(enc, tgt)``: the zero of the predictor's vector field."""
        tgt_ = tgt if self.variant.has_target else None
        g = _pred_field(self.model, self.variant, self.hyper, enc, tgt_)
        p0, unravel = ravel_pytree(self.pred_like)

        def gz(z):
            return ravel_pytree(g(unravel(z)))[0]

        def it(_, z):
            return z - jnp.linalg.solve(jax.jacfwd(gz)(z), gz(z))

        return unravel(jax.lax.fori_loop(0, self.n_newton, it, p0))

    def lift(self, slow: State) -> State:
        """The full state on the critical manifold above a slow state."""
        return State(slow.enc, self.critical_pred(slow.enc, slow.tgt), slow.tgt)

    def field(self, slow: State) -> State:
        f = vector_field(self.model, self.variant, self.hyper, self.lift(slow))
        return State(f.enc, None, f.tgt)


def slow_part(state: State) -> State:
    return State(state.enc, None, state.tgt)


# --- rates and the map of where the reduction holds --------------------------------------------


def relaxation_rate(system, state: State):
    """The predictor's relaxation rate at ``state``: ``min(-Re eig(d pred'/d pred))``."""
    return _relaxation_rate(as_system(system), state)


@jax.jit
def _relaxation_rate(system, state: State):
    g = _pred_field(system.model, system.variant, system.hyper, state.enc, state.tgt)
    p0, unravel = ravel_pytree(state.pred)
    J = jax.jacfwd(lambda z: ravel_pytree(g(unravel(z)))[0])(p0)
    return jnp.min(-jnp.real(jnp.linalg.eigvals(J)))


def slow_rate(reduced: ReducedSystem, slow: State):
    """The largest slow rate at a slow state: spectral radius of the reduced Jacobian."""
    z0, unravel = ravel_pytree(slow)
    J = jax.jacfwd(lambda z: ravel_pytree(reduced.field(unravel(z)))[0])(z0)
    return jnp.max(jnp.abs(jnp.linalg.eigvals(J)))


@jax.jit
def _map(reduced, slows):
    def one(s):
        full = reduced.lift(s)
        fast = _relaxation_rate(reduced.full(), full)
        slow = slow_rate(reduced, s)
        return fast, slow, full.pred

    return jax.vmap(one)(slows)


def reduction_map(reduced: ReducedSystem, slows: State):
    """Where the reduction holds, over a batch of slow states (leading axis).

    Returns a dict of arrays: ``fast_rate`` (predictor relaxation rate on the manifold),
    ``slow_rate`` (spectral radius of the reduced Jacobian), ``ratio = fast/slow`` (the time-scale
    separation; the reduction is trustworthy where it is large) and ``pred`` (the manifold).
    """
    fast, slow, pred = _map(reduced, slows)
    return dict(fast_rate=np.asarray(fast), slow_rate=np.asarray(slow),
                ratio=np.asarray(fast) / np.asarray(slow), pred=pred)


# --- full vs reduced -----------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("solver", "rtol", "atol", "max_steps"))
def _solve_lanes(systems, y0s, t1, ts, solver, rtol, atol, max_steps):
    from dynamics.solve.diffrax_flow import solve_system  # diffrax, imported when used

    return jax.vmap(
        lambda s, y: solve_system(
            s, y, t1, ts=ts, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps
        )
    )(systems, y0s)


def _with_eps(system, e):
    return system.replace(hyper=dataclasses.replace(system.hyper, eps=e))


def compare_full_reduced(
    system,
    slow0: State,
    pred_like,
    eps_values,
    ts,
    *,
    eta_phi_of_eps=None,
    solver: str = "tsit5",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 200_000,
):
    """Full flow against the reduced one from the same slow start, over a range of ``eps``.

    The full run starts on the critical manifold (``pred0 = pred*(slow0)``), so no initial
    layer; the distance is the max over ``ts`` of the max-norm difference of the slow variables.

    Args:
        system: the full :class:`~dynamics.analysis.FlowSystem`; its ``hyper.eps`` is replaced.
        eta_phi_of_eps: optional ``eps -> eta_phi`` (e.g. ``lambda e: e * eta`` for the Tian
            convention, where the manifold itself moves with eps); default keeps ``eta_phi``.

    Returns:
        dict with ``eps``, ``distance`` (per eps), ``slope`` (least-squares slope of
        ``log distance`` against ``log eps``; 1 for an O(eps) reduction), ``status`` (per-lane
        solver status of the full runs, reduced last), ``full`` and ``reduced`` trajectories.
    """
    system = as_system(system)
    eps = np.asarray(eps_values, dtype=float)
    if eps.ndim != 1 or eps.size < 2 or np.any(eps <= 0):
        raise ValueError(f"eps_values must be >= 2 positive numbers, got {eps_values!r}")
    ts = jnp.asarray(ts)
    systems, reduced_list, y0s = [], [], []
    for e in eps:
        s = _with_eps(system, e)
        if eta_phi_of_eps is not None:
            s = s.replace(hyper=dataclasses.replace(s.hyper, eta_phi=eta_phi_of_eps(e)))
        r = ReducedSystem.of(s, pred_like)
        systems.append(s)
        reduced_list.append(r)
        y0s.append(r.lift(slow0))
    stack = lambda xs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *xs)  # noqa: E731
    t1 = ts[-1]
    full = _solve_lanes(stack(systems), stack(y0s), t1, ts, solver, rtol, atol, max_steps)
    if eta_phi_of_eps is None:  # one reduced system serves every eps
        red = _solve_lanes(stack(reduced_list[:1]), stack([slow0]), t1, ts, "tsit5", rtol, atol, max_steps)
        red_ys = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (len(eps),) + x.shape[1:]), red.ys)
    else:
        red = _solve_lanes(stack(reduced_list), stack([slow0] * len(eps)), t1, ts, "tsit5", rtol, atol, max_steps)
        red_ys = red.ys
    Zf = jax.vmap(jax.vmap(lambda s: flatten(slow_part(s))))(full.ys)
    Zr = jax.vmap(jax.vmap(flatten))(red_ys)
    dist = np.asarray(jnp.max(jnp.abs(Zf - Zr), axis=(1, 2)))
    slope = float(np.polyfit(np.log(eps), np.log(dist), 1)[0])
    status = np.concatenate([np.asarray(full.status), np.asarray(red.status)])
    return dict(eps=eps, distance=dist, slope=slope, status=status, full=full.ys, reduced=red_ys)


def slow_eigenvalues(system, fixed_point: State, pred_like, eps_values, n_slow: int | None = None):
    """Slow eigenvalues of the full flow at a fixed point, against the reduced system's, per eps.

    The fixed point (``State`` of the full system) must be a fixed point for every eps (true when
    ``eta_phi`` does not depend on eps). The slow eigenvalues of the full Jacobian are the
    ``n_slow`` of smallest modulus (default: the slow dimension).

    Returns:
        dict with ``eps``, ``reduced`` (eigenvalues of the reduced Jacobian, sorted), ``full_slow``
        (per eps, sorted the same way), ``full_fast`` (the rest) and ``error``
        (max |full_slow - reduced| per eps).
    """
    system = as_system(system)
    slow = slow_part(fixed_point)
    n_s = flatten(slow).shape[0] if n_slow is None else n_slow
    red = ReducedSystem.of(system, pred_like)
    z0, unravel = ravel_pytree(slow)
    Jr = jax.jacfwd(lambda z: ravel_pytree(red.field(unravel(z)))[0])(z0)
    ev_r = np.sort_complex(np.linalg.eigvals(np.asarray(Jr)))
    zf, unravel_f = ravel_pytree(fixed_point)
    jac = jax.jit(lambda s: jax.jacfwd(lambda z: ravel_pytree(s.field(unravel_f(z)))[0])(zf))
    slows, fasts, errs = [], [], []
    for e in np.asarray(eps_values, dtype=float):
        ev = np.linalg.eigvals(np.asarray(jac(_with_eps(system, e))))
        ev = ev[np.argsort(np.abs(ev))]
        s = np.sort_complex(ev[:n_s])
        slows.append(s)
        fasts.append(ev[n_s:])
        errs.append(float(np.max(np.abs(s - ev_r))))
    return dict(eps=np.asarray(eps_values, float), reduced=ev_r, full_slow=np.array(slows),
                full_fast=np.array(fasts), error=np.array(errs))
