"""The engine's ``auto`` (per-lane stiffness switch) against each single method chosen by hand.

    python bench/stiffness_auto.py                       # eps 1 ... 1e-4, 3 interleaved repeats
    python bench/stiffness_auto.py --n 32 --repeats 1    # a smoke run

For every eps the same lanes, the default sweep's (scalar SimSiam, loss convention, eta = 0.15,
sigma2 = 0.5, an n x n grid of theta0 in [-1, 1], phi0 in [-1, 2], t1 = 200, the sweep's
rtol 1e-8 and atol 1e-10), are integrated by the engine with

- ``dopri5`` and ``rodas4`` for every lane (the single methods a user could choose by hand),
- ``auto``: each lane starts on dopri5 and switches to rodas4 by its own stiffness estimate,
- ``threshold``: the fixed rule the engine used before (rodas4 for eps < 0.3, dopri5 above).

A method is eligible only if every lane ends ``ok`` within ``--max-steps`` steps (dopri5 at
eps <= 1e-3 needs far more: the stability limit h < ~3.3 eps / p over t1 = 200); ineligible
methods are run once and not timed further. Timings are interleaved (A, B, C, D, A, B, ...)
and medians reported, with the process's CPU seconds beside the wall seconds and the load
average, since the machine may be shared. ``auto / best`` is the ratio of auto's median to
the fastest eligible single method at that eps. ``|auto - rodas4|`` is the largest difference
of the final states (both at the same tolerances), a check that the switch integrates the
same flow.
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

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from dynamics import runtime  # noqa: E402
from dynamics.flow import VARIANTS, Hyper, initial_state  # noqa: E402
from dynamics.models import ScalarSiamese  # noqa: E402
from dynamics.solve import engine  # noqa: E402

EPS = (1.0, 0.3, 0.1, 0.03, 0.01, 1e-3, 1e-4)
METHODS = {"dopri5": dict(method="dopri5"), "rodas4": dict(method="rodas4"),
           "auto": dict(method="auto"), "threshold": dict(method="auto", stiff_eps=0.3)}


def lanes(n, eps, eta=0.15, sigma2=0.5):
    th, ph = np.meshgrid(np.linspace(-1.0, 1.0, n), np.linspace(-1.0, 2.0, n), indexing="ij")
    y0 = initial_state(VARIANTS["simsiam"], jnp.asarray(th.ravel()), jnp.asarray(ph.ravel()))
    hyper = Hyper.loss_decay(eta, eps, 1.0)
    return ScalarSiamese(sigma2), VARIANTS["simsiam"], hyper, y0


def main(argv=None):
    p = argparse.ArgumentParser(prog="python bench/stiffness_auto.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=64, help="grid points per axis (lanes: n^2)")
    p.add_argument("--eps", type=float, nargs="+", default=list(EPS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--t1", type=float, default=200.0)
    p.add_argument("--rtol", type=float, default=1e-8)
    p.add_argument("--atol", type=float, default=1e-10)
    p.add_argument("--max-steps", type=int, default=20_000)
    p.add_argument("--cpu-devices", type=int, default=None)
    a = p.parse_args(argv)
    runtime.split_cpu_cores(a.cpu_devices)
    print(f"lanes {a.n ** 2}, t1 {a.t1:g}, rtol {a.rtol:g}, atol {a.atol:g}, max_steps "
          f"{a.max_steps}; load average at start {os.getloadavg()}", flush=True)
    head = (f"{'eps':>7} {'method':>10} {'ok':>3} {'wall s':>8} {'cpu s':>7} {'steps mean':>10} "
            f"{'max':>6} {'switched':>8}")
    rows = []
    for eps in a.eps:
        args = lanes(a.n, eps)
        kw = dict(t1=a.t1, rtol=a.rtol, atol=a.atol, max_steps=a.max_steps)
        first, sols = {}, {}
        for name, extra in METHODS.items():
            t = time.perf_counter()
            sols[name] = engine.flow_batch(*args, **kw, **extra)
            first[name] = time.perf_counter() - t
        ok = {m: bool(np.all(s.status == 0)) for m, s in sols.items()}
        wall = {m: [] for m in METHODS}
        cpu = {m: [] for m in METHODS}
        for _ in range(a.repeats):
            for name, extra in METHODS.items():
                if not ok[name]:
                    continue
                t, c = time.perf_counter(), time.process_time()
                engine.flow_batch(*args, **kw, **extra)
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
        med = {m: statistics.median(v) if v else first[m] for m, v in wall.items()}
        cmed = {m: statistics.median(v) if v else float("nan") for m, v in cpu.items()}
        # lanes auto handed to rodas4: their steps differ from a pure dopri5 run's
        switched = int(np.sum(sols["auto"].num_steps != sols["dopri5"].num_steps))
        print(head)
        for m in METHODS:
            st = sols[m].num_steps
            sw = f"{switched:>8}" if m == "auto" else f"{'':>8}"
            print(f"{eps:>7g} {m:>10} {'yes' if ok[m] else 'no':>3} {med[m]:>8.3f} "
                  f"{cmed[m]:>7.3f} {st.mean():>10.0f} {st.max():>6} {sw}")
        best = min((m for m in ("dopri5", "rodas4") if ok[m]), key=lambda m: med[m])
        diff = max(float(np.max(np.abs(np.asarray(x)[:, -1] - np.asarray(y)[:, -1])))
                   for x, y in zip(sols["auto"].ys, sols["rodas4"].ys) if x is not None)
        r = med["auto"] / med[best]
        rt = med["threshold"] / med[best]
        print(f"{eps:>7g} auto / best single ({best}): {r:.2f}x; threshold / best: {rt:.2f}x; "
              f"|auto - rodas4| = {diff:.1e}; load {os.getloadavg()[0]:.2f}", flush=True)
        rows.append((eps, best, med[best], med["auto"], r, med["threshold"], rt))
    print("\n| eps | best single | its s | auto s | auto / best | threshold s | threshold / best |")
    print("|---|---|---|---|---|---|---|")
    for eps, best, tb, ta, r, tt, rt in rows:
        print(f"| {eps:g} | {best} | {tb:.3f} | {ta:.3f} | {r:.2f}x | {tt:.3f} | {rt:.2f}x |")
    print(f"worst auto / best: {max(r[4] for r in rows):.2f}x (target <= 1.5x); load average "
          f"at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
