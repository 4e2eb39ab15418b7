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
:meth:`Model.predictor_drift` (a non-gradient predictor rule), :meth:`Model.lane_broadcast`
(how the batched solvers add a lane axis), :meth:`Model.singular_values` (the encoder's
singular values for collapse measures).
"""

from __future__ import annotations

import abc
from typing import ClassVar

import jax.numpy as jnp

from dynamics.types import broadcast_scalar_leaves


class Model(abc.ABC):
    """Base of every toy model (see the module docstring)."""

    #: names of the ``enc``, ``pred`` and ``tgt`` parameters, for labels and datasets
    names: ClassVar[tuple[str, str, str]] = ("enc", "pred", "tgt")

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

    # --- hooks with defaults --------------------------------------------------------------

    def predictor_drift(self, enc, pred, tgt, batch=None):
        """A predictor rule that is not a gradient: ``eps * dpred/dt = drift``.

        Returns ``None`` (the default) when the predictor follows its gradient (or stays
        fixed); :mod:`dynamics.flow` then never calls anything else. ``batch`` is ``None`` for
        the expected-loss flow.
        """
        return None

    def lane_broadcast(self, n: int) -> "Model":
        """This model with a leading lane axis of length ``n`` on every leaf that lacks one.

        The default gives every scalar (0-d) leaf the lane axis and leaves the others alone
        (they must carry it already). Models whose leaves are arrays even for one lane (the
        linear model's ``X``) override this. The batched solvers also use it to tell leaves
        shared by all lanes (those it would broadcast) from per-lane ones.
        """
        return broadcast_scalar_leaves(self, n)

    def singular_values(self, enc):
        """Singular values of the encoder, descending, shape ``(..., r)``.

        The default treats every element of ``enc`` as one scalar encoder (``r = 1``).
        """
        return jnp.abs(enc)[..., None]
