"""The toy systems, each defined by its loss (see :mod:`dynamics.models.scalar`)."""

from dynamics.models.linear import LinearSiamese
from dynamics.models.permode import PerModeSiamese
from dynamics.models.scalar import ScalarSiamese

__all__ = ["LinearSiamese", "PerModeSiamese", "ScalarSiamese"]
