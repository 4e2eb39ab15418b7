"""One step of each engine method and the small linear algebra it needs, batch-native.

Every array here has its lane axis *last*: a state is ``(d, n)``, a batch of Jacobians
``(d, d, n)``, so each operation is a fused elementwise kernel over ``n`` lanes. The functions
are pure and unrolled over the (static, small) state size ``d``.

The unrolled LU costs ``~d**3 / 3`` separate operations in the compiled program: cheap to run
and to compile for the scalar model's two or three variables, but for a matrix model's state
(``d = 32``) compiling it takes minutes and every step runs thousands of tiny kernels. Above
``UNROLLED_LU_MAX_DIM`` the Rosenbrock step therefore factors its matrices lane-first in a
loop over columns (the same partial-pivoting algorithm), see :func:`dense_lu_factor`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dynamics.solve.tableaus import DP_A, DP_E, ROSENBROCK

#: largest state size whose Rosenbrock matrices are factored by the unrolled LU
UNROLLED_LU_MAX_DIM = 4


def _swap(rows, k, piv):
    """Entries ``k`` and ``piv`` (per lane, ``piv >= k``) of the list ``rows`` exchanged."""
    new = list(rows)
    at_piv = rows[k]
    for i in range(k + 1, len(rows)):
        at_piv = jnp.where(piv == i, rows[i], at_piv)
    for i in range(k + 1, len(rows)):
        new[i] = jnp.where(piv == i, rows[k], rows[i])
    new[k] = at_piv
    return new


def lu_factor(a):
    """LU with partial pivoting of a batch of small matrices ``a`` of shape (d, d, n).

    Unrolled over the static size ``d``; every operation is elementwise over lanes. Returns
    ``(lu, perm)`` with ``perm`` a list of (n,) row-index arrays applied to right-hand sides.
    """
    d = a.shape[0]
    rows = [a[i] for i in range(d)]  # each (d, n)
    perms = []
    for k in range(d):
        if k < d - 1:
            piv = jnp.argmax(jnp.stack([jnp.abs(rows[i][k]) for i in range(k, d)]), axis=0) + k
            perms.append(piv)
            rows = _swap(rows, k, piv)
        inv = 1.0 / rows[k][k]
        for i in range(k + 1, d):
            m = rows[i][k] * inv
            rows[i] = rows[i].at[k].set(m)
            rows[i] = rows[i].at[k + 1 :].add(-m * rows[k][k + 1 :])
    return rows, perms


def lu_solve(lu, b):
    """Solve with the output of :func:`lu_factor`; ``b`` of shape (d, n)."""
    rows, perms = lu
    d = len(rows)
    x = [b[i] for i in range(d)]
    for k, piv in enumerate(perms):
        x = _swap(x, k, piv)
    for i in range(d):  # forward, unit lower
        for k in range(i):
            x[i] = x[i] - rows[i][k] * x[k]
    for i in reversed(range(d)):  # backward
        for k in range(i + 1, d):
            x[i] = x[i] - rows[i][k] * x[k]
        x[i] = x[i] / rows[i][i]
    return jnp.stack(x)


def dense_lu_factor(a):
    """LU with partial pivoting of a batch (d, d, n) of matrices, lane-first, in a loop over
    the ``d`` columns: the compiled program does not grow with ``d``, and every operation is
    over all lanes at once.

    The same algorithm as :func:`lu_factor` (the first largest pivot of each column); results
    agree with it to rounding. Returns ``(lu, piv)`` of shapes (n, d, d) and (n, d) in the
    convention of :func:`jax.scipy.linalg.lu_factor`, whose solve :func:`dense_lu_solve` uses.
    (That module's own factorisation is not used: its batched CPU kernel spreads the batch over
    the host's thread pool, which stalls when each CPU device runs its own loop.)
    """
    a = jnp.moveaxis(a, 2, 0)
    n, d, _ = a.shape
    r = jnp.arange(d)

    def column(k, carry):
        a, piv = carry
        col = jax.lax.dynamic_index_in_dim(a, k, axis=2, keepdims=False)  # (n, d)
        p = jnp.argmax(jnp.where(r >= k, jnp.abs(col), -1.0), axis=1)  # (n,)
        row_k = jax.lax.dynamic_index_in_dim(a, k, axis=1, keepdims=False)  # (n, d)
        row_p = jnp.take_along_axis(a, p[:, None, None], axis=1)[:, 0]  # (n, d)
        is_k, is_p = (r == k)[None, :, None], (r[None, :] == p[:, None])[:, :, None]
        a = jnp.where(is_k, row_p[:, None], jnp.where(is_p, row_k[:, None], a))
        col = jax.lax.dynamic_index_in_dim(a, k, axis=2, keepdims=False)
        pivot = jnp.take_along_axis(row_p, jnp.full((n, 1), k), axis=1)  # (n, 1)
        m = jnp.where(r > k, col * (1.0 / pivot), 0.0)  # (n, d)
        a = a - m[:, :, None] * jnp.where(r > k, row_p, 0.0)[:, None, :]
        a = jnp.where((r > k)[None, :, None] & (r == k)[None, None, :], m[:, :, None], a)
        return a, piv.at[:, k].set(p.astype(piv.dtype))

    return jax.lax.fori_loop(0, d, column, (a, jnp.zeros((n, d), jnp.int32)))


def dense_lu_solve(lu, b):
    """Solve with the output of :func:`dense_lu_factor`; ``b`` of shape (d, n)."""
    return jax.scipy.linalg.lu_solve(lu, b.T[:, :, None])[:, :, 0].T


def rms(x):
    return jnp.sqrt(jnp.mean(x * x, axis=0))


def inv_root(x, q):
    """``x ** (-1 / q)`` for positive normal float64 ``x`` and a small positive integer ``q``.

    The step-size controller calls this once per lane and step; XLA's float64 ``pow`` costs
    about as much as the rest of an explicit step of a two-variable field. Here: log2 and exp2
    from the float's exponent bits and short polynomials in the mantissa (relative error
    ~1e-3), then one Newton step for ``y ** q * x = 1``, which squares that error (tests check
    < 1e-4 against ``jnp.power``).
    """
    bits = jax.lax.bitcast_convert_type(x, jnp.int64)
    e = (bits >> 52) - 1023
    mant = jax.lax.bitcast_convert_type(
        (bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000, jnp.float64
    )  # in [1, 2)
    u = mant - 1.0
    log2x = e.astype(jnp.float64) + u * (1.4425449 + u * (-0.7181452 + u * 0.2757002))
    z = -log2x / q
    i = jnp.floor(z)
    fr = z - i
    two_fr = 1.0 + fr * (0.6951786 + fr * (0.2261966 + fr * 0.0786248))
    y = jax.lax.bitcast_convert_type((i.astype(jnp.int64) + 1023) << 52, jnp.float64) * two_fr
    return y * (1.0 + (1.0 - x * y**q) / q)


def initial_step(f, y0, f0, t_span, rtol, atol, order):
    """Per-lane starting step (Hairer, Norsett & Wanner I, II.4), batch-native."""
    sc = atol + rtol * jnp.abs(y0)
    d0 = rms(y0 / sc)
    d1 = rms(f0 / sc)
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
    h0 = jnp.minimum(h0, t_span)
    f1 = f(y0 + h0 * f0)
    d2 = rms((f1 - f0) / sc) / h0
    dm = jnp.maximum(d1, d2)
    h1 = jnp.where(dm <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / dm) ** (1.0 / order))
    h = jnp.minimum(100 * h0, h1)
    return jnp.where(jnp.isfinite(h) & (h > 0), h, 1e-6)


def dopri5_step(f, y, k0, h, stiffness=False):
    """One Dormand-Prince 5(4) step: ``(y_new, f(y_new), err)``, and with ``stiffness`` also
    the lane's stiffness estimate (:func:`stiffness_estimate`) as a fourth value."""
    ks = [k0]
    for i in range(1, 7):
        yi = y + h * sum(a * k for a, k in zip(DP_A[i], ks) if a != 0.0)
        if i == 5:
            y6 = yi  # the sixth stage's point (c = 1)
        # materialise each stage once: otherwise XLA fuses the whole step into every output
        # (y_new, the error, the next derivative) and evaluates the stages several times
        ks.append(jax.lax.optimization_barrier(f(yi)))
    y_new = y + h * sum(a * k for a, k in zip(DP_A[6], ks) if a != 0.0)
    err = h * sum(e * k for e, k in zip(DP_E, ks) if e != 0.0)
    if stiffness:
        return y_new, ks[6], err, stiffness_estimate(h, ks[6], ks[5], y_new, y6)
    return y_new, ks[6], err


#: Dormand-Prince 5(4)'s stability region meets the negative real axis near h lambda = -3.3;
#: an estimate of |h lambda| above this says the step size is set by stability, not accuracy
#: (the value of Hairer & Wanner's DOPRI5 code)
DP_STABILITY_BOUNDARY = 3.25


def stiffness_estimate(h, k7, k6, y7, y6):
    """``h |lambda|`` per lane from the last two stages of a Dormand-Prince step (Hairer,
    Norsett & Wanner I, IV.2; the test in their DOPRI5 code): both stages are evaluated at
    ``t + h``, so ``|k7 - k6| / |y7 - y6|`` estimates the largest ``|lambda|`` of the
    Jacobian along the step's direction; for ``y' = lambda y`` it is ``|lambda| h`` exactly.
    0 where the two points coincide."""
    if k7.shape[0] <= 8:  # a few rows: adds that fuse with the step's other per-lane work
        num = sum((k7[i] - k6[i]) ** 2 for i in range(k7.shape[0]))
        den = sum((y7[i] - y6[i]) ** 2 for i in range(y7.shape[0]))
    else:
        num = jnp.sum((k7 - k6) ** 2, axis=0)
        den = jnp.sum((y7 - y6) ** 2, axis=0)
    return jnp.abs(h) * jnp.sqrt(jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0))


def rosenbrock_step(f, jac, y, fy, h, method="rodas4"):
    """One step of a stiffly accurate Rosenbrock method of
    :data:`~dynamics.solve.tableaus.ROSENBROCK` (``rodas4``, ``rodas5p``) with the exact
    Jacobian: ``(y_new, err)``, ``err`` the last stage (new solution minus the embedded one)."""
    gamma, A, C = ROSENBROCK[method]
    d = y.shape[0]
    J = jac(y)  # (d, d, n)
    diag = 1.0 / (h * gamma)
    if d <= UNROLLED_LU_MAX_DIM:
        # W = I / (h gamma) - J entry by entry: a scatter onto the diagonal is a kernel of its
        # own, which costs as much as a stage of a small state
        w = jnp.stack([jnp.stack([-J[i, j] + diag if i == j else -J[i, j] for j in range(d)])
                       for i in range(d)])
        factor, solve = lu_factor, lu_solve
    else:  # d * d entries would make the program grow with d
        w = (-J).at[jnp.arange(d), jnp.arange(d)].add(diag)
        factor, solve = dense_lu_factor, dense_lu_solve
    lu = factor(w)
    inv_h = 1.0 / h
    ks = []
    for i in range(len(A)):
        if i == 0:
            fi = fy
        else:
            yi = y + sum(a * k for a, k in zip(A[i], ks))
            fi = jax.lax.optimization_barrier(f(yi))  # see dopri5_step
        rhs = fi + inv_h * sum(c * k for c, k in zip(C[i], ks)) if i else fi
        ks.append(jax.lax.optimization_barrier(solve(lu, rhs)))
    y_new = y + sum(a * k for a, k in zip(A[-1], ks)) + ks[-1]
    return y_new, ks[-1]

