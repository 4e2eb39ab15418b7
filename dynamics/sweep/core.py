"""The sweep loop, written once for every model family: ``run(config) -> xarray.Dataset``.

Lanes are the Cartesian product of the config's axes and the family's lane axes, in the order
``variant, method, eps, eta, sigma2, beta, *family.lane_axes`` (C order: the last varies
fastest). They run in blocks of one ``(variant, method, eps)``, so that a block has one flow
solver under the stiffness policy; a block's lanes run in chunks of one compiled shape (the
last chunk padded with copies of its last lane, whose results are dropped).

- **flow**: :func:`dynamics.solve.solve_batch` on the config's integrator (the engine or
  diffrax), to ``t1``.
- **gd / sgd**: ``t1 / lr`` steps on the engine, cut into :data:`SEGMENTS` equal segments (the
  progress bar moves once a segment); sgd keeps the last :data:`SGD_WINDOW` segment ends, the
  trailing window its collapse rule reads. The SGD key of lane ``i`` (its index in the flat
  product above) is ``fold_in(base, i)``; segment ``s`` draws with ``fold_in(key_i, s)``, so a
  lane's noise does not depend on the chunking: same seed, same result.

Every lane keeps a :class:`~dynamics.types.Status`; one lane that fails never stops the others.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from dynamics.solve import solve_batch
from dynamics.solve.lanes import n_lanes
from dynamics.solve.policy import engine_solver, flow_solver, stiff_method
from dynamics.sweep.config import SweepConfig
from dynamics.sweep.provenance import provenance
from dynamics.types import Status

#: the shared axes, outermost first; a family's lane axes follow
SHARED_AXES = ("variant", "method", "eps", "eta", "sigma2", "beta")
#: a gd/sgd run is cut into this many equal segments (at most)
SEGMENTS = 50
#: sgd's trailing window: the last this many segment ends
SGD_WINDOW = 10


def axes(config: SweepConfig) -> tuple[str, ...]:
    """The Dataset's lane dimensions, outermost first."""
    return SHARED_AXES + config.family.lane_axes


def inner_grid(config: SweepConfig) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """The axes inside one ``(variant, method, eps)`` block and their values."""
    fam = config.family
    vals = fam.axis_values(config)
    names = ("eta", "sigma2", "beta") + fam.lane_axes
    values = [np.asarray(config.eta, float), np.asarray(config.sigma2, float),
              np.asarray(config.beta, float)] + [np.asarray(vals[a]) for a in fam.lane_axes]
    return names, values


def plan(config: SweepConfig, memory: int | None = None, *, streamed: bool = False) -> dict:
    """Check that ``config`` can run before any work; return its plan.

    Args:
        config: the sweep.
        memory: bytes allowed (default: this machine's memory).
        streamed: the result is never held whole (a result store written unit by unit, the
            Dataset written from it slab by slab: ``--no-netcdf``); the memory check then sizes
            the lanes held at once, the larger of a work unit and a slab (:data:`SLAB`), not
            the grid. A family whose ``plan`` takes no ``held`` is checked for the grid.

    Returns ``{"lanes", "n_inner", "steps": {method: n}, "chunk": {method: lanes},
    "file_bytes", ...}`` (the family's plan with the shared counts).

    Raises:
        ValueError: one line naming the value and the limit it breaks.
    """
    fam = config.family
    n_inner = len(config.eta) * len(config.sigma2) * len(config.beta)
    n_inner *= int(math.prod(fam.axis_sizes(config)))
    n_lanes_all = len(config.variant) * len(config.method) * len(config.eps) * n_inner
    if streamed and "held" in inspect.signature(fam.plan).parameters:
        held = min(n_lanes_all, SLAB)
        out = dict(fam.plan(config, n_inner, n_lanes_all, memory, held=held))
        unit = max(min(int(c), n_inner) for c in out["chunk"].values())
        if unit > held:  # a unit larger than a slab: it is what is held at once
            out = dict(fam.plan(config, n_inner, n_lanes_all, memory, held=unit))
    else:
        out = dict(fam.plan(config, n_inner, n_lanes_all, memory))
    out.update(lanes=n_lanes_all, n_inner=n_inner,
               steps={m: config.n_steps(m) for m in config.method if m != "flow"})
    return out


# --- work units ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Unit:
    """One work unit: the lanes ``start:stop`` (flat, C order) of the block ``(iv, im, ie)``
    (one variant, method and eps), run as one compiled call of ``size`` lanes (the last unit of
    a block is padded with copies of its last lane). A unit is a box of the sweep's coordinates
    (see :func:`unit_shape`), so it is one chunk of the result store."""

    index: int
    block: tuple[int, int, int]
    start: int
    stop: int
    size: int

    @property
    def lanes(self) -> int:
        return self.stop - self.start


def unit_shape(inner_shape: tuple[int, ...], chunk: int) -> tuple[int, ...]:
    """The box of at most ``chunk`` lanes that tiles a block of ``inner_shape`` (C order): the
    trailing axes whole while they fit, then a slab of the next axis, ones before it. A unit is
    then a contiguous range of the block's flat lanes and a rectangular region of its axes."""
    shape = list(inner_shape)
    k, whole = len(shape), 1
    while k > 0 and whole * shape[k - 1] <= chunk:
        whole *= shape[k - 1]
        k -= 1
    if k == 0:
        return tuple(shape)
    return (1,) * (k - 1) + (max(1, chunk // whole),) + tuple(shape[k:])


def unit_region(inner_shape, box, start: int) -> tuple[slice, ...]:
    """The unit of a block that starts at flat lane ``start``, as slices of its inner axes
    (``box``: :func:`unit_shape`)."""
    first = np.unravel_index(start, inner_shape)
    return tuple(slice(0, n) if b == n else slice(int(f), min(int(f) + b, n))
                 for n, b, f in zip(inner_shape, box, first))


def block_units(inner_shape, box) -> list[tuple[int, int]]:
    """The ``(start, stop)`` flat lane ranges of a block's units of shape ``box``, in order
    (the boxes of a grid over the block; those at its far edge may be smaller)."""
    counts = [-(-n // b) for n, b in zip(inner_shape, box)]
    out = []
    for pos in np.ndindex(*counts):
        first = [p * b for p, b in zip(pos, box)]
        lanes = int(math.prod(min(b, n - f) for n, b, f in zip(inner_shape, box, first)))
        start = int(np.ravel_multi_index(first, inner_shape)) if inner_shape else 0
        out.append((start, start + lanes))
    return out


def work_units(config: SweepConfig, pl: dict) -> list[Unit]:
    """The sweep's work units in their order (blocks outermost, then lanes)."""
    _, values = inner_grid(config)
    inner_shape = tuple(len(v) for v in values)
    n_inner = pl["n_inner"]
    units = []
    for iv in range(len(config.variant)):
        for im, method in enumerate(config.method):
            box = unit_shape(inner_shape, min(pl["chunk"][method], n_inner))
            size = int(math.prod(box))
            ranges = block_units(inner_shape, box)
            for ie in range(len(config.eps)):
                for start, stop in ranges:
                    units.append(Unit(len(units), (iv, im, ie), start, stop, size))
    return units


class Runner:
    """Runs work units of one sweep (the loop body, written once for every backend).

    Built from the config and its plan alone, so that any process can make its own (a Ray
    worker does). ``runner(unit)`` returns ``{name: (lanes, ...) array}``: the family's
    :meth:`~dynamics.sweep.family.Family.read` of the unit's lanes and ``status`` (int8 codes).
    """

    def __init__(self, config: SweepConfig, pl: dict):
        self.config, self.plan = config, pl
        self.family = fam = config.family
        self.names, self.values = inner_grid(config)
        self.inner_shape = tuple(len(v) for v in self.values)
        self.ctx = fam.prepare(config)
        self.integrator = config.flow_integrator
        key = jax.random.PRNGKey(config.seed)
        self.base_key = key if fam.sgd_stream is None else jax.random.fold_in(key, fam.sgd_stream)

    def lanes(self, unit: Unit) -> tuple[np.ndarray, dict]:
        """The unit's padded flat indices and each inner axis's values at them."""
        idx = np.minimum(np.arange(unit.start, unit.start + unit.size), self.plan["n_inner"] - 1)
        sub = np.unravel_index(idx, self.inner_shape)
        return idx, {a: self.values[j][sub[j]] for j, a in enumerate(self.names)}

    def flow_solver(self, eps: float) -> str:
        """The flow method a block at ``eps`` runs (the stiffness policy)."""
        unit = Unit(0, (0, 0, 0), 0, 1, 1)
        _, lanes = self.lanes(unit)
        variant = self.family.variants[self.config.variant[-1]]
        _, _, y0 = self.family.build(self.config, self.ctx, variant, float(eps), lanes)
        return _flow_solver(self.config, self.family, self.integrator, float(eps), y0)

    def __call__(self, unit: Unit, progress=None) -> dict:
        return self.finish(unit, self.integrate(unit, progress))

    def integrate(self, unit: Unit, progress=None) -> tuple:
        """The first half of a unit: its lanes integrated (flow, gd or sgd). Returns what
        :meth:`finish` reads the unit's values from."""
        config, pl = self.config, self.plan
        iv, im, ie = unit.block
        method, m = config.method[im], unit.lanes
        idx, variant, eps, model, hyper, y0 = self._problem(unit)
        window = None
        if method == "flow":
            sol = solve_batch(model, variant, hyper, y0, **self._flow_args(eps, y0, unit.size))
            y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
            st = np.asarray(sol.status)
            if progress is not None:
                progress.update(m)
        else:
            keys = None
            if method == "sgd":
                block_id = (iv * len(config.method) + im) * len(config.eps) + ie
                gidx = jnp.asarray(block_id * pl["n_inner"] + idx)
                keys = jax.vmap(lambda i: jax.random.fold_in(self.base_key, i))(gidx)
            y, st, window = run_segments(
                model, variant, hyper, y0, config.lr, keys,
                n_steps=pl["steps"][method],
                batch=config.batch if keys is not None else None,
                window=SGD_WINDOW if method == "sgd" else 0,
                progress=None if progress is None else lane_progress(progress, m),
            )
        return method, model, variant, hyper, y, st, window

    def prepare(self, unit: Unit) -> None:
        """Prepare what integrating ``unit`` compiles (the engine's flow programs: traced, and
        compiled or loaded from the cache) without integrating it, so that the unit starts at
        once when it runs; nothing for gd/sgd."""
        if self.config.method[unit.block[1]] != "flow":
            return
        _, variant, eps, model, hyper, y0 = self._problem(unit)
        solve_batch(model, variant, hyper, y0, compile_only=True,
                    **self._flow_args(eps, y0, unit.size))

    def _problem(self, unit: Unit) -> tuple:
        """``(idx, variant, eps, model, hyper, y0)`` of a unit: its lanes' indices in the
        block, its block's variant and ``eps``, and the family's model, hyper and initial
        states for its lanes."""
        config, fam = self.config, self.family
        iv, _, ie = unit.block
        variant, eps = fam.variants[config.variant[iv]], float(config.eps[ie])
        idx, lanes = self.lanes(unit)
        model, hyper, y0 = fam.build(config, self.ctx, variant, eps, lanes)
        return idx, variant, eps, model, hyper, y0

    def _flow_args(self, eps: float, y0, chunk: int) -> dict:
        """:func:`~dynamics.solve.solve_batch`'s arguments for a flow unit of ``chunk`` lanes."""
        config, integrator = self.config, self.integrator
        engine = integrator == "engine"
        return dict(
            integrator=integrator, t1=config.t1_for("flow"),
            solver=_flow_solver(config, self.family, integrator, eps, y0),
            rtol=config.rtol, atol=config.atol, max_steps=config.max_steps,
            chunk_size=chunk if engine else None,
            steady_tol=steady_tol(config, eps) if engine else None,
        )

    def finish(self, unit: Unit, integrated: tuple) -> dict:
        """The second half of a unit: the family's :meth:`~dynamics.sweep.family.Family.read`
        (classification) of what :meth:`integrate` returned, and ``status``."""
        method, model, variant, hyper, y, st, window = integrated
        m = unit.lanes
        got = self.family.read(self.config, self.ctx, method, model, variant, hyper, y, st,
                               window)
        out = {k: np.asarray(v)[:m] for k, v in got.items()}
        out["status"] = np.asarray(st)[:m].astype(np.int8)
        return out


class MemorySink:
    """Holds a sweep's results in memory (what :func:`run` does without a store)."""

    def __init__(self, config: SweepConfig, pl: dict):
        _, values = inner_grid(config)
        self.outer = (len(config.variant), len(config.method), len(config.eps))
        self.inner_shape = tuple(len(v) for v in values)
        self.n_inner = pl["n_inner"]
        self.results: dict[str, np.ndarray] = {}
        self.finished: set[int] = set()

    def done(self, unit: Unit) -> bool:
        return unit.index in self.finished

    def put(self, unit: Unit, got: dict) -> None:
        iv, im, ie = unit.block
        for k, arr in got.items():
            if k not in self.results:
                shape = self.outer + self.inner_shape + arr.shape[1:]
                self.results[k] = (np.full(shape, np.nan) if arr.dtype.kind == "f"
                                   else np.zeros(shape, arr.dtype))
            block = self.results[k][iv, im, ie].reshape((self.n_inner,) + arr.shape[1:])
            block[unit.start:unit.stop] = arr
        self.finished.add(unit.index)

    def values(self) -> dict:
        return self.results


class LocalBackend:
    """Runs the units one after the other in this process.

    With ``pipeline`` (the default) a unit's ``on_done`` (the result store's write) runs in a
    second thread while the next unit integrates, so the cores that integrate are not left
    idle while one of them writes (JAX and the file writes release the interpreter lock while
    they work). The unit's classification stays in this thread, between its integration and
    the next one's: it runs on the engine's devices, and handed to the second thread it would
    queue on the first device behind the next unit's integration and leave the other devices
    waiting for it there (measured: the whole sweep 20 % slower than with no second thread).
    Units are written in their order and every one is written before :meth:`run` returns or
    raises; the values are those of the sequential loop (``pipeline=False``) to the bit.

    Also with ``pipeline``: once the first unit of a block has run and more of the block are
    to come, a third thread prepares the next block's programs (:meth:`Runner.prepare`), so
    that tracing and loading them (about half a second for the engine's flow) happen while
    this block integrates, not between the blocks.
    """

    name = "local"

    def __init__(self, pipeline: bool = True):
        self.pipeline = bool(pipeline)

    def run(self, config, pl, units, on_done, progress=None, should_stop=None) -> None:
        runner = Runner(config, pl)
        if not self.pipeline:
            for unit in units:
                if should_stop is not None and should_stop():
                    return
                on_done(unit, runner(unit, progress))
            return

        ahead = _next_blocks(units)
        prep = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweep-ahead")
        done = False  # a stop or an error does not wait on a compile that is no use now
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sweep-write") as pool:
            pending = None
            try:
                for unit in units:
                    if should_stop is not None and should_stop():
                        break
                    got = runner(unit, progress)
                    if unit.index in ahead:
                        prep.submit(_prepare_quietly, runner, ahead.pop(unit.index))
                    if pending is not None:
                        pending.result()  # one unit in flight: memory stays bounded
                    pending = pool.submit(on_done, unit, got)
                else:
                    done = True
            except BaseException:
                if pending is not None:  # the unit handed over is finished first
                    concurrent.futures.wait([pending])
                raise
            finally:
                prep.shutdown(wait=done, cancel_futures=not done)
            if pending is not None:
                pending.result()


def _next_blocks(units: list[Unit]) -> dict[int, Unit]:
    """``{index of a block's first unit: the next block's first unit}``, for the blocks with
    more than one unit in ``units`` (a block of one unit leaves no time to prepare the next)."""
    first: dict[tuple, Unit] = {}
    count: dict[tuple, int] = {}
    for u in units:
        first.setdefault(u.block, u)
        count[u.block] = count.get(u.block, 0) + 1
    blocks = list(first)
    return {first[b].index: first[nb] for b, nb in zip(blocks, blocks[1:]) if count[b] > 1}


def _prepare_quietly(runner: Runner, unit: Unit) -> None:
    """:meth:`Runner.prepare`; an error is left for the unit's own run to raise and report."""
    try:
        runner.prepare(unit)
    except Exception:  # noqa: BLE001 - the unit's run meets it again
        pass


def run(config: SweepConfig, progress=None, plan_=None, *, sink=None, backend=None,
        should_stop=None, load: bool = True):
    """Run the sweep ``config``; return its Dataset (one coordinate per axis, provenance in
    ``attrs``).

    Args:
        config: the sweep.
        progress: optional object with ``update(lanes)`` (a tqdm bar); moves by the lanes done.
        plan_: :func:`plan`'s result when the caller has it (computed here otherwise).
        sink: where finished units go: in memory (default) or a result store
            (:class:`dynamics.sweep.store.Store`), whose finished units are skipped.
        backend: what runs the units (default :class:`LocalBackend`; see
            :mod:`dynamics.sweep.ray_backend`).
        should_stop: optional ``() -> bool`` asked between units; when it says so the run
            stops there and returns ``None`` (the units done are in ``sink``).
        load: assemble the Dataset in memory (default); ``False`` returns the finished
            ``sink`` instead (a store then writes the Dataset slab by slab:
            :meth:`dynamics.sweep.store.Store.write_dataset`).
    """
    pl = plan(config) if plan_ is None else plan_
    sink = MemorySink(config, pl) if sink is None else sink
    backend = LocalBackend() if backend is None else backend
    units = work_units(config, pl)
    todo = [u for u in units if not sink.done(u)]
    if progress is not None and len(todo) < len(units):
        progress.update(sum(u.lanes for u in units) - sum(u.lanes for u in todo))
    backend.run(config, pl, todo, sink.put, progress=progress, should_stop=should_stop)
    if not all(sink.done(u) for u in todo):
        return None
    if not load:
        return sink
    return assemble(config, pl, sink.values())


def assemble(config: SweepConfig, pl: dict, results: dict) -> xr.Dataset:
    """The Dataset from the assembled per-lane values (``status`` as int8 codes)."""
    ctx, solvers = finish_context(config, pl)
    data_vars, coords, attrs = finish_slab(config, ctx, results)
    return skeleton(config, pl, solvers, data_vars, coords, attrs)


#: lanes the streamed assembly (:func:`slabs`, :func:`finish_slab`) holds at once
SLAB = 1 << 20


def finish_context(config: SweepConfig, pl: dict) -> tuple:
    """``(ctx, solvers)``: the family's context and each eps's flow solver, what
    :func:`finish_slab` and :func:`skeleton` need besides the values."""
    solvers: dict[float, str] = {}
    if "flow" in config.method:
        runner = Runner(config, pl)
        solvers = {float(e): runner.flow_solver(e) for e in config.eps}
        return runner.ctx, solvers
    return config.family.prepare(config), solvers


def finish_slab(config: SweepConfig, ctx, values: dict) -> tuple[dict, dict, dict]:
    """The family's ``finish`` of the values of the whole grid or of one slab of it (each
    ``(variant, method, eps, *inner axes, ...)``, ``status`` as int8 codes): ``(data_vars,
    coords, attrs)``. A family's per-lane variables depend on their own lane only, so the
    slabs of :func:`slabs` give the grid's variables piece by piece."""
    values = dict(values)
    values["status"] = np.asarray(Status.labels())[values["status"]]
    return config.family.finish(config, ctx, axes(config), values)


def lane_variables(config: SweepConfig, data_vars: dict) -> list[str]:
    """The names of ``data_vars`` laid out over every lane axis (the others come from the
    config alone, the same in every slab)."""
    dims = axes(config)
    return [k for k, v in data_vars.items() if tuple(v[0])[:len(dims)] == dims]


def slabs(config: SweepConfig, slab: int = SLAB) -> list[tuple[tuple[int, int, int], tuple]]:
    """The ``(block, region)`` slabs of at most ``slab`` lanes that tile the grid (a region:
    slices of the inner axes, as :func:`unit_region`), blocks outermost."""
    _, values = inner_grid(config)
    inner_shape = tuple(len(v) for v in values)
    box = unit_shape(inner_shape, max(1, min(slab, int(math.prod(inner_shape)))))
    regions = [unit_region(inner_shape, box, start)
               for start, _ in block_units(inner_shape, box)]
    outer = (len(config.variant), len(config.method), len(config.eps))
    return [(tuple(int(i) for i in b), r) for b in np.ndindex(*outer) for r in regions]


def skeleton(config: SweepConfig, pl: dict, solvers: dict, data_vars: dict, coords: dict,
             attrs: dict) -> xr.Dataset:
    """The Dataset of ``data_vars`` with the sweep's coordinates and attributes."""
    names, values = inner_grid(config)
    ds = xr.Dataset(data_vars, coords={**_shared_coords(config, names, values), **coords})
    ds.attrs.update(provenance(config.command))
    ds.attrs.update(_run_attrs(config, pl, solvers, config.flow_integrator))
    ds.attrs.update(attrs)
    return ds


#: an early-stopped flow lane's field is at most this fraction of the family's ``ftol``
STEADY_FRACTION = 1e-2


def steady_tol(config: SweepConfig, eps: float) -> float | None:
    """The engine's per-lane stopping threshold on ``max |f|`` for a flow sweep, or ``None``.

    The family's classifier calls a lane converged when its gradient residual (the field at
    ``eps = 1``) is ``<= ftol``; the engine's field divides the predictor's component by
    ``eps``, so a lane that stops with ``max |f| <= STEADY_FRACTION * ftol / max(1, eps)`` passes
    that test with a margin of 100, and has stopped only where the field was not growing (so
    never while leaving a saddle). Families without an ``ftol`` option, and
    ``config.early_exit = False``, run every lane to ``t1``.
    """
    ftol = getattr(config.options, "ftol", None)
    if not config.early_exit or ftol is None:
        return None
    return STEADY_FRACTION * float(ftol) / max(1.0, float(eps))


def _flow_solver(config, fam, integrator, eps, y0) -> str:
    """The block's flow method under the stiffness policy (the engine's size cap included):
    on the engine ``auto`` is the per-lane switch unless the family sets a threshold."""
    dim = sum(int(np.prod(x.shape[1:])) for x in jax.tree_util.tree_leaves(y0))
    if integrator == "engine":
        return engine_solver(config.solver, fam.stiff_eps, eps, dim)
    return flow_solver(eps, config.solver, integrator, fam.stiff_eps, dim)


def _solver_words(solver: str, rtol: float) -> str:
    """How the Dataset's ``solver`` attribute names a method."""
    if solver == "auto":
        return f"dopri5, switching per lane to {stiff_method(rtol)}"
    return solver


def _shared_coords(config, names, values) -> dict:
    eps = np.asarray(config.eps, float)
    eta = np.asarray(config.eta, float)
    eta_phi = eta[None, :] * (eps[:, None] if config.convention == "tian" else 1.0)
    eta_phi = np.broadcast_to(eta_phi, (len(eps), len(eta)))
    coords = dict(variant=list(config.variant), method=list(config.method), eps=list(config.eps))
    coords.update({a: (list(getattr(config, a)) if a in ("eta", "sigma2", "beta") else v)
                   for a, v in zip(names, values)})
    coords.update(
        eta_theta=("eta", eta, {"long_name": "effective encoder weight decay"}),
        eta_phi=(("eps", "eta"), eta_phi, {"long_name": "effective predictor weight decay"}),
        alpha_p=("eps", 1.0 / eps, {"long_name": "predictor lr ratio 1/eps"}),
        t1=("method", [config.t1_for(m) for m in config.method],
            {"long_name": "integration time"}),
        lr=config.lr,
    )
    return coords


def _run_attrs(config, pl, solvers, integrator) -> dict:
    t1s = {m: config.t1_for(m) for m in config.method}
    uniform_t1 = len(set(t1s.values())) == 1
    engine_word = "batched" if integrator == "engine" else integrator
    return dict(
        model=config.model,
        convention=config.convention,
        target0=config.target0,
        target0_meaning="where a BYOL lane's target started: online, theta_a(0) = theta(0); "
                        "zero, theta_a(0) = 0 (unused by SimSiam)",
        solver=", ".join(f"eps={e:g}: {_solver_words(s, config.rtol)} ({engine_word})"
                         for e, s in solvers.items())
        or "none (discrete methods)",
        rtol=config.rtol, atol=config.atol, max_steps=config.max_steps,
        early_exit=int(bool(config.early_exit and integrator == "engine")),
        t1=next(iter(t1s.values())) if uniform_t1
        else ", ".join(f"{m}: {v:g}" for m, v in t1s.items()),
        lr=config.lr,
        n_steps=", ".join(f"{m}: {n}" for m, n in pl["steps"].items()) or "none (flow only)",
        batch=config.batch, seed=config.seed, collapse_tol=config.collapse_tol,
    )


# --- gd / sgd in segments ---------------------------------------------------------------------


def segments(n_steps: int) -> tuple[int, int, int]:
    """``(first, length, count)``: a gd/sgd run of ``n_steps`` is a first segment of ``first``
    steps and ``count - 1`` more of ``length`` (at most :data:`SEGMENTS` in all; the remainder
    goes into the first, so the trailing window is evenly spaced)."""
    count = min(SEGMENTS, n_steps)
    length = n_steps // count
    return n_steps - length * (count - 1), length, count


def lane_progress(bar, lanes):
    """A ``progress(done_steps, n_steps)`` callback that moves ``bar`` by whole lanes: ``lanes``
    in all once ``done_steps == n_steps``."""
    shown = [0]

    def update(done, total):
        now = lanes * done // total
        bar.update(now - shown[0])
        shown[0] = now

    return update


def run_segments(model, variant, hyper, y0, lr, keys, *, n_steps, batch, window, progress=None):
    """A gd (``keys`` None) or sgd run of ``n_steps`` on the engine, as :func:`segments`;
    segment ``s`` of lane ``i`` samples with ``fold_in(keys[i], s)``.

    Returns the final state, the status (n,) and, when ``window`` > 0, the last ``window``
    segment ends (``State`` leaves (n, window, ...); ``None`` otherwise).
    """
    first, length, count = segments(n_steps)
    y = y0
    n = n_lanes(y0)
    bad = np.zeros(n, bool)
    ends = []
    lrs = jnp.full((n,), lr)
    method = "gd" if keys is None else "sgd"
    for s in range(count):
        seg_keys = None if keys is None else jax.vmap(lambda k: jax.random.fold_in(k, s))(keys)
        # step0: copied targets count steps over the whole run, not within a segment
        sol = solve_batch(model, variant, hyper, y, method=method, lr=lrs, keys=seg_keys,
                          n_steps=first if s == 0 else length, batch_size=batch,
                          step0=0 if s == 0 else first + (s - 1) * length)
        y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
        bad |= np.asarray(sol.status) != Status.OK
        if window and s >= count - window:
            ends.append(y)
        if progress is not None:
            progress(first + s * length, n_steps)
    status = np.where(bad, Status.NONFINITE, Status.OK).astype(np.int8)
    win = None
    if window:
        while len(ends) < 2:  # runs of fewer steps than segments: repeat the last state
            ends.insert(0, ends[0] if ends else y)
        win = jax.tree_util.tree_map(
            lambda *xs: jnp.stack([jnp.asarray(x) for x in xs], axis=1), *ends)
    return y, status, win
