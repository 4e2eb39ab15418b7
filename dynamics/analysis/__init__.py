"""Analyses that work for any model through its vector field (scalar, per-mode, matrix)."""

from dynamics.analysis._system import FlowSystem, as_system, jacobian
from dynamics.analysis.fixed_points import (
    FixedPoint,
    classify,
    eigenvalues,
    find_fixed_points,
    newton,
    random_starts,
)

__all__ = [
    "FixedPoint",
    "FlowSystem",
    "as_system",
    "classify",
    "eigenvalues",
    "find_fixed_points",
    "jacobian",
    "newton",
    "random_starts",
]
