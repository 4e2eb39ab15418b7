"""Deprecated module: each scalar-model figure is now one module of :mod:`dynamics.figures`.

The old names keep working for this release, with a ``DeprecationWarning`` naming the new one:
``basin_data`` is :func:`dynamics.figures.basins.data`, ``tian_fig3_data`` and
``tian_fig4_data`` are ``dynamics.figures.tian3.data`` / ``tian4.data``, ``slowfast_data`` is
:func:`dynamics.figures.slowfast.data`, ``seed_grid`` is :func:`dynamics.figures.compute.seed_grid`.
"""

from __future__ import annotations

from dynamics.compat import moved
from dynamics.figures import basins, compute, slowfast, tian3, tian4

__getattr__ = moved("dynamics.figures.scalar", {
    "basin_data": ("dynamics.figures.basins.data", basins.data),
    "tian_fig3_data": ("dynamics.figures.tian3.data", tian3.data),
    "tian_fig4_data": ("dynamics.figures.tian4.data", tian4.data),
    "slowfast_data": ("dynamics.figures.slowfast.data", slowfast.data),
    "seed_grid": ("dynamics.figures.compute.seed_grid", compute.seed_grid),
})
