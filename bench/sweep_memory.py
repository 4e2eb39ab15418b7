"""Peak resident memory and per-unit cost of a sweep written through its store, against the
grid's size: ``python bench/sweep_memory.py [N ...]`` runs ``python -m dynamics.sweep`` (the
scalar family, gd, two steps, ``--no-netcdf --no-plot``) on an N x N grid of initial states
for each N (default 1024 and 4096: 1M and 16M lanes) in a child process and prints its
``ru_maxrss``, wall time, per-unit time and the store's and result's bytes on disk.

Two gd steps are the cheapest work that still has every lane go through the whole pipeline
(compile, run, store, streamed assembly, summary table); the per-unit cost of a real study is
its steps times the per-step cost (see bench/RESULTS.md).
"""

import os
import subprocess
import sys
import tempfile
import time


def disk_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def one(n: int, chunk: int = 65536) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "o")
        argv = [sys.executable, "-m", "dynamics.sweep", "--n", str(n), "--variant", "simsiam",
                "--method", "gd", "--lr", "0.005", "--t1", "0.01", "--chunk", str(chunk),
                "--no-netcdf", "--no-plot", "--quiet", "--out", out]
        t0 = time.perf_counter()
        p = subprocess.Popen(argv)
        _, status, usage = os.wait4(p.pid, 0)  # this child's own rusage
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the sweep of {n} x {n} failed")
        peak = usage.ru_maxrss  # KiB on Linux
        lanes = n * n
        units = -(-lanes // chunk)
        return dict(n=n, lanes=lanes, units=units, peak_mib=peak / 1024, wall_s=wall,
                    s_per_unit=wall / units,
                    store_mib=disk_bytes(os.path.join(out, ".sweep.zarr")) / 2**20,
                    result_mib=disk_bytes(os.path.join(out, "sweep.zarr")) / 2**20)


def main(sizes):
    rows = [one(n) for n in sorted(sizes)]
    print(f"{'lanes':>10} {'units':>6} {'peak MiB':>9} {'wall s':>8} {'s/unit':>7} "
          f"{'store MiB':>10} {'result MiB':>11}")
    for r in rows:
        print(f"{r['lanes']:>10} {r['units']:>6} {r['peak_mib']:>9.0f} {r['wall_s']:>8.1f} "
              f"{r['s_per_unit']:>7.3f} {r['store_mib']:>10.1f} {r['result_mib']:>11.1f}")
    if len(rows) > 1:
        print(f"peak ratio largest / smallest: {rows[-1]['peak_mib'] / rows[0]['peak_mib']:.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1024, 4096])
