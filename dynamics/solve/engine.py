"""The batched engine: many trajectories of one model in one compiled program per chunk.

The vector field is the one :mod:`dynamics.flow` derives from the model's loss; the engine only
changes *how* a batch of lanes is stepped, never *what* is integrated. Its parts:
:mod:`~dynamics.solve.tableaus` (coefficients), :mod:`~dynamics.solve.steps` (one step of each
method), :mod:`~dynamics.solve.pool` (the per-lane loop with early exit and refill),
:mod:`~dynamics.solve.policy` (which method a lane gets), :mod:`~dynamics.solve.lanes` (lane
bookkeeping shared with the diffrax path). This module compiles and drives them.

Design (why it is faster than ``jit(vmap(diffeqsolve))``):

- **Batch-native state.** A chunk of lanes is one array of shape ``(d, n)`` (state component
  first, lane last): every stage of every step is a handful of fused elementwise kernels over
  ``n`` lanes. The per-lane field is ``flow.vector_field`` vmapped over the lane axis; matrix
  models (large ``d``) are evaluated lane-first so their matrix products batch.
- **Per-lane error control, early exit and refill** (:mod:`~dynamics.solve.pool`). ``slots``
  (default 256 on a CPU) is small enough that a step's arrays stay in cache.
- **Methods chosen per lane** by the stiffness policy (:mod:`~dynamics.solve.policy`):
  ``"dopri5"`` (explicit Dormand-Prince 5(4), FSAL) for non-stiff lanes and a Rosenbrock
  method with the exact Jacobian of the field (``jax.jacfwd``) for stiff ones: ``"rodas5p"``
  (L-stable 5(4), 8 stages) at the tolerances where it takes enough fewer steps to pay for its
  larger step, else ``"rodas4"`` (L-stable 4(3), 6 stages; :func:`policy.stiff_method`).
  Under ``auto`` every lane starts on ``dopri5``, whose pool also estimates each lane's
  stiffness from its last two stages (a few operations a step); a lane that turns stiff leaves
  that pool where it is, and the chunk's stiff lanes then resume together in a Rosenbrock
  pool, in the same compiled program (:func:`~dynamics.solve.pool.integrate_switching`). So a
  lane that never turns stiff pays the explicit step and the estimate, and each pool steps
  lanes of one method (a mixed pool would pay both steps on every lane).
  Rosenbrock's linear systems are solved by an unrolled LU for the scalar model's few
  variables and by a lane-first LU looping over columns above ``steps.UNROLLED_LU_MAX_DIM``
  (an unrolled 32 x 32 LU takes minutes to compile; on 32 x 32 matrices the factorisation is
  about 80 % of a Rodas4 step, ``jacfwd`` about 25 %).
- **Chunking.** Lanes are processed ``chunk_size`` at a time (the last chunk padded to the same
  shape; padding lanes are never integrated), so device memory is bounded by the chunk whatever
  the grid size, and one compiled program serves every chunk. While one chunk runs the next is
  dispatched.
- **Devices.** With more than one local device, each chunk is split across devices with
  ``shard_map``; every device runs its own loop and stops when *its* lanes are done. Lanes are
  dealt to the devices in turn (:func:`shard_layout`), so neighbouring lanes of a grid, of
  similar cost, are spread over all of them.

Per-lane status (:class:`~dynamics.types.Status`): ``OK`` the lane reached ``t1``;
``MAX_STEPS`` it used ``max_steps`` steps (accepted + rejected) first; ``NONFINITE`` its field
became NaN/inf (after ``pool.MAX_BAD`` consecutive non-finite trial steps, or a step size that
underflows). Saves a lane did not reach are NaN. ``rtol``/``atol`` are arguments; ``bench/``
measures the global error this gives.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from dynamics.checks import check_count, check_real, check_tolerances, check_times
from dynamics.flow import gd_step, vector_field
from dynamics.solve.discrete import discrete_batch as vmap_discrete_batch
from dynamics.solve.lanes import Solution, host_lanes, n_lanes, split_params, take
from dynamics.solve.policy import ENGINE_METHODS, engine_groups, stiff_method
from dynamics.solve.pool import STATUS_NONFINITE, STATUS_OK, integrate_pool, integrate_switching
from dynamics.types import Hyper, State, Variant

#: Default lanes per chunk (the pool one compiled call integrates).
CHUNK_SIZE = 65536
#: Default working lanes stepped together on a CPU; finished ones are refilled from the pool.
#: Small enough that a step's arrays stay in cache, large enough to spread the fixed cost of
#: each of a step's ~60 kernels. Measured on the scalar model (Rosenbrock, eps = 0.01, rtol
#: 1e-8, one device, XLA 512-bit vectors; ns of CPU a lane-step): 192: 32, 256: 28, 320: 27,
#: 384: 26, 448: 27, 512: 45 (at 512 lanes XLA's CPU kernels take a slower path), 2048-4096
#: slower still. Accelerators want wide arrays: there the default is ``SLOTS_ACCELERATOR``.
SLOTS = 384
SLOTS_ACCELERATOR = 16384
#: above this state size the field is evaluated lane-first
LANE_LAST_MAX_DIM = 64
#: up to this state size the field takes and returns one (n,) array per component (the scalar
#: models), and the Jacobian is built from one directional derivative per component
ROWS_MAX_DIM = 8


# --- chunk programs -----------------------------------------------------------------------


def batched_field(f_lane, d: int):
    """``(f, jac)``: the field and its Jacobian over a batch of lanes in the engine's layout,
    from ``f_lane(lane_params, z) -> (d,)`` for one lane.

    ``f(p, y)``: ``y`` (d, n) -> (d, n); ``jac(p, y)`` -> (d, d, n) with ``J[i, j, lane] =
    d f_i / d y_j``. Small states (at most ``ROWS_MAX_DIM`` numbers, the scalar models) are
    evaluated one (n,) array per component in and out, and the Jacobian is built column by
    column from a directional derivative along each component, so every stage of a step stays
    lane-last (no transposed copies between stages); larger ones vmap ``f_lane`` lane-last, and
    above ``LANE_LAST_MAX_DIM`` lane-first (matrix products batch over a leading axis).
    """

    def f_rows(lane, *z):
        out = f_lane(lane, jnp.stack(z))
        return tuple(out[i] for i in range(len(z)))

    def f(p, y):
        if d <= ROWS_MAX_DIM:
            return jnp.stack(jax.vmap(f_rows)(p, *(y[i] for i in range(d))))
        if d <= LANE_LAST_MAX_DIM:
            return jax.vmap(f_lane, in_axes=(0, 1), out_axes=1)(p, y)
        return jax.vmap(f_lane, in_axes=(0, 0), out_axes=0)(p, y.T).T

    def jac(p, y):
        if d <= ROWS_MAX_DIM:
            cols = [jax.jvp(lambda yy: f(p, yy), (y,), (jnp.zeros_like(y).at[j].set(1.0),))[1]
                    for j in range(d)]
            return jnp.stack(cols, axis=1)
        return jax.vmap(jax.jacfwd(f_lane, argnums=1), in_axes=(0, 1), out_axes=2)(p, y)

    return f, jac


def _chunk_program(lane_leaves, shared_leaves, y0, n_valid, t_save, rtol, atol, max_steps, *,
                   spec, variant, method, unravel, save_all, slots, steady_tol, stiff=None):
    """One chunk: per-lane parameter leaves on axis 0, shared ones as they are, ``y0`` (d, n).
    ``method="auto"``: every lane starts explicit and switches to ``stiff`` on its own
    (:func:`integrate_switching`)."""

    def f_lane(lane, z):
        model, hyper = spec.merge(lane, shared_leaves)
        return ravel_pytree(vector_field(model, variant, hyper, unravel(z)))[0]

    f, jac = batched_field(f_lane, y0.shape[0])
    n_valid = jnp.reshape(n_valid, ()).astype(jnp.int32)
    kw = dict(save_all=save_all, slots=min(slots, y0.shape[1]), steady_tol=steady_tol)
    if method == "auto":
        return integrate_switching(f, jac, list(lane_leaves), y0, n_valid, t_save, rtol, atol,
                                   max_steps, stiff=stiff, **kw)
    return integrate_pool(f, jac, list(lane_leaves), y0, n_valid, t_save, rtol, atol,
                          max_steps, method=method, **kw)


def _lane_spec(spec):
    n_lane = spec.n_lane
    return [P("lanes")] * n_lane, [P()] * (len(spec.lane_flags) - n_lane)


@functools.lru_cache(maxsize=64)
def _compiled(spec, variant, method, unravel_key, save_all, n_dev, slots, steady_tol=None,
              stiff=None):
    unravel = _UNRAVELS[unravel_key]
    fn = functools.partial(
        _chunk_program, spec=spec, variant=variant, method=method, unravel=unravel,
        save_all=save_all, slots=slots, steady_tol=steady_tol, stiff=stiff,
    )
    if n_dev > 1:
        mesh = Mesh(np.array(jax.local_devices()[:n_dev]), ("lanes",))
        lane_s, shared_s = _lane_spec(spec)
        in_specs = (lane_s, shared_s, P(None, "lanes"), P("lanes"), P(), P(), P(), P())
        out_specs = (P(None, None, "lanes"), P("lanes"), P("lanes"))
        fn = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs,
                           check_vma=False)
    return jax.jit(fn)


def shard_layout(k: int, size: int, n_dev: int) -> tuple[np.ndarray, np.ndarray]:
    """Where ``k`` lanes sit in a chunk of ``size`` split over ``n_dev`` devices: lane ``j``
    goes to device ``j % n_dev``, at the next free place of its shard (so each device gets
    every ``n_dev``-th lane: neighbouring lanes of a grid, of similar cost, are spread over the
    devices, and a chunk of fewer than ``size`` lanes still keeps every device busy).

    Returns ``(pos, n_valid)``: the place of each lane in the chunk (k,), and the number of
    lanes each shard integrates (n_dev,), its first ones.
    """
    shard = size // n_dev
    j = np.arange(k)
    pos = (j % n_dev) * shard + j // n_dev
    n_valid = ((k - np.arange(n_dev) + n_dev - 1) // n_dev).clip(0).astype(np.int32)
    return pos, n_valid


_UNRAVELS: dict = {}


def _register_unravel(template_lane):
    """Key the unravel function by the state's structure, so compiled programs are reused."""
    flat, unravel = ravel_pytree(template_lane)
    leaves, treedef = jax.tree_util.tree_flatten(template_lane)
    key = (treedef, tuple((np.shape(x), np.asarray(x).dtype.str) for x in leaves))
    _UNRAVELS.setdefault(key, unravel)
    return key, flat.shape[0]


def flow_batch(
    model, variant: Variant, hyper: Hyper, y0: State, *, t1: float, ts=None,
    method: str = "auto", rtol: float = 1e-6, atol: float = 1e-9, max_steps: int = 100_000,
    chunk_size: int | None = None, slots: int | None = None, stiff_eps: float | None = None,
    devices: int | None = None, steady_tol: float | None = None, compile_only: bool = False,
) -> Solution | None:
    """Integrate the gradient flow for a batch of lanes on the engine.

    Args:
        model, hyper: pytrees whose leaves are scalars (shared by all lanes) or arrays with a
            leading lane axis of length ``n``.
        y0: ``State`` whose leaves carry the lane axis, shape (n, ...).
        t1: end time (> 0).
        ts: optional increasing save times in ``[0, t1]``, shared by all lanes; default saves
            only ``t1``. A save time is hit exactly (the step is cut to reach it).
        method: ``"auto"`` (the stiffness policy, :func:`dynamics.solve.policy.engine_groups`:
            every lane starts on ``dopri5`` and switches to the Rosenbrock method of
            :func:`dynamics.solve.policy.stiff_method` (``rodas5p`` at ``rtol <= 1e-4``)
            when its own stiffness estimate says so, for states of at most
            ``MAX_ROSENBROCK_DIM`` numbers; larger states stay on ``dopri5``), ``"dopri5"``,
            ``"rodas4"`` or ``"rodas5p"``.
        stiff_eps: with ``method="auto"``, the older fixed rule instead of the per-lane
            switch: ``rodas4`` for the lanes with ``eps < stiff_eps``, ``dopri5`` for the rest.
        rtol, atol: per-lane error tolerances (see module docstring).
        max_steps: per-lane cap on steps (accepted + rejected).
        chunk_size: lanes per compiled program call (default ``CHUNK_SIZE``, or fewer for large
            states so a chunk's state stays near 64 MiB); bounds memory.
        slots: lanes stepped together inside a chunk (per device); a lane that finishes hands
            its slot to the next pending lane of the chunk. Default ``SLOTS`` on a CPU,
            ``SLOTS_ACCELERATOR`` on a GPU/TPU. Results agree to rounding whatever its value.
        devices: number of local devices to split each chunk over (default: all).
        steady_tol: when given and only ``t1`` is saved (``ts`` is None), a lane that has
            arrived at a fixed point stops there: ``max |f(y)| <= steady_tol`` and not growing
            for ``pool.STEADY_STEPS`` accepted steps. Its final state is where it stopped (a
            stable fixed point's neighbourhood, ``|f| <= steady_tol``, not the state at ``t1``),
            its slot goes to the next lane, ``num_steps`` counts the steps it took. Default
            ``None``: every lane runs to ``t1``.
        compile_only: prepare the compiled programs this call would run (traced, compiled or
            loaded from the compilation cache), integrate nothing and return ``None``; a
            later call with the same arguments then starts at once. A caller can prepare its
            next batch in another thread while this one integrates.

    Returns:
        ``Solution`` with ``ts`` (n, S), ``ys`` leaves (n, S, ...), ``status`` int8 (n,),
        ``num_steps`` (n,), as host (numpy) arrays. S is ``len(ts)`` or 1.
    """
    if method not in ENGINE_METHODS:
        raise ValueError(
            f"unknown method {method!r}: expected one of {', '.join(ENGINE_METHODS)}"
        )
    check_times(t1, ts)
    max_steps = check_tolerances(rtol, atol, max_steps)
    t1, rtol, atol = float(t1), float(rtol), float(atol)
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size)
    if steady_tol is not None:
        check_real("steady_tol", steady_tol, positive=True)
    if slots is None:
        slots = SLOTS if jax.default_backend() == "cpu" else SLOTS_ACCELERATOR
    slots = check_count("slots", slots)
    n = n_lanes(y0)
    if ts is None:
        t_save = np.array([float(t1)])
        save_all = False
    else:
        t_save = np.asarray(ts, dtype=float).reshape(-1)
        if t_save[-1] < t1:
            t_save = np.append(t_save, float(t1))
            save_all = "trim"
        else:
            save_all = True

    y0_np = host_lanes(y0, n)
    spec, lane_leaves, shared_leaves = split_params(model, hyper, n)
    template = jax.tree_util.tree_map(lambda x: x[0], y0_np)
    key, d = _register_unravel(template)
    dtype = np.result_type(*jax.tree_util.tree_leaves(y0_np))
    ys_flat = np.concatenate(
        [np.asarray(x, dtype=dtype).reshape(n, -1) for x in jax.tree_util.tree_leaves(y0_np)],
        axis=1,
    ).T  # (d, n), same order as ravel_pytree

    groups = engine_groups(hyper, n, d, method, stiff_eps)

    n_dev = jax.local_device_count() if devices is None else int(devices)
    if not 1 <= n_dev <= jax.local_device_count():
        raise ValueError(f"devices must be in 1..{jax.local_device_count()}, got {devices!r}")
    if chunk_size is None:
        chunk_size = max(n_dev, min(CHUNK_SIZE, (64 << 20) // (8 * d * 24)))
    chunk_size = int(chunk_size)
    chunk_size = -(-chunk_size // n_dev) * n_dev

    S_out = len(t_save) if save_all else 1
    out = (np.full((S_out, d, n), np.nan, dtype), np.zeros((n,), np.int8),
           np.zeros((n,), np.int64))
    t_save_j = jnp.asarray(t_save)
    steady = None if steady_tol is None or save_all else float(steady_tol)

    def run_group(meth, lanes):
        """Every lane of ``lanes`` through ``meth`` in chunks of one compiled shape, results
        into ``out``; the next chunk is dispatched before the last one's results are read."""
        size = min(chunk_size, -(-lanes.size // n_dev) * n_dev)
        shard = size // n_dev
        prog = _compiled(spec, variant, meth, key, bool(save_all), n_dev,
                         min(int(slots), shard), steady,
                         stiff_method(rtol) if meth == "auto" else None)
        pending = None
        for start in range(0, lanes.size, size):
            idx = lanes[start:start + size]
            pos, n_valid = shard_layout(idx.size, size, n_dev)
            pad = np.full(size, idx[-1])  # padding lanes are never integrated
            pad[pos] = idx
            args = ([x[pad] for x in lane_leaves], shared_leaves, ys_flat[:, pad], n_valid,
                    t_save_j, rtol, atol, int(max_steps))
            if compile_only:  # the program of every chunk of the group is this one
                prog.lower(*args).compile()
                return
            res = prog(*args)
            if pending is not None:
                _store(*pending, out)
            pending = (idx, pos, res)
        _store(*pending, out)

    for meth, lanes in groups:
        if lanes.size:
            run_group(meth, lanes)
    if compile_only:
        return None
    ys_out, status, num_steps = out

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


def _store(idx, pos, res, out):
    """A chunk's results ``res`` into ``out``: lane ``idx[j]`` from place ``pos[j]``."""
    ys_out, status, num_steps = out
    buf, st, steps = (np.asarray(a) for a in res)
    ys_out[:, :, idx] = buf[:, :, pos]
    status[idx] = st[pos]
    num_steps[idx] = steps[pos]


def _discrete_program(lane_leaves, shared_leaves, y0, lr, keys, step0, *, spec, variant,
                      n_steps, batch_size, unroll):
    """One chunk of :func:`dynamics.solve.discrete.discrete_batch` (the same program, so the
    same numbers); ``unroll`` > 1 unrolls the step loop instead."""
    model, hyper = spec.merge(lane_leaves, shared_leaves)
    if unroll == 1:
        sol = vmap_discrete_batch(model, variant, hyper, y0, lr, keys if batch_size else None,
                                  n_steps=n_steps, batch_size=batch_size, step0=step0)
        y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
        return y, sol.status

    def lane_step(lane, y, l, key, k):
        m, h = spec.merge(lane, shared_leaves)
        batch = None if batch_size is None else m.sample(jax.random.fold_in(key, k), batch_size)
        return gd_step(m, variant, h, y, l, batch, step=step0 + k)

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
        mesh = Mesh(np.array(jax.local_devices()[:n_dev]), ("lanes",))
        lane_s, shared_s = _lane_spec(spec)
        fn = jax.shard_map(
            fn, mesh=mesh,
            in_specs=(lane_s, shared_s, P("lanes"), P("lanes"), P("lanes"), P()),
            out_specs=P("lanes"), check_vma=False,
        )
    return jax.jit(fn)


def discrete_batch(
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
    step0: int = 0,
) -> Solution:
    """Discrete GD/SGD for a batch of lanes: the vmapped
    :func:`dynamics.solve.discrete.discrete_batch` (final state only), chunked over lanes,
    split over local devices, with an optionally unrolled step loop.

    Step ``k`` of a lane samples its minibatch with ``fold_in(keys[lane], k)``, as
    :func:`dynamics.solve.discrete.run_discrete` does, so results agree with it lane for lane
    and do not depend on ``chunk_size``, ``unroll`` or ``devices``.

    Returns:
        ``Solution`` with ``ts`` (n, 1) = ``n_steps * lr``, ``ys`` leaves (n, 1, ...), ``status``
        (ok / nonfinite) and ``num_steps`` (n,), as numpy arrays.
    """
    n_steps = check_count("n_steps", n_steps)
    check_real("lr", lr, positive=True)
    if batch_size is not None:
        batch_size = check_count("batch_size", batch_size)
        if keys is None:
            raise ValueError("SGD (batch_size given) needs one PRNG key per lane")
    if chunk_size is not None:
        chunk_size = check_count("chunk_size", chunk_size)
    n = n_lanes(y0)
    y0_np = host_lanes(y0, n)
    spec, lane_leaves, shared_leaves = split_params(model, hyper, n)
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
        spec, variant, int(n_steps), None if batch_size is None else int(batch_size), int(unroll),
        n_dev,
    )
    if int(step0) != step0 or step0 < 0:
        raise ValueError(f"step0 must be an integer >= 0, got {step0!r}")
    step0_arr = np.asarray(int(step0), np.int64)
    outs, stats = [], []
    for start in range(0, n, size):
        idx = np.arange(start, min(start + size, n))
        pad = np.concatenate([idx, np.full(size - idx.size, idx[-1])])
        y, st = prog(
            [x[pad] for x in lane_leaves], shared_leaves, take(y0_np, pad), lr_np[pad],
            keys_np[pad], step0_arr,
        )
        outs.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[: idx.size], y))
        stats.append(np.asarray(st)[: idx.size])
    ys = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs)[:, None], *outs)
    ts = (n_steps * lr_np)[:, None]
    return Solution(ts, ys, np.concatenate(stats), np.full((n,), n_steps))
