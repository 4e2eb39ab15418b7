"""The model interface: what every toy system defines, and the hooks it may override.

A model is a frozen dataclass registered as a JAX pytree (its data are leaves, so a sweep can
vmap over them) that subclasses :class:`Model`. It defines its loss with the online parameters
and the target as *separate arguments*, ``loss(enc, pred, tgt, batch)``; where the
stop-gradient acts is decided by :mod:`dynamics.flow`, never inside the loss. Everything else
(the gradient flow, GD/SGD, Jacobians, fixed points) is derived from the loss.

A model also carries its closed forms (fixed points, thresholds, invariants, exact solutions)
as methods beside its definition, so tests and figures read theory from the model.

Required: :meth:`Model.loss`, :meth:`Model.expected_loss`, :meth:`Model.sample`,
:attr:`Model.trains_predictor`, :meth:`Model.encoder_norm`. Optional hooks with defaults:
:meth:`Model.predictor_drift` (a non-gradient predictor rule), :meth:`Model.slot_drift` (the
rule of extra state slots), :meth:`Model.singular_values` and :meth:`Model.collapse_measure`
(per-mode collapse scores, read by the classifier, the sweeps and the figures).

**State slots and their update rules.** Every slot of a :class:`~dynamics.types.State` follows
one declared rule, checked when the model class is defined and again when a state meets it:

- ``enc``: its gradient, ``d enc/dt = -dL/d enc - eta_theta enc``;
- ``pred``: :attr:`Model.pred_rule`, ``"gradient"`` (``eps d pred/dt = -dL/d pred - eta_phi
  pred``), ``"fixed"`` or ``"drift"`` (``eps d pred/dt = predictor_drift(...)``, e.g.
  DirectPred's running correlation);
- ``tgt``: the variant's target rule (an EMA of the encoder, or a copy every ``k`` steps;
  :class:`~dynamics.types.Variant`);
- extra slots (``SlotState.aux``, a dict; :class:`~dynamics.types.SlotState`): :attr:`Model.slots` maps each name to ``"gradient"``
  (``d a/dt = -dL/d a``), ``"drift"`` (``d a/dt = slot_drift(...)[name]``: a running
  statistic, a centre, BatchNorm moments; an EMA with rate ``r`` is the drift
  ``r (value - a)``, whose Euler step is the EMA ``a <- m a + (1 - m) value``, ``m = 1 - r lr``)
  or ``"fixed"``. A model with slots receives them as the last argument of its losses,
  ``loss(enc, pred, tgt, batch, aux)`` and ``expected_loss(enc, pred, tgt, aux)``.

The drift hooks get the hyperparameters (``hyper``) besides the state and the minibatch.

**Lane axes, declared per field.** The batched solvers give every model leaf a leading lane
axis. A field's ``lane_rank`` (its number of axes for one lane; default 0) is declared in its
metadata, ``X: jax.Array = per_lane(2)``; :meth:`Model.lane_broadcast` broadcasts every leaf
that has exactly that many axes and keeps those with one more (already per lane).
"""

from __future__ import annotations

import abc
import dataclasses
from typing import ClassVar

import jax.numpy as jnp

from dynamics.types import broadcast_scalar_leaves

#: the update rules a ``pred`` slot or an extra slot can declare
RULES = ("gradient", "fixed", "drift")
#: the metadata key of a field's lane rank (see :func:`per_lane`)
LANE_RANK = "lane_rank"


def per_lane(rank: int, **kw):
    """A dataclass field whose value has ``rank`` axes for one lane (``X: jax.Array =
    per_lane(2)`` for an ``n1 x n1`` matrix); :meth:`Model.lane_broadcast` reads it. Other
    ``dataclasses.field`` arguments (``default``) pass through."""
    return dataclasses.field(metadata={LANE_RANK: int(rank)}, **kw)


class Model(abc.ABC):
    """Base of every toy model (see the module docstring)."""

    #: names of the ``enc``, ``pred`` and ``tgt`` parameters, for labels and datasets
    names: ClassVar[tuple[str, str, str]] = ("enc", "pred", "tgt")
    #: extra state slots (``SlotState.aux``) and their update rules, e.g. ``{"center": "drift"}``
    slots: ClassVar[dict[str, str]] = {}
    #: the model's name in tables (default: the class name)
    label: ClassVar[str | None] = None

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        for name, rule in dict(cls.slots).items():
            if rule not in RULES:
                raise TypeError(f"{cls.__name__}.slots[{name!r}] = {rule!r}: the rule must be "
                                f"one of {', '.join(RULES)}")
            if name in ("enc", "pred", "tgt"):
                raise TypeError(f"{cls.__name__}.slots: {name!r} is a State field, not an "
                                "extra slot")
            if rule == "drift" and cls.slot_drift is Model.slot_drift:
                raise TypeError(f"{cls.__name__}.slots[{name!r}] is a drift: the class must "
                                "define slot_drift")

    @abc.abstractmethod
    def loss(self, enc, pred, tgt, batch):
        """Mean per-sample loss on a sampled minibatch ``batch`` (see :meth:`sample`)."""

    @abc.abstractmethod
    def expected_loss(self, enc, pred, tgt):
        """The loss averaged over data and augmentation, in closed form."""

    @abc.abstractmethod
    def sample(self, key, batch_size: int, dtype=jnp.float64):
        """A minibatch of two views, the ``batch`` argument of :meth:`loss`."""

    @property
    @abc.abstractmethod
    def trains_predictor(self) -> bool:
        """Whether the ``pred`` parameter follows its gradient (else it stays where it is,
        unless :meth:`predictor_drift` moves it)."""

    @abc.abstractmethod
    def encoder_norm(self, enc):
        """Size of the representation map, used by the collapse criterion."""

    # --- update rules ---------------------------------------------------------------------

    @property
    def pred_rule(self) -> str:
        """How ``pred`` moves (one of :data:`RULES`); default ``"gradient"`` when
        :attr:`trains_predictor`, else ``"fixed"``. A model whose predictor follows
        :meth:`predictor_drift` returns ``"drift"``."""
        return "gradient" if self.trains_predictor else "fixed"

    def rules(self) -> dict:
        """``{slot: rule}`` for ``pred`` and every extra slot."""
        return {"pred": self.pred_rule, **self.slots}

    def check_state(self, state) -> None:
        """``ValueError`` (one line) unless ``state.aux`` holds exactly the declared slots."""
        aux = getattr(state, "aux", None)
        want = set(self.slots)
        have = set() if aux is None else set(aux)
        if not isinstance(aux, (dict, type(None))) or have != want:
            raise ValueError(
                f"{type(self).__name__} declares the extra slots "
                f"{sorted(want) or 'none'}; the state's aux holds "
                f"{sorted(have) if isinstance(aux, (dict, type(None))) else type(aux).__name__}"
                " (give SlotState(enc, pred, tgt, {slot: array}))")

    # --- hooks with defaults --------------------------------------------------------------

    def predictor_drift(self, enc, pred, tgt, batch=None, hyper=None):
        """The predictor's rule when :attr:`pred_rule` is ``"drift"``: ``eps * dpred/dt =
        drift``. ``batch`` is ``None`` for the expected-loss flow; ``hyper`` is the
        :class:`~dynamics.types.Hyper` of the run. The default returns ``None`` (no drift)."""
        return None

    def slot_drift(self, state, batch=None, hyper=None) -> dict:
        """``{slot: d slot/dt}`` for every extra slot whose rule is ``"drift"``, from the
        whole ``state`` (its ``aux`` included), the minibatch (``None`` for the expected
        flow) and the hyperparameters. Required when :attr:`slots` declares a drift."""
        return {}

    def lane_broadcast(self, n: int) -> "Model":
        """This model with a leading lane axis of length ``n`` on every leaf that lacks one.

        Derived from the fields: a field's lane rank (:func:`per_lane`, default 0) is its
        number of axes for one lane; a leaf with that many axes is broadcast, one with one
        more is already per lane and kept, anything else is a ``ValueError`` naming the field.
        A field holding a model is broadcast by that model's own rule; static fields are left
        alone. The batched solvers also use this to tell leaves shared by all lanes (those it
        broadcasts) from per-lane ones.
        """
        if not dataclasses.is_dataclass(self):
            return broadcast_scalar_leaves(self, n)
        changes = {}
        for f in dataclasses.fields(self):
            if f.metadata.get("static"):
                continue
            value = getattr(self, f.name)
            if value is None or isinstance(value, (str, bool)):
                continue
            if isinstance(value, Model):
                changes[f.name] = value.lane_broadcast(n)
                continue
            if LANE_RANK not in f.metadata and not hasattr(value, "shape") and not isinstance(
                    value, (int, float)):
                changes[f.name] = broadcast_scalar_leaves(value, n)  # a pytree of scalars
                continue
            rank = f.metadata.get(LANE_RANK, 0)
            x = jnp.asarray(value)
            if x.ndim == rank:
                changes[f.name] = jnp.broadcast_to(x, (n,) + x.shape)
            elif x.ndim == rank + 1:
                changes[f.name] = x
            else:
                raise ValueError(
                    f"{type(self).__name__}.{f.name} has {x.ndim} axes (shape {x.shape}); "
                    f"declared {rank} for one lane, so give {rank} (shared by all lanes) or "
                    f"{rank + 1} (a leading lane axis)")
        return dataclasses.replace(self, **changes) if changes else self

    def singular_values(self, enc):
        """Singular values of the encoder, descending, shape ``(..., r)``.

        The default treats every element of ``enc`` as one scalar encoder (``r = 1``).
        """
        return jnp.abs(enc)[..., None]

    def collapse_measure(self, enc):
        """Per-mode collapse scores, shape ``(..., r)``: a mode is collapsed when its score
        is at most the collapse threshold, the representation when every mode is.

        The default is :meth:`singular_values` (for a scalar encoder ``|theta|``, today's
        encoder-size rule). A model whose collapse is not a vanishing encoder (a uniform
        softmax output, a cosine loss that conserves norms) returns its own scores.
        """
        return self.singular_values(enc)
