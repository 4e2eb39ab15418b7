"""Engine against diffrax on the default linear sweep's lanes (n1 = n2 = 4, SimSiam).

    python bench/engine_matrix.py [--t1 300] [--eps 1 0.1 0.03] [--init 8] [--which engine diffrax]

Prints, per integrator and eps: first-call time (compile + run), second-call time (run),
steps per lane; then the largest relative difference of the final states.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from dynamics.flow import VARIANTS, Hyper  # noqa: E402
from dynamics.models import LinearSiamese, PerModeSiamese  # noqa: E402
from dynamics.solve import solve_batch  # noqa: E402
from dynamics.sweep_linear import _init_states, data_matrices  # noqa: E402

ETAS = [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35]


def lanes(eps, n_init, model_name="linear", n1=4, sigma2=0.5):
    X, d = data_matrices(n1, (0.5, 1.5), 0)
    inits = _init_states(model_name, n_init, n1, n1, 1.0, 0.5, 0, False)
    g = np.array([(e, i) for e in ETAS for i in range(n_init)])
    n = len(g)
    eta = jnp.asarray(g[:, 0])
    ii = jnp.asarray(g[:, 1].astype(int))
    s2 = jnp.full((n,), sigma2)
    if model_name == "linear":
        model = LinearSiamese(jnp.broadcast_to(X, (n, n1, n1)),
                              s2[:, None, None] * jnp.eye(n1)[None])
    else:
        model = PerModeSiamese(jnp.broadcast_to(d, (n, n1)), s2[:, None] * jnp.ones((1, n1)))
    hyper = Hyper.from_convention("loss", eta, jnp.full((n,), eps), jnp.ones((n,)))
    y0 = jax.tree_util.tree_map(lambda x: x[ii], inits)
    return model, hyper, y0


def final(sol):
    return np.concatenate([np.asarray(x)[:, -1].reshape(x.shape[0], -1)
                           for x in jax.tree_util.tree_leaves(sol.ys)], axis=1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--t1", type=float, default=30.0)
    p.add_argument("--eps", type=float, nargs="+", default=[1.0, 0.1, 0.03])
    p.add_argument("--init", type=int, default=8)
    p.add_argument("--model", default="linear")
    p.add_argument("--which", nargs="+", default=["engine", "diffrax"])
    p.add_argument("--solver", default="auto")
    p.add_argument("--devices", type=int, default=None)
    p.add_argument("--slots", type=int, default=None)
    p.add_argument("--once", action="store_true")
    a = p.parse_args()
    for eps in a.eps:
        model, hyper, y0 = lanes(eps, a.init, a.model)
        res = {}
        for which in a.which:
            kw = dict(integrator=which, t1=a.t1, rtol=1e-7, atol=1e-9, max_steps=200000,
                      solver=a.solver if which == "engine" else "auto")
            if which == "engine":
                kw.update(devices=a.devices, slots=a.slots)
            times = []
            for _ in range(1 if a.once else 2):
                t0 = time.perf_counter()
                sol = jax.block_until_ready(
                    solve_batch(model, VARIANTS["simsiam"], hyper, y0, **kw))
                times.append(time.perf_counter() - t0)
            st = np.asarray(sol.num_steps)
            res[which] = final(sol)
            print(f"eps={eps:g} {which:8s} calls {' '.join(f'{t:.2f}s' for t in times)}  "
                  f"steps mean {st.mean():.0f} max {st.max()}  status {np.bincount(sol.status)}",
                  flush=True)
        if len(res) == 2:
            e, d = res["engine"], res["diffrax"]
            rel = np.max(np.abs(e - d)) / np.max(np.abs(d))
            print(f"eps={eps:g} max |engine - diffrax| / max|y| = {rel:.2e}", flush=True)


if __name__ == "__main__":
    main()
