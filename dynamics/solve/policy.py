"""The stiffness policy: which method integrates a lane of the gradient flow.

A small predictor time scale ``eps`` makes the flow stiff (docs/theory.md section 4): an explicit
method needs ``h < ~2 eps / p``.

- The engine (:mod:`dynamics.solve.engine`) decides per lane, while it integrates (``auto``,
  the method ``"auto"`` of :func:`engine_groups`): every lane starts on ``dopri5``, and one
  whose own stiffness estimate (``h |lambda|`` from the last two Dormand-Prince stages) stays
  above the method's stability boundary for ``pool.STIFF_STEPS`` accepted steps continues on
  a Rosenbrock method (exact Jacobian) from where it is, as the DOPRI5 code's stiffness
  test and LSODA's switch do: ``rodas5p`` (order 5) at ``rtol <= RODAS5P_MAX_RTOL``, else
  ``rodas4`` (:func:`stiff_method`). States of more than ``MAX_ROSENBROCK_DIM`` numbers (a dense
  per-lane Jacobian) stay on ``dopri5``.
- The fixed rule, a threshold on ``eps`` (:func:`flow_solver`): ``rodas4`` for
  ``eps < STIFF_EPS`` on the engine when a threshold is asked for (``stiff_eps``), and diffrax
  (:mod:`dynamics.solve.diffrax_flow`): ``kvaerno5`` (implicit) for ``eps < DIFFRAX_STIFF_EPS``,
  else ``tsit5``.
"""

from __future__ import annotations

import numpy as np

#: Default ``eps`` below which the engine treats a lane as stiff. Measured on the scalar model
#: (bench/): at rtol 1e-6 Rodas4 is as fast as Dormand-Prince down from eps = 1 and 5x faster
#: at eps = 0.1; at rtol 1e-8 Dormand-Prince wins for eps >= 0.3.
STIFF_EPS = 0.3
#: the diffrax solvers the flow offers, by name (:data:`dynamics.solve.diffrax_flow.SOLVERS`
#: maps them to diffrax's classes; named here so that choosing one does not import diffrax)
DIFFRAX_SOLVERS = ("tsit5", "dopri5", "kvaerno5", "kvaerno3")
#: ``eps`` below which diffrax's ``auto`` takes the implicit Kvaerno5 instead of Tsit5.
DIFFRAX_STIFF_EPS = 5e-3
#: Rosenbrock needs a dense per-lane Jacobian: above this state size the engine stays explicit.
MAX_ROSENBROCK_DIM = 64
#: The two integrators of the flow.
INTEGRATORS = ("engine", "diffrax")
#: The engine's methods (``auto`` applies the policy per lane).
ENGINE_METHODS = ("auto", "dopri5", "rodas4", "rodas5p")
#: Largest rtol at which ``auto``'s stiff lanes run Rodas5P rather than Rodas4. Measured on the
#: sweep's SimSiam lanes (bench/rosenbrock_pair.py; eps = 0.01 and 0.03, CPU seconds a lane,
#: Rodas5P over Rodas4): 0.51-0.62 at rtol 1e-8, 0.76-0.80 at 1e-6, 0.87-0.90 at 1e-5,
#: 0.97-0.98 at 1e-4 (2.2-2.6x fewer steps at 1e-8 for ~1.35x the cost of a step, and the
#: advantage shrinks as the tolerance loosens); on the linear model's 32-number states
#: (bench/engine_matrix.py, rtol 1e-7) 0.50-0.65.
RODAS5P_MAX_RTOL = 1e-4


def stiff_method(rtol: float) -> str:
    """The Rosenbrock method that ``auto``'s stiff lanes continue on at tolerance ``rtol``:
    ``rodas5p`` up to ``RODAS5P_MAX_RTOL``, ``rodas4`` above."""
    return "rodas5p" if rtol <= RODAS5P_MAX_RTOL else "rodas4"


def engine_solver(choice: str = "auto", stiff_eps: float | None = None, eps: float = 1.0,
                  dim: int | None = None) -> str:
    """What an engine block runs: ``choice`` unless ``"auto"``; ``"auto"`` (the per-lane
    switch) without a threshold, the fixed rule's method (:func:`flow_solver`) with one; and
    ``dopri5`` for states above ``MAX_ROSENBROCK_DIM`` numbers."""
    if choice != "auto":
        return choice
    if stiff_eps is not None:
        return flow_solver(eps, choice, "engine", stiff_eps, dim)
    return "auto" if dim is None or dim <= MAX_ROSENBROCK_DIM else "dopri5"


def flow_solver(eps: float, choice: str = "auto", integrator: str = "engine",
                stiff_eps: float | None = None, dim: int | None = None) -> str:
    """The fixed rule's method for a lane with predictor time scale ``eps`` (``choice`` unless
    ``"auto"``); the engine's own ``auto`` is :func:`engine_solver`.

    ``dim``: the numbers in one lane's state; the engine stays explicit above
    ``MAX_ROSENBROCK_DIM`` (see :func:`engine_groups`); ``None`` ignores that cap.
    """
    if choice != "auto":
        return choice
    if integrator == "engine":
        stiff = eps < (STIFF_EPS if stiff_eps is None else stiff_eps)
        return "rodas4" if stiff and (dim is None or dim <= MAX_ROSENBROCK_DIM) else "dopri5"
    if integrator == "diffrax":
        return "tsit5" if eps >= (DIFFRAX_STIFF_EPS if stiff_eps is None else stiff_eps) else "kvaerno5"
    raise ValueError(f"unknown integrator {integrator!r}: expected one of {', '.join(INTEGRATORS)}")


def stiff_lanes(hyper, n: int, stiff_eps: float = STIFF_EPS):
    """Boolean (n,) mask of the lanes the engine's ``auto`` treats as stiff: ``eps < stiff_eps``."""
    eps = np.broadcast_to(np.asarray(hyper.eps, dtype=float), (n,))
    return eps < stiff_eps


def engine_groups(hyper, n: int, d: int, method: str = "auto",
                  stiff_eps: float | None = STIFF_EPS):
    """``[(method, lanes), ...]``: the engine's lanes grouped by method (``lanes`` index arrays).

    ``auto`` with ``stiff_eps=None``: one group ``"auto"`` (each lane starts on ``dopri5`` and
    switches to :func:`stiff_method`'s Rosenbrock method by its own stiffness estimate) when the state has at most
    ``MAX_ROSENBROCK_DIM`` numbers (``d``), else ``dopri5``. ``auto`` with a threshold: the fixed
    rule, lanes with ``eps < stiff_eps`` to ``rodas4`` (same cap on ``d``), the others to
    ``dopri5``.
    """
    if method != "auto":
        return [(method, np.arange(n))]
    if stiff_eps is None:
        return [("auto" if d <= MAX_ROSENBROCK_DIM else "dopri5", np.arange(n))]
    stiff = stiff_lanes(hyper, n, stiff_eps) & (d <= MAX_ROSENBROCK_DIM)
    return [("rodas4", np.nonzero(stiff)[0]), ("dopri5", np.nonzero(~stiff)[0])]


def diffrax_groups(hyper, n: int, choice: str = "auto", stiff_eps: float | None = None):
    """``[(solver, lanes), ...]``: diffrax's lanes grouped by solver under the same policy."""
    if choice != "auto":
        return [(choice, np.arange(n))]
    eps = np.broadcast_to(np.asarray(hyper.eps, dtype=float), (n,))
    names = np.array([flow_solver(e, "auto", "diffrax", stiff_eps) for e in eps])
    return [(s, np.nonzero(names == s)[0]) for s in ("kvaerno5", "tsit5")]
