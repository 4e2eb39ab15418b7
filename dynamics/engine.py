"""Batched integration engine for sweeps: many trajectories of one model in one jitted program.

The vector field is the one :mod:`dynamics.flow` derives from the model's loss; the engine only
changes *how* a batch of lanes is stepped, never *what* is integrated.

Design (why it is faster than ``jit(vmap(diffeqsolve))``):

- **Batch-native state.** A chunk of lanes is one array of shape ``(d, n)`` (state component
  first, lane last): every stage of every step is a handful of fused elementwise kernels over
  ``n`` lanes. The per-lane field is ``flow.vector_field`` vmapped over the lane axis.
- **Per-lane error control.** Every lane carries its own time ``t``, step ``h``, step counter
  and done flag; one ``lax.while_loop`` steps a fixed set of ``slots`` lanes at a time.
- **Early exit and refill.** A lane that reaches ``t1`` (or fails) leaves its slot; once a few
  slots are free they are refilled with the chunk's pending lanes, so a lane that needs few
  steps never waits for the slowest lane of its chunk (plain ``vmap`` runs every lane in
  lockstep until the slowest one finishes). The loop ends when the chunk's last lane is done.
  ``slots`` (default 256 on a CPU) is small enough that a step's arrays stay in cache.
- **Two methods, chosen per lane.** ``"dopri5"`` (explicit Dormand-Prince 5(4), FSAL) for
  non-stiff lanes and ``"rodas4"`` (L-stable, stiffly accurate Rosenbrock 4(3) of Hairer &
  Wanner, with the exact Jacobian of the field by ``jax.jacfwd``) for stiff ones: a small
  predictor time scale ``eps`` makes the flow stiff (THEORY.md section 4), and an explicit
  method would need ``h < ~2 eps / p``. With ``method="auto"`` lanes are bucketed by ``eps``
  (``eps < stiff_eps`` goes to ``rodas4``) and each bucket runs its own program. The Jacobian
  is ``jax.jacfwd`` of ``vector_field``; nothing about the model is written by hand.
- **Chunking.** Lanes are processed ``chunk_size`` at a time (the last chunk padded to the same
  shape; padding lanes are never integrated), so device
  memory is bounded by the chunk whatever the grid size, and one compiled program serves every
  chunk. While one chunk runs the next is dispatched.
- **Devices.** With more than one local device, each chunk is split across devices with
  ``shard_map``; every device runs its own loop and stops when *its* lanes are done.

Per-lane status (same codes as :mod:`dynamics.solve`): ``STATUS_OK`` the lane reached ``t1``;
``STATUS_MAX_STEPS`` it used ``max_steps`` steps (accepted + rejected) first; ``STATUS_NONFINITE``
its field became NaN/inf (a diverging lane: after ``_MAX_BAD`` consecutive non-finite trial steps,
or a step size that underflows). Saves a lane did not reach are NaN.

Error control: the per-lane error is the RMS over state components of
``err_i / (atol + rtol * max(|y_i|, |y_new_i|))``; a step is accepted when it is <= 1.
``rtol``/``atol`` are arguments; ``bench/`` measures the global error this gives.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dynamics.flow import Hyper, State, Variant, gd_step, vector_field
from dynamics import solve
from dynamics.solve import (
    STATUS_MAX_STEPS,
    STATUS_NONFINITE,
    STATUS_OK,
    Solution,
)

METHODS = ("auto", "dopri5", "rodas4")

#: Default ``eps`` below which ``method="auto"`` treats a lane as stiff. Measured on the scalar
#: model (bench/): at rtol 1e-6 Rodas4 is as fast as Dormand-Prince down from eps = 1 and 5x
#: faster at eps = 0.1; at rtol 1e-8 Dormand-Prince wins for eps >= 0.3.
STIFF_EPS = 0.3
#: Default lanes per chunk (the pool one compiled call integrates).
CHUNK_SIZE = 65536
#: Default working lanes stepped together on a CPU; finished ones are refilled from the pool.
#: Small enough that a step's arrays stay in cache (measured on the scalar model: 256-512 beat
#: 2048-4096 by 1.5-2x; 256 and 512 are within noise of each other). Accelerators want wide
#: arrays: there the default is ``SLOTS_ACCELERATOR``.
SLOTS = 256
SLOTS_ACCELERATOR = 16384
#: Rosenbrock needs a dense per-lane Jacobian: above this state size ``auto`` stays explicit.
MAX_ROSENBROCK_DIM = 64
_LANE_LAST_MAX_DIM = 64  # above this state size the field is evaluated lane-first
_MAX_BAD = 30  # consecutive non-finite trial steps before a lane is declared non-finite

# --- tableaus -----------------------------------------------------------------------------

# Dormand & Prince (1980) 5(4), as in Hairer, Norsett & Wanner, "Solving ODEs I", Table 5.2.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# error = (5th order - embedded 4th order) solution, per stage
_DP_E = (
    71 / 57600,
    0.0,
    -71 / 16695,
    71 / 1920,
    -17253 / 339200,
    22 / 525,
    -1 / 40,
)

# RODAS (order 4, embedded 3) of Hairer & Wanner, "Solving ODEs II", section IV.7, in the
# form that needs no Jacobian-vector products:  W = I/(h*gamma) - J,
#   Y_i = y + sum_j A_ij K_j,   W K_i = f(Y_i) + sum_j (C_ij / h) K_j,
#   y_new = y + sum_j M_j K_j = Y_6 + K_6,   error = K_6  (stiffly accurate).
_RO_GAMMA = 0.25
_RO_A = (
    (),
    (1.544,),
    (0.9466785280815826, 0.2557011698983284),
    (3.314825187068521, 2.896124015972201, 0.9986419139977817),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0),
)
_RO_C = (
    (),
    (-5.6688,),
    (-2.430093356833875, -0.2063599157091915),
    (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
    (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616),
    (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
     -6.058818238834054),
)

_ORDER = {"dopri5": 5, "rodas4": 4}  # q+1 in the step-size exponent 1/(q+1): lower order + 1


# --- small batch-native linear algebra ----------------------------------------------------


def _lu_factor(a):
    """LU with partial pivoting of a batch of small matrices ``a`` of shape (d, d, n).

    Unrolled over the static size ``d``; every operation is elementwise over lanes. Returns
    ``(lu, perm)`` with ``perm`` a list of (n,) row-index arrays applied to right-hand sides.
    """
    d = a.shape[0]
    rows = [a[i] for i in range(d)]  # each (d, n)
    perms = []
    for k in range(d):
        if k < d - 1:
            piv = jnp.argmax(jnp.stack([jnp.abs(rows[i][k]) for i in range(k, d)]), axis=0) + k
            perms.append(piv)
            new_rows = list(rows)
            pivrow = rows[k]
            for i in range(k + 1, d):
                pivrow = jnp.where(piv == i, rows[i], pivrow)
            for i in range(k + 1, d):
                new_rows[i] = jnp.where(piv == i, rows[k], rows[i])
            new_rows[k] = pivrow
            rows = new_rows
        inv = 1.0 / rows[k][k]
        for i in range(k + 1, d):
            m = rows[i][k] * inv
            rows[i] = rows[i].at[k].set(m)
            rows[i] = rows[i].at[k + 1 :].add(-m * rows[k][k + 1 :])
    return rows, perms


def _lu_solve(lu, b):
    """Solve with the output of :func:`_lu_factor`; ``b`` of shape (d, n)."""
    rows, perms = lu
    d = len(rows)
    x = [b[i] for i in range(d)]
    for k, piv in enumerate(perms):
        xk = x[k]
        for i in range(k + 1, d):
            xk = jnp.where(piv == i, x[i], xk)
        for i in range(k + 1, d):
            x[i] = jnp.where(piv == i, x[k], x[i])
        x[k] = xk
    for i in range(d):  # forward, unit lower
        for k in range(i):
            x[i] = x[i] - rows[i][k] * x[k]
    for i in reversed(range(d)):  # backward
        for k in range(i + 1, d):
            x[i] = x[i] - rows[i][k] * x[k]
        x[i] = x[i] / rows[i][i]
    return jnp.stack(x)


# --- the batched problem ------------------------------------------------------------------


def _where_lanes(mask, a, b):
    """``where`` with a (w,) lane mask against leaves whose lane axis is 0."""
    return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)


def _rms(x):
    return jnp.sqrt(jnp.mean(x * x, axis=0))


def _inv_root(x, q):
    """``x ** (-1 / q)`` for positive normal float64 ``x`` and a small positive integer ``q``.

    The step-size controller calls this once per lane and step; XLA's float64 ``pow`` costs
    about as much as the rest of an explicit step of a two-variable field. Here: log2 and exp2
    from the float's exponent bits and short polynomials in the mantissa (relative error
    ~1e-3), then one Newton step for ``y ** q * x = 1``, which squares that error (tests check
    < 1e-4 against ``jnp.power``).
    """
    bits = jax.lax.bitcast_convert_type(x, jnp.int64)
    e = (bits >> 52) - 1023
    mant = jax.lax.bitcast_convert_type(
        (bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000, jnp.float64
    )  # in [1, 2)
    u = mant - 1.0
    log2x = e.astype(jnp.float64) + u * (1.4425449 + u * (-0.7181452 + u * 0.2757002))
    z = -log2x / q
    i = jnp.floor(z)
    fr = z - i
    two_fr = 1.0 + fr * (0.6951786 + fr * (0.2261966 + fr * 0.0786248))
    y = jax.lax.bitcast_convert_type((i.astype(jnp.int64) + 1023) << 52, jnp.float64) * two_fr
    return y * (1.0 + (1.0 - x * y**q) / q)


def _initial_step(f, y0, f0, t_span, rtol, atol, order):
    """Per-lane starting step (Hairer, Norsett & Wanner I, II.4), batch-native."""
    sc = atol + rtol * jnp.abs(y0)
    d0 = _rms(y0 / sc)
    d1 = _rms(f0 / sc)
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    h0 = jnp.minimum(h0, t_span)
    f1 = f(y0 + h0 * f0)
    d2 = _rms((f1 - f0) / sc) / h0
    dm = jnp.maximum(d1, d2)
    h1 = jnp.where(dm <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / dm) ** (1.0 / order))
    h = jnp.minimum(100 * h0, h1)
    return jnp.where(jnp.isfinite(h) & (h > 0), h, 1e-6)


def _dopri5_step(f, y, k0, h):
    ks = [k0]
    for i in range(1, 7):
        yi = y + h * sum(a * k for a, k in zip(_DP_A[i], ks) if a != 0.0)
        # materialise each stage once: otherwise XLA fuses the whole step into every output
        # (y_new, the error, the next derivative) and evaluates the stages several times
        ks.append(jax.lax.optimization_barrier(f(yi)))
    y_new = y + h * sum(a * k for a, k in zip(_DP_A[6], ks) if a != 0.0)
    err = h * sum(e * k for e, k in zip(_DP_E, ks) if e != 0.0)
    return y_new, ks[6], err


def _rodas4_step(f, jac, y, fy, h):
    d = y.shape[0]
    J = jac(y)  # (d, d, n)
    w = -J
    diag = 1.0 / (h * _RO_GAMMA)
    w = w.at[jnp.arange(d), jnp.arange(d)].add(diag)
    lu = _lu_factor(w)
    inv_h = 1.0 / h
    ks = []
    for i in range(6):
        if i == 0:
            fi = fy
        else:
            yi = y + sum(a * k for a, k in zip(_RO_A[i], ks))
            fi = jax.lax.optimization_barrier(f(yi))  # see _dopri5_step
        rhs = fi + inv_h * sum(c * k for c, k in zip(_RO_C[i], ks)) if i else fi
        ks.append(jax.lax.optimization_barrier(_lu_solve(lu, rhs)))
    y_new = y + sum(a * k for a, k in zip(_RO_A[5], ks)) + ks[5]
    return y_new, ks[5]


def _integrate_pool(f, jac, params, y0, n_valid, t_save, rtol, atol, max_steps, *, method,
                    save_all, slots):
    """Integrate a pool of lanes with ``slots`` working lanes that are refilled as lanes finish.

    ``f(p, y)`` / ``jac(p, y)``: batched field and Jacobian for lane parameters ``p`` (pytree,
    lane axis 0) and states ``y`` (d, w). ``params`` and ``y0`` (d, n) describe the pool; only
    its first ``n_valid`` lanes are integrated. ``t_save`` (S,) increasing, last = t1 > 0.

    Every iteration steps all slots once; a slot whose lane is done writes its result into the
    pool's outputs and loads the next pending lane. So a lane that needs few steps never waits
    for the slowest lane of its chunk, and the loop ends when the last lane is done.

    Returns ``(ys, status, num_steps)``: ys (S or 1, d, n), status int8 (n,), num_steps (n,).
    """
    d, n = y0.shape
    w = slots
    dtype = y0.dtype
    S = t_save.shape[0]
    t1 = t_save[-1]
    order = _ORDER[method]
    n_out = S if save_all else 1
    nan = jnp.array(jnp.nan, dtype)
    tmap = jax.tree_util.tree_map

    # per-lane starting step for the whole pool: two field evaluations per lane
    f0_pool = f(params, y0)
    h0_pool = _initial_step(lambda y: f(params, y), y0, f0_pool, t1, rtol, atol, order)
    hit0 = t_save[0] <= 0.0  # a save at t = 0 is the initial state
    idx0 = jnp.where(hit0, 1, 0).astype(jnp.int32)

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
        t=jnp.zeros((w,), dtype),
        h=h0_pool[safe],
        y=y0[:, safe],
        fy=f0_pool[:, safe],
        idx=jnp.broadcast_to(idx0, (w,)),
        steps=zeros_w,
        bad=zeros_w,
        buf=slot_buf,
        next=jnp.minimum(jnp.asarray(w, jnp.int32), n_valid),
        out_ys=out_ys,
        out_status=jnp.zeros((n,), jnp.int8),
        out_steps=jnp.zeros((n,), jnp.int32),
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
        return dict(
            lane=jnp.where(load, new_lane, jnp.where(ended, -1, c["lane"])).astype(jnp.int32),
            ended=jnp.zeros_like(ended),
            st=c["st"],
            p=tmap(lambda cur, pool: _where_lanes(load, pool[src], cur), c["p"], params),
            t=jnp.where(load, 0.0, c["t"]),
            h=jnp.where(load, h0_pool[src], c["h"]),
            y=jnp.where(load, y_load, c["y"]),
            fy=jnp.where(load, f0_pool[:, src], c["fy"]),
            idx=jnp.where(load, idx0, c["idx"]),
            steps=jnp.where(load, 0, c["steps"]),
            bad=jnp.where(load, 0, c["bad"]),
            buf=jnp.where(load, buf_fresh, c["buf"]),
            next=c["next"] + jnp.sum(load, dtype=jnp.int32),
            out_ys=out_ys,
            out_status=out_status,
            out_steps=out_steps,
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
        if method == "dopri5":
            y_new, f_new, err = _dopri5_step(fp, y, fy, h)
        else:
            y_new, err = _rodas4_step(fp, lambda yy: jac(p, yy), y, fy, h)
            f_new = fp(y_new)
        sc = atol + rtol * jnp.maximum(jnp.abs(y), jnp.abs(y_new))
        en = _rms(err / sc)
        finite = jnp.isfinite(en) & jnp.all(jnp.isfinite(f_new), axis=0)
        accept = (en <= 1.0) & finite & live
        # en is clamped into [1e-30, 1e30] so the fast root stays on normal floats
        fac = safety * _inv_root(jnp.where(finite, jnp.clip(en, 1e-30, 1e30), 1.0), order)
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
        if not save_all:
            buf = buf.at[0].set(jnp.where(finished, y_new, buf[0]))
        steps = c["steps"] + live.astype(jnp.int32)
        bad = jnp.where(finite, 0, c["bad"] + 1)
        tiny = (h < 1e-14 * jnp.maximum(1.0, jnp.abs(t))) & ~accept
        nonfinite = live & ~finished & ((bad >= _MAX_BAD) | tiny)
        maxed = live & ~finished & ~nonfinite & (steps >= max_steps)
        end = finished | nonfinite | maxed
        st = jnp.where(nonfinite, STATUS_NONFINITE, jnp.where(maxed, STATUS_MAX_STEPS, STATUS_OK))
        ended = c["ended"] | end
        c = dict(
            c,
            ended=ended,
            st=jnp.where(end, st.astype(jnp.int8), c["st"]),
            t=t_new,
            h=jnp.where(live, h_prop, c["h"]),
            y=jnp.where(accept, y_new, y),
            fy=jnp.where(accept, f_new, fy),
            idx=idx_new,
            steps=steps,
            bad=bad,
            buf=buf,
        )
        running = jnp.sum((c["lane"] >= 0) & ~ended, dtype=jnp.int32)
        n_ended = jnp.sum(ended, dtype=jnp.int32)
        go = (n_ended >= flush_at) | ((running == 0) & (n_ended > 0))
        return jax.lax.cond(go, flush_refill, lambda c_: c_, c)

    out = jax.lax.while_loop(cond, body, carry)
    return out["out_ys"], out["out_status"], out["out_steps"]


# --- chunk program ------------------------------------------------------------------------


class _Params:
    """How the (model, hyper) pytree is split into per-lane and shared leaves (static)."""

    def __init__(self, treedef, lane_flags):
        self.treedef = treedef
        self.lane_flags = tuple(lane_flags)

    def __hash__(self):
        return hash((self.treedef, self.lane_flags))

    def __eq__(self, other):
        return (self.treedef, self.lane_flags) == (other.treedef, other.lane_flags)

    def merge(self, lane_leaves, shared_leaves):
        it_l, it_s = iter(lane_leaves), iter(shared_leaves)
        leaves = [next(it_l) if f else next(it_s) for f in self.lane_flags]
        return jax.tree_util.tree_unflatten(self.treedef, leaves)


def _chunk_program(lane_leaves, shared_leaves, y0, n_valid, t_save, rtol, atol, max_steps, *,
                   spec, variant, method, unravel, save_all, slots):
    """One chunk: per-lane parameter leaves on axis 0, shared ones as they are, ``y0`` (d, n)."""

    def f_lane(lane, z):
        model, hyper = spec.merge(lane, shared_leaves)
        return ravel_pytree(vector_field(model, variant, hyper, unravel(z)))[0]

    def f(p, y):
        if y.shape[0] <= _LANE_LAST_MAX_DIM:
            return jax.vmap(f_lane, in_axes=(0, 1), out_axes=1)(p, y)
        # large states (matrix models): evaluate lane-first so matrix products batch over a
        # leading axis, then return to the engine's lane-last layout
        return jax.vmap(f_lane, in_axes=(0, 0), out_axes=0)(p, y.T).T

    def jac(p, y):
        return jax.vmap(jax.jacfwd(f_lane, argnums=1), in_axes=(0, 1), out_axes=2)(p, y)

    n_valid = jnp.reshape(n_valid, ()).astype(jnp.int32)
    return _integrate_pool(
        f, jac, list(lane_leaves), y0, n_valid, t_save, rtol, atol, max_steps,
        method=method, save_all=save_all, slots=min(slots, y0.shape[1]),
    )


def _lane_spec(spec):
    from jax.sharding import PartitionSpec as P

    n_lane = sum(spec.lane_flags)
    return [P("lanes")] * n_lane, [P()] * (len(spec.lane_flags) - n_lane)


@functools.lru_cache(maxsize=64)
def _compiled(spec, variant, method, unravel_key, save_all, n_dev, slots):
    unravel = _UNRAVELS[unravel_key]
    fn = functools.partial(
        _chunk_program, spec=spec, variant=variant, method=method, unravel=unravel,
        save_all=save_all, slots=slots,
    )
    if n_dev > 1:
        from jax.sharding import Mesh, PartitionSpec as P

        mesh = Mesh(np.array(jax.local_devices()[:n_dev]), ("lanes",))
        lane_s, shared_s = _lane_spec(spec)
        fn = jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=(lane_s, shared_s, P(None, "lanes"), P("lanes"), P(), P(), P(), P()),
            out_specs=(P(None, None, "lanes"), P("lanes"), P("lanes")),
            check_vma=False,
        )
    return jax.jit(fn)


_UNRAVELS: dict = {}


def _register_unravel(template_lane):
    """Key the unravel function by the state's structure, so compiled programs are reused."""
    flat, unravel = ravel_pytree(template_lane)
    leaves, treedef = jax.tree_util.tree_flatten(template_lane)
    key = (treedef, tuple((np.shape(x), np.asarray(x).dtype.str) for x in leaves))
    _UNRAVELS.setdefault(key, unravel)
    return key, flat.shape[0]


# --- public API ---------------------------------------------------------------------------


def _n_lanes(y0) -> int:
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves or np.ndim(leaves[0]) == 0:
        raise ValueError("y0 must carry a leading lane axis on every leaf")
    return int(np.shape(leaves[0])[0])


def _lanes_np(tree, n):
    """Host copies of ``tree``'s leaves with a lane axis of length ``n`` (scalars broadcast)."""

    def one(x):
        x = np.asarray(x)
        if x.ndim == 0:
            return np.broadcast_to(x, (n,))
        if x.shape[0] != n:
            raise ValueError(f"leaf with shape {x.shape} does not have {n} lanes")
        return x

    return jax.tree_util.tree_map(one, tree)


def _split_params(model, hyper, n):
    """Split ``(model, hyper)`` into per-lane leaves (lane axis 0) and leaves shared by all lanes.

    Scalars are shared; so are leaves a model's ``lane_broadcast(n)`` hook would broadcast
    (the linear model's ``X``, ``X'``), which are then kept once instead of once per lane.
    """
    parts = []
    for tree in (model, hyper):
        leaves = jax.tree_util.tree_leaves(tree)
        hook = getattr(tree, "lane_broadcast", None)
        if callable(hook):
            wide = jax.tree_util.tree_leaves(hook(n))
            shared = [np.ndim(w) > np.ndim(x) for x, w in zip(leaves, wide)]
        else:
            shared = [np.ndim(x) == 0 for x in leaves]
        for x, sh in zip(leaves, shared):
            x = np.asarray(x)
            if not sh and (x.ndim == 0 or x.shape[0] != n):
                raise ValueError(f"parameter leaf with shape {x.shape} does not have {n} lanes")
            parts.append((x, not sh))
    treedef = jax.tree_util.tree_structure((model, hyper))
    spec = _Params(treedef, [lane for _, lane in parts])
    lane_leaves = [x for x, lane in parts if lane]
    shared_leaves = [jnp.asarray(x) for x, lane in parts if not lane]
    return spec, lane_leaves, shared_leaves


def _take(tree, idx):
    return jax.tree_util.tree_map(lambda x: x[idx], tree)


def _check_positive(name, value, allow_zero=False):
    ok = value >= 0 if allow_zero else value > 0
    if not (np.isfinite(value) and ok):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")


def stiff_lanes(hyper, n, stiff_eps=STIFF_EPS):
    """Boolean (n,) mask of lanes ``method="auto"`` integrates with ``rodas4``: ``eps < stiff_eps``."""
    eps = np.broadcast_to(np.asarray(hyper.eps, dtype=float), (n,))
    return eps < stiff_eps


def split_cpu_cores(n: int | None = None) -> int:
    """Expose the CPU's cores as ``n`` JAX devices (default: all), so the engine's per-device
    loops run in parallel. Must run before JAX creates its CPU backend (first computation);
    the CLIs call it first thing. A no-op when a GPU/TPU build of JAX is in use, and when the
    count was already set (``XLA_FLAGS=--xla_force_host_platform_device_count=...`` or
    ``jax_num_cpu_devices``). Environment variable ``DYNAMICS_CPU_DEVICES`` overrides ``n``.

    Returns:
        The number of CPU devices requested (1 when left alone).
    """
    env = os.environ.get("DYNAMICS_CPU_DEVICES")
    if env is not None:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"DYNAMICS_CPU_DEVICES must be an integer, got {env!r}") from None
    if n is None:
        n = os.cpu_count() or 1
    if int(n) != n or n < 1:
        raise ValueError(f"number of CPU devices must be a positive integer, got {n!r}")
    n = int(n)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 1
    if jax.config.jax_num_cpu_devices != -1 or n == 1:
        return 1
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backend already initialised: leave it
        return 1
    return n


def default_cache_dir() -> str:
    """Per-user cache directory of compiled programs (``platformdirs``, else ``~/.cache``)."""
    try:
        import platformdirs

        base = platformdirs.user_cache_dir("dynamics")
    except ImportError:
        base = os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dynamics"
        )
    return os.path.join(base, "jax")


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache, so a second run does not compile again.

    Library code never calls this; the CLIs do (``--no-compile-cache`` turns it off). The
    environment variable ``DYNAMICS_COMPILE_CACHE`` overrides ``path``: ``0``/``off`` disables
    the cache, any other value is the directory.

    Returns:
        The cache directory in use, or ``None`` when disabled.
    """
    env = os.environ.get("DYNAMICS_COMPILE_CACHE")
    if env is not None:
        if env.strip().lower() in ("", "0", "off", "false", "no"):
            return None
        path = env
    path = path or default_cache_dir()
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def solve_flow_batch(
    model,
    variant: Variant,
    hyper: Hyper,
    y0: State,
    *,
    t1: float,
    ts=None,
    method: str = "auto",
    rtol: float = 1e-6,
    atol: float = 1e-9,
    max_steps: int = 100_000,
    chunk_size: int | None = None,
    slots: int | None = None,
    stiff_eps: float = STIFF_EPS,
    devices: int | None = None,
) -> Solution:
    """Integrate the gradient flow for a batch of lanes (drop-in for ``solve.solve_flow_batch``).

    Args:
        model, hyper: pytrees whose leaves are scalars (shared by all lanes) or arrays with a
            leading lane axis of length ``n``.
        y0: ``State`` whose leaves carry the lane axis, shape (n, ...).
        t1: end time (> 0).
        ts: optional increasing save times in ``[0, t1]``, shared by all lanes; default saves
            only ``t1``. A save time is hit exactly (the step is cut to reach it).
        method: ``"auto"`` (``rodas4`` for lanes with ``eps < stiff_eps`` and a state of at most
            ``MAX_ROSENBROCK_DIM`` numbers, ``dopri5`` otherwise), ``"dopri5"`` or ``"rodas4"``.
        rtol, atol: per-lane error tolerances (see module docstring).
        max_steps: per-lane cap on steps (accepted + rejected).
        chunk_size: lanes per compiled program call (default ``CHUNK_SIZE``, or fewer for large
            states so a chunk's state stays near 64 MiB); bounds memory.
        slots: lanes stepped together inside a chunk (per device); a lane that finishes hands
            its slot to the next pending lane of the chunk. Default ``SLOTS`` on a CPU,
            ``SLOTS_ACCELERATOR`` on a GPU/TPU. Results agree to rounding whatever its value.
        devices: number of local devices to split each chunk over (default: all).

    Returns:
        ``Solution`` with ``ts`` (n, S), ``ys`` leaves (n, S, ...), ``status`` int8 (n,),
        ``num_steps`` (n,), as host (numpy) arrays. S is ``len(ts)`` or 1.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: expected one of {', '.join(METHODS)}")
    _check_positive("t1", float(t1))
    _check_positive("rtol", float(rtol))
    _check_positive("atol", float(atol), allow_zero=True)
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    if slots is None:
        slots = SLOTS if jax.default_backend() == "cpu" else SLOTS_ACCELERATOR
    if int(slots) != slots or slots < 1:
        raise ValueError(f"slots must be a positive integer, got {slots!r}")
    n = _n_lanes(y0)
    if ts is None:
        t_save = np.array([float(t1)])
        save_all = False
    else:
        t_save = np.asarray(ts, dtype=float).reshape(-1)
        if t_save.size == 0 or np.any(np.diff(t_save) <= 0) or t_save[0] < 0 or t_save[-1] > t1:
            raise ValueError(f"ts must be increasing within [0, t1={t1}], got {ts!r}")
        if t_save[-1] < t1:
            t_save = np.append(t_save, float(t1))
            save_all = "trim"
        else:
            save_all = True

    y0_np = _lanes_np(y0, n)
    spec, lane_leaves, shared_leaves = _split_params(model, hyper, n)
    template = jax.tree_util.tree_map(lambda x: x[0], y0_np)
    key, d = _register_unravel(template)
    dtype = np.result_type(*jax.tree_util.tree_leaves(y0_np))
    ys_flat = np.concatenate(
        [np.asarray(x, dtype=dtype).reshape(n, -1) for x in jax.tree_util.tree_leaves(y0_np)],
        axis=1,
    ).T  # (d, n), same order as ravel_pytree

    if method == "auto":
        stiff = stiff_lanes(hyper, n, stiff_eps) & (d <= MAX_ROSENBROCK_DIM)
        groups = [("rodas4", np.nonzero(stiff)[0]), ("dopri5", np.nonzero(~stiff)[0])]
    else:
        groups = [(method, np.arange(n))]

    n_dev = jax.local_device_count() if devices is None else int(devices)
    if not 1 <= n_dev <= jax.local_device_count():
        raise ValueError(f"devices must be in 1..{jax.local_device_count()}, got {devices!r}")
    if chunk_size is None:
        chunk_size = max(n_dev, min(CHUNK_SIZE, (64 << 20) // (8 * d * 24)))
    chunk_size = int(chunk_size)
    chunk_size = -(-chunk_size // n_dev) * n_dev

    S_out = len(t_save) if save_all else 1
    ys_out = np.full((S_out, d, n), np.nan, dtype)
    status = np.zeros((n,), np.int8)
    num_steps = np.zeros((n,), np.int64)
    t_save_j = jnp.asarray(t_save)
    for meth, lanes in groups:
        if lanes.size == 0:
            continue
        size = min(chunk_size, -(-lanes.size // n_dev) * n_dev)
        shard = size // n_dev
        prog = _compiled(spec, variant, meth, key, bool(save_all), n_dev, min(int(slots), shard))
        pending = None
        for start in range(0, lanes.size, size):
            idx = lanes[start : start + size]
            pad = np.concatenate([idx, np.full(size - idx.size, idx[-1])])
            n_valid = np.clip(idx.size - shard * np.arange(n_dev), 0, shard).astype(np.int32)
            res = prog(
                [x[pad] for x in lane_leaves],
                shared_leaves,
                ys_flat[:, pad],
                n_valid,
                t_save_j,
                rtol,
                atol,
                int(max_steps),
            )
            if pending is not None:
                _store(pending, ys_out, status, num_steps)
            pending = (idx, res)
        _store(pending, ys_out, status, num_steps)

    if save_all == "trim":
        ys_out = ys_out[:-1]
        t_save = t_save[:-1]
    ys_lanes = np.moveaxis(ys_out, 2, 0)  # (n, S, d)
    unravel = _UNRAVELS[key]
    leaves, treedef = jax.tree_util.tree_flatten(template)
    out_leaves, off = [], 0
    for leaf in leaves:
        size = int(np.size(leaf))
        out_leaves.append(
            ys_lanes[:, :, off : off + size].reshape((n, ys_lanes.shape[1]) + np.shape(leaf))
        )
        off += size
    ys = jax.tree_util.tree_unflatten(treedef, out_leaves)
    ts_out = np.broadcast_to(t_save, (n, len(t_save)))
    return Solution(ts_out, ys, status, num_steps)


def _store(pending, ys_out, status, num_steps):
    idx, (buf, st, steps) = pending
    k = idx.size
    ys_out[:, :, idx] = np.asarray(buf)[:, :, :k]
    status[idx] = np.asarray(st)[:k]
    num_steps[idx] = np.asarray(steps)[:k]


# --- discrete GD / SGD --------------------------------------------------------------------


def _discrete_program(lane_leaves, shared_leaves, y0, lr, keys, *, spec, variant, n_steps,
                      batch_size, unroll):
    """One chunk of :func:`dynamics.solve.run_discrete_batch` (the same program, so the same
    numbers); ``unroll`` > 1 unrolls the step loop instead."""
    model, hyper = spec.merge(lane_leaves, shared_leaves)
    if unroll == 1:
        sol = solve.run_discrete_batch(model, variant, hyper, y0, lr, keys if batch_size else None,
                                       n_steps=n_steps, batch_size=batch_size)
        y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
        return y, sol.status

    def lane_step(lane, y, l, key, k):
        m, h = spec.merge(lane, shared_leaves)
        batch = None if batch_size is None else m.sample(jax.random.fold_in(key, k), batch_size)
        return gd_step(m, variant, h, y, l, batch)

    step = jax.vmap(lane_step, in_axes=(0, 0, 0, 0, None))

    def body(y, k):
        return step(lane_leaves, y, lr, keys, k), None

    y, _ = jax.lax.scan(body, y0, jnp.arange(n_steps), unroll=unroll)
    finite = jnp.stack(
        [jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), axis=1) for x in jax.tree_util.tree_leaves(y)]
    ).all(axis=0)
    status = jnp.where(finite, STATUS_OK, STATUS_NONFINITE).astype(jnp.int8)
    return y, status


@functools.lru_cache(maxsize=32)
def _compiled_discrete(spec, variant, n_steps, batch_size, unroll, n_dev):
    fn = functools.partial(
        _discrete_program, spec=spec, variant=variant, n_steps=n_steps, batch_size=batch_size,
        unroll=unroll,
    )
    if n_dev > 1:
        from jax.sharding import Mesh, PartitionSpec as P

        mesh = Mesh(np.array(jax.local_devices()[:n_dev]), ("lanes",))
        lane_s, shared_s = _lane_spec(spec)
        fn = jax.shard_map(
            fn, mesh=mesh,
            in_specs=(lane_s, shared_s, P("lanes"), P("lanes"), P("lanes")),
            out_specs=P("lanes"), check_vma=False,
        )
    return jax.jit(fn)


def run_discrete_batch(
    model,
    variant: Variant,
    hyper: Hyper,
    y0: State,
    lr,
    keys=None,
    *,
    n_steps: int,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    unroll: int = 1,
    devices: int | None = None,
) -> Solution:
    """Discrete GD/SGD for a batch of lanes: ``solve.run_discrete_batch`` (final state only),
    chunked over lanes, split over local devices, with an unrolled step loop.

    Step ``k`` of a lane samples its minibatch with ``fold_in(keys[lane], k)``, as
    :func:`dynamics.solve.run_discrete` does, so results agree with it lane for lane and do not
    depend on ``chunk_size``, ``unroll`` or ``devices``.

    Returns:
        ``Solution`` with ``ts`` (n, 1) = ``n_steps * lr``, ``ys`` leaves (n, 1, ...), ``status``
        (ok / nonfinite) and ``num_steps`` (n,), as numpy arrays.
    """
    if int(n_steps) != n_steps or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    if batch_size is not None and keys is None:
        raise ValueError("SGD (batch_size given) needs one PRNG key per lane")
    if chunk_size is not None and (int(chunk_size) != chunk_size or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    n = _n_lanes(y0)
    y0_np = _lanes_np(y0, n)
    spec, lane_leaves, shared_leaves = _split_params(model, hyper, n)
    lr_np = np.broadcast_to(np.asarray(lr, dtype=float), (n,))
    keys_np = np.zeros((n, 2), np.uint32) if keys is None else np.asarray(keys)
    if keys_np.shape[0] != n:
        raise ValueError(f"keys must have one key per lane ({n}), got shape {keys_np.shape}")
    n_dev = jax.local_device_count() if devices is None else int(devices)
    if not 1 <= n_dev <= jax.local_device_count():
        raise ValueError(f"devices must be in 1..{jax.local_device_count()}, got {devices!r}")
    d = sum(int(np.prod(np.shape(x)[1:])) for x in jax.tree_util.tree_leaves(y0_np))
    if chunk_size is None:
        chunk_size = max(n_dev, min(CHUNK_SIZE, (64 << 20) // (8 * max(d, 1) * 8)))
    size = min(-(-int(chunk_size) // n_dev) * n_dev, -(-n // n_dev) * n_dev)
    prog = _compiled_discrete(
        spec, variant, int(n_steps), None if batch_size is None else int(batch_size), int(unroll), n_dev
    )
    outs, stats = [], []
    for start in range(0, n, size):
        idx = np.arange(start, min(start + size, n))
        pad = np.concatenate([idx, np.full(size - idx.size, idx[-1])])
        y, st = prog(
            [x[pad] for x in lane_leaves], shared_leaves, _take(y0_np, pad), lr_np[pad],
            keys_np[pad],
        )
        outs.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[: idx.size], y))
        stats.append(np.asarray(st)[: idx.size])
    ys = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:, None], *outs)
    ts = (n_steps * lr_np)[:, None]
    return Solution(ts, ys, np.concatenate(stats), np.full((n,), n_steps))
