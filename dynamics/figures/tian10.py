"""Tian, Chen & Ganguli (2021), Fig. 10: scalar BYOL in low dimensions (their Appendix D.4).

The paper's scalar dynamics (Eqns. 104-106) are

    w_p' = alpha_p (w_a lambda_d - w_p w lambda_s) w,   w' = w_p (w_a lambda_d - w_p w lambda_s),
    w_a' = beta (w - w_a),

with ``lambda_s = E[x1 x1]`` the same-view and ``lambda_d = E[x1 x2]`` the cross-view second
moment. Dividing by ``lambda_d`` gives this project's scalar BYOL with ``a = lambda_s / lambda_d``
(``sigma2 = a - 1``) in the time ``t' = lambda_d t``, where the EMA rate reads
``beta / lambda_d``. The paper's setting ``lambda_s = 1, lambda_d = 1/2, alpha_p = beta = 1`` is
therefore ``a = 2`` (``sigma2 = 1``), ``alpha_p = 1``, ``beta = 2`` here; fixed points and their
stability do not depend on the time scale. The line of fixed points is ``w_p = 1/a = 1/2``
(``w = w_a`` free); with ``w_a = 1`` frozen, the fixed points form the hyperbola
``w_p w = 1/2``.

Panels, as in the paper: (left) the ``(w, w_p)`` field with the target frozen at ``w_a = 1``;
(middle) the invariant submanifold ``w = w_p`` (invariant because ``alpha_p = 1``) in
``(w, w_a)``; (right) no predictor (``w_p = 1``) in ``(w, w_a)``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.analysis import stability
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

__all__ = ["build", "data", "draw", "project_params"]


def project_params(lambda_s=1.0, lambda_d=0.5, alpha_p=1.0, beta=1.0):
    """The paper's ``(lambda_s, lambda_d, alpha_p, beta)`` as this project's
    ``(sigma2, alpha_p, beta)`` in the time ``lambda_d t`` (see the module docstring)."""
    if not (lambda_s > 0 and lambda_d > 0):
        raise ValueError(f"lambda_s and lambda_d must be > 0, got {lambda_s}, {lambda_d}")
    return dict(sigma2=lambda_s / lambda_d - 1.0, alpha_p=alpha_p, beta=beta / lambda_d)


def _unit(u, v):
    n = np.hypot(u, v)
    n = np.where(n > 0, n, 1.0)
    return u / n, v / n


def data(lambda_s=1.0, lambda_d=0.5, alpha_p=1.0, beta=1.0, n_grid=21, t1=60.0, box=1.5):
    pp = project_params(lambda_s, lambda_d, alpha_p, beta)
    a = 1.0 + pp["sigma2"]
    model = ScalarSiamese(sigma2=pp["sigma2"])
    v = VARIANTS["byol"]
    hyper = Hyper.tian(0.0, pp["alpha_p"], pp["beta"])
    frozen = Hyper.tian(0.0, pp["alpha_p"], 0.0)   # beta = 0: the target does not move
    g = np.linspace(-box, box, n_grid)

    # left: w_a = 1 frozen, field in (w, w_p)
    W, WP = np.meshgrid(g, g)
    f = C.field_at(model, v, frozen, C.make_state(v, W, WP, np.ones_like(W)))
    left_u, left_v = _unit(np.asarray(f.enc), np.asarray(f.pred))
    hyp = []
    for sgn in (1.0, -1.0):
        w = sgn * np.geomspace(1.0 / (a * box), box, 80)
        pts = np.stack([w, 1.0 / (a * w), np.ones_like(w)], 1)
        hyp.append(dict(w=w, wp=pts[:, 1], kinds=_kinds(model, v, frozen, pts)))
    origin_left = C.fixed_points(model, v, frozen, np.array([[0.01, -0.01, 1.0]]))
    wl, wpl = np.array([0.3, -0.3, 1.2, -1.2, 0.05]), np.array([0.2, -0.1, -0.5, 0.4, -0.05])
    _, yl, stl = C.trajectories(model, v, frozen, wl, wpl, np.ones_like(wl), t1=t1)

    # middle: the invariant submanifold w = w_p, coordinates (w, w_a)
    W, WA = np.meshgrid(g, g)
    f = C.field_at(model, v, hyper, C.make_state(v, W, W, WA))
    mid = dict(W=W, WA=WA, dW=np.asarray(f.enc), dWP=np.asarray(f.pred), dWA=np.asarray(f.tgt))
    mid["u"], mid["v"] = _unit(mid["dW"], mid["dWA"])
    w0 = np.array([0.05, 0.3, 0.8, 1.3, -0.4, -1.0])
    _, ym, stm = C.trajectories(model, v, hyper, w0, w0, np.zeros_like(w0), t1=t1)
    star = C.fixed_points(model, v, hyper, np.array([[0.45, 0.45, 0.55]]))
    # the origin is degenerate (zero linearisation in w, w_p): decide by the flow from nearby
    _, yo, _ = C.trajectories(model, v, hyper, [2e-2], [2e-2], [2e-2], t1=400.0, n_save=2)
    origin_mid = "unstable" if abs(yo.enc[0, -1]) > 0.1 else "stable"

    # right: no predictor (w_p = 1)
    model_np = ScalarSiamese(sigma2=pp["sigma2"], predictor="none")
    W, WA = np.meshgrid(g, g)
    f = C.field_at(model_np, v, hyper, C.make_state(v, W, np.ones_like(W), WA))
    right = dict(W=W, WA=WA, dW=np.asarray(f.enc), dWA=np.asarray(f.tgt))
    right["u"], right["v"] = _unit(right["dW"], right["dWA"])
    seeds = np.random.default_rng(0).uniform(-box, box, (16, 3))
    seeds[:, 1] = 1.0
    right["fixed"] = C.fixed_points(model_np, v, hyper, seeds)
    wn0 = np.array([1.2, -1.2, 0.8, -0.4, 1.4, -1.0])
    wan0 = np.zeros_like(wn0)
    _, yr, str_ = C.trajectories(model_np, v, hyper, wn0, 1.0, wan0, t1=t1)

    # the 3-D fixed points from random seeds (Newton): the line w_p = 1/a and the collapse line
    seeds3 = np.random.default_rng(1).uniform(-box, box, (32, 3))
    fixed3 = C.fixed_points(model, v, hyper, seeds3)
    return dict(
        a=a,
        left=dict(W=np.meshgrid(g, g)[0], WP=np.meshgrid(g, g)[1], u=left_u, v=left_v,
                  hyperbola=hyp, origin=origin_left,
                  traj=dict(w=yl.enc, wp=yl.pred), status=stl),
        mid=dict(**mid, traj=dict(w=ym.enc, wp=ym.pred, wa=ym.tgt), status=stm, fixed=star,
                 origin_kind=origin_mid),
        right=dict(**right, traj=dict(w=yr.enc, wa=yr.tgt), status=str_),
        fixed3=fixed3, box=box,
        params=dict(paper=dict(lambda_s=lambda_s, lambda_d=lambda_d, alpha_p=alpha_p, beta=beta,
                               eta=0.0),
                    project=dict(a=a, sigma2=pp["sigma2"], alpha_p=pp["alpha_p"],
                                 beta=pp["beta"], eta=0.0,
                                 time="lambda_d * t (the paper's field divided by lambda_d)"),
                    n_grid=n_grid, t1=t1,
                    starts=dict(
                        left=dict(w=wl.tolist(), w_p=wpl.tolist(), w_a="held at 1"),
                        middle=dict(w=w0.tolist(), w_p="= w", w_a=0.0),
                        right=dict(w=wn0.tolist(), w_p="1 (no predictor)", w_a=0.0)),
                    differences="trajectories (coloured) added to the paper's normalised "
                                "field arrows; targets of the middle and right trajectories "
                                "start at w_a = 0 as in the paper's analysis"),
    )


def _kinds(model, v, hyper, pts):
    w, _ = C.eigen_at(model, v, hyper, pts)
    return [stability(x) for x in w]


def draw(d):
    pr, a, box = d["params"], d["a"], d["box"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 5.6))
    L = d["left"]
    ax1.quiver(L["W"], L["WP"], L["u"], L["v"], color="0.25", scale=32, width=0.003,
               label="field direction (unit arrows)")
    for h in L["hyperbola"]:
        plot.draw_fixed_line(ax1, h["w"], h["wp"], h["kinds"], lw=3.0)
    for p in L["origin"]:
        plot.draw_fixed_points(ax1, [p["z"][0]], [p["z"][1]], [p["kind"]], size=10)
    cols = plt.cm.viridis(np.linspace(0.1, 0.85, L["traj"]["w"].shape[0]))
    for k, c in enumerate(cols):
        ax1.plot(L["traj"]["w"][k], L["traj"]["wp"][k], color=c, lw=1.4,
                 label="trajectories ($w_a$ frozen)" if k == 0 else None)
        ax1.plot(L["traj"]["w"][k, 0], L["traj"]["wp"][k, 0], "o", color=c, ms=4)
    ax1.set_xlabel("online weight $w$")
    ax1.set_ylabel("predictor $w_p$")
    ax1.set_title(r"target frozen at $w_a = 1$: fixed points on $w_p w = \lambda_d/\lambda_s$"
                  " = 1/2", fontsize=9.5)

    M = d["mid"]
    ax2.quiver(M["W"], M["WA"], M["u"], M["v"], color="0.25", scale=32, width=0.003,
               label="field direction (unit arrows)")
    ww = np.linspace(-box, box, 400)
    ax2.plot(ww, ww, color="#1b9e77", lw=2, label=r"$\dot w_a = 0$: $w_a = w$")
    ax2.plot(ww, a * ww**2, color="#2166ac", lw=2,
             label=r"$\dot w = 0$: $w^2 = w_a \lambda_d/\lambda_s$")
    cols = plt.cm.plasma(np.linspace(0.1, 0.8, M["traj"]["w"].shape[0]))
    for k, c in enumerate(cols):
        ax2.plot(M["traj"]["w"][k], M["traj"]["wa"][k], color=c, lw=1.4,
                 label=r"trajectories from $w_a(0) = 0$" if k == 0 else None)
        ax2.plot(M["traj"]["w"][k, 0], M["traj"]["wa"][k, 0], "o", color=c, ms=4)
    for p in M["fixed"]:
        plot.draw_fixed_points(ax2, [p["z"][0]], [p["z"][2]], [p["kind"]], size=10)
        ax2.annotate(rf"$w = w_a$ = {p['z'][0]:.3g}", (p["z"][0], p["z"][2]), xytext=(8, -12),
                     textcoords="offset points", fontsize=8)
    plot.draw_fixed_points(ax2, [0.0], [0.0], [M["origin_kind"]], size=10)
    ax2.set_xlabel(r"online = predictor weight $w = w_p$")
    ax2.set_ylabel("target weight $w_a$")
    ax2.set_title(r"invariant submanifold $w = w_p$: stable point at $w = w_a = \lambda_d/"
                  r"\lambda_s$", fontsize=9.5)

    R = d["right"]
    ax3.quiver(R["W"], R["WA"], R["u"], R["v"], color="0.25", scale=32, width=0.003,
               label="field direction (unit arrows)")
    ax3.plot(ww, ww, color="#1b9e77", lw=2, label=r"$\dot w_a = 0$: $w_a = w$")
    ax3.plot(ww, a * ww, color="#2166ac", lw=2,
             label=r"$\dot w = 0$: $w = w_a\lambda_d/\lambda_s$ (slope $\lambda_s/\lambda_d$ = 2)")
    cols = plt.cm.plasma(np.linspace(0.1, 0.8, R["traj"]["w"].shape[0]))
    for k, c in enumerate(cols):
        ax3.plot(R["traj"]["w"][k], R["traj"]["wa"][k], color=c, lw=1.4,
                 label=r"trajectories from $w_a(0) = 0$" if k == 0 else None)
    for p in R["fixed"]:
        plot.draw_fixed_points(ax3, [p["z"][0]], [p["z"][2]], [p["kind"]], size=10)
    ax3.set_xlabel("online weight $w$")
    ax3.set_ylabel("target weight $w_a$")
    ax3.set_title(r"no predictor ($w_p \equiv 1$): only the origin, stable", fontsize=9.5)
    for ax in (ax1, ax2, ax3):
        ax.set_xlim(-box, box)
        ax.set_ylim(-box, box)
        ax.grid(alpha=0.3)
        plot.dedup_legend(ax, loc="lower right", fontsize=6.5)
    pp, pj = pr["paper"], pr["project"]
    fig.suptitle(
        rf"Scalar BYOL (Tian et al. 2021, Fig. 10): $\lambda_s$ = {pp['lambda_s']:g}, "
        rf"$\lambda_d$ = {pp['lambda_d']:g}, $\alpha_p = \beta$ = {pp['alpha_p']:g}, $\eta$ = 0 "
        rf"(here $a = \lambda_s/\lambda_d$ = {pj['a']:g} in time $\lambda_d t$, so $\beta$ = "
        rf"{pj['beta']:g}); stability from the autodiff Jacobian" "\n"
        "colours: green = stable, red = unstable, orange = saddle (the paper draws stable "
        "fixed points in red)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


@register(
    "tian10",
    "Tian et al. (2021) Fig. 10: scalar BYOL with lambda_s = 1, lambda_d = 1/2 "
    "(a = lambda_s/lambda_d = 2), alpha_p = beta = 1, eta = 0: the (w, w_p) field at w_a = 1 "
    "with its hyperbola of stable fixed points w_p w = 1/2 and a saddle at the origin; the "
    "invariant submanifold w = w_p with the stable point w = w_a = 1/2; without a predictor "
    "only the origin, stable.",
)
def build(quick):
    d = data(n_grid=13 if quick else 21, t1=30.0 if quick else 60.0)
    return draw(d), d["params"]
