"""Save (or compare against) the engine's scalar-model results, to check that a change to the
engine leaves them bit for bit the same.

    python bench/scalar_bits.py save FILE.npz    # before the change
    python bench/scalar_bits.py check FILE.npz   # after: every array equal
"""

import sys

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from dynamics.flow import VARIANTS, Hyper, State  # noqa: E402
from dynamics.models import ScalarSiamese  # noqa: E402
from dynamics.solve import solve_batch  # noqa: E402


def run():
    out = {}
    rng = np.random.default_rng(0)
    for name in ("simsiam", "byol"):
        variant = VARIANTS[name]
        n = 300
        eps = np.repeat([1.0, 0.1, 0.01], n // 3)
        th, ph = rng.uniform(-1.5, 1.5, n), rng.uniform(-1.0, 2.0, n)
        tg = rng.uniform(-1.5, 1.5, n) if variant.has_target else None
        y0 = State(jnp.asarray(th), jnp.asarray(ph), None if tg is None else jnp.asarray(tg))
        hyper = Hyper.loss_decay(jnp.full((n,), 0.05), jnp.asarray(eps), 1.0)
        for solver in ("auto", "dopri5", "rodas4"):
            sol = solve_batch(ScalarSiamese(0.5), variant, hyper, y0, integrator="engine",
                              t1=20.0, ts=np.linspace(0, 20, 5), solver=solver, rtol=1e-7,
                              atol=1e-9)
            for i, leaf in enumerate(jax.tree_util.tree_leaves(sol.ys)):
                out[f"{name}_{solver}_y{i}"] = np.asarray(leaf)
            out[f"{name}_{solver}_steps"] = np.asarray(sol.num_steps)
            out[f"{name}_{solver}_status"] = np.asarray(sol.status)
    return out


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    res = run()
    if mode == "save":
        np.savez(path, **res)
    else:
        ref = np.load(path)
        bad = [k for k in ref.files if not np.array_equal(ref[k], res[k], equal_nan=True)]
        print("identical" if not bad and set(ref.files) == set(res) else f"DIFFER: {bad}")
