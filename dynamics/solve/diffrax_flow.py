"""The diffrax path: single trajectories and reference solves of a flow (any :class:`System`).

:func:`solve_flow` integrates a model's gradient flow, :func:`solve_system` any
:class:`~dynamics.flow.System` (e.g. the slow-fast reduced system), :func:`flow_batch` vmaps
:func:`solve_flow` over lanes. Every function returns a per-lane :class:`~dynamics.types.Status`;
one bad lane never stops the others: diffrax runs with ``throw=False``.
"""

from __future__ import annotations

import functools

import diffrax
import jax
import jax.numpy as jnp
import optimistix as optx

from dynamics.checks import check_choice, check_times, check_tolerances
from dynamics.flow import FlowSystem, System
from dynamics.solve.lanes import Solution, all_finite, broadcast_lanes, n_lanes
from dynamics.types import Hyper, State, Status, Variant

#: diffrax's solver classes by the names of :data:`dynamics.solve.policy.DIFFRAX_SOLVERS`
SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "kvaerno5": diffrax.Kvaerno5,
    "kvaerno3": diffrax.Kvaerno3,
}


def solve_flow(
    model,
    variant: Variant,
    hyper: Hyper,
    y0: State,
    t1: float,
    *,
    ts=None,
    solver: str = "kvaerno5",
    rtol: float = 1e-8,
    atol: float = 1e-10,
    max_steps: int = 16384,
) -> Solution:
    """Integrate the gradient flow of the expected loss from ``y0`` over ``[0, t1]``.

    Args:
        ts: optional save times (array, within [0, t1]); default saves only ``t1``.
        solver: a name in ``SOLVERS``; use an implicit one (Kvaerno) for small ``eps``.
        rtol, atol: tolerances of the PID step-size controller.
        max_steps: cap on solver steps; a lane that hits it gets ``Status.MAX_STEPS``.

    Raises:
        ValueError: a concrete ``t1`` that is not finite and > 0, save times outside
            ``[0, t1]`` or not increasing, bad tolerances or an unknown solver (traced values,
            under ``jit``, pass unchecked).
    """
    flow = FlowSystem(model, hyper, variant)
    return solve_system(
        flow, y0, t1, ts=ts, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps
    )


# --- batched wrappers -----------------------------------------------------------------------


@functools.partial(
    jax.jit, static_argnames=("variant", "solver", "rtol", "atol", "max_steps", "t1")
)
def flow_batch(model, variant, hyper, y0, *, t1, solver, rtol, atol, max_steps, ts=None):
    """:func:`solve_flow` vmapped over a leading lane axis of ``model``, ``hyper`` and ``y0``.

    Scalar leaves of ``model`` and ``hyper`` are shared by all lanes; other leaves must carry
    the lane axis (see :func:`~dynamics.solve.lanes.broadcast_lanes`). ``ts`` is shared.
    """
    n = n_lanes(y0)
    model, hyper = broadcast_lanes(model, n), broadcast_lanes(hyper, n)
    return jax.vmap(
        lambda m, h, y: solve_flow(
            m, variant, h, y, t1, ts=ts, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps
        )
    )(model, hyper, y0)


# --- any system ----------------------------------------------------------------------------


def _system_term(t, y, system: System):
    return system.field(y)


def solve_system(
    system, y0, t1, *, ts=None, solver: str = "tsit5", rtol: float = 1e-8, atol: float = 1e-10,
    max_steps: int = 16384,
) -> Solution:
    """Integrate ``dy/dt = system.field(y)`` for any :class:`~dynamics.flow.System`.

    The same as :func:`solve_flow` for systems that are not a model's plain gradient flow, e.g.
    :class:`dynamics.analysis.slowfast.ReducedSystem`. ``system`` is traced, so one compiled
    program serves every parameter value of the same structure. Concrete arguments are
    checked first (see :func:`solve_flow`).
    """
    check_choice("solver", solver, tuple(SOLVERS))
    check_times(t1, ts)
    max_steps = check_tolerances(rtol, atol, max_steps)
    return _solve_system(system, y0, t1, ts=ts, solver=solver, rtol=rtol, atol=atol,
                         max_steps=max_steps)


@functools.partial(jax.jit, static_argnames=("solver", "rtol", "atol", "max_steps"))
def _solve_system(system, y0, t1, *, ts, solver, rtol, atol, max_steps) -> Solution:
    """:func:`solve_system` once its arguments are checked (the compiled program)."""
    if solver.startswith("kvaerno"):
        # Full Newton with the exact autodiff Jacobian. diffrax's default chord iteration
        # reuses a stale Jacobian and, in the fast-predictor transient (eps <= 1e-4), rejects
        # every step until max_steps; Newton converges in a few iterations there.
        integrator = SOLVERS[solver](root_finder=optx.Newton(rtol=rtol, atol=atol))
    else:
        integrator = SOLVERS[solver]()
    saveat = diffrax.SaveAt(t1=True) if ts is None else diffrax.SaveAt(ts=ts)
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(_system_term),
        integrator,
        t0=0.0,
        t1=t1,
        dt0=None,
        y0=y0,
        args=system,
        saveat=saveat,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
        throw=False,
    )
    ok = sol.result == diffrax.RESULTS.successful
    maxed = sol.result == diffrax.RESULTS.max_steps_reached
    finite = all_finite(sol.ys)
    status = jnp.where(
        ok & finite,
        int(Status.OK),
        jnp.where(maxed & finite, int(Status.MAX_STEPS), int(Status.NONFINITE)),
    ).astype(jnp.int8)
    return Solution(sol.ts, sol.ys, status, sol.stats["num_steps"])
