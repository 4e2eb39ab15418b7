"""Su's toy experiment ("Why doesn't SimSiam collapse", kexue.fm 7980, 2020), redone exactly.

Loss ``1/2 (phi theta - theta)^2`` (one view, no noise, no weight decay). With stop-gradient the
flow is ``theta' = -(phi theta - theta) phi``, ``phi' = -(phi theta - theta) theta``; without it
the encoder also receives ``+(phi theta - theta)``, so ``theta' = -(phi theta - theta)(phi - 1)``.
These are the project's scalar SimSiam flows at ``sigma2 = 0``, ``eta = 0``, ``eps = 1``
(``alpha_p = 1``). The post integrates both from ``theta(0) = 0.1``, ``phi(0) = 0.6``.

Closed forms drawn and checked:

- with stop-gradient ``theta^2 - phi^2`` is conserved; ``phi -> 1`` and
  ``theta -> sqrt(theta0^2 - phi0^2 + 1) = sqrt(0.65)``;
- without it ``alpha_p theta^2 - (phi - 1)^2`` is conserved (``-0.15`` here): the start lies in
  the collapse basin ``theta0^2 < (1 - phi0)^2 / alpha_p``, ``theta -> 0`` and
  ``phi -> 1 - sqrt(0.15)``;
- with stop-gradient the collapse basin is ``phi0 < -sqrt(alpha_p) |theta0|`` or
  ``phi0^2 - alpha_p theta0^2 > 1`` with ``phi0 > 0`` (the hyperbola through the start
  reaches ``theta = 0`` before the line of fixed points ``phi = 1``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

__all__ = ["basin_nosg", "basin_sg", "build", "data", "draw"]

RTOL, ATOL = 1e-10, 1e-16  # tight: theta(200) ~ 1e-13 must be resolved, not lost in atol


def basin_nosg(theta0, phi0, alpha_p=1.0):
    """Collapse basin without stop-gradient at ``sigma2 = eta = 0``: ``theta0^2 < (1-phi0)^2/alpha_p``."""
    theta0, phi0 = np.asarray(theta0, float), np.asarray(phi0, float)
    return theta0**2 < (1.0 - phi0) ** 2 / alpha_p


def basin_sg(theta0, phi0, alpha_p=1.0):
    """Collapse basin with stop-gradient at ``sigma2 = eta = 0`` (``phi = 1`` is the fixed line)."""
    theta0, phi0 = np.asarray(theta0, float), np.asarray(phi0, float)
    c = phi0**2 - alpha_p * theta0**2
    return (phi0 < -np.sqrt(alpha_p) * np.abs(theta0)) | ((phi0 > 0) & (c > 1.0))


def data(theta0=0.1, phi0=0.6, t1=200.0, n_save=801, n_grid=41, box=(-1.5, 1.5, -1.5, 2.5)):
    """Both flows from ``(theta0, phi0)``, their conserved quantities, and phase-plane fields."""
    model = ScalarSiamese(sigma2=0.0)
    hyper = Hyper.tian(0.0, 1.0)
    runs = {}
    th_g = np.linspace(box[0], box[1], n_grid)
    ph_g = np.linspace(box[2], box[3], n_grid)
    for name, vname, conserved, label in (
        ("sg", "simsiam", lambda th, ph: th**2 - ph**2, r"$\theta^2 - \varphi^2$"),
        ("nosg", "simsiam-nosg", lambda th, ph: th**2 - (ph - 1.0) ** 2,
         r"$\theta^2 - (\varphi - 1)^2$"),
    ):
        v = VARIANTS[vname]
        ts, ys, status = C.trajectories(model, v, hyper, [theta0], [phi0], t1=t1, n_save=n_save,
                                        rtol=RTOL, atol=ATOL)
        if status[0] != 0:
            raise RuntimeError(f"{vname}: the solver stopped early (status {status[0]})")
        TH, PH, f = C.grid_field(model, v, hyper, th_g, ph_g)
        runs[name] = dict(variant=vname, theta=ys.enc[0], phi=ys.pred[0],
                          conserved=conserved(ys.enc[0], ys.pred[0]), conserved_label=label,
                          field=(TH, PH, np.asarray(f.enc), np.asarray(f.pred)))
    limits = dict(theta_sg=np.sqrt(theta0**2 - phi0**2 + 1.0), phi_sg=1.0,
                  theta_nosg=0.0, phi_nosg=1.0 - np.sqrt((1.0 - phi0) ** 2 - theta0**2))
    return dict(ts=ts, runs=runs, limits=limits, box=box,
                params=dict(source="Su (2020), kexue.fm archive 7980: continuous flows of "
                                   "1/2 (phi theta - theta)^2, with and without stop-gradient",
                            theta0=theta0, phi0=phi0, t1=t1, sigma2=0.0, eta=0.0, alpha_p=1.0,
                            solver="Tsit5", rtol=RTOL, atol=ATOL,
                            differences="none: the post's setting"))


def draw(d):
    """2 x 3 panels: parameters over time, |theta| (log), conserved quantities; the two phase
    planes with their collapse basins, and both basins together."""
    pr, ts, runs, lim = d["params"], d["ts"], d["runs"], d["limits"]
    cols = {"sg": "#1f77b4", "nosg": "#d62728"}
    names = {"sg": "with stop-grad", "nosg": "without stop-grad"}
    fig, axes = plt.subplots(2, 3, figsize=(16, 9.6))
    ax_t, ax_log, ax_c = axes[0]
    for k, r in runs.items():
        ax_t.plot(ts, r["theta"], color=cols[k], lw=2, label=rf"$\theta$ {names[k]}")
        ax_t.plot(ts, r["phi"], color=cols[k], lw=1.5, ls="--", label=rf"$\varphi$ {names[k]}")
        ax_log.semilogy(ts, np.abs(r["theta"]), color=cols[k], lw=2, label=names[k])
        ax_c.plot(ts, r["conserved"], color=cols[k], lw=2,
                  label=f"{names[k]}: {r['conserved_label']}")
    ax_t.axhline(lim["theta_sg"], color=cols["sg"], ls=":", lw=1.2,
                 label=rf"$\sqrt{{0.65}}$ = {lim['theta_sg']:.5f}")
    ax_t.axhline(lim["phi_nosg"], color=cols["nosg"], ls=":", lw=1.2,
                 label=rf"$1-\sqrt{{0.15}}$ = {lim['phi_nosg']:.5f}")
    ax_t.set_title(r"parameters: with stop-grad $\theta\to\sqrt{0.65}$, $\varphi\to 1$; "
                   r"without, $\theta\to 0$", fontsize=9)
    ax_log.set_title(rf"$|\theta(t)|$: without stop-grad $|\theta({pr['t1']:g})|$ = "
                     f"{abs(runs['nosg']['theta'][-1]):.1e}", fontsize=9)
    drift = {k: float(np.max(np.abs(r["conserved"] - r["conserved"][0]))) for k, r in runs.items()}
    ax_c.set_title("conserved quantities (max drift: "
                   + ", ".join(f"{names[k]} {v:.0e}" for k, v in drift.items()) + ")", fontsize=9)
    ax_c.set_ylim(-0.5, 0.0)
    for ax in (ax_t, ax_log, ax_c):
        ax.set_xlabel("time $t$")
        ax.grid(alpha=0.3)
        plot.dedup_legend(ax, loc="best", fontsize=7)
    ax_t.set_ylabel("value")
    ax_log.set_ylabel(r"$|\theta|$ (log scale)")
    ax_c.set_ylabel("value along the trajectory")

    box = d["box"]
    th = np.linspace(box[0], box[1], 301)
    ph = np.linspace(box[2], box[3], 401)
    TH, PH = np.meshgrid(th, ph)
    masks = {"sg": basin_sg(TH, PH), "nosg": basin_nosg(TH, PH)}
    for ax, k in ((axes[1, 0], "sg"), (axes[1, 1], "nosg")):
        r = runs[k]
        ax.contourf(TH, PH, masks[k].astype(float), levels=[0.5, 1.5], colors=["#f4c7c3"])
        ax.plot([], [], color="#f4c7c3", lw=8, label="collapse basin (closed form)")
        plot.draw_field(ax, *r["field"], density=0.9)
        q0 = r["conserved"][0]
        Q = TH**2 - PH**2 if k == "sg" else TH**2 - (PH - 1.0) ** 2
        ax.contour(TH, PH, Q, levels=[q0], colors=["purple"], linestyles="--", linewidths=1.4)
        ax.plot([], [], color="purple", ls="--", lw=1.4,
                label=f"{r['conserved_label']} = {q0:.2f} (through the start)")
        ax.axvline(0.0, color="#b2182b", lw=2.5, alpha=0.7, label=r"fixed line $\theta = 0$")
        ax.axhline(1.0, color="#1b7837", lw=2.5, alpha=0.7, label=r"fixed line $\varphi = 1$")
        ax.plot(r["theta"], r["phi"], color=cols[k], lw=2.2, label="trajectory")
        ax.plot(r["theta"][0], r["phi"][0], "ko", ms=6, label=r"start $(0.1, 0.6)$")
        ax.plot(r["theta"][-1], r["phi"][-1], "*", color=cols[k], ms=13, linestyle="none",
                label=rf"end: $(\theta,\varphi)$ = ({r['theta'][-1]:.4f}, {r['phi'][-1]:.4f})")
        ax.set_xlim(box[:2])
        ax.set_ylim(box[2:])
        ax.set_xlabel(r"encoder $\theta$")
        ax.set_ylabel(r"predictor $\varphi$")
        basin = (r"$\varphi_0 < -|\theta_0|$ or $\varphi_0^2 - \theta_0^2 > 1$, $\varphi_0 > 0$"
                 if k == "sg" else r"$\theta_0^2 < (1 - \varphi_0)^2$")
        ax.set_title(f"{names[k]}: collapse basin {basin}", fontsize=9)
        plot.dedup_legend(ax, loc="lower left", fontsize=6.5)
    ax = axes[1, 2]
    both = masks["sg"].astype(int) + 2 * masks["nosg"].astype(int)
    cmap = ListedColormap(["white", "#9ecae1", "#f4c7c3", "#8c6bb1"])
    ax.imshow(both, origin="lower", extent=box, aspect="auto", cmap=cmap, vmin=-0.5, vmax=3.5,
              interpolation="nearest")
    for c, lab in zip(cmap.colors, ("no collapse in either flow", "collapse with stop-grad only",
                                     "collapse without stop-grad only", "collapse in both")):
        ax.plot([], [], color=c, lw=8, label=lab)
    ax.plot(pr["theta0"], pr["phi0"], "ko", ms=6, label="Su's start")
    ax.set_xlabel(r"$\theta_0$")
    ax.set_ylabel(r"$\varphi_0$")
    ax.set_title(r"both collapse basins ($\sigma^2 = \eta = 0$, $\alpha_p = 1$)", fontsize=9)
    plot.dedup_legend(ax, loc="lower left", fontsize=6.5, framealpha=0.95)
    fig.suptitle(
        r"Su (2020)'s toy SimSiam: gradient flow of $\frac{1}{2}(\varphi\theta - \theta)^2$ from "
        rf"$(\theta_0, \varphi_0) = ({pr['theta0']:g}, {pr['phi0']:g})$ to $t$ = {pr['t1']:g}, "
        r"with stop-gradient ($\dot\theta = -(\varphi\theta-\theta)\varphi$) and without "
        r"($\dot\theta = -(\varphi\theta-\theta)(\varphi-1)$); "
        r"$\dot\varphi = -(\varphi\theta-\theta)\theta$ in both", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


@register(
    "post_toy",
    "Su (2020)'s toy SimSiam experiment: the continuous flows of 1/2 (phi theta - theta)^2 "
    "from theta = 0.1, phi = 0.6 with and without stop-gradient, their conserved quantities "
    "(theta^2 - phi^2 and theta^2 - (phi - 1)^2) and exact limits (theta -> sqrt(0.65); "
    "theta -> 0, phi -> 1 - sqrt(0.15)), and the (theta, phi) phase planes with each flow's "
    "collapse basin at sigma2 = eta = 0.",
)
def build(quick):
    d = data(n_grid=25 if quick else 41)
    return draw(d), d["params"]
