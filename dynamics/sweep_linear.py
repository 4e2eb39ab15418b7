"""Old home of the matrix-model sweep, kept for this release: it is now the ``linear`` and
``permode`` families of :mod:`dynamics.sweep` (``python -m dynamics.sweep --model linear``)."""

from __future__ import annotations

import warnings

from dynamics import sweep
from dynamics.compat import moved
from dynamics.plot import collapse_phase_figure
from dynamics.sweep import matrix
from dynamics.sweep.matrix import MATRIX_DEFAULTS, PHASE_AXES, PROGRESS_CHUNKS  # noqa: F401


def _build_parser(model: str = "linear"):
    return sweep.build_parser(model)


def _run_sweep(args, progress=None, plan=None):
    return sweep.run(sweep.config_from_args(args), progress=progress, plan_=plan)


def main(argv=None) -> int:
    """``python -m dynamics.sweep --model linear|permode`` (this name is deprecated)."""
    warnings.warn("dynamics.sweep_linear.main is deprecated; use dynamics.sweep.main",
                  DeprecationWarning, stacklevel=2)
    argv = list(argv or [])
    if "--model" not in argv:
        argv = ["--model", "linear", *argv]
    return sweep.main(argv)


__getattr__ = moved("dynamics.sweep_linear", {
    "build_parser": ("dynamics.sweep.build_parser('linear')", _build_parser),
    "run_sweep": ("dynamics.sweep.run(SweepConfig(model='linear', ...))", _run_sweep),
    "data_matrices": ("dynamics.sweep.matrix.data_matrices", matrix.data_matrices),
    "summarize": ("dynamics.sweep.matrix.summarize", matrix.summarize),
    "phase_figure": ("dynamics.plot.collapse_phase_figure", collapse_phase_figure),
    "plan_sweep": ("dynamics.sweep.matrix.plan_sweep", matrix.plan_sweep),
    "DEFAULTS": ("dynamics.sweep.family('linear').defaults", MATRIX_DEFAULTS),
})
