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

import math

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr

from dynamics.solve import solve_batch
from dynamics.solve.lanes import n_lanes
from dynamics.solve.policy import flow_solver
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


def plan(config: SweepConfig, memory: int | None = None) -> dict:
    """Check that ``config`` can run before any work; return its plan.

    Returns ``{"lanes", "n_inner", "steps": {method: n}, "chunk": {method: lanes},
    "file_bytes", ...}`` (the family's plan with the shared counts).

    Raises:
        ValueError: one line naming the value and the limit it breaks.
    """
    fam = config.family
    n_inner = len(config.eta) * len(config.sigma2) * len(config.beta)
    n_inner *= int(math.prod(fam.axis_sizes(config)))
    n_lanes_all = len(config.variant) * len(config.method) * len(config.eps) * n_inner
    out = dict(fam.plan(config, n_inner, n_lanes_all, memory))
    out.update(lanes=n_lanes_all, n_inner=n_inner,
               steps={m: config.n_steps(m) for m in config.method if m != "flow"})
    return out


def run(config: SweepConfig, progress=None, plan_=None) -> xr.Dataset:
    """Run the sweep ``config``; return its Dataset (one coordinate per axis, provenance in
    ``attrs``).

    Args:
        config: the sweep.
        progress: optional object with ``update(lanes)`` (a tqdm bar); moves by the lanes done.
        plan_: :func:`plan`'s result when the caller has it (computed here otherwise).
    """
    fam = config.family
    pl = plan(config) if plan_ is None else plan_
    names, values = inner_grid(config)
    inner_shape = tuple(len(v) for v in values)
    n_inner = pl["n_inner"]
    outer = (len(config.variant), len(config.method), len(config.eps))
    ctx = fam.prepare(config)
    integrator = config.flow_integrator
    base_key = jax.random.PRNGKey(config.seed)
    if fam.sgd_stream is not None:
        base_key = jax.random.fold_in(base_key, fam.sgd_stream)

    status = np.zeros(outer + inner_shape, np.int8)
    results: dict[str, np.ndarray] = {}
    solvers: dict[float, str] = {}
    for iv, v_name in enumerate(config.variant):
        variant = fam.variants[v_name]
        for im, method in enumerate(config.method):
            chunk = min(pl["chunk"][method], n_inner)
            for ie, eps in enumerate(config.eps):
                block_id = (iv * outer[1] + im) * outer[2] + ie
                for start in range(0, n_inner, chunk):
                    m = min(chunk, n_inner - start)
                    idx = np.minimum(np.arange(start, start + chunk), n_inner - 1)
                    sub = np.unravel_index(idx, inner_shape)
                    lanes = {a: values[j][sub[j]] for j, a in enumerate(names)}
                    model, hyper, y0 = fam.build(config, ctx, variant, float(eps), lanes)
                    window = None
                    if method == "flow":
                        solver = _flow_solver(config, fam, integrator, float(eps), y0)
                        solvers[float(eps)] = solver
                        sol = solve_batch(
                            model, variant, hyper, y0, integrator=integrator,
                            t1=config.t1_for("flow"), solver=solver, rtol=config.rtol,
                            atol=config.atol, max_steps=config.max_steps,
                            chunk_size=chunk if integrator == "engine" else None,
                        )
                        y = jax.tree_util.tree_map(lambda x: x[:, -1], sol.ys)
                        st = np.asarray(sol.status)
                        if progress is not None:
                            progress.update(m)
                    else:
                        keys = None
                        if method == "sgd":
                            gidx = jnp.asarray(block_id * n_inner + idx)
                            keys = jax.vmap(lambda i: jax.random.fold_in(base_key, i))(gidx)
                        y, st, window = run_segments(
                            model, variant, hyper, y0, config.lr, keys,
                            n_steps=pl["steps"][method],
                            batch=config.batch if keys is not None else None,
                            window=SGD_WINDOW if method == "sgd" else 0,
                            progress=None if progress is None else lane_progress(progress, m),
                        )
                    got = fam.read(config, ctx, method, model, variant, hyper, y, st, window)
                    status[iv, im, ie].reshape(-1)[start:start + m] = st[:m]
                    for k, arr in got.items():
                        arr = np.asarray(arr)
                        if k not in results:
                            shape = outer + inner_shape + arr.shape[1:]
                            results[k] = (np.full(shape, np.nan) if arr.dtype.kind == "f"
                                          else np.zeros(shape, arr.dtype))
                        block = results[k][iv, im, ie].reshape((n_inner,) + arr.shape[1:])
                        block[start:start + m] = arr[:m]

    dims = axes(config)
    results["status"] = np.asarray(Status.labels())[status]
    data_vars, coords, attrs = fam.finish(config, ctx, dims, results)
    ds = xr.Dataset(data_vars, coords={**_shared_coords(config, names, values), **coords})
    ds.attrs.update(provenance(config.command))
    ds.attrs.update(_run_attrs(config, pl, solvers, integrator))
    ds.attrs.update(attrs)
    return ds


def _flow_solver(config, fam, integrator, eps, y0) -> str:
    """The block's flow method under the stiffness policy (the engine's size cap included)."""
    dim = sum(int(np.prod(x.shape[1:])) for x in jax.tree_util.tree_leaves(y0))
    return flow_solver(eps, config.solver, integrator, fam.stiff_eps, dim)


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
        solver=", ".join(f"eps={e:g}: {s} ({engine_word})" for e, s in solvers.items())
        or "none (discrete methods)",
        rtol=config.rtol, atol=config.atol, max_steps=config.max_steps,
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
