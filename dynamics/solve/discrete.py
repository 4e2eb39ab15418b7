"""Discrete GD/SGD: the flow's update rule iterated by ``lax.scan``, one lane or vmapped.

GD uses the expected (population) gradient, so it is explicit Euler on the flow; SGD samples a
minibatch per step. Step ``k`` of a lane draws its minibatch with ``fold_in(key, k)``, so results
do not depend on how a run is split into blocks, chunks or devices.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dynamics.checks import check_count, check_real
from dynamics.flow import gd_step
from dynamics.solve.lanes import Solution, all_finite, broadcast_lanes, n_lanes
from dynamics.types import Hyper, State, Status, Variant


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
    step0=0,
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
        step0: the index of the first step in a longer run (a run cut into segments), for
            rules that read the step index (a target copied every ``k`` steps). Sampling keys
            still use the step's index within this call.

    Returns:
        ``Solution`` with ``ts`` the ODE times ``k * lr`` of the saved states.

    Raises:
        ValueError: ``n_steps``, ``batch_size`` or ``save_every`` not a positive integer, a
            concrete ``lr`` that is not finite and > 0 (a traced one passes unchecked).
    """
    n_steps = check_count("n_steps", n_steps)
    check_real("lr", lr, positive=True)
    if batch_size is not None:
        batch_size = check_count("batch_size", batch_size)
        if key is None:
            raise ValueError("SGD (batch_size given) needs a PRNG key")
    save_every = n_steps if save_every is None else check_count("save_every", save_every)
    if n_steps % save_every:
        raise ValueError(f"n_steps={n_steps} is not a multiple of save_every={save_every}")

    def step(y, k):
        batch = None if batch_size is None else model.sample(jax.random.fold_in(key, k), batch_size)
        return gd_step(model, variant, hyper, y, lr, batch, step=step0 + k), None

    def block(y, j):
        ks = j * save_every + jnp.arange(save_every)
        y, _ = jax.lax.scan(step, y, ks)
        return y, y

    n_blocks = n_steps // save_every
    y_end, ys = jax.lax.scan(block, y0, jnp.arange(n_blocks))
    ts = lr * save_every * jnp.arange(1, n_blocks + 1)
    status = jnp.where(all_finite(y_end), int(Status.OK), int(Status.NONFINITE)).astype(jnp.int8)
    return Solution(ts, ys, status, jnp.asarray(n_steps))


@functools.partial(jax.jit, static_argnames=("variant", "n_steps", "batch_size", "save_every"))
def discrete_batch(
    model, variant, hyper, y0, lr, keys=None, *, n_steps, batch_size=None, save_every=None,
    step0=0,
):
    """:func:`run_discrete` vmapped over a leading lane axis (``keys``: one PRNG key per lane;
    ``step0``: the index of the first step, shared by all lanes)."""
    n = n_lanes(y0)
    model, hyper = broadcast_lanes(model, n), broadcast_lanes(hyper, n)
    lr = jnp.broadcast_to(lr, (n,))
    if keys is None:
        return jax.vmap(
            lambda m, h, y, l: run_discrete(m, variant, h, y, l, n_steps, save_every=save_every,
                                            step0=step0)
        )(model, hyper, y0, lr)
    return jax.vmap(
        lambda m, h, y, l, k: run_discrete(
            m, variant, h, y, l, n_steps, batch_size=batch_size, key=k, save_every=save_every,
            step0=step0,
        )
    )(model, hyper, y0, lr, keys)
