"""From a model's loss to its dynamics: gradients, vector field, update rule, Jacobian.

Conventions (THEORY.md section 1)::

    d enc/dt       = -dL/d enc  - eta_theta * enc
    eps * d pred/dt = -dL/d pred - eta_phi  * pred
    d tgt/dt       = beta * (enc - tgt)                  (BYOL; SimSiam's target is enc)

How the stop-gradient is written. A model's loss takes the online parameters and the target as
separate arguments, ``L(enc, pred, tgt)``. With stop-gradient the flow uses the *partial*
derivative in the online arguments, with ``tgt`` passed in as a plain value; without it,
SimSiam uses the total derivative of ``L(enc, pred, enc)`` and BYOL also sends ``dL/d tgt`` to
its target. ``jax.lax.stop_gradient`` is never used here: it would also zero the field's own
Jacobian along the target path, and every Jacobian-based result (implicit solvers, fixed-point
spectra) would be wrong.

Tian, Chen & Ganguli (2021) write a predictor learning-rate ratio ``alpha_p`` and one weight
decay ``eta``: that is ``Hyper.tian(eta, alpha_p)`` (``eps = 1/alpha_p``, ``eta_phi = eps*eta``).
The slow-fast convention with weight decay inside the loss is ``Hyper.loss_decay(eta, eps)``
(``eta_phi = eta``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


class State(NamedTuple):
    """Parameters of a two-view model: encoder, predictor and (BYOL only) target.

    ``tgt`` is ``None`` for SimSiam, whose target is the encoder itself.
    """

    enc: Any
    pred: Any
    tgt: Any = None


@dataclasses.dataclass(frozen=True)
class Variant:
    """Which target the loss compares against, and whether the gradient stops there.

    Attributes:
        target: ``"simsiam"`` (the target is the encoder itself) or ``"byol"`` (an EMA target).
        stop_grad: ``True`` holds the target constant when differentiating (the methods as
            published). ``False`` lets the gradient flow through the target branch: for SimSiam
            into the encoder, for BYOL into the target parameters (which also keep their EMA
            drift).
    """

    target: str = "simsiam"
    stop_grad: bool = True

    def __post_init__(self):
        if self.target not in ("simsiam", "byol"):
            raise ValueError(f"unknown target {self.target!r}: expected 'simsiam' or 'byol'")

    @property
    def name(self) -> str:
        return self.target + ("" if self.stop_grad else "-nosg")

    @property
    def has_target(self) -> bool:
        return self.target == "byol"

    @classmethod
    def from_name(cls, name: str) -> "Variant":
        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}: expected one of {', '.join(VARIANTS)}")
        return VARIANTS[name]


VARIANTS = {
    v.name: v
    for v in (
        Variant("simsiam", True),
        Variant("simsiam", False),
        Variant("byol", True),
        Variant("byol", False),
    )
}


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Hyper:
    """Time scales and decays of the dynamics; every field is a pytree leaf (vmappable).

    Attributes:
        eps: predictor time scale (> 0); the predictor moves ``1/eps`` times faster.
        eta_theta: weight decay of the encoder.
        eta_phi: weight decay of the predictor (as it enters ``eps * dpred/dt``).
        beta: EMA rate of the BYOL target, ``d tgt/dt = beta (enc - tgt)``. Unused by SimSiam.
    """

    eps: Any = 1.0
    eta_theta: Any = 0.0
    eta_phi: Any = 0.0
    beta: Any = 1.0

    @classmethod
    def tian(cls, eta, alpha_p=1.0, beta=1.0) -> "Hyper":
        """Tian et al. convention: ``eps = 1/alpha_p``, ``eta_theta = eta``, ``eta_phi = eps*eta``."""
        eps = 1.0 / alpha_p
        return cls(eps=eps, eta_theta=eta, eta_phi=eps * eta, beta=beta)

    @classmethod
    def loss_decay(cls, eta, eps=1.0, beta=1.0) -> "Hyper":
        """Weight decay inside the loss (the slow-fast convention): ``eta_theta = eta_phi = eta``."""
        return cls(eps=eps, eta_theta=eta, eta_phi=eta, beta=beta)

    @classmethod
    def from_convention(cls, convention: str, eta, eps, beta=1.0) -> "Hyper":
        if convention == "tian":
            return cls(eps=eps, eta_theta=eta, eta_phi=eps * eta, beta=beta)
        if convention == "loss":
            return cls(eps=eps, eta_theta=eta, eta_phi=eta, beta=beta)
        raise ValueError(f"unknown convention {convention!r}: expected 'loss' or 'tian'")


def _target(variant: Variant, state: State):
    return state.tgt if variant.has_target else state.enc


def loss_gradients(model, variant: Variant, state: State, loss_fn: Callable | None = None):
    """Gradients of the loss with the stop-gradient placed as ``variant`` says.

    Args:
        loss_fn: ``loss_fn(enc, pred, tgt) -> scalar``; defaults to ``model.expected_loss``.

    Returns:
        ``State(g_enc, g_pred, g_tgt)``; ``g_tgt`` is ``None`` unless the variant is BYOL
        without stop-gradient.
    """
    if loss_fn is None:
        loss_fn = model.expected_loss
    if variant.stop_grad:
        g_enc, g_pred = jax.grad(loss_fn, argnums=(0, 1))(
            state.enc, state.pred, _target(variant, state)
        )
        return State(g_enc, g_pred, None)
    if variant.target == "simsiam":
        g_enc, g_pred = jax.grad(lambda e, p: loss_fn(e, p, e), argnums=(0, 1))(
            state.enc, state.pred
        )
        return State(g_enc, g_pred, None)
    g_enc, g_pred, g_tgt = jax.grad(loss_fn, argnums=(0, 1, 2))(state.enc, state.pred, state.tgt)
    return State(g_enc, g_pred, g_tgt)


def _tmap(f, *trees):
    return jax.tree_util.tree_map(f, *trees)


def _predictor_drift(model, variant: Variant, state: State, batch):
    """A model's own predictor rule, if it has one (hook for non-gradient predictors).

    A model may define ``predictor_drift(enc, pred, tgt, batch) -> tree | None``; when it
    returns a tree, the predictor state moves by ``drift / eps`` (flow) or ``lr/eps * drift``
    (discrete step) instead of following its gradient. DirectPred's running correlation is
    such a rule (:mod:`dynamics.models.linear`). The encoder still follows the loss.
    """
    hook = getattr(model, "predictor_drift", None)
    if hook is None:
        return None
    return hook(state.enc, state.pred, _target(variant, state), batch)


def vector_field(model, variant: Variant, hyper: Hyper, state: State) -> State:
    """Gradient-flow vector field of the expected loss (THEORY.md section 1)."""
    g = loss_gradients(model, variant, state)
    d_enc = _tmap(lambda g_, w: -(g_ + hyper.eta_theta * w), g.enc, state.enc)
    drift = _predictor_drift(model, variant, state, None)
    if drift is not None:
        d_pred = _tmap(lambda d: d / hyper.eps, drift)
    elif model.trains_predictor:
        d_pred = _tmap(lambda g_, w: -(g_ + hyper.eta_phi * w) / hyper.eps, g.pred, state.pred)
    else:
        d_pred = _tmap(jnp.zeros_like, state.pred)
    d_tgt = None
    if variant.has_target:
        d_tgt = _tmap(lambda w, wa: hyper.beta * (w - wa), state.enc, state.tgt)
        if g.tgt is not None:
            d_tgt = _tmap(lambda d, g_: d - g_, d_tgt, g.tgt)
    return State(d_enc, d_pred, d_tgt)


def gd_step(model, variant: Variant, hyper: Hyper, state: State, lr, batch=None) -> State:
    """One discrete step of (S)GD with step ``lr`` in ODE time (THEORY.md section 1).

    ``enc -= lr (g_enc + eta_theta enc)``, ``pred -= (lr/eps) (g_pred + eta_phi pred)`` and,
    for BYOL, the EMA ``tgt = m tgt + (1 - m) enc_new`` with momentum ``m = 1 - beta lr``
    (the target follows the *updated* encoder, as in BYOL). With ``batch=None`` the gradient is
    the expected (population) one, so the step is explicit Euler on the flow; otherwise it is
    the minibatch gradient of ``model.loss`` on ``batch``.
    """
    loss_fn = None if batch is None else (lambda e, p, t: model.loss(e, p, t, batch))
    g = loss_gradients(model, variant, state, loss_fn)
    enc = _tmap(lambda w, g_: w - lr * (g_ + hyper.eta_theta * w), state.enc, g.enc)
    drift = _predictor_drift(model, variant, state, batch)
    if drift is not None:
        pred = _tmap(lambda w, d: w + (lr / hyper.eps) * d, state.pred, drift)
    elif model.trains_predictor:
        pred = _tmap(
            lambda w, g_: w - (lr / hyper.eps) * (g_ + hyper.eta_phi * w), state.pred, g.pred
        )
    else:
        pred = state.pred
    tgt = None
    if variant.has_target:
        m = 1.0 - hyper.beta * lr
        tgt = _tmap(lambda wa, w: m * wa + (1.0 - m) * w, state.tgt, enc)
        if g.tgt is not None:
            tgt = _tmap(lambda wa, g_: wa - lr * g_, tgt, g.tgt)
    return State(enc, pred, tgt)


def jacobian_matrix(model, variant: Variant, hyper: Hyper, state: State):
    """Jacobian of :func:`vector_field` at ``state``, as a dense matrix over the flattened state.

    The flattening order is that of ``jax.flatten_util.ravel_pytree(state)``.
    """
    flat, unravel = ravel_pytree(state)

    def f(z):
        return ravel_pytree(vector_field(model, variant, hyper, unravel(z)))[0]

    return jax.jacfwd(f)(flat)


TARGET_STARTS = ("online", "zero")


def initial_state(variant: Variant, enc, pred, tgt=None, *, target0: str = "online") -> State:
    """A state for ``variant``; SimSiam has no target.

    BYOL's target starts at ``tgt`` when given, else as ``target0`` says: ``"online"`` (the
    default) copies the encoder, ``theta_a(0) = theta(0)``; ``"zero"`` starts it at 0,
    ``theta_a(0) = 0``, as Tian, Chen & Ganguli (2021) do throughout their analysis (Eqn. 15,
    Fig. 7), which makes the EMA act as a curriculum from the start.
    """
    if target0 not in TARGET_STARTS:
        raise ValueError(f"unknown target0 {target0!r}: expected 'online' or 'zero'")
    if variant.has_target:
        if tgt is None:
            tgt = enc if target0 == "online" else jnp.zeros_like(jnp.asarray(enc))
        return State(enc, pred, tgt)
    return State(enc, pred, None)
