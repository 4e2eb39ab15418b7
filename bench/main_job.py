"""The main job end to end: ``python -m dynamics.sweep --eps 0.01 --n 1024``, timed as a user
runs it, code trees compared interleaved in one run.

    python bench/main_job.py --trees OLD_CHECKOUT .          # before / after, 3 rounds
    python bench/main_job.py --trees . --n 256 --rounds 1    # a quick look at this tree

Each round runs every tree once, in turn (A, B, A, B, ...), as a fresh process with
``PYTHONPATH`` set to the tree. Per run: wall time, CPU seconds of the process (all threads;
``/proc/<pid>/stat``, sampled every 0.2 s, so also the CPU use over time), maximum resident
memory, and the label variables of its ``sweep.nc`` compared with the first tree's (and with
``--reference``, a netCDF file of an earlier run) lane by lane. ``--cache cold`` gives every
run an empty compilation cache (a first run: compiles included); ``warm`` (default) fills one
cache per tree in an untimed run first (a repeated run). Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

#: the Dataset variables that are labels: they must agree lane by lane
LABELS = ("outcome", "status", "decided", "collapsed")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of process ``pid`` (all its threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_once(tree: str, args, out: str, cache: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), MPLBACKEND="Agg",
               DYNAMICS_COMPILE_CACHE=cache)
    cmd = [sys.executable, "-m", "dynamics.sweep", "--eps", str(args.eps), "--n", str(args.n),
           "--out", out, "--overwrite", "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=tree, stderr=subprocess.PIPE, text=True)
    samples = []  # (t, cpu s)
    last = 0.0
    while proc.poll() is None:
        c = cpu_seconds(proc.pid)
        if c is not None:
            last = c
            samples.append((time.perf_counter() - t0, c))
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    err = proc.stderr.read()
    if proc.returncode:
        raise SystemExit(f"{tree}: exit {proc.returncode}: {err.strip()[-500:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # CPU use per second of wall time, from the samples
    prof = []
    for (t_a, c_a), (t_b, c_b) in zip(samples, samples[1:]):
        prof.append((t_b, (c_b - c_a) / max(t_b - t_a, 1e-9)))
    return dict(wall=wall, cpu=cpu, rss_mb=after.ru_maxrss / 1024, profile=prof,
                sampled_cpu=last)


def labels(path: str) -> dict:
    import xarray as xr

    with xr.open_dataset(path) as ds:
        return {k: ds[k].values for k in LABELS if k in ds}


def compare(a: dict, b: dict) -> str:
    bad = [k for k in a if k not in b or not np.array_equal(a[k], b[k])]
    if not bad:
        return f"identical on every lane ({', '.join(a)})"
    return "DIFFER: " + ", ".join(
        f"{k} on {int(np.sum(a[k] != b[k])) if k in b else 'all'} lanes" for k in bad)


def utilisation(prof, width: float = 1.0) -> str:
    """CPU use (in cores) per ``width`` seconds of the run, as one line."""
    if not prof:
        return "-"
    end = prof[-1][0]
    cells = []
    for k in range(int(np.ceil(end / width))):
        vals = [u for t, u in prof if k * width < t <= (k + 1) * width]
        cells.append(f"{np.mean(vals):.1f}" if vals else " . ")
    return " ".join(cells)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", nargs="+", default=["."], help="code trees to compare")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--eps", type=float, default=0.01)
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--cache", choices=("warm", "cold"), default="warm")
    p.add_argument("--reference", default=None,
                   help="netCDF of an earlier run whose labels every run must match")
    args = p.parse_args(argv)

    work = tempfile.mkdtemp(prefix="main_job_")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"job: python -m dynamics.sweep --eps {args.eps:g} --n {args.n}; cache {args.cache}")
    caches = {}
    try:
        for i, tree in enumerate(args.trees):
            caches[tree] = os.path.join(work, f"cache{i}")
            if args.cache == "warm":  # untimed: fills the tree's compilation cache
                run_once(tree, args, os.path.join(work, f"warm{i}"), caches[tree])
        results = {t: [] for t in args.trees}
        first_labels = ref = None
        if args.reference:
            ref = labels(args.reference)
        for r in range(args.rounds):
            for i, tree in enumerate(args.trees):
                cache = caches[tree]
                if args.cache == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                out = os.path.join(work, f"out{i}")
                res = run_once(tree, args, out, cache)
                lab = labels(os.path.join(out, "sweep.nc"))
                if first_labels is None:
                    first_labels = lab
                res["vs_first"] = compare(first_labels, lab)
                res["vs_ref"] = compare(ref, lab) if ref is not None else None
                results[tree].append(res)
                print(f"round {r + 1} {tree}: wall {res['wall']:.1f} s, CPU {res['cpu']:.1f} s "
                      f"({res['cpu'] / res['wall']:.0%} of one core), max RSS "
                      f"{res['rss_mb'] / 1024:.2f} GB; load "
                      f"{os.getloadavg()[0]:.2f}; labels vs {args.trees[0]}: {res['vs_first']}"
                      + (f"; vs reference: {res['vs_ref']}" if ref is not None else ""),
                      flush=True)
                print(f"  cores in use, per second: {utilisation(res['profile'])}", flush=True)
        print("\nmedians over rounds:")
        base = np.median([x["wall"] for x in results[args.trees[0]]])
        for tree in args.trees:
            w = np.median([x["wall"] for x in results[tree]])
            c = np.median([x["cpu"] for x in results[tree]])
            print(f"  {tree}: wall {w:.1f} s, CPU {c:.1f} s ({c / w:.0%}), "
                  f"{base / w:.2f}x the first tree's speed")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
