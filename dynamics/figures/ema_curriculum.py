"""The EMA curriculum shown directly (Tian et al. 2021, Obs. 8-10), per-mode linear BYOL.

Each mode ``j`` of the per-mode reduction (data variance ``d_j``, augmentation variance
``d'_j``, ``a_j = d_j + d'_j``; docs/theory.md section 3) has the target scale
``tau_j = theta_a_j / theta_j``. With the target started at ``W_a(0) = 0`` the EMA sets
``tau_j(0) = 0`` and raises it towards 1; at a frozen ``tau`` the predictor's goal is
``p_+(tau) = (d tau + sqrt(d^2 tau^2 - 4 a eta)) / (2a)`` and its collapse threshold
``p_-(tau)`` (the same with ``-sqrt``), so the goal moves up as ``tau`` grows (Obs. 8) while
a small ``tau`` keeps ``p_-`` high and traps more modes (Obs. 10). At the end a surviving mode
sits at ``tau = 1``, ``p = p_+(1)``, ``s = p^2 / alpha_p``; a mode with
``eta > d^2 / (4a)`` is trapped for every ``beta``; as ``beta -> infinity`` BYOL becomes
SimSiam.
"""

from __future__ import annotations

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import PerModeSiamese
from dynamics.types import State

__all__ = ["build", "data", "draw", "goal", "run_modes", "setting", "trapped_share"]

COLLAPSED = 1e-3  # |theta_j(t1)| below this: the mode is trapped (collapsed)


def setting(n=8, sigma2=0.5):
    """``n`` modes with data variances ``d_j`` spread over ``[0.4, 1.8]`` and ``d'_j = sigma2``."""
    d = np.linspace(0.4, 1.8, n)
    return d, np.full(n, float(sigma2))


def goal(tau, d, a, eta, branch=+1):
    """``p_+`` (``branch = +1``) or ``p_-`` of one mode at a frozen target scale ``tau``: roots of
    ``a p^2 - d tau p + eta = 0``; NaN where ``eta > (d tau)^2 / (4a)``."""
    tau = np.asarray(tau, float)
    disc = (d * tau) ** 2 - 4 * a * eta
    with np.errstate(invalid="ignore"):
        return (d * tau + branch * np.sqrt(np.where(disc >= 0, disc, np.nan))) / (2 * a)


def starts(n_starts, n, seed=0):
    """Small positive starts ``theta_j0 in [0.05, 0.5]``, ``phi_j0 in [0, 0.3]`` (rows)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.05, 0.5, (n_starts, n)), rng.uniform(0.0, 0.3, (n_starts, n))


def run_modes(d, dp, variant, eta, beta, theta0, phi0, ts, alpha_p=1.0):
    """Per-mode flow (Tian convention, Tsit5) from rows ``theta0``, ``phi0`` (N, n), the BYOL
    target from 0; returns the saved ``State`` (N, T, n) as numpy and the solver status."""
    model = PerModeSiamese(jnp.asarray(d, float), jnp.asarray(dp, float))
    v = VARIANTS[variant]
    th = jnp.asarray(theta0, float)
    y0 = State(th, jnp.asarray(phi0, float), jnp.zeros_like(th) if v.has_target else None)
    ys, status = C._flow_lanes(model, v, Hyper.tian(float(eta), float(alpha_p), float(beta)), y0,
                               jnp.asarray(float(ts[-1])), jnp.asarray(ts), solver="tsit5",
                               rtol=1e-8, atol=1e-10, max_steps=200_000)
    return State(*(None if x is None else np.asarray(x) for x in ys)), np.asarray(status)


def trapped_share(d, dp, eta, betas, theta0, phi0, ts, simsiam=True):
    """Mean share of modes with ``|theta_j(ts[-1])| < COLLAPSED`` over the starts, for each
    ``beta`` (BYOL from ``W_a(0) = 0``), and the same for SimSiam from the same starts (NaN
    with ``simsiam=False``)."""
    out = []
    for b in betas:
        ys, _ = run_modes(d, dp, "byol", eta, b, theta0, phi0, ts)
        out.append(np.mean(np.abs(ys.enc[:, -1]) < COLLAPSED))
    if not simsiam:
        return np.array(out), float("nan")
    ys, _ = run_modes(d, dp, "simsiam", eta, 1.0, theta0, phi0, ts)
    return np.array(out), float(np.mean(np.abs(ys.enc[:, -1]) < COLLAPSED))


def data(quick=False, sigma2=0.5, eta=0.04, beta=0.4, etas=(0.04, 0.1, 0.2)):
    d, dp = setting(8, sigma2)
    a = d + dp
    t1 = 2000.0
    ts = np.concatenate([[0.0], np.geomspace(1e-2, t1, 300)])
    n_starts = 8 if quick else 32
    th, ph = starts(n_starts, len(d), seed=2)
    # the trajectory of (a), (b) is the first start of the batch (one compiled program)
    ys, _ = run_modes(d, dp, "byol", eta, beta, th, ph, ts)
    theta, phi, theta_a = ys.enc[0], ys.pred[0], ys.tgt[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(np.abs(theta) > 1e-12, theta_a / theta, np.nan)
    betas = np.geomspace(0.01, 10.0, 4 if quick else 13)
    shares = {e: trapped_share(d, dp, e, betas, th, ph, ts, simsiam=not quick) for e in etas}
    return dict(d=d, dp=dp, a=a, eta=eta, beta=beta, ts=ts, theta=theta, phi=phi, tau=tau,
                betas=betas, shares=shares, eta_crit=d**2 / (4 * a),
                params=dict(model="per-mode linear BYOL (docs/theory.md section 3), Tian "
                                  "convention, alpha_p = 1, Tsit5 (rtol 1e-8)",
                            d=[round(float(x), 4) for x in d], dp=float(sigma2), eta=eta,
                            beta=beta, t1=t1, Wa0="0 (tau(0) = 0), as in the paper",
                            starts=dict(seed=2, theta0="U(0.05, 0.5)", phi0="U(0, 0.3)",
                                        trajectory="the first start"),
                            trapped=dict(starts=n_starts, etas=list(etas),
                                         betas=f"geomspace(0.01, 10, {len(betas)})",
                                         collapsed=f"|theta_j(t1)| < {COLLAPSED:g}",
                                         simsiam="drawn" if not quick else "left out (--quick)"),
                            paper="Tian et al. Obs. 8 (EMA as an automatic curriculum), Obs. 9 "
                                  "(slow EMA, slow training), Obs. 10 (small tau traps more "
                                  "modes); the paper shows no figure of tau_j(t)"))


def draw(d):
    ts, n = d["ts"], len(d["d"])
    cols = plt.cm.viridis(np.linspace(0, 0.9, n))
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(17, 5.4))
    for j in range(n):
        lab = rf"$d_{j}$ = {d['d'][j]:.2f}"
        a1.semilogx(ts[1:], d["tau"][1:, j], color=cols[j], lw=1.5, label=lab)
        a2.semilogx(ts[1:], d["phi"][1:, j], color=cols[j], lw=1.6)
        a2.semilogx(ts[1:], goal(d["tau"][1:, j], d["d"][j], d["a"][j], d["eta"]),
                    color=cols[j], lw=1, ls="--")
        a2.semilogx(ts[1:], goal(d["tau"][1:, j], d["d"][j], d["a"][j], d["eta"], -1),
                    color=cols[j], lw=1, ls=":")
    a1.axhline(1, color="k", lw=0.8, ls=":")
    a1.set_ylim(-0.05, 1.15)
    a1.set_xlabel("time $t$ (log)")
    a1.set_ylabel(r"$\tau_j = \theta_{a,j} / \theta_j$")
    a1.set_title(rf"(a) target scale per mode, $\beta$ = {d['beta']:g}, $\eta$ = {d['eta']:g}"
                 "\n(a trapped mode's ratio stops meaning anything once "
                 r"$\theta_j \to 0$)", fontsize=10)
    a1.legend(fontsize=7, ncol=2, loc="upper left")
    a1.grid(alpha=0.3, which="both")
    a2.plot([], [], "k-", lw=1.6, label=r"$p_j(t)$")
    a2.plot([], [], "k--", lw=1, label=r"goal $p_+(\tau_j(t))$")
    a2.plot([], [], "k:", lw=1, label=r"threshold $p_-(\tau_j(t))$")
    a2.set_xlabel("time $t$ (log)")
    a2.set_ylabel(r"predictor eigenvalue $p_j$")
    a2.set_title(r"(b) the moving goal: $a_j p^2 - d_j \tau p + \eta = 0$ at the current "
                 r"$\tau_j$" "\n(colours as in (a); the goal is undefined while "
                 r"$(d_j\tau_j)^2 < 4 a_j \eta$)", fontsize=10)
    a2.legend(fontsize=8, loc="upper left")
    a2.grid(alpha=0.3, which="both")
    b = d["betas"]
    for (e, (share, simsiam)), c in zip(d["shares"].items(), ("#1b9e77", "#d95f02", "#7570b3")):
        a3.semilogx(b, 100 * share, "o-", color=c, ms=4, label=rf"BYOL, $\eta$ = {e:g}")
        if np.isfinite(simsiam):
            a3.axhline(100 * simsiam, color=c, ls="--", lw=1,
                       label=rf"SimSiam (no EMA, $\beta \to \infty$), $\eta$ = {e:g}")
        a3.axhline(100 * np.mean(d["eta_crit"] < e), color=c, ls=":", lw=1.2,
                   label=rf"modes with $\eta > d_j^2/(4a_j)$ (always trapped), $\eta$ = {e:g}")
    a3.set_xlabel(r"EMA rate $\beta$ (Tian's $\alpha\beta = 1 - \gamma_a$)")
    a3.set_ylabel("trapped (collapsed) modes, % of all modes and starts")
    a3.set_title("(c) modes trapped against the EMA rate (Obs. 10), "
                 f"{d['params']['trapped']['starts']} starts", fontsize=10)
    a3.set_ylim(-3, 165)
    a3.set_yticks(range(0, 101, 20))
    a3.legend(fontsize=7, loc="upper right", ncol=1)
    a3.grid(alpha=0.3, which="both")
    fig.suptitle(r"The EMA curriculum: per-mode linear BYOL, target from $W_a(0) = 0$, "
                 rf"$d'_j$ = {d['dp'][0]:g}, $\alpha_p$ = 1, Tian convention; a surviving mode "
                 r"ends at $\tau_j = 1$, $p_j = p_+(1)$", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


@register(
    "ema_curriculum",
    "The EMA curriculum (Tian Obs. 8-10) in per-mode linear BYOL from W_a(0) = 0: the target "
    "scale tau_j(t) of every mode rising from 0 to 1, the predictor's moving goal p_+(tau_j(t)) "
    "and threshold p_-(tau_j(t)), and the share of modes trapped in collapse against the EMA "
    "rate beta, beside SimSiam (beta -> infinity) and the modes past d_j^2/(4 a_j).",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
