"""The engine against diffrax on the linear model's lanes, every method on the same devices.

    python bench/engine_matrix.py                          # n1 = 4, 8, 32, 128 across eps
    python bench/engine_matrix.py --n1 4 --eps 0.1 0.01 --solvers dopri5 rodas4   # also these

The lanes are the default linear sweep's (SimSiam, ``X = Q diag(0.5 .. 1.5) Q^T``,
``X' = 0.5 I``, weight decay in the loss, eta over 0 .. 0.35, random starts ``W0``, ``Wp0``),
at n1 = n2 = 4 (32 numbers a lane: the engine's ``auto`` can hand stiff lanes to Rodas4) and
at n1 = 8, 32, 128 (128, 2048 and 32768 numbers: above ``policy.MAX_ROSENBROCK_DIM`` the engine
stays on Dormand-Prince). Fewer lanes for the larger states (``LANES``), to keep a run to minutes.

- ``engine``: ``solve_batch(integrator="engine")`` with the default ``auto``, one loop per device;
- ``diffrax``: one ``jit(vmap(diffeqsolve))`` per device on the same split of lanes, dispatched
  together (diffrax's own stiffness rule: Tsit5 for eps >= 5e-3, Kvaerno5 below).

Both run at the same rtol/atol. Reported: first call (compilation included), the median of
``--repeats`` interleaved calls, wall and process CPU seconds, steps per lane, the ratio of
the medians, and the largest difference of the final states relative to max |y|.
``--solvers`` also times the engine with each single method given (interleaved with the rest).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from dynamics import runtime  # noqa: E402
from dynamics.flow import VARIANTS  # noqa: E402
from dynamics.solve import diffrax_flow, solve_batch  # noqa: E402
from dynamics.solve.lanes import lane_subset  # noqa: E402
from dynamics.solve.policy import flow_solver  # noqa: E402
from dynamics.sweep import SweepConfig  # noqa: E402
from dynamics.sweep.matrix import MatrixOptions  # noqa: E402

ETAS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35)
#: lanes per state size (eta values x random starts)
LANES = {4: (8, 8), 8: (8, 8), 32: (8, 2), 128: (4, 1)}
SIMSIAM = VARIANTS["simsiam"]


def lanes(n1, eps):
    """``(model, hyper, y0)`` of the default linear sweep's lanes at ``n1``, ``eps``."""
    n_eta, n_init = LANES.get(n1, (8, 1))
    etas = ETAS[:: len(ETAS) // n_eta][:n_eta]
    config = SweepConfig(model="linear", eps=(eps,), eta=etas,
                         options=MatrixOptions(n1=n1, n_init=n_init))
    fam = config.family
    ctx = fam.prepare(config)
    g = np.array([(e, i) for e in etas for i in range(n_init)])
    n = len(g)
    grid = dict(eta=g[:, 0], init=g[:, 1], sigma2=np.full(n, config.sigma2[0]),
                beta=np.full(n, config.beta[0]))
    return fam.build(config, ctx, SIMSIAM, float(eps), grid)


def final(ys):
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(ys)]
    return np.concatenate([x[:, -1].reshape(x.shape[0], -1) for x in leaves], axis=1)


def per_device(model, hyper, y0, n):
    """The lanes split over the local devices as the engine splits them, each part committed
    to its device."""
    devs = jax.local_devices()
    parts = np.array_split(np.arange(n), len(devs))
    return [jax.device_put(lane_subset(model, hyper, y0, idx), dev)
            for dev, idx in zip(devs, parts) if idx.size]


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/engine_matrix.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--n1", type=int, nargs="+", default=[4, 8, 32, 128])
    p.add_argument("--eps", type=float, nargs="+", default=[1.0, 0.1, 0.03])
    p.add_argument("--t1", type=float, default=30.0)
    p.add_argument("--rtol", type=float, default=1e-7)
    p.add_argument("--atol", type=float, default=1e-9)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--solvers", nargs="*", default=[], choices=["dopri5", "rodas4", "rodas5p"])
    p.add_argument("--cpu-devices", type=int, default=None)
    a = p.parse_args(argv)
    runtime.split_cpu_cores(a.cpu_devices)
    print(f"devices {jax.local_device_count()}, t1 {a.t1:g}, rtol {a.rtol:g}, atol {a.atol:g}; "
          f"load average {os.getloadavg()}", flush=True)
    tol = dict(rtol=a.rtol, atol=a.atol)
    rows = []
    for n1 in a.n1:
        for eps in a.eps:
            model, hyper, y0 = lanes(n1, eps)
            n = int(np.shape(jax.tree_util.tree_leaves(y0)[0])[0])
            shards = per_device(model, hyper, y0, n)
            solver = flow_solver(eps, "auto", "diffrax")

            def run_engine(solver="auto"):
                return solve_batch(model, SIMSIAM, hyper, y0, t1=a.t1, solver=solver,
                                   max_steps=200_000, **tol)

            def run_diffrax():
                sols = [diffrax_flow.flow_batch(m, SIMSIAM, h, y, t1=a.t1, solver=solver,
                                                max_steps=200_000, **tol) for m, h, y in shards]
                jax.block_until_ready([s.ys for s in sols])
                return sols

            methods = {"engine": run_engine, f"diffrax {solver}": run_diffrax}
            for name in a.solvers:
                methods[f"engine {name}"] = lambda name=name: run_engine(name)
            first, res, wall, cpu = {}, {}, {k: [] for k in methods}, {k: [] for k in methods}
            for k, fn in methods.items():
                res[k], first[k], _ = timed(fn)
            for _ in range(a.repeats):
                for k, fn in methods.items():
                    _, w, c = timed(fn)
                    wall[k].append(w)
                    cpu[k].append(c)
            e_end = final(res["engine"].ys)
            d_sols = res[f"diffrax {solver}"]
            d_end = np.concatenate([final(s.ys) for s in d_sols])
            rel = float(np.max(np.abs(e_end - d_end)) / np.max(np.abs(d_end)))
            steps = {"engine": np.asarray(res["engine"].num_steps),
                     f"diffrax {solver}": np.concatenate([np.asarray(s.num_steps)
                                                          for s in d_sols])}
            for k in methods:
                if k.startswith("engine "):
                    steps[k] = np.asarray(res[k].num_steps)
            med = {k: statistics.median(v) for k, v in wall.items()}
            for k in methods:
                print(f"n1={n1:<4} eps={eps:<5g} lanes={n:<3} {k:<20} first {first[k]:7.2f} s  "
                      f"median {med[k]:7.3f} s  cpu {statistics.median(cpu[k]):7.3f} s  steps "
                      f"mean {steps[k].mean():7.0f} max {steps[k].max():6d}", flush=True)
            ratio = med[f"diffrax {solver}"] / med["engine"]
            line = (f"n1={n1} eps={eps:g}: engine / diffrax speed {ratio:.2f}x, |engine - "
                    f"diffrax| / max|y| = {rel:.1e}, load {os.getloadavg()[0]:.2f}")
            for name in a.solvers:
                line += (f"; engine {name} / engine auto time "
                         f"{med[f'engine {name}'] / med['engine']:.2f}")
            print(line, flush=True)
            rows.append((n1, eps, n, solver, med["engine"], med[f"diffrax {solver}"], ratio,
                         rel, steps["engine"].mean(), steps[f"diffrax {solver}"].mean()))
    print("\n| n1 | eps | lanes | engine s | diffrax s (solver) | engine speed-up | "
          "rel. diff. | engine steps | diffrax steps |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n1, eps, n, solver, te, td, r, rel, se, sd in rows:
        print(f"| {n1} | {eps:g} | {n} | {te:.3f} | {td:.3f} ({solver}) | {r:.2f}x | {rel:.0e} "
              f"| {se:.0f} | {sd:.0f} |")
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
