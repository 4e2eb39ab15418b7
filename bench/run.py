"""Side-by-side benchmark: scipy ``solve_ivp`` loop, diffrax ``jit(vmap)``, the batched engine.

One command, from the repository root::

    python bench/run.py                 # every case, 3 interleaved repeats, medians
    python bench/run.py --quick         # fewer lanes and repeats (a smoke run)
    python bench/run.py --cases simsiam-eps0.01 sgd --repeats 5

For each case every method integrates the same lanes to the same end time. The error of a
method is ``max |y - y_ref| / max(1, |y_ref|)`` over the lanes it ran and every state component,
against a tight reference (diffrax Dopri8 at rtol 1e-12, atol 1e-14). Each method climbs a
tolerance ladder (rtol 1e-6, 1e-7, ... with atol = rtol * 1e-3) and is timed at the loosest rung
whose error is <= 1e-6, so every method is compared at the accuracy the targets ask for. Timings
are interleaved (method A, B, C, A, B, C, ...) and the median is reported, because the machine
may be shared.

Every method gets the same cores. The engine splits each chunk over the local devices (one per
core); each diffrax baseline runs one ``jit(vmap)`` per device on the same split, dispatched
together; scipy runs in a process pool of one worker per core. scipy is timed on a subset of
lanes (``--scipy-lanes``) and its rate is trajectories per second on that subset. ``first call`` is the
wall time of the first call at the chosen rung (compilation included for the JAX methods);
``peak MB`` is the largest growth of the process's resident memory during a timed call.

The scalar scipy baselines use the hand-tuned fields of ``bench/scipy_lanes.py`` (positional
arguments, Python floats, tuples out) with their analytic Jacobians for the implicit methods:
the best case for scipy. The linear model, which has no hand-written field, gives scipy the
flow's field compiled with ``jax.jit``, in a loop in the benchmark's own process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

import jax  # noqa: E402
import jax.flatten_util  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import dynamics  # noqa: E402,F401  (float64)
import scipy_lanes  # noqa: E402  (bench/scipy_lanes.py)
from dynamics import runtime, solve  # noqa: E402
from dynamics.solve import diffrax_flow, discrete, engine  # noqa: E402
from dynamics.flow import VARIANTS, Hyper, State, gd_step, vector_field  # noqa: E402
from dynamics.models import ScalarSiamese  # noqa: E402

ERR_TARGET = 1e-6
LADDER = (1e-6, 1e-7, 1e-8, 1e-9, 1e-10)


# --- measuring ----------------------------------------------------------------------------


def _rss():
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:  # pragma: no cover
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class _PeakRSS:
    """Largest resident-memory growth while the block runs (sampled every 2 ms)."""

    def __enter__(self):
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)
        self._t.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())
        self.mb = (self.peak - self.base) / 2**20


def _err(y, ref):
    y, ref = np.asarray(y, float), np.asarray(ref, float)
    if not np.all(np.isfinite(y)):
        return float("inf")
    return float(np.max(np.abs(y - ref) / np.maximum(1.0, np.abs(ref))))


def _flat(ys):
    """Final states as (lanes, d) from a State of (lanes, S, ...) leaves."""
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(ys)]
    n = leaves[0].shape[0]
    return np.concatenate([x[:, -1].reshape(n, -1) for x in leaves], axis=1)


# --- methods ------------------------------------------------------------------------------


class Method:
    def __init__(self, name, run, lanes, ladder=LADDER):
        self.name, self.run, self.lanes, self.ladder = name, run, lanes, ladder


def _device_shards(case):
    """The case's lanes split over the local devices as the engine splits them, each part's
    ``(model, hyper, y0)`` committed to its device, so a ``jit`` runs there."""
    from dynamics.solve.lanes import lane_subset

    devs = jax.local_devices()
    parts = np.array_split(np.arange(case["n"]), len(devs))
    out = []
    for dev, idx in zip(devs, parts):
        if idx.size:
            out.append(jax.device_put(lane_subset(case["model"], case["hyper"], case["y0"], idx),
                                      dev))
    return out


def _diffrax(case, solver):
    """One ``jit(vmap(diffeqsolve))`` per device (the devices the engine gets), dispatched
    together and then awaited, so every device integrates its share at once."""
    shards = _device_shards(case)

    def run(rtol):
        sols = [diffrax_flow.flow_batch(m, case["variant"], h, y0, t1=case["t1"], solver=solver,
                                        rtol=rtol, atol=rtol * 1e-3, max_steps=1_000_000)
                for m, h, y0 in shards]
        jax.block_until_ready([s.ys for s in sols])
        return np.concatenate([_flat(s.ys) for s in sols])

    return Method(f"diffrax {solver} vmap x{len(shards)} dev", run, np.arange(case["n"]))


def _engine(case):
    def run(rtol):
        sol = engine.flow_batch(case["model"], case["variant"], case["hyper"], case["y0"],
                                t1=case["t1"], rtol=rtol, atol=rtol * 1e-3)
        return _flat(sol.ys)

    return Method("engine (auto)", run, np.arange(case["n"]))


def _scipy(case, method, k):
    """scipy on a subset of ``k`` lanes. Scalar cases: the hand-tuned field and analytic
    Jacobian of ``bench/scipy_lanes.py`` in a process pool of one worker per core (started
    before timing; lanes split evenly). Other cases: a loop in this process."""
    idx = np.arange(min(k, case["n"]))
    y0 = _flat(jax.tree_util.tree_map(lambda x: np.asarray(x)[:, None], case["y0"]))[idx]
    if "scipy" in case:
        kind, params = case["scipy"]
        pool = _scipy_pool()
        parts = np.array_split(y0, pool._max_workers)

        def run(rtol):
            futs = [pool.submit(scipy_lanes.integrate, kind, params, part, case["t1"], method,
                                rtol, rtol * 1e-3) for part in parts]
            return np.concatenate([f.result() for f in futs])

        return Method(f"scipy {method} x{pool._max_workers} proc", run, idx)

    from scipy.integrate import solve_ivp

    fields = [case["np_field"](i) for i in idx]

    def run(rtol):
        out = np.empty_like(y0)
        for j, (y, fun) in enumerate(zip(y0, fields)):
            r = solve_ivp(fun, (0.0, case["t1"]), y, method=method, rtol=rtol, atol=rtol * 1e-3)
            out[j] = r.y[:, -1] if r.success else np.nan
        return out

    return Method(f"scipy {method} loop", run, idx)


_POOL = []


def _scipy_pool():
    """One worker process per core, started with ``spawn`` (this process runs JAX threads)."""
    if not _POOL:
        import concurrent.futures
        import multiprocessing

        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=os.cpu_count() or 1, mp_context=multiprocessing.get_context("spawn"))
        # start every worker and import scipy there before anything is timed
        for f in [pool.submit(scipy_lanes.integrate, "simsiam", (1.5, 1.0, 0.0),
                              np.ones((1, 2)), 1.0, "LSODA", 1e-6, 1e-9)
                  for _ in range(pool._max_workers)]:
            f.result()
        _POOL.append(pool)
    return _POOL[0]


# --- cases --------------------------------------------------------------------------------


def _scalar_case(name, variant_name, eps, eta, n, t1=50.0, seed=0):
    from oracles import scalar_field

    variant = VARIANTS[variant_name]
    rng = np.random.default_rng(seed)
    th = rng.uniform(-2.0, 2.0, n)
    ph = rng.uniform(-2.0, 2.0, n)
    tg = rng.uniform(-2.0, 2.0, n) if variant.has_target else None
    y0 = State(jnp.asarray(th), jnp.asarray(ph), None if tg is None else jnp.asarray(tg))
    hyper = Hyper.loss_decay(eta, eps, 1.0)
    kw = dict(sigma2=0.5, eps=eps, eta_theta=eta, eta_phi=eta, beta=1.0,
              target=variant.target, stop_grad=variant.stop_grad)

    def np_field(i):
        if variant.has_target:
            return lambda t, y: np.array(scalar_field(y[0], y[1], y[2], **kw))
        return lambda t, y: np.array(scalar_field(y[0], y[1], None, **kw)[:2])

    desc = (f"scalar {variant_name}, sigma2=0.5, eps={eps:g}, eta={eta:g} (weight decay in the "
            f"loss), T={t1:g}, theta0, phi0" + (", theta_a0" if tg is not None else "")
            + " ~ U(-2, 2)")
    a = 1.5  # 1 + sigma2
    params = (a, eps, eta, 1.0) if variant.has_target else (a, eps, eta)
    return dict(name=name, desc=desc, model=ScalarSiamese(0.5), variant=variant, hyper=hyper,
                y0=y0, t1=t1, n=n, np_field=np_field,
                scipy=("byol" if variant.has_target else "simsiam", params))


def _linear_case(name, n1, n, t1=20.0, seed=0):
    try:
        from dynamics.models.linear import LinearSiamese, random_state
    except ImportError:
        return None
    variant = VARIANTS["simsiam"]
    model = LinearSiamese.isotropic(n1, sigma2=0.5)
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    y0 = jax.vmap(lambda k: random_state(k, model, variant, n1))(keys)
    eta = jnp.linspace(0.0, 0.1, n)
    hyper = Hyper.loss_decay(eta, 1.0, 1.0)
    field = jax.jit(lambda e, y: jax.flatten_util.ravel_pytree(
        vector_field(model, variant, Hyper.loss_decay(e, 1.0, 1.0), y))[0])
    _, unravel = jax.flatten_util.ravel_pytree(jax.tree_util.tree_map(lambda x: x[0], y0))

    def np_field(i):
        e = float(eta[i])
        return lambda t, y: np.asarray(field(e, unravel(jnp.asarray(y))))

    desc = (f"linear SimSiam, n1 = n2 = {n1}, X = I, X' = 0.5 I, eps=1, eta swept over "
            f"[0, 0.1] across lanes, T={t1:g}, random W, Wp (scale 0.5)")
    return dict(name=name, desc=desc, model=model, variant=variant, hyper=hyper, y0=y0, t1=t1,
                n=n, np_field=np_field)


def _flow_methods(case, scipy_lanes, linear=False):
    ms = []
    if linear:
        ms.append(_scipy(case, "RK45", max(2, scipy_lanes // 16)))
        ms.append(_diffrax(case, "tsit5"))
    else:
        for m in ("RK45", "Radau", "LSODA"):
            ms.append(_scipy(case, m, scipy_lanes))
        ms.append(_diffrax(case, "tsit5"))
        ms.append(_diffrax(case, "kvaerno5"))
    ms.append(_engine(case))
    return ms


def _reference(case):
    solve.SOLVERS.setdefault("dopri8", __import__("diffrax").Dopri8)
    sol = diffrax_flow.flow_batch(case["model"], case["variant"], case["hyper"], case["y0"],
                                  t1=case["t1"], solver="dopri8", rtol=1e-12, atol=1e-14,
                                  max_steps=2_000_000)
    assert np.all(np.asarray(sol.status) == 0), "reference solve failed"
    return _flat(sol.ys)


def _sgd_case(n, scipy_lanes, n_steps=1000, batch=16, lr=0.01):
    variant = VARIANTS["simsiam"]
    rng = np.random.default_rng(0)
    y0 = State(jnp.asarray(rng.uniform(-2, 2, n)), jnp.asarray(rng.uniform(-2, 2, n)), None)
    model = ScalarSiamese(0.5)
    hyper = Hyper.loss_decay(0.05, 0.5, 1.0)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(0), i))(jnp.arange(n))
    lanes = np.arange(n)

    def vmapped(_):
        sol = discrete.discrete_batch(model, variant, hyper, y0, lr, keys, n_steps=n_steps,
                                      batch_size=batch)
        jax.block_until_ready(sol.ys)
        return _flat(sol.ys)

    def ours(_):
        return _flat(engine.discrete_batch(model, variant, hyper, y0, lr, keys,
                                           n_steps=n_steps, batch_size=batch).ys)

    step = jax.jit(lambda y, key, k: gd_step(model, variant, hyper, y, lr,
                                             model.sample(jax.random.fold_in(key, k), batch)))
    sub = np.arange(min(scipy_lanes // 8, n))

    def loop(_):
        out = []
        for i in sub:
            y = State(y0.enc[i], y0.pred[i], None)
            for k in range(n_steps):
                y = step(y, keys[i], k)
            out.append([float(y.enc), float(y.pred)])
        return np.array(out)

    desc = (f"discrete SGD, scalar SimSiam, minibatch {batch} of sampled views, lr={lr}, "
            f"{n_steps} steps, eps=0.5, eta=0.05; reference: the vmapped "
            "dynamics.solve.discrete.discrete_batch "
            "(same random stream, so errors are 0 when the streams agree)")
    ms = [Method("python loop of jit(gd_step)", loop, sub, (None,)),
          Method("vmap(run_discrete) scan", vmapped, lanes, (None,)),
          Method("engine run_discrete", ours, lanes, (None,))]
    return dict(name="sgd", desc=desc, n=n, methods=ms, ref=lambda: vmapped(None))


# --- driver -------------------------------------------------------------------------------


def bench_case(case, methods, ref, repeats, log):
    log(f"\n== {case['name']}: {case['desc']}; {case['n']} lanes")
    t = time.perf_counter()
    y_ref = ref()
    log(f"   reference in {time.perf_counter() - t:.1f} s")
    chosen = []
    for m in methods:
        pick = None
        for rtol in m.ladder:
            t = time.perf_counter()
            y = m.run(rtol)
            first = time.perf_counter() - t
            e = _err(y, y_ref[m.lanes])
            log(f"   {m.name:<30} rtol={rtol}  err={e:.2e}  first call {first:.2f} s")
            if e <= ERR_TARGET:
                pick = (rtol, e, first)
                break
        chosen.append(pick)
    times = {m.name: [] for m in methods}
    peaks = {m.name: 0.0 for m in methods}
    for _ in range(repeats):
        for m, pick in zip(methods, chosen):
            if pick is None:
                continue
            with _PeakRSS() as p:
                t = time.perf_counter()
                m.run(pick[0])
                times[m.name].append(time.perf_counter() - t)
            peaks[m.name] = max(peaks[m.name], p.mb)
    rows = []
    for m, pick in zip(methods, chosen):
        if pick is None:
            rows.append(dict(method=m.name, ok=False, lanes=len(m.lanes)))
            continue
        med = statistics.median(times[m.name])
        rows.append(dict(method=m.name, ok=True, rtol=pick[0], err=pick[1], lanes=len(m.lanes),
                         seconds=med, traj_per_s=len(m.lanes) / med,
                         first_call_s=pick[2], compile_s=max(pick[2] - med, 0.0),
                         peak_mb=peaks[m.name], repeats=times[m.name]))
    return rows


def _ratios(rows):
    ours = next((r for r in rows if r["method"].startswith("engine") and r["ok"]), None)
    out = {}
    if ours is None:
        return out
    for kind in ("scipy", "diffrax", "vmap(", "python"):
        best = max((r["traj_per_s"] for r in rows if r["ok"] and r["method"].startswith(kind)),
                   default=None)
        if best:
            out[kind.rstrip("(")] = ours["traj_per_s"] / best
    return out


def _target(case_name, kind):
    """The targets set for the scalar flow cases: >= 200x the best scipy everywhere, >= 20x the
    best diffrax where the flow is stiff (eps < 0.3), >= 6x where it is not."""
    if not case_name.startswith(("simsiam-", "byol-")):
        return None
    if kind == "scipy":
        return 200
    if kind == "diffrax":
        eps = float(case_name.split(":")[0].split("eps")[1])
        return 20 if eps < 0.3 else 6
    return None


def _table(case_name, rows, ratios):
    lines = [f"\n{case_name}",
             f"  {'method':<30}{'rtol':>8}{'error':>10}{'lanes':>7}{'traj/s':>12}"
             f"{'first call s':>14}{'compile s':>11}{'peak MB':>9}"]
    for r in rows:
        if not r["ok"]:
            lines.append(f"  {r['method']:<30}  no rung of the ladder met error <= {ERR_TARGET:g}")
            continue
        rt = "-" if r["rtol"] is None else f"{r['rtol']:.0e}"
        lines.append(f"  {r['method']:<30}{rt:>8}{r['err']:>10.1e}{r['lanes']:>7}"
                     f"{r['traj_per_s']:>12,.0f}{r['first_call_s']:>14.2f}{r['compile_s']:>11.2f}"
                     f"{r['peak_mb']:>9.0f}")
    for k, v in ratios.items():
        target = _target(case_name, k)
        mark = "" if target is None else f"  (target >= {target}x: {'met' if v >= target else 'NOT met'})"
        lines.append(f"  engine / best {k}: {v:,.1f}x{mark}")
    return "\n".join(lines)


def machine():
    cpu = platform.processor() or "cpu"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = jax.devices()[0]
    return (f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}; "
            f"jax {jax.__version__} on {dev.platform} ({jax.local_device_count()} device(s)); "
            f"python {platform.python_version()}; float64")


CASES = ("simsiam-eps1", "simsiam-eps0.03", "simsiam-eps0.01", "byol-eps1", "byol-eps0.1", "linear-32", "linear-128", "sgd")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--lanes", type=int, default=4096, help="trajectories per scalar case")
    p.add_argument("--scipy-lanes", type=int, default=64, help="lanes of the scipy loops")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing repeats")
    p.add_argument("--quick", action="store_true", help="1024 lanes, 16 scipy lanes, 1 repeat")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="JAX CPU devices (default: one per core; the engine runs one loop per "
                        "device and the diffrax baselines one jit(vmap) per device)")
    args = p.parse_args(argv)
    runtime.split_cpu_cores(args.cpu_devices)
    if args.quick:
        args.lanes, args.scipy_lanes, args.repeats = 1024, 16, 1
    for name in ("lanes", "scipy_lanes", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    print(f"machine: {machine()}; load average at start: {os.getloadavg()}")
    print(f"devices: engine and diffrax {jax.local_device_count()}, scipy pool "
          f"{os.cpu_count()} processes")
    results = {}
    for name in args.cases:
        n = args.lanes
        if name == "sgd":
            case = _sgd_case(n, args.scipy_lanes)
            rows = bench_case(case, case["methods"], case["ref"], args.repeats, log)
        else:
            linear = name.startswith("linear")
            if name == "simsiam-eps1":
                case = _scalar_case(name, "simsiam", 1.0, 0.0, n)
            elif name == "simsiam-eps0.03":
                case = _scalar_case(name, "simsiam", 0.03, 0.0, n)
            elif name == "simsiam-eps0.01":
                case = _scalar_case(name, "simsiam", 0.01, 0.0, n)
            elif name == "byol-eps1":
                case = _scalar_case(name, "byol", 1.0, 0.05, n)
            elif name == "byol-eps0.1":
                case = _scalar_case(name, "byol", 0.1, 0.05, n)
            else:
                n1 = int(name.split("-")[1])
                case = _linear_case(name, n1, 256 if n1 == 32 else 32)
                if case is None:
                    print(f"\n{name}: skipped (no dynamics.models.linear on this checkout)")
                    results[name] = "skipped"
                    continue
            rows = bench_case(case, _flow_methods(case, args.scipy_lanes, linear),
                              lambda: _reference(case), args.repeats, log)
        ratios = _ratios(rows)
        print(_table(f"{name}: {case['desc']}", rows, ratios), flush=True)
        results[name] = dict(desc=case["desc"], rows=rows, ratios=ratios)
    for pool in _POOL:
        pool.shutdown()
    if args.json:
        Path(args.json).write_text(json.dumps(dict(machine=machine(), results=results), indent=1,
                                              default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
