"""Shared compiled solver for the linear/per-mode/analysis tests (one program per shape)."""

import jax

from dynamics.flow import vector_field
from dynamics.solve import solve_flow

# Tsit5 at tight tolerances; t1 and ts are traced, the variant is static. Reusing this one
# jitted function across test modules lets same-shaped problems share a compiled program.
solve_tight = jax.jit(
    lambda model, variant, hyper, y0, t1, ts: solve_flow(
        model, variant, hyper, y0, t1, ts=ts, solver="tsit5", rtol=1e-11, atol=1e-13,
        max_steps=100_000,
    ),
    static_argnums=(1,),
)

# The vector field as one compiled program (eager op-by-op dispatch of the autodiff field is
# slower than compiling it once per shape).
field = jax.jit(vector_field, static_argnums=(1,))
