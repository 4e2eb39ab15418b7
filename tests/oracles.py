"""Hand-written closed forms from THEORY.md, used only as independent oracles in tests.

Nothing in the package imports this module: the package derives every field from the loss.
"""

import numpy as np


def scalar_field(theta, phi, theta_a, *, sigma2, eps, eta_theta, eta_phi, beta, target, stop_grad):
    """THEORY.md sections 1-2, written out by hand. Returns (dtheta, dphi, dtheta_a or None)."""
    a = 1.0 + sigma2
    tgt = theta if target == "simsiam" else theta_a
    if stop_grad or target == "byol":
        dtheta = phi * (tgt - a * phi * theta) - eta_theta * theta
    else:  # SimSiam without stop-gradient: theta' = -theta [(phi-1)^2 + sigma2 (phi^2+1) + eta]
        dtheta = -theta * ((phi - 1.0) ** 2 + sigma2 * (phi**2 + 1.0)) - eta_theta * theta
    dphi = (theta * (tgt - a * phi * theta) - eta_phi * phi) / eps
    if target == "simsiam":
        return dtheta, dphi, None
    dtheta_a = beta * (theta - theta_a)
    if not stop_grad:  # the gradient of the target branch reaches theta_a as well
        dtheta_a = dtheta_a - (a * theta_a - phi * theta)
    return dtheta, dphi, dtheta_a


def p_pm(a, eta):
    """Non-trivial fixed points of SimSiam (Tian convention): phi = (1 +- sqrt(1 - 4 a eta)) / (2a)."""
    r = np.sqrt(1.0 - 4.0 * a * eta)
    return (1.0 + r) / (2.0 * a), (1.0 - r) / (2.0 * a)
