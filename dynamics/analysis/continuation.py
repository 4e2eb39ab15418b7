"""Continuation of a fixed-point branch in one parameter, saddle-node detection, bifurcation data.

Pseudo-arclength continuation of ``F(z, lam) = 0`` (``F`` the flattened vector field of the
system returned by ``param(system, lam)``): a tangent predictor along the null vector of
``[F_z  F_lam]`` and a Newton corrector on ``F = 0`` plus the arclength condition. A saddle-node
(fold) shows up as a sign change of the tangent's ``lam`` component; the arclength where that
component vanishes is then found by regula falsi (Illinois), each trial point solved to machine
precision by the same corrector. The parameter is stationary at a fold, so its error is
quadratic in the arclength error and the fold parameter comes out to ~1e-15.
:func:`locate_fold` refines a fold independently by Newton on the standard fold system

    F(z, lam) = 0,   F_z(z, lam) v = 0,   v . v0 = 1.

Branches must consist of isolated fixed points: the matrix models have continuous families
(rotations ``W -> Q W``, ``Wp -> Q Wp Q^T``) along which ``F_z`` is singular everywhere; continue
their per-mode reduction (:class:`dynamics.models.PerModeSiamese`) instead.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.flatten_util import ravel_pytree

from dynamics.analysis.fixed_points import fixed_point_kind
from dynamics.analysis.system import as_system, flatten


# --- parameter maps -------------------------------------------------------------------------
# Frozen dataclasses (hashable, compared by value) so that compiled continuation programs are
# reused across calls with the same parameter map.


@dataclasses.dataclass(frozen=True)
class eta_param:
    """``param(system, eta)`` setting the weight decay in the given convention.

    ``"tian"``: ``eta_theta = eta``, ``eta_phi = eps * eta``; ``"loss"``: both ``= eta``.
    """

    convention: str = "tian"

    def __post_init__(self):
        if self.convention not in ("tian", "loss"):
            raise ValueError(f"unknown convention {self.convention!r}: expected 'tian' or 'loss'")

    def __call__(self, system, eta):
        h = system.hyper
        eta_phi = h.eps * eta if self.convention == "tian" else eta
        return system.replace(hyper=dataclasses.replace(h, eta_theta=eta, eta_phi=eta_phi))


def _field_names(obj) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)}


@dataclasses.dataclass(frozen=True)
class hyper_param:
    """``param(system, value)`` setting one field of the system's :class:`~dynamics.flow.Hyper`."""

    name: str

    def __call__(self, system, value):
        if self.name not in _field_names(system.hyper):
            raise ValueError(f"Hyper has no field {self.name!r}")
        return system.replace(hyper=dataclasses.replace(system.hyper, **{self.name: value}))


@dataclasses.dataclass(frozen=True)
class model_param:
    """``param(system, value)`` setting one (scalar) field of the model, e.g. ``"sigma2"``."""

    name: str

    def __call__(self, system, value):
        if self.name not in _field_names(system.model):
            raise ValueError(f"model {type(system.model).__name__} has no field {self.name!r}")
        return system.replace(model=dataclasses.replace(system.model, **{self.name: value}))


# --- the numerical core ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Unravel:
    """Hashable inverse of ``ravel_pytree`` for states of one structure."""

    treedef: Any
    shapes: tuple

    @classmethod
    def of(cls, state):
        leaves, treedef = jax.tree_util.tree_flatten(state)
        return cls(treedef, tuple(jnp.shape(x) for x in leaves))

    def __call__(self, z):
        out, i = [], 0
        for shp in self.shapes:
            k = int(np.prod(shp, dtype=int))
            out.append(z[i : i + k].reshape(shp))
            i += k
        return jax.tree_util.tree_unflatten(self.treedef, out)


def _F(system, param, unravel):
    def F(y):
        z, lam = y[:-1], y[-1]
        return ravel_pytree(param(system, lam).field(unravel(z)))[0]

    return F


def _tangent(DF, t_prev):
    # Null vector of the n x (n+1) matrix DF, oriented like the previous tangent.
    _, _, vt = jnp.linalg.svd(DF)
    t = vt[-1]
    return t * jnp.where(jnp.dot(t, t_prev) < 0, -1.0, 1.0)


@functools.partial(jax.jit, static_argnames=("param", "unravel"))
def _Fval(system, y, param, unravel):
    return _F(system, param, unravel)(y)


def _residual(system, y, param, unravel):
    return jnp.max(jnp.abs(_Fval(system, y, param, unravel)))


@functools.partial(jax.jit, static_argnames=("param", "unravel"))
def _jac(system, y, param, unravel):
    return jax.jacfwd(_F(system, param, unravel))(y)


@functools.partial(jax.jit, static_argnames=("param", "unravel", "n_corr"))
def _step(system, y, t, ds, param, unravel, n_corr=8):
    F = _F(system, param, unravel)
    yp = y + ds * t

    def corr(_, x):
        r = jnp.concatenate([F(x), jnp.dot(t, x - yp)[None]])
        J = jnp.concatenate([jax.jacfwd(F)(x), t[None]], axis=0)
        return x - jnp.linalg.solve(J, r)

    yn = jax.lax.fori_loop(0, n_corr, corr, yp)
    res = jnp.max(jnp.abs(F(yn)))
    tn = _tangent(jax.jacfwd(F)(yn), t)
    return yn, tn, res


@functools.partial(jax.jit, static_argnames=("param", "unravel", "n_iter"))
def _fold_newton(system, y, v0, param, unravel, n_iter=25):
    F = _F(system, param, unravel)
    n = y.shape[0] - 1

    def G(u):
        yy, v = u[: n + 1], u[n + 1 :]
        Jz = jax.jacfwd(F)(yy)[:, :n]
        return jnp.concatenate([F(yy), Jz @ v, jnp.dot(v, v0)[None] - 1.0])

    def it(_, u):
        du = jnp.linalg.solve(jax.jacfwd(G)(u), G(u))
        return jnp.where(jnp.all(jnp.isfinite(du)), u - du, u)

    u = jax.lax.fori_loop(0, n_iter, it, jnp.concatenate([y, v0]))
    return u[: n + 1], jnp.max(jnp.abs(G(u)))


def _locate_turn(system, y, t, ds, kw, n_iter=60):
    """The point of the arclength step ``(0, ds]`` from ``y`` where the tangent's parameter
    component vanishes (a fold), by Illinois regula falsi on that component.

    The parameter is stationary at the fold, so its error is quadratic in the arclength error;
    the corrector already solves ``F = 0`` to machine precision at every trial step.
    """
    a, fa = 0.0, float(t[-1])
    b = ds
    best, tb, _ = _step(system, y, t, b, **kw)
    fb = float(tb[-1])
    for _ in range(n_iter):
        if abs(fb) < 1e-15 or abs(b - a) < 1e-15 or fb == fa:
            break
        c = (a * fb - b * fa) / (fb - fa)
        best, tc, _ = _step(system, y, t, c, **kw)
        fc = float(tc[-1])
        if fc * fb < 0:
            a, fa = b, fb
        else:
            fa *= 0.5  # Illinois: keep the old end, halve its value
        b, fb = c, fc
    return np.asarray(best)


# --- the data product ---------------------------------------------------------------------------


@dataclasses.dataclass
class Branch:
    """A continued branch of fixed points.

    Attributes:
        params: (M,) parameter values along the branch, in the order visited.
        states: (M, n) flat fixed points (``ravel_pytree`` order of the starting state).
        eigenvalues: (M, n) Jacobian eigenvalues at each point (decreasing real part).
        kinds: (M,) classification of each point (:func:`~dynamics.analysis.fixed_points.fixed_point_kind`).
        folds: list of ``(param, flat_state)`` saddle-nodes located on the branch.
        unravel: maps a flat state back to a model state.
        residuals: (M,) max-norm of the field at each point.
    """

    params: np.ndarray
    states: np.ndarray
    eigenvalues: np.ndarray
    kinds: np.ndarray
    folds: list
    unravel: Callable
    residuals: np.ndarray
    param_name: str = "param"

    def to_dataset(self):
        """The bifurcation diagram as an ``xarray.Dataset`` (dims ``point``, ``component``, ``mode``)."""
        n = self.states.shape[1]
        return xr.Dataset(
            {
                self.param_name: ("point", self.params),
                "state": (("point", "component"), self.states),
                "eig_real": (("point", "mode"), self.eigenvalues.real),
                "eig_imag": (("point", "mode"), self.eigenvalues.imag),
                "kind": ("point", self.kinds.astype(str)),
                "stable": ("point", np.all(self.eigenvalues.real < 0, axis=1)),
                "residual": ("point", self.residuals),
                "fold_" + self.param_name: ("fold", np.array([f[0] for f in self.folds])),
                "fold_state": (
                    ("fold", "component"),
                    np.array([f[1] for f in self.folds]).reshape(len(self.folds), n),
                ),
            },
            coords={"point": np.arange(len(self.params)), "component": np.arange(n)},
        )


def continue_branch(
    system,
    start,
    param0: float,
    param: Callable,
    *,
    bounds: tuple[float, float],
    ds: float = 0.01,
    ds_min: float = 1e-6,
    ds_max: float = 0.05,
    direction: int = 1,
    max_points: int = 400,
    tol: float = 1e-10,
    param_name: str = "param",
) -> Branch:
    """Follow the fixed point ``start`` of ``param(system, param0)`` as the parameter varies.

    Args:
        system: a :class:`~dynamics.analysis.FlowSystem` (or anything with ``field`` and
            ``replace``).
        start: a fixed point (model state) at ``param0``; it is polished by Newton first.
        param: ``param(system, value) -> system`` (:func:`eta_param`, :func:`hyper_param`,
            :func:`model_param`).
        bounds: stop when the parameter leaves ``[lo, hi]``.
        ds: initial arclength step (adapted between ``ds_min`` and ``ds_max``).
        direction: ``+1`` starts towards increasing parameter, ``-1`` towards decreasing.

    Returns:
        :class:`Branch` with every saddle-node located on the way.
    """
    system = as_system(system)
    lo, hi = bounds
    if not lo <= param0 <= hi:
        raise ValueError(f"param0={param0} lies outside bounds {bounds}")
    if direction not in (1, -1):
        raise ValueError(f"direction must be +1 or -1, got {direction}")
    if not 0 < ds_min <= ds <= ds_max:
        raise ValueError(f"need 0 < ds_min <= ds <= ds_max, got {ds_min}, {ds}, {ds_max}")
    z0 = flatten(start)
    unravel = _Unravel.of(start)
    kw = dict(param=param, unravel=unravel)

    def jac(y):
        return _jac(system, y, **kw)

    # Polish the start at fixed parameter (a few Newton steps in z).
    y = np.concatenate([np.asarray(z0), [param0]])
    for _ in range(20):
        J = np.asarray(jac(y))
        r = np.asarray(_Fval(system, jnp.asarray(y), **kw))
        if np.max(np.abs(r)) < 1e-14:
            break
        y[:-1] -= np.linalg.lstsq(J[:, :-1], r, rcond=None)[0]
    y = jnp.asarray(y)
    res0 = float(_residual(system, y, **kw))
    if res0 > tol:
        raise ValueError(f"start is not a fixed point at param0={param0} (residual {res0:.3g})")
    sv = np.linalg.svd(np.asarray(jac(y))[:, :-1], compute_uv=False)
    if sv[-1] <= 1e-9 * max(1.0, sv[0]):
        raise ValueError(
            f"the fixed point at param0={param0} is not isolated (smallest singular value of the "
            f"Jacobian {sv[-1]:.3g}); continuation needs isolated fixed points, e.g. the per-mode "
            "reduction instead of the matrix model"
        )
    e = jnp.zeros_like(y).at[-1].set(float(direction))
    t = _tangent(jac(y), e)
    if float(t[-1]) * direction < 0:
        t = -t

    ys, res_list = [np.asarray(y)], [res0]
    tl = [float(t[-1])]
    folds = []
    n = z0.shape[0]
    while len(ys) < max_points:
        yn, tn, res = _step(system, y, t, ds, **kw)
        if not (np.isfinite(float(res)) and float(res) < tol):
            ds *= 0.5
            if ds < ds_min:
                break
            continue
        if float(tn[-1]) * tl[-1] < 0:  # the tangent's parameter component turned: a fold
            yf = _locate_turn(system, y, t, ds, kw)
            folds.append((float(yf[-1]), yf[:-1]))
        y, t = yn, tn
        if not lo <= float(y[-1]) <= hi:
            break
        ys.append(np.asarray(y))
        res_list.append(float(res))
        tl.append(float(t[-1]))
        ds = min(ds * 1.3, ds_max)

    Y = np.array(ys)
    Js = np.asarray(jax.vmap(lambda yy: _jac(system, yy, **kw))(jnp.asarray(Y)))[:, :, :n]
    eigs = []
    for J in Js:
        ev = np.linalg.eigvals(J)
        eigs.append(ev[np.lexsort((-ev.imag, -ev.real))])
    eigs = np.array(eigs)
    kinds = np.array([fixed_point_kind(ev) for ev in eigs])
    return Branch(
        params=Y[:, -1],
        states=Y[:, :-1],
        eigenvalues=eigs,
        kinds=kinds,
        folds=folds,
        unravel=unravel,
        residuals=np.array(res_list),
        param_name=param_name,
    )


def bifurcation_diagram(system, start, param0: float, param: Callable, *, bounds, **kw) -> Branch:
    """Continue ``start`` both ways from ``param0`` and join the two halves into one branch,
    ordered along the arclength (``.to_dataset()`` gives the data product).

    Keyword arguments go to :func:`continue_branch`.
    """
    down = continue_branch(system, start, param0, param, bounds=bounds, direction=-1, **kw)
    up = continue_branch(system, start, param0, param, bounds=bounds, direction=1, **kw)

    def join(a, b):
        return np.concatenate([a[::-1], b[1:]])

    return Branch(
        params=join(down.params, up.params),
        states=join(down.states, up.states),
        eigenvalues=join(down.eigenvalues, up.eigenvalues),
        kinds=join(down.kinds, up.kinds),
        folds=down.folds[::-1] + up.folds,
        unravel=up.unravel,
        residuals=join(down.residuals, up.residuals),
        param_name=up.param_name,
    )


def locate_fold(system, state, param_value: float, param: Callable):
    """Refine a saddle-node near ``(state, param_value)``; returns ``(param, state, residual)``."""
    system = as_system(system)
    z0 = flatten(state)
    unravel = _Unravel.of(state)
    y = jnp.concatenate([z0, jnp.asarray([param_value], z0.dtype)])
    _, _, vt = jnp.linalg.svd(_jac(system, y, param=param, unravel=unravel)[:, :-1])
    yf, rf = _fold_newton(system, y, vt[-1], param=param, unravel=unravel)
    return float(yf[-1]), unravel(yf[:-1]), float(rf)
