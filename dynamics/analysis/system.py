"""A dynamical system as a pytree: what every analysis differentiates.

The system types live with the dynamics (:class:`dynamics.flow.System`,
:class:`dynamics.flow.FlowSystem`, the Jacobian :func:`dynamics.flow.jacobian`);
:class:`dynamics.analysis.slowfast.ReducedSystem` is the slow reduction. This module adds what
the analyses need on top: accepting a system or a model, flattening, stacking states.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.flow import FlowSystem, System, flat_field, jacobian
from dynamics.types import Hyper, Variant

__all__ = [
    "FlowSystem",
    "System",
    "as_system",
    "flat_field",
    "flatten",
    "jacobian",
    "stack_states",
    "unstack_states",
]


def as_system(system_or_model, variant: Variant | None = None, hyper: Hyper | None = None):
    """Accept either a :class:`~dynamics.flow.System` or ``(model, variant, hyper)``."""
    if isinstance(system_or_model, System):
        if variant is not None or hyper is not None:
            raise ValueError("pass either a system or (model, variant, hyper), not both")
        return system_or_model
    if variant is None or hyper is None:
        raise ValueError("a model needs both a variant and a Hyper to define its flow")
    if not isinstance(variant, Variant):
        raise ValueError(f"variant must be a dynamics.Variant, got {type(variant).__name__}")
    if not isinstance(hyper, Hyper):
        raise ValueError(f"hyper must be a dynamics.Hyper, got {type(hyper).__name__}")
    return FlowSystem(system_or_model, hyper, variant)


def flatten(state) -> jax.Array:
    return ravel_pytree(state)[0]


def stack_states(states):
    """Stack a list of same-shaped states into one with a leading axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def unstack_states(states):
    n = jax.tree_util.tree_leaves(states)[0].shape[0]
    return [jax.tree_util.tree_map(lambda x: x[i], states) for i in range(n)]
