"""Arrays behind the figures: fields on grids, fixed points, stable manifolds, trajectories,
and, for the linear model, Euler runs over lanes of hyperparameters.

Everything here is computed from the model's loss through :mod:`dynamics.flow` (vector field
and autodiff Jacobian); the plotting functions in :mod:`dynamics.plot` only draw the results.
Functions are jitted once per (variant, shape) and reused across panels. The figure modules
of :mod:`dynamics.figures` share these; what only one figure needs stays in its module.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dynamics.analysis import FlowSystem, find_fixed_points, relaxation_rate, stability
from dynamics.analysis.alignment import lambda_min_sym, theorem3_K
from dynamics.analysis.slowfast import ReducedSystem
from dynamics.compat import moved
from dynamics.flow import Hyper, State, Variant, jacobian_matrix, vector_field
from dynamics.models import Model
from dynamics.models.linear import random_state
from dynamics.solve import run_discrete, solve_flow, solve_system

__all__ = [
    "ScaledTarget",
    "critical_predictor",
    "eigen_at",
    "eigvals_at",
    "euler_lanes",
    "expected_loss",
    "field_at",
    "fixed_points",
    "grid_field",
    "hyper_lanes",
    "init_lanes",
    "lambda_min_K",
    "make_state",
    "predictor_rate",
    "reduced_trajectories",
    "seed_grid",
    "stable_manifold",
    "symmetric_part",
    "target_scale",
    "trajectories",
]


def make_state(variant: Variant, enc, pred, tgt=None) -> State:
    enc = jnp.asarray(enc, jnp.float64)
    pred = jnp.asarray(pred, jnp.float64)
    if variant.has_target:
        return State(enc, pred, enc if tgt is None else jnp.asarray(tgt, jnp.float64))
    return State(enc, pred, None)


def _pad_rows(x, minimum=8):
    """Pad the leading axis to the next power of two (>= minimum) by repeating the last row,
    so that calls with different numbers of lanes share one compiled program."""
    x = np.asarray(x)
    n = x.shape[0]
    m = max(minimum, 1 << max(n - 1, 0).bit_length())
    if m == n:
        return x, n
    return np.concatenate([x, np.repeat(x[-1:], m - n, axis=0)]), n


# --- fields on grids ------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("variant",))
def field_at(model, variant, hyper, y: State) -> State:
    """Vector field at many states (every leaf of ``y`` has the same leading shape)."""
    shape = jnp.shape(y.enc)
    flat = jax.tree_util.tree_map(lambda x: jnp.reshape(x, (-1,)), y)
    f = jax.vmap(lambda s: vector_field(model, variant, hyper, s))(flat)
    return jax.tree_util.tree_map(lambda x: jnp.reshape(x, shape), f)


def grid_field(model, variant, hyper, theta, phi, tgt=None):
    """Field on the mesh ``theta x phi`` (1-D arrays); returns ``(TH, PH, State of arrays)``.

    Arrays have shape ``(len(phi), len(theta))`` (rows are phi), as ``contour`` expects.
    """
    TH, PH = np.meshgrid(np.asarray(theta, float), np.asarray(phi, float))
    TA = None if tgt is None else np.broadcast_to(tgt, TH.shape)
    y = make_state(variant, TH, PH, TA)
    f = field_at(model, variant, hyper, y)
    return TH, PH, jax.tree_util.tree_map(np.asarray, f)


# --- fixed points ---------------------------------------------------------------------------


def seed_grid(theta_range, phi_range, n=9):
    """An ``n x n`` grid of ``(theta, phi)`` seeds (rows of an (n*n, 2) array) for Newton."""
    th = np.linspace(*theta_range, n)
    ph = np.linspace(*phi_range, n)
    return np.stack(np.meshgrid(th, ph), -1).reshape(-1, 2)


@functools.partial(jax.jit, static_argnames=("variant",))
def eigvals_at(model, variant, hyper, z):
    """Eigenvalues (complex) and eigenvectors of the Jacobian at flattened states ``z`` (N, d)."""
    template = make_state(variant, 0.0, 0.0, 0.0 if variant.has_target else None)
    _, unravel = ravel_pytree(template)

    def one(zz):
        J = jacobian_matrix(model, variant, hyper, unravel(zz))
        return jnp.linalg.eig(J)

    return jax.vmap(one)(z)


def eigen_at(model, variant, hyper, pts):
    """Jacobian eigenvalues and eigenvectors at flattened states ``pts`` (N, d), as numpy."""
    padded, n = _pad_rows(np.asarray(pts, float))
    w, v = eigvals_at(model, variant, hyper, jnp.asarray(padded))
    return np.asarray(w)[:n], np.asarray(v)[:n]


def fixed_points(model, variant, hyper, seeds, ftol=1e-10, dedupe=1e-6):
    """Fixed points found from ``seeds`` (N, d) flattened states, for drawing.

    Newton, de-duplication and convergence test are :func:`dynamics.analysis.find_fixed_points`
    (least-squares steps, so lanes also converge onto lines of fixed points or with a frozen
    coordinate). Returns a list of dicts ``{"z": point (d,), "eigs": eigenvalues, "vecs":
    eigenvectors, "kind": stability(...)}`` (:func:`dynamics.analysis.stability`) sorted by the flattened coordinates; ``kind``
    ignores neutral directions, so points on a line of fixed points are still labelled.
    """
    seeds, _ = _pad_rows(np.asarray(seeds, float))  # padding repeats a seed: deduplicated
    starts = make_state(variant, seeds[:, 0], seeds[:, 1],
                        seeds[:, 2] if variant.has_target else None)
    found = find_fixed_points(FlowSystem(model, hyper, variant), starts, tol=ftol,
                              dedup_tol=dedupe)
    if not found:
        return []
    pts = np.array(sorted((np.asarray(ravel_pytree(fp.state)[0]) for fp in found), key=tuple))
    w, v = eigen_at(model, variant, hyper, pts)
    return [dict(z=p, eigs=w[i], vecs=v[i], kind=stability(w[i])) for i, p in enumerate(pts)]


# --- stable manifolds -----------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("variant", "max_steps"))
def _backward_branches(model, variant, hyper, z0s, bound, t_max, max_steps: int = 4096):
    """Integrate the time-reversed flow from each row of ``z0s`` until ``max|z| > bound``.

    Returns every accepted step (rows after termination are inf).
    """
    template = make_state(variant, 0.0, 0.0, 0.0 if variant.has_target else None)
    _, unravel = ravel_pytree(template)

    def rhs(t, z, args):
        return -ravel_pytree(vector_field(model, variant, hyper, unravel(z)))[0]

    def leave(t, y, args, **kwargs):
        return jnp.max(jnp.abs(y)) > bound

    def one(z0):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(rhs), diffrax.Tsit5(), t0=0.0, t1=t_max, dt0=None, y0=z0,
            saveat=diffrax.SaveAt(steps=True),
            stepsize_controller=diffrax.PIDController(rtol=1e-7, atol=1e-9),
            event=diffrax.Event(leave), max_steps=max_steps, throw=False,
        )
        return sol.ys

    return jax.vmap(one)(z0s)


def stable_manifold(model, variant, hyper, point, *, bound=4.0, t_max=400.0, delta=1e-6):
    """Both branches of the stable manifold of the saddle ``point`` (a ``fixed_points`` entry).

    Starts a distance ``delta`` from the saddle along its stable eigenvector (the one with the
    most negative real eigenvalue) and integrates the flow backwards in time, where the
    manifold is attracting, until the state leaves the box ``max|z| <= bound`` or ``t_max``.

    Returns a list of two arrays (n_i, d) of points, saddle first.
    """
    w, v = np.real(point["eigs"]), np.real(point["vecs"])
    k = int(np.argmin(w))
    vs = v[:, k] / np.linalg.norm(v[:, k])
    z0s = np.stack([point["z"] + delta * vs, point["z"] - delta * vs])
    ys = np.asarray(_backward_branches(model, variant, hyper, jnp.asarray(z0s), bound, t_max))
    out = []
    for branch in ys:
        ok = np.all(np.isfinite(branch), axis=1)
        out.append(np.concatenate([point["z"][None], branch[ok]]))
    return out


# --- trajectories ---------------------------------------------------------------------------


def trajectories(model, variant, hyper, enc0, pred0, tgt0=None, *, t1, n_save=400,
                 rtol=1e-7, atol=1e-9, max_steps=100_000, solver="tsit5", log_time=False):
    """Gradient-flow trajectories from arrays of initial values (Tsit5 by default).

    ``log_time=True`` saves at ``0`` and geometrically spaced times from ``1e-3 * t1``, so
    fast transients (small ``eps``) are resolved in phase-plane drawings.

    Returns ``(ts (T,), State of arrays (N, T), status (N,))``.
    """
    enc0 = np.atleast_1d(np.asarray(enc0, float))
    cols = [enc0, np.broadcast_to(np.asarray(pred0, float), enc0.shape)]
    if variant.has_target:
        cols.append(enc0 if tgt0 is None else np.broadcast_to(np.asarray(tgt0, float), enc0.shape))
    z0, n = _pad_rows(np.stack(cols, 1))
    y0 = State(jnp.asarray(z0[:, 0]), jnp.asarray(z0[:, 1]),
               jnp.asarray(z0[:, 2]) if variant.has_target else None)
    if log_time:
        ts = np.concatenate([[0.0], np.geomspace(1e-3 * t1, t1, n_save - 1)])
    else:
        ts = np.linspace(0.0, t1, n_save)
    ys, status = _flow_lanes(model, variant, hyper, y0, jnp.asarray(t1, jnp.float64),
                             jnp.asarray(ts), solver=solver, rtol=rtol, atol=atol,
                             max_steps=max_steps)
    ys = jax.tree_util.tree_map(lambda x: np.asarray(x)[:n], ys)
    return ts, ys, np.asarray(status)[:n]


@functools.partial(jax.jit, static_argnames=("variant", "solver", "rtol", "atol", "max_steps"))
def _flow_lanes(model, variant, hyper, y0, t1, ts, *, solver, rtol, atol, max_steps):
    """``solve_flow`` over lanes of ``y0`` (shared model/hyper) with a traced end time, so
    figures integrating to different times share one compiled program."""
    sol = jax.vmap(lambda y: solve_flow(model, variant, hyper, y, t1, ts=ts, solver=solver,
                                        rtol=rtol, atol=atol, max_steps=max_steps))(y0)
    return sol.ys, sol.status


def expected_loss(model, variant, y: State):
    """Expected loss along saved states (target: tgt for BYOL, the encoder for SimSiam)."""
    tgt = y.tgt if variant.has_target else y.enc
    return np.asarray(model.expected_loss(jnp.asarray(y.enc), jnp.asarray(y.pred), jnp.asarray(tgt)))



# --- slow-fast reduction (dynamics.analysis.slowfast, vectorised for drawing) -----------------


def _reduced(model, variant, hyper):
    return ReducedSystem.of(FlowSystem(model, hyper, variant), jnp.asarray(1.0 / model.a))


@jax.jit
def _critical_pred(reduced, enc):
    return jax.vmap(lambda e: reduced.critical_pred(e, e if reduced.variant.has_target else None))(enc)


def critical_predictor(model, variant, hyper, enc):
    """The critical manifold ``phi*(enc)`` (zero of the predictor's field), over an array of
    encoder values (``dynamics.analysis.slowfast.ReducedSystem.critical_pred``)."""
    enc = np.asarray(enc, float)
    out = _critical_pred(_reduced(model, variant, hyper), jnp.asarray(enc.reshape(-1)))
    return np.asarray(out).reshape(enc.shape)


def predictor_rate(model, variant, hyper, enc):
    """Relaxation rate of the fast predictor at fixed encoder, ``-d pred'/d pred``
    (``(a theta^2 + eta_phi) / eps`` for the scalar model; ``analysis.slowfast.relaxation_rate``)."""
    system = FlowSystem(model, hyper, variant)
    enc = np.asarray(enc, float)
    states = make_state(variant, enc.reshape(-1), np.zeros(enc.size))
    rate = jax.vmap(lambda y: relaxation_rate(system, y))(states)
    return np.asarray(rate).reshape(enc.shape)


@functools.partial(jax.jit, static_argnames=("n_save",))
def _reduced_solve(reduced, enc0, t1, n_save):
    ts = jnp.linspace(0.0, t1, n_save)
    sol = jax.vmap(lambda e: solve_system(reduced, State(e, None, None), t1, ts=ts, rtol=1e-8,
                                          atol=1e-10, max_steps=100_000))(enc0)
    return ts, sol.ys.enc


def reduced_trajectories(model, variant, hyper, enc0, *, t1, n_save=400):
    """Reduced (slow) SimSiam trajectories from ``enc0`` (N,): ``(ts, enc (N, T), pred (N, T))``
    with ``pred = phi*(enc)`` on the critical manifold."""
    if variant.has_target:
        raise ValueError("the reduced trajectories here are for SimSiam (no separate target)")
    enc0, n = _pad_rows(np.atleast_1d(np.asarray(enc0, float)))
    reduced = _reduced(model, variant, hyper)
    ts, enc = _reduced_solve(reduced, jnp.asarray(enc0), jnp.asarray(float(t1)), n_save)
    enc = np.asarray(enc)[:n]
    return np.asarray(ts), enc, critical_predictor(model, variant, hyper, enc)


# --- the linear model: Euler runs over lanes of hyperparameters -------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScaledTarget(Model):
    """A model whose target is ``tau`` times the given one: ``L(W, Wp, tau * target)``.

    With the SimSiam variant (stop-gradient, target = encoder) this is Tian et al.'s
    ``Wa = tau W`` assumption of Theorem 3, written as a loss. Its predictor follows its
    gradient (the base model's non-gradient predictor rules are not carried over).
    """

    base: Any
    tau: Any = 1.0

    @property
    def trains_predictor(self):
        return self.base.trains_predictor

    def loss(self, W, pred, tgt, batch):
        return self.base.loss(W, pred, self.tau * tgt, batch)

    def expected_loss(self, W, pred, tgt):
        return self.base.expected_loss(W, pred, self.tau * tgt)

    def sample(self, key, batch_size, dtype=jnp.float64):
        return self.base.sample(key, batch_size, dtype)

    def encoder_norm(self, W):
        return self.base.encoder_norm(W)


@functools.partial(jax.jit, static_argnames=("variant", "n_steps", "save_every"))
def euler_lanes(model, variant, hyper, y0, lr, *, n_steps, save_every):
    """Explicit Euler on the expected flow, vmapped over a lane axis of ``hyper``, ``y0``, ``lr``.

    ``model`` is shared by all lanes. Returns ``(ts (T,) per lane, State (N, T, ...))``.
    """

    def one(h, y, l):
        sol = run_discrete(model, variant, h, y, l, n_steps, save_every=save_every)
        return sol.ts, sol.ys

    return jax.vmap(one)(hyper, y0, lr)


def hyper_lanes(eta, eps, beta, convention):
    """A ``Hyper`` with one lane per broadcast element of ``eta``, ``eps``, ``beta``."""
    eta, eps, beta = np.broadcast_arrays(np.asarray(eta, float), np.asarray(eps, float),
                                         np.asarray(beta, float))
    h = Hyper.from_convention(convention, jnp.asarray(eta), jnp.asarray(eps), jnp.asarray(beta))
    return h


def init_lanes(model, variant, n, keys, scale, target0="online", pred_scale=None):
    """One random initial state of the linear model per key (``models.linear.random_state``)."""
    return jax.vmap(lambda k: random_state(k, model, variant, n, scale=scale,
                                           pred_scale=pred_scale, target0=target0))(keys)


def symmetric_part(m):
    """``(m + m^T) / 2`` over the last two axes."""
    return 0.5 * (m + np.swapaxes(m, -1, -2))


@jax.jit
def lambda_min_K(F, P, sigma2, alpha_p, tau, eta):
    """``lambda_min(K)`` of Theorem 3 over (run, time) axes, ``K`` from dynamics.analysis."""

    def one(Fi, Pi, ti, ei):
        return lambda_min_sym(theorem3_K(Fi, Pi, sigma2, alpha_p, ti, ei))

    over_time = jax.vmap(one, in_axes=(0, 0, 0, None))
    return jax.vmap(over_time)(F, P, tau, eta)


def target_scale(W, Wa):
    """Least-squares scalar with ``Wa ~ tau W``: ``tr(Wa W^T) / tr(W W^T)``."""
    return np.einsum("...ij,...ij->...", Wa, W) / np.maximum(np.einsum("...ij,...ij->...", W, W), 1e-300)


#: old name, kept for this release
__getattr__ = moved(__name__, {"classify_point": ("dynamics.analysis.stability", stability)})
