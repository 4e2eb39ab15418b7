"""Toy dynamics of non-contrastive self-supervised learning (SimSiam, BYOL).

A model is written once, as a loss over its parameters; the gradient flow, the discrete
GD/SGD update and every Jacobian are derived from that loss by JAX transformations
(:mod:`dynamics.flow`). Integrators live in :mod:`dynamics.solve`, analyses in
:mod:`dynamics.analysis`, the sweep CLI in :mod:`dynamics.sweep`.

Importing the package turns on float64 in JAX (``jax_enable_x64``): the closed-form checks of
the toy models need it. Code that wants float32 (the CIFAR path) sets its dtypes explicitly.
"""

import jax

jax.config.update("jax_enable_x64", True)

from dynamics.flow import (  # noqa: E402
    Hyper,
    State,
    Variant,
    VARIANTS,
    gd_step,
    jacobian_matrix,
    loss_gradients,
    vector_field,
)
from dynamics.models import LinearSiamese, PerModeSiamese, ScalarSiamese  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Hyper",
    "State",
    "Variant",
    "VARIANTS",
    "ScalarSiamese",
    "LinearSiamese",
    "PerModeSiamese",
    "gd_step",
    "jacobian_matrix",
    "loss_gradients",
    "vector_field",
    "__version__",
]
