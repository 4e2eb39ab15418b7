"""What a sweep is: a frozen :class:`SweepConfig` and the helpers families declare options with.

A sweep is the Cartesian product of its axes: every ``variant`` x ``method`` x ``eps`` x
``eta`` x ``sigma2`` x ``beta`` (the axes every family shares), crossed with the family's own
lane axes (the scalar family's grid of ``(phi0, theta0)`` starts, the matrix families'
``init`` index of random initial states). The config holds the shared axes and the
integration settings; the family's own settings live in ``options``, a frozen dataclass of the
family (:attr:`dynamics.sweep.family.Family.Options`).

Fields left ``None`` take the family's defaults (:attr:`~dynamics.sweep.family.Family.defaults`),
so ``SweepConfig(model="linear")`` is the default linear sweep and
``SweepConfig(eps=(0.01,))`` the CLI's main job. Every value is checked when the config is
made: a bad one raises ``ValueError`` with one line naming it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dynamics.checks import check_number
from dynamics.flow import TARGET_STARTS
from dynamics.solve.batch import SOLVE_METHODS
from dynamics.sweep.family import DIFFRAX_ONLY, ENGINE_ONLY, family
from dynamics.types import CONVENTIONS, MAX_DISCRETE_STEPS, MAX_SEED

#: the dynamics a sweep can run: gradient flow, GD on the expected loss, SGD on sampled views
METHODS = SOLVE_METHODS
#: the flow's integrators; ``auto``: diffrax when the solver is diffrax-only, else the family's
INTEGRATORS = ("auto", "engine", "diffrax")
#: the swept lists (each takes one or more values, no value twice)
SWEPT = ("eps", "eta", "sigma2", "beta", "variant", "method")


def option(default, help: str, *, positive: bool = False, nonneg: bool = False,
           integer: bool = False, maximum=None, nargs: int | None = None, metavar=None,
           choices=None, flag: bool = False):
    """A field of a family's options dataclass with what a command line needs to offer it.

    ``positive``/``nonneg``/``integer``/``maximum`` bound a number (checked by
    :func:`check_number` and by the CLI's parser); ``nargs`` = 2 for a ``(LO, HI)`` pair;
    ``choices`` for a word; ``flag`` for a switch (``store_true``). The CLI reads this
    metadata, so a new family's flags need no CLI code.
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, positive=positive, nonneg=nonneg, integer=integer, maximum=maximum,
        nargs=nargs, metavar=metavar, choices=choices, flag=flag))


def check_options(options) -> None:
    """Check every numeric field of a family's options against its :func:`option` bounds."""
    for f in dataclasses.fields(options):
        meta, value = f.metadata, getattr(options, f.name)
        if value is None or meta.get("flag") or meta.get("choices") or "help" not in meta:
            continue
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            check_number(f.name.replace("_", "-"), v, **meta)


def discrete_steps(t1: float, lr: float) -> int:
    """Steps of a gd/sgd lane, ``round(t1 / lr)`` (at least 1); ``ValueError`` past the limit."""
    n = t1 / lr
    if not math.isfinite(n) or n > MAX_DISCRETE_STEPS:
        raise ValueError(f"--t1 {t1:g} / --lr {lr:g} is {n:.3g} steps a lane; gd/sgd take at most "
                         f"{MAX_DISCRETE_STEPS} (raise --lr or lower --t1)")
    return max(1, int(round(n)))


_NUMBERS = dict(
    eps=dict(positive=True), eta=dict(nonneg=True), sigma2=dict(nonneg=True),
    beta=dict(positive=True), t1=dict(positive=True), lr=dict(positive=True),
    batch=dict(positive=True, integer=True), seed=dict(nonneg=True, integer=True, maximum=MAX_SEED),
    rtol=dict(positive=True), atol=dict(positive=True),
    max_steps=dict(positive=True, integer=True, maximum=MAX_DISCRETE_STEPS),
    chunk=dict(positive=True, integer=True), collapse_tol=dict(positive=True),
)


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """One sweep: its axes, its dynamics and integration, and the family's own options.

    Attributes:
        model: the family (:data:`dynamics.sweep.FAMILIES`): ``scalar``, ``linear``,
            ``permode``, ``isoloss``, ``barlow``, or any family :func:`~dynamics.sweep.discover`
            finds.
        variant, method, eps, eta, sigma2, beta: the swept lists (tuples; lists are taken).
            ``variant`` names the family's variants (:attr:`~dynamics.sweep.Family.variants`);
            a setting the family ignores (:attr:`~dynamics.sweep.Family.ignores`) must keep its
            default.
        convention: where the weight decay sits (``loss`` or ``tian``, docs/theory.md 1).
        target0: where a BYOL target starts: ``online`` (``theta_a(0) = theta(0)``, the
            default) or ``zero`` (``theta_a(0) = 0``, Tian et al.'s choice); unused by SimSiam.
        t1: integration time; ``None`` takes the family's per-method default.
        lr, batch: gd/sgd step size in ODE time and sgd minibatch size.
        seed: the PRNG seed (sgd, and the matrix families' data and initial states).
        early_exit: flow on the engine: a lane stops once its field stays below 1e-2 of the
            family's ``ftol`` (divided by ``max(1, eps)``), instead of running to ``t1``; the
            final state is then close to the fixed point rather than the state at ``t1``, and
            the classification is the same. ``False`` (the default) runs every lane to
            ``t1``: on the stiff default sweep the exit saved under 0.01 % of the steps, so it
            is an option, not the default.
        rtol, atol, max_steps, solver: the flow's adaptive solver (``solver="auto"``: the
            stiffness policy of :mod:`dynamics.solve.policy`).
        integrator: ``engine``, ``diffrax`` or ``auto`` (see :data:`INTEGRATORS`).
        chunk: lanes per compiled call (``None``: the family's choice).
        collapse_tol: the family's collapse threshold (scalar: on ``|theta|``; matrix: on each
            singular value).
        options: the family's own settings (``None``: its defaults).
        command: the command line that asked for the sweep (written to the provenance).
    """

    model: str = "scalar"
    variant: tuple | None = None
    method: tuple | None = None
    eps: tuple | None = None
    eta: tuple | None = None
    sigma2: tuple | None = None
    beta: tuple | None = None
    convention: str | None = None
    target0: str | None = None
    t1: float | None = None
    lr: float | None = None
    batch: int | None = None
    seed: int | None = None
    rtol: float | None = None
    atol: float | None = None
    solver: str | None = None
    integrator: str | None = None
    max_steps: int | None = None
    chunk: int | None = None
    collapse_tol: float | None = None
    early_exit: bool = False
    options: Any = None
    command: str = ""

    def __post_init__(self):
        fam = family(self.model)
        for k, v in fam.defaults.items():
            if getattr(self, k) is None:
                object.__setattr__(self, k, v)
        if self.integrator is None:
            object.__setattr__(self, "integrator", "auto")
        if self.solver is None:
            object.__setattr__(self, "solver", "auto")
        if self.options is None:
            object.__setattr__(self, "options", fam.Options())
        elif not isinstance(self.options, fam.Options):
            raise ValueError(f"options of --model {self.model} must be "
                             f"{fam.Options.__name__}, got {type(self.options).__name__}")
        for name in SWEPT:
            v = getattr(self, name)
            v = (v,) if isinstance(v, (str, int, float)) else tuple(v)
            if name in _NUMBERS:  # numbers as floats, so that 0.1 and "0.1" are one value
                for x in v:
                    check_number(name, x, **_NUMBERS[name])
                v = tuple(float(x) for x in v)
            object.__setattr__(self, name, v)
        self._check(fam)

    def _check(self, fam) -> None:
        for name in SWEPT:
            vals = getattr(self, name)
            if not vals:
                raise ValueError(f"--{name} needs at least one value")
            if len(set(vals)) != len(vals):
                raise ValueError(f"--{name} lists a value twice: {' '.join(map(str, vals))}")
        for v in self.variant:
            if v not in fam.variants:
                raise ValueError(f"unknown variant {v!r} for --model {self.model} "
                                 f"(choose from {', '.join(fam.variants)})")
        for name in fam.ignores:
            if getattr(self, name) != fam.defaults[name]:
                raise ValueError(f"--model {self.model} does not use {name} "
                                 f"(got {getattr(self, name)!r})")
        for m in self.method:
            if m not in METHODS:
                raise ValueError(f"unknown method {m!r} (choose from {', '.join(METHODS)})")
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {self.convention!r} "
                             f"(choose from {', '.join(CONVENTIONS)})")
        if self.target0 not in TARGET_STARTS:
            raise ValueError(f"unknown target0 {self.target0!r} "
                             f"(choose from {', '.join(TARGET_STARTS)})")
        for name, bounds in _NUMBERS.items():
            value = getattr(self, name)
            if value is None and name in ("t1", "chunk"):
                continue
            for v in value if isinstance(value, tuple) else (value,):
                check_number(name.replace("_", "-"), v, **bounds)
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"unknown integrator {self.integrator!r} "
                             f"(choose from {', '.join(INTEGRATORS)})")
        if self.solver not in fam.solvers:
            raise ValueError(f"unknown solver {self.solver!r} for --model {self.model} "
                             f"(choose from {', '.join(fam.solvers)})")
        if self.integrator == "engine" and self.solver in DIFFRAX_ONLY:
            raise ValueError(f"--solver {self.solver} needs --engine diffrax")
        if self.integrator == "diffrax" and self.solver in ENGINE_ONLY:
            raise ValueError(f"--solver {self.solver} needs --engine batched")
        if "sgd" in self.method or "gd" in self.method:
            bad = [e for e in self.eps if self.lr / e >= 1.0]
            if bad:
                raise ValueError(
                    f"--lr {self.lr:g} is too large for eps {bad[0]:g}: the predictor step "
                    f"lr/eps must be < 1 for gd/sgd to be stable")
            for m in self.method:
                if m != "flow":
                    discrete_steps(self.t1_for(m), self.lr)
        check_options(self.options)
        fam.check(self)

    # --- what the sweep resolves from the config -------------------------------------------

    @property
    def family(self):
        """The :class:`~dynamics.sweep.family.Family` of :attr:`model`."""
        return family(self.model)

    def t1_for(self, method: str) -> float:
        """The integration time of ``method``: ``t1``, or the family's default for it."""
        return float(self.family.t1_default[method] if self.t1 is None else self.t1)

    def n_steps(self, method: str) -> int:
        """gd/sgd steps a lane: ``t1 / lr``."""
        return discrete_steps(self.t1_for(method), self.lr)

    @property
    def flow_integrator(self) -> str:
        """``engine`` or ``diffrax``: :attr:`integrator`, resolved when ``auto``."""
        if self.integrator != "auto":
            return self.integrator
        if self.solver in DIFFRAX_ONLY:
            return "diffrax"
        if self.solver in ENGINE_ONLY:
            return "engine"
        return self.family.default_integrator
