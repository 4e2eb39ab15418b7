"""Lanes: the leading batch axis every batched solve shares, and the helpers around it.

A batched call integrates ``n`` trajectories (lanes). The initial state carries the lane axis on
every leaf; a model's and the hyperparameters' leaves either carry it too (per-lane values) or
are shared by every lane (a scalar, or what a model's
:meth:`~dynamics.models.Model.lane_broadcast` would broadcast, like the linear model's ``X``).
Both integrators (diffrax's ``jit(vmap)`` and the engine) use these helpers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.compat import duck_hook
from dynamics.models.base import Model
from dynamics.types import Hyper, LaneTree, State, broadcast_scalar_leaves


class Solution(NamedTuple):
    """Result of one (or, batched, many) integrations.

    Attributes:
        ts: save times, shape (T,) (batched: (n, T)).
        ys: ``State`` whose leaves have a leading save axis (T, ...) (batched: (n, T, ...)).
        status: int8 :class:`~dynamics.types.Status` code (batched: (n,)).
        num_steps: number of accepted+rejected solver steps (flow) or steps taken (discrete).
    """

    ts: Any
    ys: State
    status: Any
    num_steps: Any


def all_finite(tree):
    """Whether every number in ``tree`` is finite (a 0-d boolean array)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def n_lanes(y0: LaneTree) -> int:
    """The length of the lane axis of a batched state."""
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError("y0 must carry a leading lane axis on every leaf")
    n = int(np.shape(leaves[0])[0])
    if n == 0:
        raise ValueError(f"y0 has no lanes (leaf shape {tuple(np.shape(leaves[0]))}): "
                         "give at least one initial state")
    return n


def broadcast_lanes(tree, n: int):
    """Give every leaf of ``tree`` that lacks it a leading lane axis of length ``n``.

    A model or a :class:`~dynamics.types.Hyper` says how through its ``lane_broadcast(n)``
    method; any other pytree gets the lane axis on its scalar (0-d) leaves.
    """
    if isinstance(tree, (Model, Hyper)):
        return tree.lane_broadcast(n)
    if dataclasses.is_dataclass(tree):  # a model written before the interface existed
        hook = duck_hook(tree, "lane_broadcast")
        if hook is not None:
            return hook(n)
    return broadcast_scalar_leaves(tree, n)


def host_lanes(tree, n: int):
    """Host copies of ``tree``'s leaves with a lane axis of length ``n`` (scalars broadcast)."""

    def one(x):
        x = np.asarray(x)
        if x.ndim == 0:
            return np.broadcast_to(x, (n,))
        if x.shape[0] != n:
            raise ValueError(f"leaf with shape {x.shape} does not have {n} lanes")
        return x

    return jax.tree_util.tree_map(one, tree)


def take(tree, idx):
    """The lanes ``idx`` of every leaf."""
    return jax.tree_util.tree_map(lambda x: x[idx], tree)


class LaneSplit:
    """How a ``(model, hyper)`` pytree splits into per-lane and shared leaves (static, hashable).

    :meth:`merge` rebuilds the pytree from the two lists, e.g. inside a compiled program that
    receives only the per-lane leaves of its lanes.
    """

    def __init__(self, treedef, lane_flags):
        self.treedef = treedef
        self.lane_flags = tuple(lane_flags)

    def __hash__(self):
        return hash((self.treedef, self.lane_flags))

    def __eq__(self, other):
        return (self.treedef, self.lane_flags) == (other.treedef, other.lane_flags)

    @property
    def n_lane(self) -> int:
        return sum(self.lane_flags)

    def merge(self, lane_leaves, shared_leaves):
        it_l, it_s = iter(lane_leaves), iter(shared_leaves)
        leaves = [next(it_l) if f else next(it_s) for f in self.lane_flags]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _shared_flags(tree, leaves, n: int):
    """Which leaves :func:`broadcast_lanes` would broadcast (those gain a dimension)."""
    if isinstance(tree, Hyper):  # the rule of broadcast_scalar_leaves, read off without building arrays
        return [np.ndim(x) == 0 for x in leaves]
    wide = jax.tree_util.tree_leaves(broadcast_lanes(tree, n))
    return [np.ndim(w) > np.ndim(x) for x, w in zip(leaves, wide)]


def split_params(model, hyper, n: int):
    """Split ``(model, hyper)`` into per-lane leaves (lane axis 0) and leaves shared by all lanes.

    A leaf is shared when :func:`broadcast_lanes` would broadcast it (scalars; the linear
    model's 2-d ``X``, ``X'``): it is then kept once instead of once per lane.

    Returns:
        ``(split, lane_leaves, shared_leaves)``: a :class:`LaneSplit`, host arrays with the
        lane axis, device arrays without it.
    """
    parts = []
    for tree in (model, hyper):
        leaves = jax.tree_util.tree_leaves(tree)
        for x, sh in zip(leaves, _shared_flags(tree, leaves, n)):
            x = np.asarray(x)
            if not sh and (x.ndim == 0 or x.shape[0] != n):
                raise ValueError(f"parameter leaf with shape {x.shape} does not have {n} lanes")
            parts.append((x, not sh))
    treedef = jax.tree_util.tree_structure((model, hyper))
    split = LaneSplit(treedef, [lane for _, lane in parts])
    lane_leaves = [x for x, lane in parts if lane]
    shared_leaves = [jnp.asarray(x) for x, lane in parts if not lane]
    return split, lane_leaves, shared_leaves


def lane_subset(model, hyper, y0, idx):
    """``(model, hyper, y0)`` restricted to the lanes ``idx`` (shared leaves stay shared)."""
    n = n_lanes(y0)
    split, lane_leaves, shared_leaves = split_params(model, hyper, n)
    model_s, hyper_s = split.merge([x[idx] for x in lane_leaves], shared_leaves)
    return model_s, hyper_s, take(y0, idx)
