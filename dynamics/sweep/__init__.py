"""Sweeps: ``run(SweepConfig(...)) -> xarray.Dataset`` for every model family, and the one CLI.

A sweep is the Cartesian product of its axes: every ``variant`` x ``method`` x ``eps`` x
``eta`` x ``sigma2`` x ``beta``, crossed with the family's own lane axes (the scalar family's
``(phi0, theta0)`` grid of starts, the matrix families' ``init`` index of random initial
states). Each lane is integrated to ``t1`` (flow, gd or sgd) and read by its family: the
scalar family labels it collapsed / non-collapsed / undecided / failed
(:class:`dynamics.types.Outcome`), the matrix families keep the final encoder's spectrum and
collapse measures. The Dataset has one coordinate per axis, named after its symbol, and its
provenance in ``attrs``.

From Python::

    from dynamics.sweep import SweepConfig, run
    ds = run(SweepConfig(eps=(1.0, 0.01), variant=("simsiam",)))
    ds["collapsed"].mean(("phi0", "theta0"))

From the shell: ``python -m dynamics.sweep --model scalar|linear|permode|isoloss|barlow ...``
(see ``--help``); it writes the Dataset and its figures into ``--out`` as one complete-or-absent set.

Modules: :mod:`~dynamics.sweep.config` (the frozen config), :mod:`~dynamics.sweep.core` (the
loop), :mod:`~dynamics.sweep.family` (what a family gives, and the registry),
:mod:`~dynamics.sweep.provenance`; the families :mod:`~dynamics.sweep.scalar`,
:mod:`~dynamics.sweep.matrix` (``linear``, ``permode``), :mod:`~dynamics.sweep.isoloss`,
:mod:`~dynamics.sweep.barlow`, found by :func:`discover` (and any other package's, through the
entry-point group ``dynamics.families``).
"""

from __future__ import annotations

import functools
import importlib

from dynamics.compat import moved
from dynamics.solve.policy import flow_solver
from dynamics.sweep import scalar
from dynamics.sweep.config import METHODS, SweepConfig, option
from dynamics.sweep.core import SEGMENTS, SGD_WINDOW, axes, plan, run, segments
from dynamics.sweep.family import ENTRY_POINT_GROUP, FAMILIES, Family, discover, family, register
from dynamics.sweep.provenance import git_revision, provenance
from dynamics.sweep.scalar import DEFAULTS, PERCENT_NOTE, T1_DEFAULT, basin_title, summarize

# every family module of this package registers itself, and so do the entry points of the
# group "dynamics.families" (other packages' models): nothing here lists them by hand
discover(__name__)

__all__ = [
    "DEFAULTS",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "METHODS",
    "PERCENT_NOTE",
    "SEGMENTS",
    "SGD_WINDOW",
    "T1_DEFAULT",
    "Family",
    "SweepConfig",
    "axes",
    "basin_title",
    "build_parser",
    "discover",
    "family",
    "git_revision",
    "main",
    "option",
    "plan",
    "provenance",
    "register",
    "run",
    "segments",
    "summarize",
]


def _cli(name):
    # The command line lives in ``__main__``; it is imported on first use, so that
    # ``python -m dynamics.sweep`` does not find it already imported under another name.
    return getattr(importlib.import_module("dynamics.sweep.__main__"), name)


def _run_sweep(args, progress=None, plan=None):
    """The old entry point: a sweep from parsed command-line arguments (any family)."""
    return run(_cli("config_from_args")(args), progress=progress, plan_=plan)


def _solver_for(eps: float, choice: str, engine: str = "diffrax") -> str:
    return flow_solver(eps, choice, "engine" if engine == "batched" else engine)


__getattr__ = moved("dynamics.sweep", {
    "run_sweep": ("dynamics.sweep.run(SweepConfig(...))", _run_sweep),
    "solver_for": ("dynamics.solve.policy.flow_solver", _solver_for),
    "plan_sweep": ("dynamics.sweep.plan(config)", scalar.plan_sweep),
    "AXES": ("dynamics.sweep.axes(config)", ("variant", "method", "eps", "eta", "sigma2", "beta",
                                             "phi0", "theta0")),
    "RESULT_PATTERNS": ("dynamics.sweep.family('scalar').result_patterns",
                        scalar.ScalarFamily.result_patterns),
    "SAMPLE_BYTES": ("dynamics.sweep.scalar.SAMPLE_BYTES", scalar.SAMPLE_BYTES),
    "SGD_CHUNK_BYTES": ("dynamics.sweep.scalar.SGD_CHUNK_BYTES", scalar.SGD_CHUNK_BYTES),
    "_git_revision": ("dynamics.sweep.git_revision", git_revision),
}, lazy={name: functools.partial(_cli, name)
         for name in ("main", "build_parser", "config_from_args")})
