"""Deprecated module: each linear-model figure is now one module of :mod:`dynamics.figures`.

The old names keep working for this release, with a ``DeprecationWarning`` naming the new one:
``tian_fig5_data``, ``tian_fig7_data`` and ``phase_diagram_data`` are
``dynamics.figures.tian5.data``, ``tian7.data`` and ``phase.data``; the shared helpers
``ScaledTarget``, ``euler_lanes``, ``hyper_lanes`` and ``lambda_min_K`` are in
:mod:`dynamics.figures.compute`.
"""

from __future__ import annotations

from dynamics.compat import moved
from dynamics.figures import compute, phase, tian5, tian7

__getattr__ = moved("dynamics.figures.linear", {
    "tian_fig5_data": ("dynamics.figures.tian5.data", tian5.data),
    "tian_fig7_data": ("dynamics.figures.tian7.data", tian7.data),
    "phase_diagram_data": ("dynamics.figures.phase.data", phase.data),
    **{name: (f"dynamics.figures.compute.{name}", getattr(compute, name))
       for name in ("ScaledTarget", "euler_lanes", "hyper_lanes", "lambda_min_K")},
})
