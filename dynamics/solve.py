"""Integrators: gradient flow through diffrax, discrete GD/SGD as a ``lax.scan``.

Every function here integrates *one* trajectory and is jit/vmap friendly; the batched
wrappers (``*_batch``) vmap over a leading lane axis of the initial state, the model's leaves
and the hyperparameters, and return a per-lane ``status``:

    STATUS_OK = 0         the run reached its end and every number is finite
    STATUS_MAX_STEPS = 1  the adaptive solver used up ``max_steps`` before ``t1``
    STATUS_NONFINITE = 2  a NaN/inf appeared (diverging lane, or a failed implicit solve)

One bad lane never stops the others: diffrax runs with ``throw=False``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import diffrax
import jax
import optimistix as optx
import jax.numpy as jnp

from dynamics.flow import Hyper, State, Variant, gd_step, vector_field

STATUS_OK, STATUS_MAX_STEPS, STATUS_NONFINITE = 0, 1, 2
STATUS_NAMES = ("ok", "max_steps", "nonfinite")

SOLVERS = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "kvaerno5": diffrax.Kvaerno5,
    "kvaerno3": diffrax.Kvaerno3,
}


class Solution(NamedTuple):
    """Result of one (or, batched, many) integrations.

    Attributes:
        ts: save times, shape (T,) (batched: (N, T)).
        ys: ``State`` whose leaves have a leading save axis (T, ...) (batched: (N, T, ...)).
        status: int8 status code (batched: (N,)), see module docstring.
        num_steps: number of accepted+rejected solver steps (flow) or steps taken (discrete).
    """

    ts: Any
    ys: State
    status: Any
    num_steps: Any


def _all_finite(tree):
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


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
        max_steps: cap on solver steps; a lane that hits it gets ``STATUS_MAX_STEPS``.
    """
    flow = _GradientFlow(model, hyper, variant)
    return solve_system(
        flow, y0, t1, ts=ts, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps
    )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _GradientFlow:
    """A model's gradient flow as a system with a ``field`` method (see :func:`solve_system`)."""

    model: Any
    hyper: Hyper
    variant: Variant = dataclasses.field(metadata=dict(static=True))

    def field(self, y):
        return vector_field(self.model, self.variant, self.hyper, y)


def run_discrete(
    model,
    variant: Variant,
    hyper: Hyper,
    y0: State,
    lr,
    n_steps: int,
    *,
    batch_size: int | None = None,
    key=None,
    save_every: int | None = None,
) -> Solution:
    """Discrete GD (``batch_size=None``, expected gradients) or SGD on sampled minibatches.

    Args:
        lr: step size in ODE time (the predictor's step is ``lr/eps``).
        n_steps: number of steps (static).
        batch_size: minibatch size for SGD; ``None`` gives GD on the expected loss.
        key: PRNG key for SGD (required when ``batch_size`` is given); step ``k`` uses
            ``fold_in(key, k)``, so results do not depend on how a run is split.
        save_every: also save every this many steps (``n_steps`` must be a multiple);
            default saves only the final state.

    Returns:
        ``Solution`` with ``ts`` the ODE times ``k * lr`` of the saved states.
    """
    if batch_size is not None and key is None:
        raise ValueError("SGD (batch_size given) needs a PRNG key")
    save_every = n_steps if save_every is None else save_every
    if n_steps % save_every:
        raise ValueError(f"n_steps={n_steps} is not a multiple of save_every={save_every}")

    def step(y, k):
        batch = None if batch_size is None else model.sample(jax.random.fold_in(key, k), batch_size)
        return gd_step(model, variant, hyper, y, lr, batch), None

    def block(y, j):
        ks = j * save_every + jnp.arange(save_every)
        y, _ = jax.lax.scan(step, y, ks)
        return y, y

    n_blocks = n_steps // save_every
    y_end, ys = jax.lax.scan(block, y0, jnp.arange(n_blocks))
    ts = lr * save_every * jnp.arange(1, n_blocks + 1)
    status = jnp.where(_all_finite(y_end), STATUS_OK, STATUS_NONFINITE).astype(jnp.int8)
    return Solution(ts, ys, status, jnp.asarray(n_steps))


# --- batched wrappers -----------------------------------------------------------------------


def broadcast_lanes(tree, n: int):
    """Give every scalar (0-d) leaf of ``tree`` a leading lane axis of length ``n``.

    Leaves with ``ndim >= 1`` are assumed to carry the lane axis already. A model whose
    leaves are arrays even for one lane (the linear model's ``X``, ``X'``) says how to add the
    lane axis through its own ``lane_broadcast(n)`` method, which is used instead.
    """
    hook = getattr(tree, "lane_broadcast", None)
    if callable(hook):
        return hook(n)
    return jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x, (n,)) if jnp.ndim(x) == 0 else jnp.asarray(x), tree
    )


def _n_lanes(y0) -> int:
    return jax.tree_util.tree_leaves(y0)[0].shape[0]


@functools.partial(
    jax.jit, static_argnames=("variant", "solver", "rtol", "atol", "max_steps", "t1")
)
def solve_flow_batch(model, variant, hyper, y0, *, t1, solver, rtol, atol, max_steps, ts=None):
    """``solve_flow`` vmapped over a leading lane axis of ``model``, ``hyper`` and ``y0``.

    Scalar leaves of ``model`` and ``hyper`` are shared by all lanes; other leaves must carry
    the lane axis (see :func:`broadcast_lanes`). ``ts`` is shared.
    """
    n = _n_lanes(y0)
    model, hyper = broadcast_lanes(model, n), broadcast_lanes(hyper, n)
    return jax.vmap(
        lambda m, h, y: solve_flow(
            m, variant, h, y, t1, ts=ts, solver=solver, rtol=rtol, atol=atol, max_steps=max_steps
        )
    )(model, hyper, y0)


@functools.partial(jax.jit, static_argnames=("variant", "n_steps", "batch_size", "save_every"))
def run_discrete_batch(
    model, variant, hyper, y0, lr, keys=None, *, n_steps, batch_size=None, save_every=None
):
    """``run_discrete`` vmapped over a leading lane axis (``keys``: one PRNG key per lane)."""
    n = _n_lanes(y0)
    model, hyper = broadcast_lanes(model, n), broadcast_lanes(hyper, n)
    lr = jnp.broadcast_to(lr, (n,))
    if keys is None:
        return jax.vmap(
            lambda m, h, y, l: run_discrete(m, variant, h, y, l, n_steps, save_every=save_every)
        )(model, hyper, y0, lr)
    return jax.vmap(
        lambda m, h, y, l, k: run_discrete(
            m, variant, h, y, l, n_steps, batch_size=batch_size, key=k, save_every=save_every
        )
    )(model, hyper, y0, lr, keys)


# --- any system with a ``field`` ------------------------------------------------------------


def _system_term(t, y, system):
    return system.field(y)


@functools.partial(jax.jit, static_argnames=("solver", "rtol", "atol", "max_steps"))
def solve_system(
    system, y0, t1, *, ts=None, solver: str = "tsit5", rtol: float = 1e-8, atol: float = 1e-10,
    max_steps: int = 16384,
) -> Solution:
    """Integrate ``dy/dt = system.field(y)`` for any pytree ``system`` with a ``field`` method.

    The same as :func:`solve_flow` for systems that are not a model's plain gradient flow, e.g.
    :class:`dynamics.analysis.slowfast.ReducedSystem`. ``system`` is traced, so one compiled
    program serves every parameter value of the same structure.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown solver {solver!r}: expected one of {', '.join(SOLVERS)}")
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
    finite = _all_finite(sol.ys)
    status = jnp.where(
        ok & finite, STATUS_OK, jnp.where(maxed & finite, STATUS_MAX_STEPS, STATUS_NONFINITE)
    ).astype(jnp.int8)
    return Solution(sol.ts, sol.ys, status, sol.stats["num_steps"])
