"""From a model's loss to its dynamics: gradients, vector field, update rule, Jacobian.

Conventions (docs/theory.md section 1)::

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

import abc
import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from dynamics.compat import duck_hook
from dynamics.models.base import RULES, Model
from dynamics.types import VARIANTS, Hyper, SlotState, State, Variant, make_state

__all__ = [
    "FlowSystem",
    "flat_field",
    "Hyper",
    "SlotState",
    "State",
    "System",
    "VARIANTS",
    "Variant",
    "gd_step",
    "initial_state",
    "jacobian",
    "jacobian_matrix",
    "loss_gradients",
    "vector_field",
]


def _target(variant: Variant, state: State):
    return state.tgt if variant.has_target else state.enc


def _has_slots(model) -> bool:
    return isinstance(model, Model) and bool(model.slots)


def _loss_of(model, state: State, loss_fn: Callable | None, batch=None):
    """``(e, p, t, a) -> scalar``: the model's loss (expected, or on ``batch``) with its extra
    slots ``a`` passed last when it declares any (``loss_fn(e, p, t)`` when given)."""
    if loss_fn is not None:
        return lambda e, p, t, a: loss_fn(e, p, t)
    if _has_slots(model):
        if batch is None:
            return lambda e, p, t, a: model.expected_loss(e, p, t, a)
        return lambda e, p, t, a: model.loss(e, p, t, batch, a)
    if batch is None:
        return lambda e, p, t, a: model.expected_loss(e, p, t)
    return lambda e, p, t, a: model.loss(e, p, t, batch)


def _gradient_slots(model) -> tuple[str, ...]:
    if not _has_slots(model):
        return ()
    return tuple(k for k, r in model.slots.items() if r == "gradient")


def loss_gradients(model, variant: Variant, state: State, loss_fn: Callable | None = None,
                   batch=None):
    """Gradients of the loss with the stop-gradient placed as ``variant`` says.

    Args:
        loss_fn: ``loss_fn(enc, pred, tgt) -> scalar``; defaults to the model's loss:
            ``model.expected_loss``, or ``model.loss`` on ``batch`` when one is given (with the
            extra slots ``state.aux`` passed last for a model that declares slots).

    Returns:
        ``State(g_enc, g_pred, g_tgt)`` (a :class:`~dynamics.types.SlotState` with ``g_aux``
        when gradient-ruled extra slots exist); ``g_tgt`` is ``None`` unless the variant is BYOL
        without stop-gradient; ``g_aux`` holds the gradients of the extra slots whose rule is
        ``"gradient"`` (``None`` when there are none).
    """
    f = _loss_of(model, state, loss_fn, batch)
    aux = getattr(state, "aux", None)
    gslots = _gradient_slots(model)

    def split(a_g):
        # the gradient-ruled slots are differentiated, the others enter as plain values
        return {**aux, **a_g} if aux is not None else None

    a_g = {k: aux[k] for k in gslots}
    if variant.stop_grad:
        g_enc, g_pred, g_aux = jax.grad(
            lambda e, p, ag: f(e, p, _target(variant, state), split(ag)), argnums=(0, 1, 2)
        )(state.enc, state.pred, a_g)
        return make_state(g_enc, g_pred, None, g_aux or None)
    if variant.target == "simsiam":
        g_enc, g_pred, g_aux = jax.grad(lambda e, p, ag: f(e, p, e, split(ag)), argnums=(0, 1, 2))(
            state.enc, state.pred, a_g
        )
        return make_state(g_enc, g_pred, None, g_aux or None)
    g_enc, g_pred, g_tgt, g_aux = jax.grad(
        lambda e, p, t, ag: f(e, p, t, split(ag)), argnums=(0, 1, 2, 3)
    )(state.enc, state.pred, state.tgt, a_g)
    return make_state(g_enc, g_pred, g_tgt, g_aux or None)


def _tmap(f, *trees):
    return jax.tree_util.tree_map(f, *trees)


def _pred_rule(model, variant: Variant, state: State, batch, hyper):
    """``(rule, drift)``: how the predictor moves, and its drift when the rule is ``"drift"``.

    A :class:`~dynamics.models.Model` declares the rule (:attr:`~dynamics.models.Model.pred_rule`);
    with ``"drift"`` the predictor state moves by ``drift / eps`` (flow) or ``lr/eps * drift``
    (discrete step) instead of following its gradient (DirectPred's running correlation,
    :mod:`dynamics.models.linear`); the encoder still follows the loss.
    """
    args = (state.enc, state.pred, _target(variant, state), batch)
    if isinstance(model, Model):
        rule = model.pred_rule
        if rule not in RULES:
            raise ValueError(f"{type(model).__name__}.pred_rule is {rule!r}: expected one of "
                             f"{', '.join(RULES)}")
        if rule != "drift":
            return rule, None
        drift = model.predictor_drift(*args, hyper=hyper)
        if drift is None:
            raise ValueError(f"{type(model).__name__} declares a drift predictor but its "
                             "predictor_drift returned None")
        return rule, drift
    hook = duck_hook(model, "predictor_drift")
    drift = None if hook is None else hook(*args)
    if drift is not None:
        return "drift", drift
    return ("gradient" if model.trains_predictor else "fixed"), None


def _check(model, variant: Variant, state: State) -> None:
    if isinstance(model, Model):
        model.check_state(state)
    if variant.has_target and state.tgt is None:
        raise ValueError(f"variant {variant.name!r} has a target of its own: give State(enc, "
                         "pred, tgt)")


def _slot_updates(model, state: State, g: State, batch, hyper):
    """``{slot: d slot/dt}`` of the extra slots under their declared rules."""
    if not _has_slots(model):
        return None
    drifts = model.slot_drift(state, batch, hyper)
    out = {}
    for name, rule in model.slots.items():
        a = state.aux[name]
        if rule == "gradient":
            out[name] = _tmap(lambda g_: -g_, g.aux[name])
        elif rule == "drift":
            if name not in drifts:
                raise ValueError(f"{type(model).__name__}.slot_drift gave no drift for the slot "
                                 f"{name!r}")
            out[name] = drifts[name]
        else:
            out[name] = _tmap(jnp.zeros_like, a)
    return out


def vector_field(model, variant: Variant, hyper: Hyper, state: State) -> State:
    """Gradient-flow vector field of the expected loss (docs/theory.md section 1)."""
    _check(model, variant, state)
    if variant.target_rule == "copy":
        raise ValueError(f"variant {variant.name!r} copies its target every "
                         f"{variant.copy_every} steps: it has no flow (use gd or sgd)")
    g = loss_gradients(model, variant, state)
    d_enc = _tmap(lambda g_, w: -(g_ + hyper.eta_theta * w), g.enc, state.enc)
    rule, drift = _pred_rule(model, variant, state, None, hyper)
    if rule == "drift":
        d_pred = _tmap(lambda d: d / hyper.eps, drift)
    elif rule == "gradient":
        d_pred = _tmap(lambda g_, w: -(g_ + hyper.eta_phi * w) / hyper.eps, g.pred, state.pred)
    else:
        d_pred = _tmap(jnp.zeros_like, state.pred)
    d_tgt = None
    if variant.has_target:
        d_tgt = _tmap(lambda w, wa: hyper.beta * (w - wa), state.enc, state.tgt)
        if g.tgt is not None:
            d_tgt = _tmap(lambda d, g_: d - g_, d_tgt, g.tgt)
    return make_state(d_enc, d_pred, d_tgt, _slot_updates(model, state, g, None, hyper))


def gd_step(model, variant: Variant, hyper: Hyper, state: State, lr, batch=None,
            step=None) -> State:
    """One discrete step of (S)GD with step ``lr`` in ODE time (docs/theory.md section 1).

    ``enc -= lr (g_enc + eta_theta enc)``, ``pred -= (lr/eps) (g_pred + eta_phi pred)`` and,
    for BYOL, the EMA ``tgt = m tgt + (1 - m) enc_new`` with momentum ``m = 1 - beta lr``
    (the target follows the *updated* encoder, as in BYOL); a variant with ``copy_every = k``
    instead sets ``tgt = enc_new`` after every ``k``-th step (``step``, the 0-based index of
    this step, is then required). Extra slots move by ``lr`` times their rule's rate. With
    ``batch=None`` the gradient is the expected (population) one, so the step is explicit
    Euler on the flow; otherwise it is the minibatch gradient of ``model.loss`` on ``batch``.
    """
    _check(model, variant, state)
    g = loss_gradients(model, variant, state, batch=batch)
    enc = _tmap(lambda w, g_: w - lr * (g_ + hyper.eta_theta * w), state.enc, g.enc)
    rule, drift = _pred_rule(model, variant, state, batch, hyper)
    if rule == "drift":
        pred = _tmap(lambda w, d: w + (lr / hyper.eps) * d, state.pred, drift)
    elif rule == "gradient":
        pred = _tmap(
            lambda w, g_: w - (lr / hyper.eps) * (g_ + hyper.eta_phi * w), state.pred, g.pred
        )
    else:
        pred = state.pred
    tgt = None
    if variant.target_rule == "copy":
        if step is None:
            raise ValueError(f"variant {variant.name!r} copies its target every "
                             f"{variant.copy_every} steps: gd_step needs the step index")
        copy = (jnp.asarray(step) + 1) % variant.copy_every == 0
        tgt = _tmap(lambda wa, w: jnp.where(copy, w, wa), state.tgt, enc)
        if g.tgt is not None:
            tgt = _tmap(lambda wa, g_: wa - lr * g_, tgt, g.tgt)
    elif variant.has_target:
        m = 1.0 - hyper.beta * lr
        tgt = _tmap(lambda wa, w: m * wa + (1.0 - m) * w, state.tgt, enc)
        if g.tgt is not None:
            tgt = _tmap(lambda wa, g_: wa - lr * g_, tgt, g.tgt)
    aux = None
    d_aux = _slot_updates(model, state, g, batch, hyper)
    if d_aux is not None:
        aux = {k: _tmap(lambda a, d: a + lr * d, state.aux[k], d_aux[k]) for k in d_aux}
    return make_state(enc, pred, tgt, aux)


def jacobian_matrix(model, variant: Variant, hyper: Hyper, state: State):
    """Jacobian of :func:`vector_field` at ``state``, as a dense matrix over the flattened state.

    The flattening order is that of ``jax.flatten_util.ravel_pytree(state)``. The same as
    ``jacobian(FlowSystem(model, hyper, variant), state)``.
    """
    return jacobian(FlowSystem(model, hyper, variant), state)


# --- a dynamical system as a pytree ---------------------------------------------------------


class System(abc.ABC):
    """A dynamical system ``d state/dt = field(state)`` that is also a pytree.

    Its array leaves (a model's data, the hyperparameters) are traced, so one compiled program
    (an integrator, a Newton solve, a Jacobian) serves every parameter value of the same
    shapes. :class:`FlowSystem` is a model's gradient flow;
    :class:`dynamics.analysis.slowfast.ReducedSystem` is its slow reduction.
    """

    @abc.abstractmethod
    def field(self, state):
        """The time derivative at ``state`` (a pytree shaped like ``state``)."""

    def replace(self, **kw):
        return dataclasses.replace(self, **kw)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FlowSystem(System):
    """The flow ``d state/dt = vector_field(model, variant, hyper, state)``."""

    model: Any
    hyper: Hyper
    variant: Variant = dataclasses.field(default=Variant(), metadata=dict(static=True))

    def field(self, state: State) -> State:
        return vector_field(self.model, self.variant, self.hyper, state)


def flat_field(system: System, like):
    """``(f, unravel)``: the field as a map of flat vectors, for states shaped like ``like``."""
    _, unravel = ravel_pytree(like)

    def f(z):
        return ravel_pytree(system.field(unravel(z)))[0]

    return f, unravel


def jacobian(system: System, state):
    """Dense Jacobian of ``system.field`` at ``state`` (flattened in ``ravel_pytree`` order)."""
    f, _ = flat_field(system, state)
    return jax.jacfwd(f)(ravel_pytree(state)[0])


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
