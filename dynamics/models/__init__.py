"""The toy systems, each defined by its loss (see :mod:`dynamics.models.scalar`)."""

from dynamics.models.scalar import ScalarSiamese

__all__ = ["ScalarSiamese"]
