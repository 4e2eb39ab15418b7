"""Hand-written closed forms from docs/theory.md, used only as independent oracles in tests.

Nothing in the package imports this module: the package derives every field from the loss.
"""

import numpy as np


def scalar_field(theta, phi, theta_a, *, sigma2, eps, eta_theta, eta_phi, beta, target, stop_grad):
    """docs/theory.md sections 1-2, written out by hand. Returns (dtheta, dphi, dtheta_a or None)."""
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


def scalar_gd_step(theta, phi, theta_a, lr, *, sigma2, eps, eta_theta, eta_phi, beta, target,
                   stop_grad, batch=None):
    """One discrete (S)GD step of the scalar model (docs/theory.md 1), written out by hand.

    ``theta -= lr (g_theta + eta_theta theta)``, ``phi -= (lr/eps) (g_phi + eta_phi phi)`` and,
    for BYOL, the EMA ``theta_a <- m theta_a + (1 - m) theta_new`` with ``m = 1 - beta lr``
    (BYOL's target follows the *updated* online encoder); without stop-gradient BYOL's target
    also takes the gradient step ``-lr g_theta_a`` (gradient at the old state).

    The gradients are those of ``1/2 (phi theta x1 - tgt x2)^2``: with ``batch = (x1, x2)``
    (numpy arrays) the minibatch mean, with ``batch=None`` the expectation
    (``E[x1^2] = a``, ``E[x1 x2] = 1``). Returns ``(theta, phi, theta_a or None)``.
    """
    a = 1.0 + sigma2
    tgt = theta if target == "simsiam" else theta_a
    if batch is None:
        s11, s12, s22 = a, 1.0, a
    else:
        x1, x2 = (np.asarray(x, dtype=float) for x in batch)
        s11, s12, s22 = np.mean(x1 * x1), np.mean(x1 * x2), np.mean(x2 * x2)
    # d/dtheta, d/dphi, d/dtgt of 1/2 E[(phi theta x1 - tgt x2)^2] with the target held fixed
    g_theta = phi * (s11 * phi * theta - s12 * tgt)
    g_phi = theta * (s11 * phi * theta - s12 * tgt)
    g_tgt = s22 * tgt - s12 * phi * theta
    if target == "simsiam" and not stop_grad:
        g_theta = g_theta + g_tgt  # the gradient also flows through the target branch
    theta_new = theta - lr * (g_theta + eta_theta * theta)
    phi_new = phi - (lr / eps) * (g_phi + eta_phi * phi)
    if target == "simsiam":
        return theta_new, phi_new, None
    m = 1.0 - beta * lr
    theta_a_new = m * theta_a + (1.0 - m) * theta_new
    if not stop_grad:
        theta_a_new = theta_a_new - lr * g_tgt
    return theta_new, phi_new, theta_a_new
