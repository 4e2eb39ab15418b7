"""Deprecated module path: the batched engine now lives in :mod:`dynamics.solve`.

Every name here still works for this release, with a ``DeprecationWarning`` that names its new
home: the engine's drivers are :func:`dynamics.solve.engine.flow_batch` and
:func:`dynamics.solve.engine.discrete_batch` (or :func:`dynamics.solve.solve_batch` with
``integrator="engine"``), the stiffness policy is :mod:`dynamics.solve.policy`, the process
set-up (CPU devices, compile cache) is :mod:`dynamics.runtime`.
"""

from __future__ import annotations

import warnings

from dynamics import runtime
from dynamics.solve import engine, lanes, policy, pool, steps, tableaus
from dynamics.types import Status

_MOVED = {
    "solve_flow_batch": ("dynamics.solve.engine.flow_batch", engine.flow_batch),
    "run_discrete_batch": ("dynamics.solve.engine.discrete_batch", engine.discrete_batch),
    "CHUNK_SIZE": ("dynamics.solve.engine.CHUNK_SIZE", engine.CHUNK_SIZE),
    "SLOTS": ("dynamics.solve.engine.SLOTS", engine.SLOTS),
    "SLOTS_ACCELERATOR": ("dynamics.solve.engine.SLOTS_ACCELERATOR", engine.SLOTS_ACCELERATOR),
    "METHODS": ("dynamics.solve.policy.ENGINE_METHODS", policy.ENGINE_METHODS),
    "STIFF_EPS": ("dynamics.solve.policy.STIFF_EPS", policy.STIFF_EPS),
    "MAX_ROSENBROCK_DIM": ("dynamics.solve.policy.MAX_ROSENBROCK_DIM", policy.MAX_ROSENBROCK_DIM),
    "stiff_lanes": ("dynamics.solve.policy.stiff_lanes", policy.stiff_lanes),
    "split_cpu_cores": ("dynamics.runtime.split_cpu_cores", runtime.split_cpu_cores),
    "default_cache_dir": ("dynamics.runtime.default_cache_dir", runtime.default_cache_dir),
    "enable_compilation_cache": (
        "dynamics.runtime.enable_compilation_cache", runtime.enable_compilation_cache),
    "Solution": ("dynamics.solve.Solution", lanes.Solution),
    "STATUS_OK": ("dynamics.types.Status.OK", int(Status.OK)),
    "STATUS_MAX_STEPS": ("dynamics.types.Status.MAX_STEPS", int(Status.MAX_STEPS)),
    "STATUS_NONFINITE": ("dynamics.types.Status.NONFINITE", int(Status.NONFINITE)),
    "_inv_root": ("dynamics.solve.steps.inv_root", steps.inv_root),
    "_lu_factor": ("dynamics.solve.steps.lu_factor", steps.lu_factor),
    "_lu_solve": ("dynamics.solve.steps.lu_solve", steps.lu_solve),
    "_integrate_pool": ("dynamics.solve.pool.integrate_pool", pool.integrate_pool),
    "_n_lanes": ("dynamics.solve.lanes.n_lanes", lanes.n_lanes),
    "_DP_A": ("dynamics.solve.tableaus.DP_A", tableaus.DP_A),
    "_RO_A": ("dynamics.solve.tableaus.RO_A", tableaus.RO_A),
}


def __getattr__(name):
    if name in _MOVED:
        new, obj = _MOVED[name]
        warnings.warn(f"dynamics.engine.{name} moved to {new}; dynamics.engine is deprecated",
                      DeprecationWarning, stacklevel=2)
        return obj
    raise AttributeError(f"module 'dynamics.engine' has no attribute {name!r}")


def __dir__():
    return sorted(_MOVED)
