"""The engine's pooled per-lane loop: a fixed set of working slots, refilled as lanes finish.

Every lane carries its own time ``t``, step ``h``, step counter and done flag; one
``lax.while_loop`` steps ``slots`` lanes at a time. A lane that reaches its end (or fails) leaves
its slot; once a few slots are free they are refilled with the pool's pending lanes, so a lane
that needs few steps never waits for the slowest one (plain ``vmap`` runs every lane in lockstep
until the slowest finishes).

Error control: the per-lane error is the RMS over state components of
``err_i / (atol + rtol * max(|y_i|, |y_new_i|))``; a step is accepted when it is <= 1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dynamics.solve.steps import (
    UNROLLED_LU_MAX_DIM,
    dopri5_step,
    initial_step,
    inv_root,
    rms,
    rosenbrock_step,
)
from dynamics.solve.tableaus import ORDER
from dynamics.types import Status

#: consecutive non-finite trial steps before a lane is declared non-finite
MAX_BAD = 30
#: consecutive accepted steps a lane must pass the steady-state test before it stops early
STEADY_STEPS = 3
STATUS_OK, STATUS_MAX_STEPS, STATUS_NONFINITE = (
    int(Status.OK), int(Status.MAX_STEPS), int(Status.NONFINITE)
)
#: status of a lane the explicit pool hands to the Rosenbrock pool (``switch``); internal to
#: the engine, never in a returned Solution
STATUS_SWITCH = 3
#: consecutive accepted steps with a stiffness estimate above ``STIFF_H_LAMBDA`` before a lane
#: switches (DOPRI5's count)
STIFF_STEPS = 15
#: the estimate of ``h |lambda|`` above which a step no longer resolves the lane's fastest mode.
#: Not the stability boundary itself (``steps.DP_STABILITY_BOUNDARY``): where stability limits
#: the step the controller holds ``h |lambda|`` at a level that depends on the tolerance
#: (measured on the scalar model at eps = 1e-3: 3.7 at rtol 1e-6, 2.6 at 1e-9, 0.77 at 1e-12),
#: while steps that resolve the mode for accuracy keep it near ``rtol ** (1/5)`` (0.06 at
#: 1e-6, 0.004 at 1e-12); so a lane counts as stiff when its estimate exceeds 0.5
STIFF_H_LAMBDA = 0.5
#: the same level for states whose Rosenbrock step factors a dense matrix in a loop
#: (``steps.UNROLLED_LU_MAX_DIM``): that step costs several explicit ones, so only lanes whose
#: step is held near the stability boundary switch
STIFF_H_LAMBDA_DENSE = 2.0
#: a stiff lane switches only while the explicit method has at least this many steps of the
#: current size left to ``t1``: nearer the end, finishing explicitly costs less than resuming
#: the lane in another pool
SWITCH_MIN_STEPS_LEFT = 100


def where_lanes(mask, a, b):
    """``where`` with a (w,) lane mask against leaves whose lane axis is 0."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)



def integrate_pool(f, jac, params, y0, n_valid, t_save, rtol, atol, max_steps, *, method,
                    save_all, slots, steady_tol=None, switch=False, start=None):
    """Integrate a pool of lanes with ``slots`` working lanes that are refilled as lanes finish.

    ``f(p, y)`` / ``jac(p, y)``: batched field and Jacobian for lane parameters ``p`` (pytree,
    lane axis 0) and states ``y`` (d, w). ``params`` and ``y0`` (d, n) describe the pool; only
    its first ``n_valid`` lanes are integrated. ``t_save`` (S,) increasing, last = t1 > 0.

    Every iteration steps all slots once; a slot whose lane is done writes its result into the
    pool's outputs and loads the next pending lane. So a lane that needs few steps never waits
    for the slowest lane of its chunk, and the loop ends when the last lane is done.

    ``steady_tol`` (a float; only without intermediate saves): a lane stops early, status
    ``OK``, once it has arrived at a fixed point: for ``STEADY_STEPS`` consecutive accepted
    steps the field at the new state is at most ``steady_tol`` in every component and no larger
    than at the step before (a lane leaving a saddle, whose field grows, never stops). Its slot
    goes to the next pending lane. The final state is then the state where it stopped, not the
    state at ``t1``: the caller chooses ``steady_tol`` for what it reads off the final state.

    ``switch`` (``method="dopri5"`` only): per-lane stiffness detection. On every accepted
    step the lane's estimate of ``h |lambda|`` (:func:`~dynamics.solve.steps.stiffness_estimate`)
    is compared with ``STIFF_H_LAMBDA``; after ``STIFF_STEPS`` consecutive accepted steps above
    it the lane leaves the pool with status ``STATUS_SWITCH`` (unless it has fewer than
    ``SWITCH_MIN_STEPS_LEFT`` steps of its size left to ``t1``), and a fourth output
    ``(t, h, idx, y)`` holds where it stopped (time, step, next save index, state) for a
    Rosenbrock pool to resume it.

    ``start``: ``(t0, h0, idx0, steps0)``, each (n,): the pool's lanes resume at ``t0`` from
    ``y0`` with step ``h0``, next save index ``idx0`` (saves before it are NaN in the output)
    and ``steps0`` steps already taken (counted against ``max_steps``).

    Returns ``(ys, status, num_steps)``: ys (S or 1, d, n), status int8 (n,), num_steps (n,)
    (and the ``switch`` output above).
    """
    if switch and method != "dopri5":
        raise ValueError(f"stiffness switching starts from dopri5, not {method!r}")
    steady = steady_tol is not None and not save_all
    d, n = y0.shape
    w = slots
    dtype = y0.dtype
    S = t_save.shape[0]
    t1 = t_save[-1]
    order = ORDER[method]
    n_out = S if save_all else 1
    nan = jnp.array(jnp.nan, dtype)
    tmap = jax.tree_util.tree_map

    # per-lane starting step for the whole pool: two field evaluations per lane
    f0_pool = f(params, y0)
    if start is None:
        h0_pool = initial_step(lambda y: f(params, y), y0, f0_pool, t1, rtol, atol, order)
        hit0 = t_save[0] <= 0.0  # a save at t = 0 is the initial state
        idx0 = jnp.broadcast_to(jnp.where(hit0, 1, 0).astype(jnp.int32), (n,))
        t0_pool = jnp.zeros((n,), dtype)
        steps0 = jnp.zeros((n,), jnp.int32)
    else:  # resumed lanes: the saves they passed are their first pool's
        t0_pool, h0_pool, idx0, steps0 = start
        idx0, steps0 = idx0.astype(jnp.int32), steps0.astype(jnp.int32)
        hit0 = jnp.asarray(False)

    out_ys = jnp.full((n_out, d, n), nan)
    if save_all:
        out_ys = out_ys.at[0].set(jnp.where(hit0, y0, nan))
    first = jnp.arange(w)
    lane = jnp.where(first < n_valid, first, -1).astype(jnp.int32)
    safe = jnp.clip(lane, 0, n - 1)
    slot_buf = jnp.full((n_out, d, w), nan)
    if save_all:
        slot_buf = slot_buf.at[0].set(jnp.where(hit0, y0[:, safe], nan))
    zeros_w = jnp.zeros((w,), jnp.int32)
    carry = dict(
        lane=lane,
        ended=jnp.zeros((w,), bool),
        st=jnp.zeros((w,), jnp.int8),
        p=tmap(lambda x: x[safe], params),
        t=t0_pool[safe],
        h=h0_pool[safe],
        y=y0[:, safe],
        fy=f0_pool[:, safe],
        idx=idx0[safe],
        steps=steps0[safe],
        bad=zeros_w,
        calm=zeros_w,
        res=jnp.full((w,), jnp.inf, dtype),
        buf=slot_buf,
        next=jnp.minimum(jnp.asarray(w, jnp.int32), n_valid),
        out_ys=out_ys,
        out_status=jnp.zeros((n,), jnp.int8),
        out_steps=jnp.zeros((n,), jnp.int32),
    )
    if switch:
        carry.update(
            n_stiff=zeros_w,
            out_switch=jnp.full((d + 3, n), nan),  # rows: t, h, save index, state
        )
    safety, fmin, fmax = 0.9, 0.2, 10.0
    rows = jnp.arange(w)
    # finished lanes wait in their slots until this many have piled up (or no lane is left
    # running); then results are written out and the slots refilled, all at once
    flush_at = max(1, w // 16)

    def flush_refill(c):
        ended = c["ended"]
        dest = jnp.where(ended, c["lane"], n)  # index n: dropped
        out_ys = c["out_ys"].at[:, :, dest].set(c["buf"], mode="drop")
        out_status = c["out_status"].at[dest].set(c["st"], mode="drop")
        out_steps = c["out_steps"].at[dest].set(c["steps"], mode="drop")
        rank = jnp.cumsum(ended, dtype=jnp.int32) - 1
        new_lane = c["next"] + rank
        load = ended & (new_lane < n_valid)
        src = jnp.clip(new_lane, 0, n - 1)
        y_load = y0[:, src]
        buf_fresh = jnp.full_like(c["buf"], nan)
        if save_all:
            buf_fresh = buf_fresh.at[0].set(jnp.where(hit0, y_load, nan))
        extra = {}
        if switch:  # where a handed-off lane stopped; a loaded lane counts from 0
            extra = dict(
                n_stiff=jnp.where(load, 0, c["n_stiff"]),
                out_switch=c["out_switch"].at[:, dest].set(jnp.concatenate(
                    [c["t"][None], c["h"][None], c["idx"][None].astype(dtype), c["y"]]),
                    mode="drop"),
            )
        return dict(
            lane=jnp.where(load, new_lane, jnp.where(ended, -1, c["lane"])).astype(jnp.int32),
            ended=jnp.zeros_like(ended),
            st=c["st"],
            p=tmap(lambda cur, pool: where_lanes(load, pool[src], cur), c["p"], params),
            t=jnp.where(load, t0_pool[src], c["t"]),
            h=jnp.where(load, h0_pool[src], c["h"]),
            y=jnp.where(load, y_load, c["y"]),
            fy=jnp.where(load, f0_pool[:, src], c["fy"]),
            idx=jnp.where(load, idx0[src], c["idx"]),
            steps=jnp.where(load, steps0[src], c["steps"]),
            bad=jnp.where(load, 0, c["bad"]),
            calm=jnp.where(load, 0, c["calm"]),
            res=jnp.where(load, jnp.inf, c["res"]),
            buf=jnp.where(load, buf_fresh, c["buf"]),
            next=c["next"] + jnp.sum(load, dtype=jnp.int32),
            out_ys=out_ys,
            out_status=out_status,
            out_steps=out_steps,
            **extra,
        )

    def cond(c):
        return jnp.any(c["lane"] >= 0)

    def body(c):
        t, y, fy, p = c["t"], c["y"], c["fy"], c["p"]
        live = (c["lane"] >= 0) & ~c["ended"]
        t_next = t_save[jnp.minimum(c["idx"], S - 1)]
        gap = t_next - t
        clip = c["h"] >= gap
        h = jnp.where(live & clip, gap, c["h"])
        fp = lambda yy: f(p, yy)  # noqa: E731
        if method == "dopri5" and switch:
            y_new, f_new, err, h_lambda = dopri5_step(fp, y, fy, h, stiffness=True)
        elif method == "dopri5":
            y_new, f_new, err = dopri5_step(fp, y, fy, h)
        else:
            y_new, err = rosenbrock_step(fp, lambda yy: jac(p, yy), y, fy, h, method)
            f_new = fp(y_new)
        sc = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new))
        en = rms(err / sc)
        finite = jnp.isfinite(en) & jnp.all(jnp.isfinite(f_new), axis=0)
        accept = (en <= 1.0) & finite & live
        # en is clamped into [1e-30, 1e30] so the fast root stays on normal floats
        fac = safety * inv_root(jnp.where(finite, jnp.clip(en, 1e-30, 1e30), 1.0), order)
        fac = jnp.clip(fac, fmin, fmax)
        fac = jnp.where(finite, fac, fmin)
        fac = jnp.where(accept, fac, jnp.minimum(fac, 1.0))
        h_prop = h * fac
        # a step cut short to hit a save time says nothing about the step the lane can take
        h_prop = jnp.where(accept & clip, jnp.clip(h_prop, c["h"], c["h"] * fmax), h_prop)
        hit = accept & clip
        t_new = jnp.where(accept, jnp.where(clip, t_next, t + h), t)
        idx = c["idx"]
        buf = c["buf"]
        if save_all:
            row = jnp.minimum(idx, S - 1)
            old = buf[row, :, rows].T  # (d, w)
            buf = buf.at[row, :, rows].set(jnp.where(hit, y_new, old).T)
        idx_new = idx + hit.astype(jnp.int32)
        finished = hit & (idx_new >= S)
        calm, res = c["calm"], c["res"]
        if steady:
            r = jnp.max(jnp.abs(f_new), axis=0)
            still = accept & (r <= steady_tol) & (r <= res)
            calm = jnp.where(accept, jnp.where(still, calm + 1, 0), calm)
            res = jnp.where(accept, r, res)
            finished = finished | (live & accept & (calm >= STEADY_STEPS))
        if not save_all:
            buf = buf.at[0].set(jnp.where(finished, y_new, buf[0]))
        steps = c["steps"] + live.astype(jnp.int32)
        bad = jnp.where(finite, 0, c["bad"] + 1)
        tiny = (h < 1e-14 * jnp.maximum(1.0, jnp.abs(t))) & ~accept
        nonfinite = live & ~finished & ((bad >= MAX_BAD) | tiny)
        maxed = live & ~finished & ~nonfinite & (steps >= max_steps)
        extra = {}
        if switch:
            # consecutive accepted steps over the level; a rejected step leaves the count
            level = STIFF_H_LAMBDA if d <= UNROLLED_LU_MAX_DIM else STIFF_H_LAMBDA_DENSE
            n_stiff = jnp.where(accept, jnp.where(h_lambda > level, c["n_stiff"] + 1, 0),
                                c["n_stiff"])
            # (the step just taken, not the next one: h_prop would be computed again here)
            handoff = (n_stiff >= STIFF_STEPS) & (t1 - t > SWITCH_MIN_STEPS_LEFT * h)
            extra = dict(n_stiff=n_stiff)
        end = finished | nonfinite | maxed
        st = jnp.where(nonfinite, STATUS_NONFINITE, jnp.where(maxed, STATUS_MAX_STEPS, STATUS_OK))
        if switch:  # a lane that ends otherwise keeps that status
            st = jnp.where(end, st, STATUS_SWITCH)
            end = end | (live & handoff)
        ended = c["ended"] | end
        c = dict(
            c,
            **extra,
            ended=ended,
            st=jnp.where(end, st.astype(jnp.int8), c["st"]),
            t=t_new,
            h=jnp.where(live, h_prop, c["h"]),
            y=jnp.where(accept, y_new, y),
            fy=jnp.where(accept, f_new, fy),
            idx=idx_new,
            steps=steps,
            bad=bad,
            calm=calm,
            res=res,
            buf=buf,
        )
        running = jnp.sum((c["lane"] >= 0) & ~ended, dtype=jnp.int32)
        n_ended = jnp.sum(ended, dtype=jnp.int32)
        go = (n_ended >= flush_at) | ((running == 0) & (n_ended > 0))
        return jax.lax.cond(go, flush_refill, lambda c_: c_, c)

    out = jax.lax.while_loop(cond, body, carry)
    if switch:
        sw = out["out_switch"]
        return (out["out_ys"], out["out_status"], out["out_steps"],
                (sw[0], sw[1], sw[2].astype(jnp.int32), sw[3:]))
    return out["out_ys"], out["out_status"], out["out_steps"]


def integrate_switching(f, jac, params, y0, n_valid, t_save, rtol, atol, max_steps, *, stiff,
                        save_all, slots, steady_tol=None):
    """Per-lane stiffness switching in one program: every lane starts on ``dopri5`` with the
    stiffness estimate (:func:`integrate_pool` with ``switch``); the lanes it hands off are
    gathered to the front of the pool and resume where they stopped in a pool of the
    Rosenbrock method ``stiff``, whose results are scattered back into the lanes' places.

    Both pools run on the device that holds the lanes, one after the other, with no return to
    the host between them: devices that split a chunk do not wait for each other between the
    two methods. Arguments and result as :func:`integrate_pool` (no fourth output).
    """
    kw = dict(save_all=save_all, slots=slots, steady_tol=steady_tol)
    ys, st, steps, (t, h, idx, y_sw) = integrate_pool(
        f, jac, params, y0, n_valid, t_save, rtol, atol, max_steps, method="dopri5",
        switch=True, **kw)
    handed = st == STATUS_SWITCH
    n = st.shape[0]
    order = jnp.argsort(~handed, stable=True)  # the handed-off lanes first, in their order
    ys_r, st_r, steps_r = integrate_pool(
        f, jac, jax.tree_util.tree_map(lambda x: x[order], params), y_sw[:, order],
        jnp.sum(handed, dtype=jnp.int32), t_save, rtol, atol, max_steps, method=stiff,
        start=(t[order], h[order], idx[order], steps[order]), **kw)
    back = jnp.zeros_like(order).at[order].set(jnp.arange(n, dtype=order.dtype))
    ys_r, st_r, steps_r = ys_r[:, :, back], st_r[back], steps_r[back]
    if save_all:  # the saves a lane passed before it switched are the first pool's
        before = jnp.arange(ys.shape[0])[:, None, None] < idx[None, None, :]
        ys_r = jnp.where(before, ys, ys_r)
    return (jnp.where(handed, ys_r, ys), jnp.where(handed, st_r, st),
            jnp.where(handed, steps_r, steps))
