"""BYOL without stop-gradient beside SimSiam without it (scalar model, Tian convention).

Without stop-gradient SimSiam collapses from every start (``|theta| <= |theta0|
exp(-(a - 1/a + eta) t)``). BYOL without it lets the loss's gradient reach the target too,
``theta_a' = beta (theta - theta_a) - (a theta_a - phi theta)``; its non-trivial fixed points
exist while ``eta <= beta^2 / (4 (beta + a)(a beta + a^2 - 1))`` (docs/theory.md section 2,
"BYOL without stop-gradient"), which tends to SimSiam's ``1/(4a)`` as ``beta -> infinity`` and
to 0 as ``beta -> 0``: a fast EMA pins the target to the encoder and stands in for the
stop-gradient.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

__all__ = ["build", "collapsed_share", "data", "draw", "eta_threshold", "fixed_point"]


def eta_threshold(beta, a):
    """Largest ``eta`` with a non-trivial fixed point of BYOL without stop-gradient."""
    beta = np.asarray(beta, float)
    return beta**2 / (4 * (beta + a) * (a * beta + a * a - 1))


def fixed_point(beta, a, eta, alpha_p=1.0, branch=+1):
    """``(theta, phi, theta_a)`` of BYOL without stop-gradient: ``phi`` a root of
    ``(a beta + a^2 - 1) phi^2 - beta phi + (beta + a) eta = 0``, ``alpha_p theta^2 = phi^2``,
    ``theta_a = theta (beta + phi) / (beta + a)``; NaN past :func:`eta_threshold`."""
    k = a * beta + a * a - 1
    disc = beta * beta - 4 * k * (beta + a) * eta
    phi = (beta + branch * np.sqrt(disc if disc >= 0 else np.nan)) / (2 * k)
    theta = phi / np.sqrt(alpha_p)
    return theta, phi, theta * (beta + phi) / (beta + a)


def collapsed_share(variant, betas, eta, sigma2=0.5, n=12, t1=400.0):
    """Share of an ``n x n`` grid of starts ``(theta0, phi0) in [-1, 1] x [-1, 2]`` (target from
    the encoder) whose ``|theta(t1)|`` is below ``1e-3``, for each ``beta``."""
    model = ScalarSiamese(sigma2)
    th, ph = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 2, n))
    out = []
    for b in betas:
        _, ys, status = C.trajectories(model, VARIANTS[variant], Hyper.tian(eta, 1.0, float(b)),
                                       th.ravel(), ph.ravel(), t1=t1, n_save=200)
        out.append(np.mean(np.abs(ys.enc[:, -1]) < 1e-3))
    return np.array(out)


def data(quick=False, sigma2=0.5, eta=0.02):
    a = 1.0 + sigma2
    model = ScalarSiamese(sigma2)
    t1 = 60.0
    th0, ph0 = 0.8, 0.6
    runs = {}
    betas_traj = (0.1, 1.0, 10.0)
    _, ys, _ = C.trajectories(model, VARIANTS["simsiam-nosg"], Hyper.tian(eta, 1.0), [th0],
                              [ph0], t1=t1, n_save=200)
    ts, _, _ = C.trajectories(model, VARIANTS["simsiam-nosg"], Hyper.tian(eta, 1.0), [th0],
                              [ph0], t1=t1, n_save=200)
    runs["simsiam-nosg"] = np.abs(ys.enc[0])
    for b in betas_traj:
        _, ys, _ = C.trajectories(model, VARIANTS["byol-nosg"], Hyper.tian(eta, 1.0, b), [th0],
                                  [ph0], t1=t1, n_save=200)
        runs[("byol-nosg", b)] = np.abs(ys.enc[0])
        _, ys, _ = C.trajectories(model, VARIANTS["byol"], Hyper.tian(eta, 1.0, b), [th0],
                                  [ph0], t1=t1, n_save=200)
        runs[("byol", b)] = np.abs(ys.enc[0])
    betas = np.geomspace(0.03, 30.0, 5 if quick else 17)
    n = 6 if quick else 16
    share = {v: collapsed_share(v, betas, eta, sigma2, n=n)
             for v in ("byol-nosg", "byol", "simsiam-nosg")}
    return dict(a=a, eta=eta, sigma2=sigma2, ts=ts, runs=runs, start=(th0, ph0),
                betas=betas, share=share,
                params=dict(model="scalar, Tian convention, alpha_p = 1", sigma2=sigma2, eta=eta,
                            trajectories=dict(start=[th0, ph0], target0="online", t1=t1,
                                              beta=list(betas_traj)),
                            basins=dict(grid=f"{n} x {n} starts in [-1, 1] x [-1, 2]",
                                        target0="online", t1=400.0,
                                        beta=f"geomspace(0.03, 30, {len(betas)})",
                                        collapsed="|theta(t1)| < 1e-3"),
                            theory="eta <= beta^2 / (4 (beta + a)(a beta + a^2 - 1)) for a "
                                   "non-trivial fixed point (docs/theory.md section 2)",
                            paper="Tian et al. Theorem 2 treats SimSiam without stop-gradient; "
                                  "BYOL without it is not analysed there"))


def draw(d):
    a, eta = d["a"], d["eta"]
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(17, 5.2))
    ts = d["ts"]
    a1.semilogy(ts, d["runs"]["simsiam-nosg"], "k", lw=2.2, label="SimSiam, no stop-grad")
    th0 = d["start"][0]
    a1.semilogy(ts, th0 * np.exp(-(a - 1 / a + eta) * ts), "k:", lw=1,
                label=r"bound $|\theta_0| e^{-(a - 1/a + \eta) t}$")
    for b, c in zip((0.1, 1.0, 10.0), ("#d95f02", "#7570b3", "#1b9e77")):
        a1.semilogy(ts, d["runs"][("byol-nosg", b)], color=c, lw=1.8,
                    label=rf"BYOL, no stop-grad, $\beta$ = {b:g}")
        a1.semilogy(ts, d["runs"][("byol", b)], color=c, lw=1, ls="--",
                    label=rf"BYOL with stop-grad, $\beta$ = {b:g}")
    a1.set_ylim(1e-8, 3)
    a1.set_xlabel("time $t$ (below 1e-8: the solver's absolute tolerance)")
    a1.set_ylabel(r"$|\theta(t)|$")
    a1.set_title(rf"(a) from $(\theta_0, \phi_0)$ = {d['start']}, target from the encoder",
                 fontsize=10)
    a1.legend(fontsize=7, loc="lower left")
    a1.grid(alpha=0.3, which="both")

    b = d["betas"]
    for v, st, lab in (("simsiam-nosg", "k-", "SimSiam, no stop-grad"),
                       ("byol-nosg", "o-", "BYOL, no stop-grad"),
                       ("byol", "s--", "BYOL with stop-grad")):
        a2.plot(b, 100 * d["share"][v], st, ms=5, label=lab)
    bb = np.geomspace(b[0], b[-1], 400)
    cross = bb[np.argmax(eta_threshold(bb, a) >= eta)]
    a2.axvline(cross, color="r", lw=1, ls="-.",
               label=rf"theory: BYOL no-sg has non-trivial points for $\beta >$ {cross:.3g}")
    a2.set_xscale("log")
    a2.set_xlabel(r"EMA rate $\beta$")
    a2.set_ylabel("collapsed share of the start grid (%)")
    a2.set_title(rf"(b) collapse against $\beta$ ($\eta$ = {eta:g})", fontsize=10)
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3, which="both")

    a3.plot(bb, eta_threshold(bb, a), "r", lw=2,
            label=r"BYOL no-sg: $\beta^2 / (4(\beta + a)(a\beta + a^2 - 1))$")
    a3.axhline(1 / (4 * a), color="k", ls="--", lw=1,
               label=rf"with stop-grad (any $\beta$): $1/(4a)$ = {1 / (4 * a):.3g}")
    a3.axhline(eta, color="0.5", ls=":", lw=1, label=rf"$\eta$ = {eta:g} of (a), (b)")
    a3.axhline(0, color="k", lw=2.5, label="SimSiam no-sg: none for any $\\eta \\geq 0$")
    a3.set_xscale("log")
    a3.set_xlabel(r"EMA rate $\beta$")
    a3.set_ylabel(r"largest $\eta$ with a non-trivial fixed point")
    a3.set_title("(c) where non-collapsed fixed points exist", fontsize=10)
    a3.legend(fontsize=7, loc="center right")
    a3.grid(alpha=0.3, which="both")
    fig.suptitle(rf"Without stop-gradient: BYOL beside SimSiam (scalar model, $\sigma^2$ = "
                 rf"{d['sigma2']:g}, $\alpha_p$ = 1, Tian convention)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


@register(
    "nosg",
    "Without stop-gradient: BYOL beside SimSiam. Trajectories (SimSiam under its exponential "
    "bound), the collapsed share of a grid of starts against the EMA rate beta, and where "
    "BYOL's non-trivial fixed points exist: eta <= beta^2/(4(beta + a)(a beta + a^2 - 1)).",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
