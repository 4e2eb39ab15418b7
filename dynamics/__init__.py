"""Toy dynamics of non-contrastive self-supervised learning (SimSiam, BYOL).

A model is written once, as a loss over its parameters; the gradient flow, the discrete
GD/SGD update and every Jacobian are derived from that loss by JAX transformations
(:mod:`dynamics.flow`). The shared vocabulary (state, variant, hyperparameters, status and
outcome codes) is :mod:`dynamics.types`, the model interface :class:`dynamics.models.Model`.
Integrators live in :mod:`dynamics.solve` (one batched entry point,
:func:`dynamics.solve.solve_batch`), analyses in :mod:`dynamics.analysis`, process set-up for
the command lines in :mod:`dynamics.runtime`, the sweep CLI in :mod:`dynamics.sweep`.

Importing the package turns on float64 in JAX (``jax_enable_x64``): the closed-form checks of
the toy models need it. Code that wants float32 (the CIFAR path) sets its dtypes explicitly.
"""

import sys as _sys

if _sys.argv[:1] == ["-m"]:  # ``python -m dynamics.<cli>`` is importing its package: stop
    from dynamics._signals import install_for_cli  # cleanly on Ctrl-C from here on

    install_for_cli()

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from dynamics.flow import (  # noqa: E402
    FlowSystem,
    gd_step,
    jacobian_matrix,
    loss_gradients,
    vector_field,
)
from dynamics.models import LinearSiamese, Model, PerModeSiamese, ScalarSiamese  # noqa: E402
from dynamics.types import VARIANTS, Hyper, Outcome, SlotState, State, Status, Variant  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "FlowSystem",
    "Hyper",
    "Model",
    "Outcome",
    "Status",
    "SlotState",
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
