"""Training-step throughput of the Flax SimSiam step against an equivalent PyTorch step.

    python bench/cifar_throughput.py --width 0.25 --batch 128

Each implementation runs in its own worker process (its own thread pool, no interference) and
the workers take turns: round r runs every worker for ``--steps`` steps, one after the other, so
machine-load drift hits all of them alike. Reported: median images/s over the rounds, where an
image is one source image (two 32x32 views go through the network per image), and the ratio of
each Flax variant to PyTorch (NCHW and channels-last). Also images per CPU-second of the
worker process (less sensitive to other load on the machine, though spinning threads count).

Workers:
  flax        the step of ``dynamics.cifar`` on ready views (what the PyTorch step also gets)
  flax-aug    the same step with the on-device augmentation of uint8 images inside it
  flax-bf16   the same as flax with the backbone's convolutions in bfloat16 (BN stats float32)
  torch       ``bench/torch_simsiam.py``, NCHW
  torch-cl    the same, channels-last memory format

torch is needed only here (``pip install torch==2.13.0``, CPU build); it is not a dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _flax_worker(width: float, batch: int, augment: bool, bf16: bool = False):
    sys.path.insert(0, str(ROOT))
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dynamics.cifar.train import Config, init_state, make_train_step

    cfg = Config(width=width, batch_size=batch, lr=0.06, compute_dtype="bfloat16" if bf16 else "float32")
    state = init_state(cfg, jax.random.PRNGKey(0), 10_000)
    step = make_train_step(cfg, 10_000, augment=augment)
    rng = np.random.default_rng(0)
    if augment:
        data = jnp.asarray(rng.integers(0, 256, (4 * batch, 32, 32, 3), dtype=np.uint8))
        idxs = [jnp.asarray(rng.permutation(4 * batch)[:batch].astype(np.int32)) for _ in range(4)]
        i = [0]

        def run(state):
            i[0] += 1
            return step(state, data, idxs[i[0] % 4], jax.random.PRNGKey(i[0]))
    else:
        x = jnp.asarray(rng.normal(size=(2 * batch, 32, 32, 3)).astype(np.float32))

        def run(state):
            return step(state, x)

    def go(n, state):
        for _ in range(n):
            state, m = run(state)
        jax.block_until_ready(m["loss"])
        return state

    return go, state


def _torch_worker(width: float, batch: int, channels_last: bool):
    sys.path.insert(0, str(HERE))
    import torch

    from torch_simsiam import make_step

    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    step = make_step(width, channels_last=channels_last)
    x1, x2 = torch.randn(batch, 3, 32, 32), torch.randn(batch, 3, 32, 32)
    if channels_last:
        x1 = x1.contiguous(memory_format=torch.channels_last)
        x2 = x2.contiguous(memory_format=torch.channels_last)

    def go(n, state):
        for _ in range(n):
            loss = step(x1, x2)
        float(loss)
        return state

    return go, None


def worker(kind: str, width: float, batch: int) -> None:
    """Serve timing requests on stdin: a line ``n`` -> run n steps, print the seconds."""
    if kind.startswith("flax"):
        go, state = _flax_worker(width, batch, augment=kind == "flax-aug", bf16=kind == "flax-bf16")
    else:
        go, state = _torch_worker(width, batch, channels_last=kind == "torch-cl")
    t = time.perf_counter()
    state = go(2, state)  # compile / warm up
    print(json.dumps({"ready": time.perf_counter() - t}), flush=True)
    for line in sys.stdin:
        n = int(line)
        t, c = time.perf_counter(), time.process_time()
        state = go(n, state)
        print(json.dumps({"seconds": time.perf_counter() - t, "cpu": time.process_time() - c}), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=128, help="images per step (two views each)")
    ap.add_argument("--steps", type=int, default=5, help="steps per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--workers", default="flax,flax-aug,torch,torch-cl",
                    help="comma-separated: flax, flax-aug, flax-bf16, torch, torch-cl")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args(argv)
    if a.worker:
        worker(a.worker, a.width, a.batch)
        return 0
    kinds = a.workers.split(",")
    procs = {}
    for k in kinds:
        p = subprocess.Popen([sys.executable, __file__, "--worker", k, "--width", str(a.width), "--batch",
                              str(a.batch)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs[k] = p
        ready = json.loads(p.stdout.readline())["ready"]  # one at a time: compiles do not overlap
        print(f"{k:9s} ready (warm-up {ready:.1f} s)", flush=True)
    rates = {k: [] for k in kinds}
    cpu = {k: [] for k in kinds}
    for r in range(a.rounds):
        for k in kinds:
            p = procs[k]
            p.stdin.write(f"{a.steps}\n")
            p.stdin.flush()
            res = json.loads(p.stdout.readline())
            rates[k].append(a.steps * a.batch / res["seconds"])
            cpu[k].append(a.steps * a.batch / res["cpu"])
        print(f"round {r + 1}: " + "  ".join(f"{k} {rates[k][-1]:.0f}" for k in kinds), flush=True)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    med = {k: statistics.median(v) for k, v in rates.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    print(f"\nwidth {a.width}, batch {a.batch} per view, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}),"
          f" median of {a.rounds} rounds x {a.steps} steps, images/s (source images, 2 views each):")
    for k in kinds:
        print(f"  {k:9s} {med[k]:8.1f} wall   {med_cpu[k]:8.1f} per CPU-second")
    for f in ("flax", "flax-aug", "flax-bf16"):
        for t in ("torch", "torch-cl"):
            if f in med and t in med:
                print(f"  ratio {f}/{t}: {med[f] / med[t]:.2f}x wall, {med_cpu[f] / med_cpu[t]:.2f}x per CPU-second")
    if a.json:
        a.json.write_text(json.dumps({"width": a.width, "batch": a.batch, "median": med, "median_per_cpu_second": med_cpu,
                                      "rounds": rates, "rounds_per_cpu_second": cpu}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
