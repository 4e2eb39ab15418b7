"""A dynamical system as a pytree: what every analysis differentiates.

``FlowSystem(model, hyper, variant)`` is the gradient flow of a model's expected loss
(:func:`dynamics.flow.vector_field`); :class:`dynamics.analysis.slowfast.ReducedSystem` is
its slow reduction. Both expose ``field(state) -> state`` and are pytrees whose array leaves
(the model's data, the hyperparameters) are traced, so one compiled analysis program serves
every parameter value of the same shapes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.flow import Hyper, State, Variant, vector_field


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FlowSystem:
    """The flow ``d state/dt = vector_field(model, variant, hyper, state)``."""

    model: object
    hyper: Hyper
    variant: Variant = dataclasses.field(default=Variant(), metadata=dict(static=True))

    def field(self, state: State) -> State:
        return vector_field(self.model, self.variant, self.hyper, state)

    def replace(self, **kw) -> "FlowSystem":
        return dataclasses.replace(self, **kw)


def as_system(system_or_model, variant: Variant | None = None, hyper: Hyper | None = None):
    """Accept either a system or ``(model, variant, hyper)``."""
    if hasattr(system_or_model, "field"):
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


def flat_field(system, like):
    """``(f, unravel)``: the field as a map of flat vectors, for states shaped like ``like``."""
    _, unravel = ravel_pytree(like)

    def f(z):
        return ravel_pytree(system.field(unravel(z)))[0]

    return f, unravel


def flatten(state) -> jax.Array:
    return ravel_pytree(state)[0]


def jacobian(system, state):
    """Dense Jacobian of ``system.field`` at ``state`` (flattened in ``ravel_pytree`` order)."""
    f, _ = flat_field(system, state)
    return jax.jacfwd(f)(flatten(state))


def stack_states(states):
    """Stack a list of same-shaped states into one with a leading axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def unstack_states(states):
    n = jax.tree_util.tree_leaves(states)[0].shape[0]
    return [jax.tree_util.tree_map(lambda x: x[i], states) for i in range(n)]
