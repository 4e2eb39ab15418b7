"""The scipy baseline of ``bench/run.py``: hand-tuned scalar fields with their analytic Jacobians,
integrated lane by lane in worker processes.

Imports only numpy and scipy, so a process pool started with ``spawn`` (never ``fork`` from a
process running JAX's threads) loads it quickly. The fields take positional arguments, work on
Python floats (``y.tolist()``) and return tuples: the cheapest a Python callback gets, i.e. the
best case for scipy. They are the scalar fields of ``docs/theory.md`` sections 1-2 with the
stop-gradient (SimSiam, BYOL); their Jacobians are differentiated by hand.
"""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp


def simsiam(a, eps, eta):
    """Field and Jacobian of scalar SimSiam (stop-gradient), state (theta, phi)."""
    inv = 1.0 / eps

    def fun(t, y):
        th, ph = y.tolist()
        r = th - a * ph * th
        return (ph * r - eta * th, (th * r - eta * ph) * inv)

    def jac(t, y):
        th, ph = y.tolist()
        return ((ph * (1.0 - a * ph) - eta, th - 2.0 * a * ph * th),
                ((2.0 * th - 2.0 * a * ph * th) * inv, (-a * th * th - eta) * inv))

    return fun, jac


def byol(a, eps, eta, beta):
    """Field and Jacobian of scalar BYOL (EMA target, stop-gradient), state (theta, phi, theta_a)."""
    inv = 1.0 / eps

    def fun(t, y):
        th, ph, ta = y.tolist()
        r = ta - a * ph * th
        return (ph * r - eta * th, (th * r - eta * ph) * inv, beta * (th - ta))

    def jac(t, y):
        th, ph, ta = y.tolist()
        return ((-a * ph * ph - eta, ta - 2.0 * a * ph * th, ph),
                ((ta - 2.0 * a * ph * th) * inv, (-a * th * th - eta) * inv, th * inv),
                (beta, 0.0, -beta))

    return fun, jac


def integrate(kind, params, y0, t1, method, rtol, atol):
    """Final states (lanes, d) of the lanes ``y0`` (lanes, d); NaN where scipy fails."""
    fun, jac = (simsiam if kind == "simsiam" else byol)(*params)
    extra = {} if method == "RK45" else {"jac": jac}
    out = np.empty_like(y0)
    for j, y in enumerate(y0):
        r = solve_ivp(fun, (0.0, t1), y, method=method, rtol=rtol, atol=atol, **extra)
        out[j] = r.y[:, -1] if r.success else np.nan
    return out
