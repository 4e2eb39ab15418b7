"""Scalar SimSiam / BYOL (docs/theory.md section 2).

Encoder ``theta``, predictor ``phi``, target ``theta_a`` (BYOL; SimSiam's target is the encoder
itself). Data ``x`` has unit variance; the two views are ``x_i = x + xi_i`` with independent
augmentation noise ``xi_i ~ N(0, sigma2)``. The per-sample loss is

    l = 1/2 (phi * theta * x1 - target * x2)^2

and its expectation over data and augmentation, with ``a = 1 + sigma2``, is

    Lbar = 1/2 [a phi^2 theta^2 - 2 phi theta target + a target^2].

The loss receives the online parameters and the target as *separate arguments*; where the
stop-gradient acts is decided by :mod:`dynamics.flow`, never inside the loss.

Closed forms (SimSiam with stop-gradient, docs/theory.md sections 2 and 4) are methods:
:attr:`ScalarSiamese.eta_crit`, :meth:`ScalarSiamese.fixed_points`,
:meth:`ScalarSiamese.fixed_point_eigenvalues`, :meth:`ScalarSiamese.invariant` and
:meth:`ScalarSiamese.invariant_at`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from dynamics.checks import as_leaf, check_choice, check_real
from dynamics.models.base import Model
from dynamics.types import CONVENTIONS

#: what the predictor does: follows its gradient, or is the identity
PREDICTOR_MODES = ("trained", "none")


class FixedPoints(NamedTuple):
    """The two non-trivial fixed points of SimSiam: predictor values and squared encoders.

    ``phi_plus`` is the stable node, ``phi_minus`` the saddle whose stable manifold bounds the
    collapse basin. NaN where they do not exist (weight decay past ``eta_crit``).
    """

    phi_plus: jax.Array
    phi_minus: jax.Array
    theta2_plus: jax.Array
    theta2_minus: jax.Array


def _check_convention(convention):
    check_choice("convention", convention, CONVENTIONS)


def saddle_node_fixed_points(d, a, eta, eps, convention: str) -> FixedPoints:
    """Non-trivial fixed points of one SimSiam mode with data variance ``d``, view second
    moment ``a`` and weight decay ``eta`` (stop-gradient, ``eta > 0``).

    ``theta' = 0`` off the origin gives ``a phi^2 - d phi + eta = 0``, so
    ``phi_pm = (d +- sqrt(d^2 - 4 a eta)) / (2a)``; ``phi' = 0`` then gives
    ``theta^2 = eta_phi phi^2 / eta``: ``eps phi^2`` in the Tian convention
    (``eta_phi = eps eta``), ``phi^2`` with the decay in the loss (``eta_phi = eta``).
    """
    _check_convention(convention)
    disc = d**2 - 4.0 * a * eta
    r = jnp.sqrt(jnp.where(disc >= 0, disc, jnp.nan))
    p_plus, p_minus = (d + r) / (2.0 * a), (d - r) / (2.0 * a)
    scale = eps if convention == "tian" else 1.0
    return FixedPoints(p_plus, p_minus, scale * p_plus**2, scale * p_minus**2)


def saddle_node_eta(d, a):
    """The weight decay where the two non-trivial fixed points merge: ``d^2 / (4 a)``."""
    return d**2 / (4.0 * a)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScalarSiamese(Model):
    """Scalar two-view model.

    Attributes:
        sigma2: augmentation noise variance (>= 0, finite). A leaf of the pytree, so it can
            be vmapped over in a sweep.
        predictor: ``"trained"`` (``phi`` follows its gradient) or ``"none"`` (the predictor
            is the identity: ``phi`` stays at its initial value, usually 1, and gets no update).
    """

    sigma2: float = 0.5
    predictor: str = dataclasses.field(default="trained", metadata=dict(static=True))

    names = ("theta", "phi", "theta_a")

    def __post_init__(self):
        check_choice("predictor", self.predictor, PREDICTOR_MODES)
        object.__setattr__(self, "sigma2", as_leaf(self.sigma2))
        check_real("sigma2", self.sigma2, nonneg=True)

    @property
    def a(self):
        """Second moment of one augmented view, ``1 + sigma2``."""
        return 1.0 + self.sigma2

    @property
    def trains_predictor(self) -> bool:
        return self.predictor == "trained"

    def _phi(self, phi):
        return phi if self.predictor == "trained" else jnp.ones_like(phi)

    def loss(self, theta, phi, target, batch):
        """Mean per-sample loss over a minibatch ``batch = (x1, x2)``, arrays of shape (B,)."""
        x1, x2 = batch
        r = self._phi(phi) * theta * x1 - target * x2
        return 0.5 * jnp.mean(r**2)

    def expected_loss(self, theta, phi, target):
        """Closed-form expectation of :meth:`loss` over data and augmentation."""
        a = self.a
        p = self._phi(phi)
        return 0.5 * (a * p**2 * theta**2 - 2.0 * p * theta * target + a * target**2)

    def sample(self, key, batch_size: int, dtype=jnp.float64):
        """Draw a minibatch of two views: ``x ~ N(0, 1)``, ``x_i = x + N(0, sigma2)``."""
        kx, k1, k2 = jax.random.split(key, 3)
        x = jax.random.normal(kx, (batch_size,), dtype)
        s = jnp.sqrt(jnp.asarray(self.sigma2, dtype))
        x1 = x + s * jax.random.normal(k1, (batch_size,), dtype)
        x2 = x + s * jax.random.normal(k2, (batch_size,), dtype)
        return x1, x2

    def encoder_norm(self, theta):
        """Size of the representation map, used by the collapse criterion."""
        return jnp.abs(theta)

    # --- closed forms (SimSiam, stop-gradient; docs/theory.md sections 2 and 4) -------------

    @property
    def eta_crit(self):
        """Saddle-node weight decay ``1 / (4a)``: beyond it every start collapses."""
        return saddle_node_eta(1.0, self.a)

    def fixed_points(self, eta, eps=1.0, convention: str = "tian") -> FixedPoints:
        """The non-trivial fixed points ``phi = p_pm = (1 +- sqrt(1 - 4 a eta)) / (2a)`` and
        their ``theta^2``: ``eps p_pm^2`` (``"tian"``, i.e. ``p_pm^2 / alpha_p``) or
        ``p_pm^2`` (``"loss"``). For ``eta > 0``; NaN past :attr:`eta_crit`."""
        return saddle_node_fixed_points(1.0, self.a, eta, eps, convention)

    def fixed_point_eigenvalues(self, eta, eps=1.0, convention: str = "tian"):
        """Jacobian eigenvalues of the ``(theta, phi)`` flow at ``(p_+, p_-)``, shape (2, 2)
        (row 0: ``p_+``, row 1: ``p_-``; complex).

        At a fixed point ``J = [[0, -theta (2 a p - 1)], [2 theta (1 - a p) / eps,
        -(a theta^2 + eta_phi) / eps]]``. In the Tian convention its eigenvalues are
        ``{-2 eta, 2 eta - p}`` whatever ``eps``; with the decay in the loss they are the roots
        of ``lambda^2 + (p / eps) lambda + 2 p^2 (2 a p - 1)(1 - a p) / eps``.
        """
        fp = self.fixed_points(eta, eps, convention)
        p = jnp.stack([fp.phi_plus, fp.phi_minus])
        if convention == "tian":
            return jnp.stack([jnp.full_like(p, -2.0 * eta), 2.0 * eta - p], axis=-1).astype(complex)
        a = self.a
        trace = -p / eps  # -(a p^2 + eta) / eps with a p^2 + eta = p
        det = 2.0 * p**2 * (2.0 * a * p - 1.0) * (1.0 - a * p) / eps
        root = jnp.sqrt((trace**2 - 4.0 * det).astype(complex))
        return jnp.stack([(trace + root) / 2.0, (trace - root) / 2.0], axis=-1)

    def invariant(self, theta, phi, alpha_p=1.0):
        """``I = phi^2 - alpha_p theta^2`` (``alpha_p = 1/eps``); see :meth:`invariant_at`."""
        return phi**2 - alpha_p * theta**2

    def invariant_at(self, invariant0, eta, t):
        """``I(t) = I(0) exp(-2 eta t)``: exact for SimSiam and BYOL with stop-gradient in the
        Tian convention, whatever the target does."""
        return invariant0 * jnp.exp(-2.0 * eta * t)
