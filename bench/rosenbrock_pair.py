"""Rodas4 against Rodas5P on the sweep's own lanes: Rosenbrock lane-steps and CPU time per lane.

    python bench/rosenbrock_pair.py                          # eps 0.01 0.03, rtol 1e-8 1e-6
    python bench/rosenbrock_pair.py --n 64 --repeats 1       # a smoke run

The lanes are the main job's (scalar SimSiam and SimSiam without stop-gradient, loss
convention, eta = 0.15, sigma2 = 0.5, an n x n grid of theta0 in [-1, 1], phi0 in [-1, 2],
t1 = 200, atol = rtol / 100), integrated by the engine with one Rosenbrock method for every
lane (``--methods``; ``auto`` is the per-lane switch with its policy's Rosenbrock method), on
every CPU core as the sweep CLI runs it (one device per core, 512-bit vectors where the CPU has
them). Timings are interleaved (A, B, A, B, ...) after an untimed compile call; reported: the
mean steps per lane (accepted + rejected), the median CPU seconds of the process (all threads)
per million lanes, the CPU ns per lane-step, and the largest difference of the final states
from the first method's (both within their tolerance of the exact flow).
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

from dynamics import runtime  # noqa: E402

runtime.prefer_wide_vectors()
runtime.split_cpu_cores()

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from dynamics.flow import VARIANTS, Hyper, initial_state  # noqa: E402
from dynamics.models import ScalarSiamese  # noqa: E402
from dynamics.solve import engine  # noqa: E402


def lanes(n, variant, eps, eta=0.15, sigma2=0.5):
    th, ph = np.meshgrid(np.linspace(-1.0, 1.0, n), np.linspace(-1.0, 2.0, n), indexing="ij")
    v = VARIANTS[variant]
    y0 = initial_state(v, jnp.asarray(th.ravel()), jnp.asarray(ph.ravel()))
    return ScalarSiamese(sigma2), v, Hyper.loss_decay(eta, eps, 1.0), y0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/rosenbrock_pair.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=256, help="grid points per axis (lanes: n^2)")
    p.add_argument("--eps", type=float, nargs="+", default=[0.01, 0.03])
    p.add_argument("--rtol", type=float, nargs="+", default=[1e-8, 1e-6])
    p.add_argument("--variants", nargs="+", default=["simsiam", "simsiam-nosg"])
    p.add_argument("--methods", nargs="+", default=["rodas4", "rodas5p"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--t1", type=float, default=200.0)
    a = p.parse_args(argv)
    print(f"lanes {a.n ** 2} per variant, t1 {a.t1:g}, atol = rtol / 100; load average at "
          f"start {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    print(f"{'variant':>13} {'eps':>5} {'rtol':>6} {'method':>8} {'steps/lane':>10} "
          f"{'CPU s/1M lanes':>14} {'ns/lane-step':>12} {'wall s':>7} {'max |dy|':>9} {'load':>5}")
    for variant in a.variants:
        for eps in a.eps:
            for rtol in a.rtol:
                args = lanes(a.n, variant, eps)
                kw = dict(t1=a.t1, rtol=rtol, atol=rtol / 100)
                sols, cpu, wall = {}, {m: [] for m in a.methods}, {m: [] for m in a.methods}
                for m in a.methods:  # compile (untimed)
                    sols[m] = engine.flow_batch(*args, method=m, **kw)
                for _ in range(a.repeats):
                    for m in a.methods:
                        c0, t0 = time.process_time(), time.perf_counter()
                        engine.flow_batch(*args, method=m, **kw)
                        cpu[m].append(time.process_time() - c0)
                        wall[m].append(time.perf_counter() - t0)
                ref = sols[a.methods[0]]
                for m in a.methods:
                    s = sols[m]
                    assert np.all(s.status == 0), (m, np.unique(s.status))
                    dy = max(float(np.max(np.abs(x - y))) for x, y in
                             zip(s.ys, ref.ys) if x is not None)
                    steps = float(np.mean(s.num_steps))
                    c = statistics.median(cpu[m])
                    print(f"{variant:>13} {eps:5g} {rtol:6.0e} {m:>8} {steps:10.1f} "
                          f"{c / a.n ** 2 * 1e6:14.2f} {c / (steps * a.n ** 2) * 1e9:12.1f} "
                          f"{statistics.median(wall[m]):7.2f} {dy:9.1e} "
                          f"{os.getloadavg()[0]:5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
