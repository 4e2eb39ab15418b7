"""The one batched entry point: :func:`solve_batch`.

Gradient flow, GD and SGD, on either integrator, for any model, behind one call:

==========  ===================================  ==============================================
method      ``integrator="engine"`` (default)     ``integrator="diffrax"``
==========  ===================================  ==============================================
``flow``    :func:`dynamics.solve.engine.         :func:`dynamics.solve.diffrax_flow.flow_batch`
            flow_batch` (per-lane steps,         (``jit(vmap(diffeqsolve))``), lanes grouped by
            Rodas4/Dopri5, chunks, devices)      solver under the same stiffness policy
``gd``      :func:`dynamics.solve.engine.         :func:`dynamics.solve.discrete.discrete_batch`
``sgd``     discrete_batch` (chunks, devices)    (``jit(vmap(lax.scan))``)
==========  ===================================  ==============================================

``solver="auto"`` applies the stiffness policy of :mod:`dynamics.solve.policy` lane by lane
(on the engine: each lane starts explicit and switches to Rosenbrock when it turns stiff).
"""

from __future__ import annotations

import jax
import numpy as np

from dynamics.checks import check_count, check_real, check_times
from dynamics.solve import discrete, engine
from dynamics.solve.lanes import Solution, lane_subset, n_lanes
from dynamics.solve.policy import DIFFRAX_SOLVERS, ENGINE_METHODS, INTEGRATORS, diffrax_groups
from dynamics.types import Hyper, LaneTree, Variant

#: what :func:`solve_batch` integrates
SOLVE_METHODS = ("flow", "gd", "sgd")
#: default tolerances and step caps of the flow, per integrator
FLOW_DEFAULTS = {
    "engine": dict(rtol=1e-6, atol=1e-9, max_steps=100_000),
    "diffrax": dict(rtol=1e-8, atol=1e-10, max_steps=16384),
}


def solve_batch(
    model,
    variant: Variant,
    hyper: Hyper,
    y0: LaneTree,
    *,
    method: str = "flow",
    integrator: str = "engine",
    t1: float | None = None,
    ts=None,
    solver: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    max_steps: int | None = None,
    stiff_eps: float | None = None,
    lr=None,
    n_steps: int | None = None,
    keys=None,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    slots: int | None = None,
    devices: int | None = None,
    unroll: int = 1,
    step0: int = 0,
    steady_tol: float | None = None,
    compile_only: bool = False,
) -> Solution | None:
    """Integrate ``n`` lanes of one model: gradient flow, GD or SGD (see the module table).

    Args:
        model, hyper: pytrees whose leaves are shared by all lanes (scalars, or what the
            model's ``lane_broadcast`` broadcasts) or carry a leading lane axis of length ``n``.
        y0: the initial :class:`~dynamics.types.State`, every leaf with the lane axis (n, ...).
        method: ``"flow"`` (the expected-loss gradient flow), ``"gd"`` (discrete steps on the
            expected loss) or ``"sgd"`` (steps on sampled minibatches).
        integrator: ``"engine"`` or ``"diffrax"`` (for ``gd``/``sgd``: the plain vmapped scan).
        t1, ts: flow only: end time (> 0) and optional save times in ``[0, t1]``.
        solver: flow only: ``"auto"`` (the stiffness policy) or a method of the integrator
            (engine: ``dopri5``, ``rodas4``; diffrax: ``tsit5``, ``dopri5``, ``kvaerno5``,
            ``kvaerno3``).
        rtol, atol, max_steps: flow only; default per integrator (``FLOW_DEFAULTS``).
        stiff_eps: flow only: a threshold on ``eps`` for ``solver="auto"``: lanes below it
            run the stiff method from the start. Default: diffrax's ``DIFFRAX_STIFF_EPS``; on
            the engine none, each lane switches by its own stiffness estimate
            (:mod:`dynamics.solve.policy`).
        lr, n_steps: gd/sgd only: step size in ODE time (scalar or per lane) and step count.
        keys, batch_size: sgd only: one PRNG key per lane, minibatch size. Step ``k`` of a lane
            draws its minibatch with ``fold_in(keys[lane], k)`` on both integrators.
        chunk_size, slots, devices, unroll: engine only (see :mod:`dynamics.solve.engine`).
        steady_tol: engine flow only: lanes whose field stays below it stop early when only
            ``t1`` is saved (:func:`dynamics.solve.engine.flow_batch`); ``None`` runs every
            lane to ``t1``.
        step0: gd/sgd only: the index of the first step, when a run is cut into several calls
            (a target copied every ``k`` steps counts from it; minibatch keys do not).
        compile_only: check the arguments and prepare what the call would compile, without
            running it; returns ``None``. Only the engine's flow has programs to prepare
            (:func:`dynamics.solve.engine.flow_batch`); on the other paths it does nothing.

    Returns:
        :class:`~dynamics.solve.lanes.Solution` with ``ts`` (n, S), ``ys`` leaves (n, S, ...),
        per-lane ``status`` (n,) and ``num_steps`` (n,). For gd/sgd, ``S = 1`` (the final
        state); for the flow ``S`` is ``len(ts)`` or 1.

    Raises:
        ValueError: one line naming a bad argument and its value: no lanes, a ``t1`` or
            ``lr`` that is not finite and > 0, a step count that is not a positive integer, an
            unknown method, integrator or solver, or arguments of the other methods.
    """
    if method not in SOLVE_METHODS:
        raise ValueError(
            f"unknown method {method!r}: expected one of {', '.join(SOLVE_METHODS)}"
        )
    if integrator not in INTEGRATORS:
        raise ValueError(
            f"unknown integrator {integrator!r}: expected one of {', '.join(INTEGRATORS)}"
        )
    n_lanes(y0)  # at least one lane
    if stiff_eps is not None:
        check_real("stiff_eps", stiff_eps, positive=True)
    if method == "flow":
        if t1 is None:
            raise ValueError("the flow needs an end time t1")
        check_times(t1, ts)
        for name, value in (("lr", lr), ("n_steps", n_steps), ("keys", keys),
                            ("batch_size", batch_size), ("step0", step0 or None)):
            if value is not None:
                raise ValueError(f"{name} is for gd/sgd, not the flow (got {name}={value!r})")
        tol = dict(FLOW_DEFAULTS[integrator])
        tol.update({k: v for k, v in (("rtol", rtol), ("atol", atol), ("max_steps", max_steps))
                    if v is not None})
        if integrator == "engine":
            if solver not in ENGINE_METHODS:
                raise ValueError(f"unknown engine solver {solver!r}: expected one of "
                                 f"{', '.join(ENGINE_METHODS)}")
            return engine.flow_batch(
                model, variant, hyper, y0, t1=t1, ts=ts, method=solver, chunk_size=chunk_size,
                slots=slots, stiff_eps=stiff_eps, devices=devices, steady_tol=steady_tol,
                compile_only=compile_only, **tol,
            )
        if solver != "auto" and solver not in DIFFRAX_SOLVERS:
            raise ValueError(f"unknown diffrax solver {solver!r}: expected auto or one of "
                             f"{', '.join(DIFFRAX_SOLVERS)}")
        if compile_only:
            return None
        return _diffrax_flow(model, variant, hyper, y0, float(t1), ts, solver, stiff_eps, tol)

    if t1 is not None or ts is not None:
        raise ValueError(f"t1/ts are for the flow; {method} runs n_steps steps of size lr")
    if lr is None or n_steps is None:
        raise ValueError(f"{method} needs lr and n_steps")
    n_steps = check_count("n_steps", n_steps)
    check_real("lr", lr, positive=True)
    if method == "sgd" and (keys is None or batch_size is None):
        raise ValueError("sgd needs one PRNG key per lane (keys) and a batch_size")
    if method == "gd" and (keys is not None or batch_size is not None):
        raise ValueError("gd uses the expected loss: give no keys or batch_size (or use sgd)")
    if compile_only:
        return None
    if integrator == "engine":
        return engine.discrete_batch(
            model, variant, hyper, y0, lr, keys, n_steps=n_steps, batch_size=batch_size,
            chunk_size=chunk_size, unroll=unroll, devices=devices, step0=step0,
        )
    return discrete.discrete_batch(model, variant, hyper, y0, lr, keys, n_steps=int(n_steps),
                                   batch_size=batch_size, step0=step0)


def _diffrax_flow(model, variant, hyper, y0, t1, ts, solver, stiff_eps, tol) -> Solution:
    """diffrax's ``jit(vmap)`` once per solver group of the stiffness policy."""
    from dynamics.solve.diffrax_flow import flow_batch  # diffrax: imported when used

    n = n_lanes(y0)
    groups = [(s, idx) for s, idx in diffrax_groups(hyper, n, solver, stiff_eps) if idx.size]
    if len(groups) == 1:
        return flow_batch(model, variant, hyper, y0, t1=t1, ts=ts, solver=groups[0][0], **tol)
    parts = []
    for s, idx in groups:
        m, h, y = lane_subset(model, hyper, y0, idx)
        parts.append((idx, flow_batch(m, variant, h, y, t1=t1, ts=ts, solver=s, **tol)))
    return _scatter(parts, n)


def _scatter(parts, n) -> Solution:
    """Host arrays with every lane of the groups ``[(lanes, Solution), ...]`` in place."""

    def gather(*leaves):
        first = np.asarray(leaves[0])
        out = np.empty((n,) + first.shape[1:], first.dtype)
        for (idx, _), leaf in zip(parts, leaves):
            out[idx] = np.asarray(leaf)
        return out

    return jax.tree_util.tree_map(gather, *[sol for _, sol in parts])
