"""Deprecated module path: the batched engine now lives in :mod:`dynamics.solve`.

Every name here still works for this release, with a ``DeprecationWarning`` that names its new
home: the engine's drivers are :func:`dynamics.solve.engine.flow_batch` and
:func:`dynamics.solve.engine.discrete_batch` (or :func:`dynamics.solve.solve_batch` with
``integrator="engine"``), the stiffness policy is :mod:`dynamics.solve.policy`, the process
set-up (CPU devices, compile cache) is :mod:`dynamics.runtime`.
"""

from __future__ import annotations

from dynamics import runtime
from dynamics.compat import moved
from dynamics.solve import engine, lanes, policy, pool, steps, tableaus
from dynamics.types import Status

_SAME_NAME = {
    "dynamics.solve.engine": (engine, ("CHUNK_SIZE", "SLOTS", "SLOTS_ACCELERATOR")),
    "dynamics.solve.policy": (policy, ("STIFF_EPS", "MAX_ROSENBROCK_DIM", "stiff_lanes")),
    "dynamics.runtime": (runtime, ("split_cpu_cores", "default_cache_dir",
                                   "enable_compilation_cache")),
    "dynamics.solve": (lanes, ("Solution",)),
}
_RENAMED = {  # old name: (module path, module, new name)
    "solve_flow_batch": ("dynamics.solve.engine", engine, "flow_batch"),
    "run_discrete_batch": ("dynamics.solve.engine", engine, "discrete_batch"),
    "METHODS": ("dynamics.solve.policy", policy, "ENGINE_METHODS"),
    "_inv_root": ("dynamics.solve.steps", steps, "inv_root"),
    "_lu_factor": ("dynamics.solve.steps", steps, "lu_factor"),
    "_lu_solve": ("dynamics.solve.steps", steps, "lu_solve"),
    "_integrate_pool": ("dynamics.solve.pool", pool, "integrate_pool"),
    "_n_lanes": ("dynamics.solve.lanes", lanes, "n_lanes"),
    "_DP_A": ("dynamics.solve.tableaus", tableaus, "DP_A"),
    "_RO_A": ("dynamics.solve.tableaus", tableaus, "RO_A"),
}
_MOVED = {
    name: (f"{path}.{name}", getattr(module, name))
    for path, (module, names) in _SAME_NAME.items()
    for name in names
}
_MOVED.update({old: (f"{path}.{new}", getattr(module, new))
               for old, (path, module, new) in _RENAMED.items()})
_MOVED.update({f"STATUS_{s.name}": (f"dynamics.types.Status.{s.name}", int(s)) for s in Status})

__getattr__ = moved("dynamics.engine", _MOVED)


def __dir__():
    return sorted(_MOVED)
