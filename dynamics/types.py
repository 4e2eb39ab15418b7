"""The shared vocabulary on the ground floor: states, variants, hyperparameters, status codes.

Everything here is plain data. Models, the dynamics (:mod:`dynamics.flow`), the integrators
(:mod:`dynamics.solve`), the analyses and the sweeps all stand on this module, and it imports
nothing of the package.

Lane-shaped aliases: a *batched* call integrates ``n`` independent trajectories (lanes) at once;
every leaf of a batched state, and every per-lane parameter, carries a leading lane axis of length
``n``. The aliases below name those shapes in signatures (``jaxtyping`` notation).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, PyTree

from dynamics.checks import check_choice, check_real

# --- lane-shaped aliases --------------------------------------------------------------------

#: One number per lane, shape (n,).
LaneScalar = Float[Array, " lanes"]
#: Any per-lane array: a leading lane axis, then the leaf's own shape.
LaneArray = Float[Array, "lanes *shape"]
#: A pytree (e.g. a :class:`State`) whose every leaf carries the lane axis.
LaneTree = PyTree[LaneArray]
#: A per-lane :class:`Status` code, int8 of shape (n,).
LaneStatus = Int[Array, " lanes"]
#: A per-lane boolean mask, shape (n,).
LaneMask = Bool[Array, " lanes"]


def broadcast_scalar_leaves(tree, n: int):
    """``tree`` with every scalar (0-d) leaf given a leading lane axis of length ``n``.

    Leaves with ``ndim >= 1`` are assumed to carry the lane axis already and are left alone.
    """
    return jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x, (n,)) if jnp.ndim(x) == 0 else jnp.asarray(x), tree
    )


# --- state ----------------------------------------------------------------------------------


class State(NamedTuple):
    """Parameters of a two-view model: encoder, predictor and (BYOL only) target.

    ``tgt`` is ``None`` for SimSiam, whose target is the encoder itself. A model that declares
    extra state slots uses :class:`SlotState`.
    """

    enc: Any
    pred: Any
    tgt: Any = None


class SlotState(NamedTuple):
    """A :class:`State` with the extra slots of a model that declares them
    (:attr:`dynamics.models.Model.slots`: a running statistic such as a centre or BatchNorm
    moments): ``aux`` is a dict ``{slot: array}``. A separate type, so that a plain
    :class:`State` stays a three-field tuple (``W, Wp, Wa = state`` keeps working)."""

    enc: Any
    pred: Any
    tgt: Any = None
    aux: Any = None


def make_state(enc, pred, tgt=None, aux=None):
    """A :class:`State`, or a :class:`SlotState` when ``aux`` is given."""
    return State(enc, pred, tgt) if aux is None else SlotState(enc, pred, tgt, aux)


# --- where the stop-gradient acts -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Variant:
    """Which target the loss compares against, and whether the gradient stops there.

    Attributes:
        target: ``"simsiam"`` (the target is the encoder itself) or ``"byol"`` (an EMA target).
        stop_grad: ``True`` holds the target constant when differentiating (the methods as
            published). ``False`` lets the gradient flow through the target branch: for SimSiam
            into the encoder, for BYOL into the target parameters (which also keep their EMA
            drift).
        copy_every: ``0`` (the default): BYOL's target is an EMA of the encoder. ``k >= 1``:
            the target is a copy of the encoder, refreshed after every ``k``-th discrete step
            (discrete methods only; ``k = 1`` is SimSiam's update).
        label: the name in tables and datasets (a model family's own, e.g. ``"barlow"`` for
            a symmetric loss run with gradients through both branches); not part of equality,
            so it never changes what is computed or compiled.
    """

    target: str = "simsiam"
    stop_grad: bool = True
    copy_every: int = 0
    label: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        check_choice("target", self.target, ("simsiam", "byol"))
        if not isinstance(self.stop_grad, (bool, np.bool_)):
            raise ValueError(f"stop_grad must be True or False, got {self.stop_grad!r}")
        k = self.copy_every
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"copy_every must be an integer >= 0, got {k!r}")
        if k and self.target != "byol":
            raise ValueError(f"copy_every={k} needs a target of its own (target='byol'), "
                             f"got target={self.target!r}")

    @property
    def name(self) -> str:
        """The label this variant goes by in tables and datasets: ``label`` when given, else
        ``simsiam``, ``simsiam-nosg``, ``byol``, ``byol-nosg`` (``-copyK`` for a copied
        target)."""
        if self.label is not None:
            return self.label
        return (self.target + ("" if self.stop_grad else "-nosg")
                + (f"-copy{self.copy_every}" if self.copy_every else ""))

    @property
    def target_rule(self) -> str:
        """``"ema"`` (``d tgt/dt = beta (enc - tgt)``, the default) or ``"copy"`` (the target
        is set to the encoder every ``copy_every`` discrete steps, the EM view of SimSiam of
        Chen & He 2021); ``"none"`` without a target of its own."""
        if not self.has_target:
            return "none"
        return "copy" if self.copy_every else "ema"

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



# --- time scales and decays -----------------------------------------------------------------

#: The two weight-decay conventions (docs/theory.md section 1): ``"loss"`` puts the decay inside
#: the loss (``eta_phi = eta``), ``"tian"`` is Tian et al.'s (``eta_phi = eps * eta``).
CONVENTIONS = ("loss", "tian")


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Hyper:
    """Time scales and decays of the dynamics; every field is a pytree leaf (vmappable).

    Attributes:
        eps: predictor time scale (> 0); the predictor moves ``1/eps`` times faster.
        eta_theta: weight decay of the encoder (finite; a negative one is a growth term).
        eta_phi: weight decay of the predictor (as it enters ``eps * dpred/dt``; finite).
        beta: EMA rate of the BYOL target (>= 0), ``d tgt/dt = beta (enc - tgt)``; 0 freezes
            the target. Unused by SimSiam.

    Concrete values are checked when made (``ValueError`` naming the field and the value);
    traced ones (under ``jit``/``vmap``) pass unchecked.
    """

    eps: Any = 1.0
    eta_theta: Any = 0.0
    eta_phi: Any = 0.0
    beta: Any = 1.0

    def __post_init__(self):
        check_real("eps", self.eps, positive=True)
        check_real("eta_theta", self.eta_theta)
        check_real("eta_phi", self.eta_phi)
        check_real("beta", self.beta, nonneg=True)

    @classmethod
    def tian(cls, eta, alpha_p=1.0, beta=1.0) -> "Hyper":
        """Tian et al. convention: ``eps = 1/alpha_p``, ``eta_theta = eta``, ``eta_phi = eps*eta``."""
        check_real("alpha_p", alpha_p, positive=True)
        check_real("eta", eta)
        eps = 1.0 / alpha_p
        with np.errstate(over="ignore"):
            eta_phi = eps * eta
        check_real("eps = 1/alpha_p", eps)
        check_real("eta_phi = eta/alpha_p", eta_phi)
        return cls(eps=eps, eta_theta=eta, eta_phi=eta_phi, beta=beta)

    @classmethod
    def loss_decay(cls, eta, eps=1.0, beta=1.0) -> "Hyper":
        """Weight decay inside the loss (the slow-fast convention): ``eta_theta = eta_phi = eta``."""
        check_real("eta", eta)
        return cls(eps=eps, eta_theta=eta, eta_phi=eta, beta=beta)

    @classmethod
    def from_convention(cls, convention: str, eta, eps, beta=1.0) -> "Hyper":
        """The hyperparameters of weight decay ``eta`` in ``convention`` (:data:`CONVENTIONS`)."""
        check_real("eta", eta)
        check_real("eps", eps, positive=True)
        if convention == "tian":
            return cls(eps=eps, eta_theta=eta, eta_phi=eps * eta, beta=beta)
        if convention == "loss":
            return cls(eps=eps, eta_theta=eta, eta_phi=eta, beta=beta)
        raise ValueError(
            f"unknown convention {convention!r}: expected {' or '.join(map(repr, CONVENTIONS))}"
        )

    def lane_broadcast(self, n: int) -> "Hyper":
        """These hyperparameters with a lane axis of length ``n`` on every scalar field."""
        return broadcast_scalar_leaves(self, n)


# --- limits of the command lines and samplers ----------------------------------------------

#: seeds are 64-bit signed integers
MAX_SEED = 2**63 - 1
#: the largest step count of a gd/sgd lane (the step index is a 32-bit integer in the samplers)
MAX_DISCRETE_STEPS = 2**31 - 1


# --- per-lane results -----------------------------------------------------------------------


class Status(enum.IntEnum):
    """Per-lane status of a batched solve (stored as int8).

    OK: the lane reached its end time and every number is finite.
    MAX_STEPS: an adaptive solver used up ``max_steps`` before the end time.
    NONFINITE: a NaN/inf appeared (a diverging lane, or a failed implicit solve).
    """

    OK = 0
    MAX_STEPS = 1
    NONFINITE = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def labels(cls) -> tuple[str, ...]:
        """Labels indexed by code: ``("ok", "max_steps", "nonfinite")``."""
        return tuple(s.label for s in cls)


class Outcome(enum.IntEnum):
    """Collapse label of one lane of a sweep (stored as int8).

    NON_COLLAPSED: converged to a stable fixed point with a non-zero encoder.
    COLLAPSED: converged, and the encoder is (numerically) zero.
    UNDECIDED: not converged, parked near a saddle, or the solver hit ``max_steps``.
    FAILED: a non-finite number appeared.
    """

    NON_COLLAPSED = 0
    COLLAPSED = 1
    UNDECIDED = 2
    FAILED = 3

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")

    @classmethod
    def labels(cls) -> tuple[str, ...]:
        """Labels indexed by code: ``("non-collapsed", "collapsed", "undecided", "failed")``."""
        return tuple(o.label for o in cls)
