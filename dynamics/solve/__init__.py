"""Integrators: gradient flow (diffrax or the batched engine) and discrete GD/SGD.

One batched entry point, :func:`solve_batch`, puts every method (``flow``, ``gd``, ``sgd``) and
both integrators (``engine``, ``diffrax``) behind one call with one stiffness policy
(:mod:`dynamics.solve.policy`) and a per-lane :class:`~dynamics.types.Status`. Single
trajectories: :func:`solve_flow`, :func:`solve_system` (any :class:`~dynamics.flow.System`),
:func:`run_discrete`.

Modules: :mod:`~dynamics.solve.diffrax_flow` (the diffrax path),
:mod:`~dynamics.solve.discrete` (GD/SGD by ``lax.scan``), :mod:`~dynamics.solve.engine` (the
batched engine) with :mod:`~dynamics.solve.tableaus`, :mod:`~dynamics.solve.steps` and
:mod:`~dynamics.solve.pool`; :mod:`~dynamics.solve.lanes` (lane helpers both integrators use);
:mod:`~dynamics.solve.policy` (which method a lane gets); :mod:`~dynamics.solve.batch`.

Status codes (``Status`` values, int8 per lane)::

    STATUS_OK = 0         the run reached its end and every number is finite
    STATUS_MAX_STEPS = 1  the adaptive solver used up ``max_steps`` before ``t1``
    STATUS_NONFINITE = 2  a NaN/inf appeared (diverging lane, or a failed implicit solve)
"""

from __future__ import annotations

import importlib

from dynamics.compat import Lazy, moved
from dynamics.flow import FlowSystem
from dynamics.solve import discrete, engine, lanes, policy
from dynamics.solve.batch import SOLVE_METHODS, solve_batch
from dynamics.solve.discrete import run_discrete
from dynamics.solve.engine import CHUNK_SIZE
from dynamics.solve.lanes import Solution, all_finite, broadcast_lanes, n_lanes
from dynamics.solve.policy import (
    ENGINE_METHODS,
    INTEGRATORS,
    MAX_ROSENBROCK_DIM,
    STIFF_EPS,
    flow_solver,
    stiff_lanes,
    stiff_method,
)
from dynamics.types import Status

STATUS_OK, STATUS_MAX_STEPS, STATUS_NONFINITE = (
    int(Status.OK), int(Status.MAX_STEPS), int(Status.NONFINITE)
)
STATUS_NAMES = Status.labels()

__all__ = [
    "CHUNK_SIZE",
    "ENGINE_METHODS",
    "INTEGRATORS",
    "MAX_ROSENBROCK_DIM",
    "SOLVE_METHODS",
    "SOLVERS",
    "STATUS_MAX_STEPS",
    "STATUS_NAMES",
    "STATUS_NONFINITE",
    "STATUS_OK",
    "STIFF_EPS",
    "Solution",
    "Status",
    "all_finite",
    "broadcast_lanes",
    "flow_solver",
    "n_lanes",
    "run_discrete",
    "solve_batch",
    "solve_flow",
    "solve_system",
    "stiff_lanes",
    "stiff_method",
]


def _diffrax_flow():
    # diffrax is imported when one of its names is first used: a sweep on the engine never
    # needs it
    return importlib.import_module("dynamics.solve.diffrax_flow")


#: names served from :mod:`~dynamics.solve.diffrax_flow`
_FROM_DIFFRAX = {"diffrax_flow": _diffrax_flow,
                 **{name: (lambda name=name: getattr(_diffrax_flow(), name))
                    for name in ("SOLVERS", "solve_flow", "solve_system")}}

# Old names, kept for this release: (what to use instead, the object).
_DEPRECATED = {
    "solve_flow_batch": ("dynamics.solve.solve_batch(..., integrator='diffrax')",
                         Lazy(lambda: _diffrax_flow().flow_batch)),
    "run_discrete_batch": ("dynamics.solve.solve_batch(..., method='gd' or 'sgd', "
                           "integrator='diffrax')", discrete.discrete_batch),
    "_n_lanes": ("dynamics.solve.n_lanes", lanes.n_lanes),
    "_all_finite": ("dynamics.solve.all_finite", lanes.all_finite),
    "_GradientFlow": ("dynamics.flow.FlowSystem", FlowSystem),
}


__getattr__ = moved("dynamics.solve", _DEPRECATED, lazy=_FROM_DIFFRAX)
