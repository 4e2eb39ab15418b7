"""Scalar SimSiam / BYOL (THEORY.md section 2).

Encoder ``theta``, predictor ``phi``, target ``theta_a`` (BYOL; SimSiam's target is the encoder
itself). Data ``x`` has unit variance; the two views are ``x_i = x + xi_i`` with independent
augmentation noise ``xi_i ~ N(0, sigma2)``. The per-sample loss is

    l = 1/2 (phi * theta * x1 - target * x2)^2

and its expectation over data and augmentation, with ``a = 1 + sigma2``, is

    Lbar = 1/2 [a phi^2 theta^2 - 2 phi theta target + a target^2].

The loss receives the online parameters and the target as *separate arguments*; where the
stop-gradient acts is decided by :mod:`dynamics.flow`, never inside the loss.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScalarSiamese:
    """Scalar two-view model.

    Attributes:
        sigma2: augmentation noise variance (>= 0). A leaf of the pytree, so it can be
            vmapped over in a sweep.
        predictor: ``"trained"`` (``phi`` follows its gradient) or ``"none"`` (the predictor
            is the identity: ``phi`` stays at its initial value, usually 1, and gets no update).
    """

    sigma2: float = 0.5
    predictor: str = dataclasses.field(default="trained", metadata=dict(static=True))

    names = ("theta", "phi", "theta_a")

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
