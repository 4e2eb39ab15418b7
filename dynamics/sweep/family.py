"""What a model family gives a sweep, and the registry of families.

The sweep core (:mod:`dynamics.sweep.core`) owns the loop: the Cartesian grid, the blocks of
``(variant, method, eps)``, padded chunks, flow/gd/sgd through
:func:`dynamics.solve.solve_batch`, SGD keys, per-lane status, the Dataset and its provenance.
A family contributes only what is particular to its model:

- its own lane axes and their values (:meth:`Family.axis_values`): the scalar family's
  ``(phi0, theta0)`` grid, the matrix families' ``init`` index;
- how to build one chunk's model, hyperparameters and initial states from the lanes'
  coordinates (:meth:`Family.build`);
- how to read the final states into per-lane numbers (:meth:`Family.read`) and what the
  Dataset holds (:meth:`Family.finish`);
- its defaults, memory plan, summary table and figures.

Families are found, not listed by hand (:func:`discover`): every module of the
``dynamics.sweep`` package and every object of the entry-point group
:data:`ENTRY_POINT_GROUP`, so that another installed package can add models (``--model`` lists
them by :attr:`Family.order`, then as found)::

    [project.entry-points."dynamics.families"]
    mymodel = "mypackage.sweep_family"        # a module that registers, or a Family subclass

A family module decorates its :class:`Family` subclass with :func:`register`;
``python -m dynamics.sweep --model NAME`` then offers it, with its options as flags (read from
its :attr:`Family.Options` dataclass), its own variant labels (:attr:`Family.variants`) and
without the shared flags it does not read (:attr:`Family.ignores`).
"""

from __future__ import annotations

import abc
import importlib
import pkgutil
import warnings
from importlib.metadata import entry_points
from typing import Any, ClassVar

from dynamics.solve.policy import DIFFRAX_SOLVERS, ENGINE_METHODS
from dynamics.types import VARIANTS

#: every flow solver a sweep accepts (``auto`` applies the stiffness policy)
SOLVER_CHOICES = tuple(dict.fromkeys(ENGINE_METHODS + DIFFRAX_SOLVERS))
#: the flow solvers only diffrax has, and those only the engine has
DIFFRAX_ONLY = tuple(s for s in DIFFRAX_SOLVERS if s not in ENGINE_METHODS)
ENGINE_ONLY = tuple(s for s in ENGINE_METHODS if s != "auto" and s not in DIFFRAX_SOLVERS)

#: the defaults every family starts from; a family's :attr:`Family.defaults` is
#: ``dict(SHARED_DEFAULTS, ...)`` with what it changes
SHARED_DEFAULTS = dict(
    sigma2=(0.5,), beta=(1.0,), variant=("simsiam",), method=("flow",), convention="loss",
    target0="online",
    t1=None, seed=0, solver="auto", max_steps=200_000, chunk=None, collapse_tol=1e-3,
)

FAMILIES: dict[str, "Family"] = {}


def register(cls):
    """Class decorator: add one instance of a :class:`Family` subclass to :data:`FAMILIES`."""
    if cls.name in FAMILIES:
        raise ValueError(f"a sweep family named {cls.name!r} is already registered")
    FAMILIES[cls.name] = cls()
    return cls


#: the entry-point group through which other packages add families
ENTRY_POINT_GROUP = "dynamics.families"
#: modules of the package that are the sweep machinery, not families
NOT_FAMILIES = ("__main__", "config", "core", "family", "provenance", "store", "ray_backend")


def discover(package: str = "dynamics.sweep") -> dict[str, "Family"]:
    """Import every family module of ``package`` and load the entry points of
    :data:`ENTRY_POINT_GROUP`; return :data:`FAMILIES`. Safe to call again (modules are
    imported once; a family already registered is skipped).

    An entry point that fails to load is skipped with a warning naming it, so that one broken
    extension does not take the others down.
    """
    pkg = importlib.import_module(package)
    found = sorted(m.name for m in pkgutil.iter_modules(pkg.__path__))
    for name in found:
        if name not in NOT_FAMILIES and not name.startswith("_"):
            importlib.import_module(f"{package}.{name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as e:  # noqa: BLE001 - an extension's own failure, reported and skipped
            warnings.warn(f"dynamics.families entry point {ep.name!r} ({ep.value}) failed to "
                          f"load: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)
            continue
        if isinstance(obj, type) and issubclass(obj, Family) and not isinstance(
                FAMILIES.get(obj.name), obj):
            register(obj)
    # the listing order: by each family's ``order``, then by when it was registered
    ordered = sorted(FAMILIES.items(), key=lambda kv: kv[1].order)
    FAMILIES.clear()
    FAMILIES.update(ordered)
    return FAMILIES


def family(name: str) -> "Family":
    """The registered family ``name``; ``ValueError`` (one line) for an unknown one.

    A name not yet registered triggers :func:`discover` once more (a module or entry point
    added since the package was imported)."""
    if name not in FAMILIES:
        discover()
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r} (choose from {', '.join(FAMILIES)})") from None


class Family(abc.ABC):
    """Base of a sweep family (see the module docstring). Subclasses set the class attributes
    and implement the abstract methods; the others have defaults."""

    #: the ``--model`` name
    name: ClassVar[str]
    #: where ``--model`` lists the family (lower first; ties keep the order they were found in)
    order: ClassVar[int] = 100
    #: one paragraph for ``--help``
    description: ClassVar[str]
    #: frozen dataclass of the family's own settings (fields made with
    #: :func:`dynamics.sweep.config.option`, so that the CLI can offer them)
    Options: ClassVar[type]
    #: defaults of the :class:`~dynamics.sweep.config.SweepConfig` fields
    defaults: ClassVar[dict]
    #: integration time of each method when the config's ``t1`` is ``None``
    t1_default: ClassVar[dict]
    #: the family's lane axes, after the shared ``eta, sigma2, beta``
    lane_axes: ClassVar[tuple[str, ...]]
    #: the flow's integrator when the config asks for ``auto``
    default_integrator: ClassVar[str] = "engine"
    #: the flow solvers the family accepts
    solvers: ClassVar[tuple[str, ...]] = SOLVER_CHOICES
    #: the stiffness policy's threshold on ``eps`` (``None``: the integrator's default)
    stiff_eps: ClassVar[float | None] = None
    #: SGD keys come from ``PRNGKey(seed)`` (``None``) or ``fold_in(PRNGKey(seed), stream)``
    sgd_stream: ClassVar[int | None] = None
    #: help texts of shared flags where this family reads them differently
    help: ClassVar[dict] = {}
    #: the variants the family runs, by the label its tables and Dataset show
    #: (``{label: Variant}``; default the four SimSiam/BYOL variants)
    variants: ClassVar[dict] = VARIANTS
    #: shared settings the family does not read (of ``eps``, ``beta``, ``convention``): the
    #: CLI does not offer them and :class:`~dynamics.sweep.SweepConfig` refuses a value other
    #: than the family's default
    ignores: ClassVar[tuple[str, ...]] = ()
    #: the result file and the patterns of everything a run writes (for the output folder)
    result_file: ClassVar[str]
    result_patterns: ClassVar[tuple[str, ...]]
    #: what one figure of :meth:`figures` is called in the CLI's last line
    figure_kind: ClassVar[str] = "figure"

    @property
    def result_kind(self) -> str:
        """The name of the family's result set in an output folder (its lock and manifest)."""
        return f"sweep-{self.name}"

    # --- the grid --------------------------------------------------------------------------

    def check(self, config) -> None:
        """Raise ``ValueError`` (one line) for options that do not fit together."""

    @abc.abstractmethod
    def axis_values(self, config) -> dict:
        """``{axis: 1-d array}`` for each of :attr:`lane_axes`."""

    def axis_sizes(self, config) -> tuple[int, ...]:
        """The length of each of :attr:`lane_axes`, known without building them (so that a
        grid too large for memory is refused before it is made)."""
        vals = self.axis_values(config)
        return tuple(len(vals[a]) for a in self.lane_axes)

    def prepare(self, config) -> Any:
        """Anything computed once per sweep (data matrices, random initial states), handed to
        :meth:`build`, :meth:`read` and :meth:`finish` as ``ctx``."""
        return None

    @abc.abstractmethod
    def build(self, config, ctx, variant, eps: float, lanes: dict):
        """``(model, hyper, y0)`` for one chunk: ``lanes`` maps ``eta``, ``sigma2``, ``beta``
        and each lane axis to a (n,) array of the lanes' coordinates; ``eps`` is the block's."""

    # --- the results -----------------------------------------------------------------------

    @abc.abstractmethod
    def read(self, config, ctx, method: str, model, variant, hyper, y, status,
             window) -> dict:
        """``{name: (n, ...) array}`` from one chunk's final states ``y`` (leaves (n, ...)),
        its status, and for sgd the trailing window of segment ends (leaves (n, w, ...);
        ``None`` for flow and gd). Every chunk returns the same names."""

    @abc.abstractmethod
    def finish(self, config, ctx, dims: tuple, values: dict) -> tuple[dict, dict, dict]:
        """``(data_vars, coords, attrs)`` of the Dataset from the assembled ``values`` (each of
        :meth:`read`'s names, plus ``status`` as labels, over ``dims`` and any trailing
        dimensions the name had)."""

    def extra_dims(self, name: str) -> tuple[str, ...]:
        """Names of the trailing dimensions of :meth:`read`'s ``name`` (default none)."""
        return ()

    # --- planning and output ---------------------------------------------------------------

    @abc.abstractmethod
    def plan(self, config, n_inner: int, n_lanes: int, memory: int | None = None,
             held: int | None = None) -> dict:
        """Check that the sweep fits before any work; ``{"chunk": {method: lanes}, "file_bytes"}``
        (``ValueError``, one line, naming what does not fit). ``held``: the lanes whose results
        are in memory at once when the result is streamed (``None``: all ``n_lanes``); a
        family may leave the parameter out, and is then always checked for the whole grid."""

    def describe(self, config, n_lanes: int) -> str:
        """What the CLI prints before the run."""
        return f"{n_lanes} lanes"

    @abc.abstractmethod
    def summarize(self, ds) -> str:
        """The table the CLI prints after the run."""

    def figures(self, ds, config) -> list:
        """``[(png_name, make_figure), ...]`` the CLI writes beside the Dataset."""
        return []

    def n_figures(self, config) -> int:
        return 0
