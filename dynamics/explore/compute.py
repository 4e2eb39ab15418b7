"""The live basin explorer's numbers, without any user interface.

Every number the explorer draws comes from here, and every one is computed by the project's
own engine and analyses: the basin map is the scalar sweep's rule (:mod:`dynamics.classify`)
applied to lanes integrated by :func:`dynamics.solve.solve_batch`, so it equals
``dynamics.sweep``'s ``outcome`` for the same settings and tolerances; the fixed points, their
stability and the separatrix (the stable manifold of the saddle) are those of the basin
figure (:mod:`dynamics.figures.compute`); a trajectory is the same flow saved on a time grid.

Hyperparameters enter the compiled programs as traced values: moving ``eps``, ``eta``,
``sigma2`` or ``beta`` reuses what was compiled. A new variant, model or grid size compiles
once; so does ``eps`` crossing the stiffness policy's threshold (``eps < 0.3``: Rodas4, else
Dopri5), the first time it does.
"""

from __future__ import annotations

import dataclasses
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.checks import check_choice, check_count, check_number
from dynamics.classify import Criterion, classify_batch
from dynamics.figures import compute as C
from dynamics.flow import VARIANTS, initial_state
from dynamics.models import ScalarSiamese
from dynamics.solve import solve_batch
from dynamics.types import CONVENTIONS, Hyper, Outcome

__all__ = ["MODELS", "VARIANT_NAMES", "Basin", "Settings", "Theory", "Trajectory", "basin",
           "parse_start", "theory", "trajectory"]

#: the variants offered: SimSiam or BYOL, with or without stop-gradient
VARIANT_NAMES = ("simsiam", "simsiam-nosg", "byol", "byol-nosg")
#: the models offered (a basin map is a plane of starts (theta0, phi0): the scalar models),
#: name -> the predictor mode of :class:`dynamics.models.ScalarSiamese`
MODELS = {"scalar": "trained", "scalar, no predictor": "none"}
#: where the time course of a trajectory is saved
TRAJECTORY_SAVES = 401
#: the largest grid offered (n x n lanes a move)
MAX_N = 512


@dataclasses.dataclass(frozen=True)
class Settings:
    """One setting of the explorer; every value is checked when made (``ValueError``, one line
    naming the field and the value).

    Defaults: the sweep's (``python -m dynamics.sweep``), except the step control: the
    engine's own ``rtol = 1e-6``, ``atol = 1e-9`` (the sweep's ``1e-8``, ``1e-10`` take 2-3
    times as long). The map then equals ``python -m dynamics.sweep --rtol 1e-6 --atol 1e-9``;
    on six settings of 128 x 128 starts (``bench/RESULTS.md``) it also equals the default
    sweep's, lane for lane: the classification's residual test (``ftol = 1e-6``) is met either
    way."""

    eps: float = 0.01
    eta: float = 0.15
    sigma2: float = 0.5
    beta: float = 1.0
    variant: str = "simsiam"
    convention: str = "loss"
    model: str = "scalar"
    n: int = 64
    theta_range: tuple = (-1.0, 1.0)
    phi_range: tuple = (-1.0, 2.0)
    t1: float = 200.0
    rtol: float = 1e-6
    atol: float = 1e-9
    ftol: float = 1e-6
    collapse_tol: float = 1e-3
    target0: str = "online"

    def __post_init__(self):
        check_number("eps", self.eps, positive=True)
        check_number("eta", self.eta)
        check_number("sigma2", self.sigma2, nonneg=True)
        check_number("beta", self.beta, nonneg=True)
        for name in ("t1", "rtol", "atol", "ftol", "collapse_tol"):
            check_number(name, getattr(self, name), positive=True)
        check_choice("variant", self.variant, VARIANT_NAMES)
        check_choice("convention", self.convention, CONVENTIONS)
        check_choice("model", self.model, tuple(MODELS))
        check_choice("target0", self.target0, ("online", "zero"))
        n = check_count("n", self.n, minimum=2)
        if n > MAX_N:
            raise ValueError(f"n must be <= {MAX_N}, got {self.n!r}")
        for name in ("theta_range", "phi_range"):
            r = getattr(self, name)
            if len(r) != 2:
                raise ValueError(f"{name} must be (lo, hi), got {r!r}")
            for v in r:
                check_number(name, v)
            if not float(r[0]) < float(r[1]):
                raise ValueError(f"{name} needs lo < hi, got {r!r}")
        # store plain floats, so equal settings compare and hash equal
        for name in ("eps", "eta", "sigma2", "beta", "t1", "rtol", "atol", "ftol",
                     "collapse_tol"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "n", n)
        for name in ("theta_range", "phi_range"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes``, checked."""
        return dataclasses.replace(self, **changes)

    @property
    def alpha_p(self) -> float:
        """Tian et al.'s predictor rate ``1 / eps``."""
        return 1.0 / self.eps

    def parts(self):
        """``(model, variant, hyper)`` of this setting, with Python-float leaves (shared by
        all lanes and traced by the compiled programs)."""
        model = ScalarSiamese(sigma2=self.sigma2, predictor=MODELS[self.model])
        hyper = Hyper.from_convention(self.convention, self.eta, self.eps, self.beta)
        return model, VARIANTS[self.variant], hyper

    def grid(self):
        """``(theta0, phi0)``: the starts along each axis (as the sweep lays them)."""
        return (np.linspace(*self.theta_range, self.n), np.linspace(*self.phi_range, self.n))


@dataclasses.dataclass(frozen=True)
class Basin:
    """The outcome of every start: ``outcome[i, j]`` at ``(theta0[j], phi0[i])``, codes of
    :class:`dynamics.types.Outcome`; ``seconds``: wall time of the computation."""

    settings: Settings
    theta0: np.ndarray
    phi0: np.ndarray
    outcome: np.ndarray
    seconds: float

    def share(self, outcome: Outcome) -> float:
        """The share of all starts with this outcome."""
        return float(np.mean(self.outcome == int(outcome)))


@dataclasses.dataclass(frozen=True)
class Theory:
    """Fixed points ``(theta, phi, kind)`` (kind: stable, saddle, unstable, marginal) and the
    separatrix: the stable manifolds of the saddles, arrays ``(m, 2)`` of ``(theta, phi)``.
    ``note`` says when no separatrix is drawn and why."""

    fixed: list
    separatrix: list
    note: str


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """One start integrated to ``t1``: the saves ``t`` and the states at them, its solver
    status and its outcome (the map's rule at ``t1``)."""

    theta0: float
    phi0: float
    t: np.ndarray
    theta: np.ndarray
    phi: np.ndarray
    theta_a: np.ndarray
    status: int
    outcome: Outcome


def _lanes(settings: Settings, theta0, phi0):
    variant = VARIANTS[settings.variant]
    return initial_state(variant, jnp.asarray(theta0, jnp.float64), jnp.asarray(phi0, jnp.float64),
                         target0=settings.target0)


def _flow(settings, model, variant, hyper, y0, ts=None):
    return solve_batch(model, variant, hyper, y0, method="flow", t1=settings.t1, ts=ts,
                       rtol=settings.rtol, atol=settings.atol)


def _classify(settings, model, variant, hyper, sol):
    y = jax.tree_util.tree_map(lambda x: jnp.asarray(x[:, -1]), sol.ys)
    cls = classify_batch(model, variant, hyper, y, jnp.asarray(sol.status),
                         Criterion(ftol=settings.ftol, collapse_tol=settings.collapse_tol))
    return np.asarray(cls["outcome"]).astype(np.int8)


def basin(settings: Settings) -> Basin:
    """Integrate every start of the grid to ``t1`` and label it as the scalar sweep does."""
    t = time.perf_counter()
    th, ph = settings.grid()
    TH, PH = np.meshgrid(th, ph)  # rows: phi0, as the sweep's (phi0, theta0) planes
    model, variant, hyper = settings.parts()
    sol = _flow(settings, model, variant, hyper, _lanes(settings, TH.ravel(), PH.ravel()))
    outcome = _classify(settings, model, variant, hyper, sol).reshape(TH.shape)
    return Basin(settings, th, ph, outcome, time.perf_counter() - t)


def theory(settings: Settings) -> Theory:
    """Fixed points with their stability and, for SimSiam, the separatrix, in the plane of
    the map (Newton from a 9 x 9 grid of seeds over the map's box, as the basin figure)."""
    model, variant, hyper = settings.parts()
    seeds = C.seed_grid(settings.theta_range, settings.phi_range)
    if variant.has_target:  # BYOL: seeds on the plane where the target starts
        tgt = seeds[:, :1] if settings.target0 == "online" else np.zeros_like(seeds[:, :1])
        seeds = np.concatenate([seeds, tgt], axis=1)
    points = C.fixed_points(model, variant, hyper, seeds)
    fixed = [(float(p["z"][0]), float(p["z"][1]), p["kind"]) for p in points]
    separatrix, note = [], ""
    if variant.has_target:
        note = ("no separatrix drawn: BYOL's state is (theta, phi, theta_a), where the basin "
                "boundary is a surface; fixed points shown at their (theta, phi)")
    else:
        box = 1.5 * max(abs(v) for v in (*settings.theta_range, *settings.phi_range))
        for p in points:
            if p["kind"] == "saddle":
                separatrix.extend(m[:, :2] for m in C.stable_manifold(model, variant, hyper, p,
                                                                     bound=box))
        if not separatrix:
            note = "no saddle: no separatrix"
    return Theory(fixed, separatrix, note)


def trajectory(settings: Settings, theta0: float, phi0: float) -> Trajectory:
    """Integrate one start, saved at ``TRAJECTORY_SAVES`` equally spaced times in ``[0, t1]``."""
    check_number("theta0", theta0)
    check_number("phi0", phi0)
    model, variant, hyper = settings.parts()
    ts = np.linspace(0.0, settings.t1, TRAJECTORY_SAVES)
    sol = _flow(settings, model, variant, hyper, _lanes(settings, [float(theta0)], [float(phi0)]),
                ts=ts)
    out = _classify(settings, model, variant, hyper, sol)[0]
    tgt = sol.ys.tgt if variant.has_target else sol.ys.enc
    return Trajectory(float(theta0), float(phi0), np.asarray(sol.ts[0]), np.asarray(sol.ys.enc[0]),
                      np.asarray(sol.ys.pred[0]), np.asarray(tgt[0]), int(sol.status[0]),
                      Outcome(int(out)))


def parse_start(text: str) -> tuple[float, float]:
    """``"theta0, phi0"`` (comma or space separated) as two finite numbers; ``ValueError``
    naming the text otherwise."""
    words = str(text).replace(",", " ").split()
    try:
        values = [float(w) for w in words]
    except ValueError:
        values = []
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"start must be two finite numbers 'theta0, phi0', got {text!r}")
    return values[0], values[1]
