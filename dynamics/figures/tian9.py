"""Tian, Chen & Ganguli (2021), Fig. 9: the commutator ``[F, Wp]`` under the symmetrised flow.

Their Eqn. 67 is the flow with ``Wp`` kept symmetric (Assumption 3), a time-independent target
scale ``tau`` (``Wa = tau W``) and isotropic data. Here: the linear model with the
``"symmetric"`` predictor (``Wp = (P + P^T)/2``, whose gradient flow is the symmetrised update)
and target ``tau W`` under stop-gradient, from a small random initialisation. Theorem 3:
``[F, Wp]' = -[F, Wp] K - K [F, Wp]`` with
``K = a (alpha_p F / 2 + Wp^2 - tau Wp / a) + 3 eta / 2``; from a small start ``K ~ -tau Wp``
has negative eigenvalues, so ``||[F, Wp]||_F`` first grows (more for small ``eta`` and large
``tau``) and decays once ``K`` is positive definite. A run that collapses (``F -> 0``) is drawn
as collapsed, by the absolute commutator, never as a ratio of vanishing norms, and its cause is
read from its own data: past ``eta = tau^2 / (4a)`` no non-trivial fixed point exists (Tian et
al.'s Obs. 5); below it a run collapses when the small start lies in the collapse basin, every
predictor eigenvalue ``p_j(0)`` below the unstable point
``p_- = (tau - sqrt(tau^2 - 4 a eta)) / (2a)`` (Obs. 4: the basin grows with ``eta``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.figures.registry import register
from dynamics.figures.compute import ScaledTarget, euler_lanes, hyper_lanes, lambda_min_K
from dynamics.flow import VARIANTS, State
from dynamics.models import linear as lin

__all__ = ["build", "data", "draw"]

COLLAPSED_S = 1e-6   # largest eigenvalue of F = W W^T below this at T: collapsed


def data(n=8, sigma2=0.5, etas=(0.0, 0.01, 0.05, 0.2), taus=(0.5, 1.0, 1.5), scale=0.03,
         lr=0.01, T=150.0, seed=0, save_every=20):
    base = lin.LinearSiamese.isotropic(n, sigma2, predictor="symmetric")
    v = VARIANTS["simsiam"]
    a = 1.0 + sigma2
    y1 = lin.random_state(jax.random.PRNGKey(seed), base, v, n, scale=scale)
    n_steps = int(round(T / lr / save_every)) * save_every
    runs = {}
    for tau in taus:
        model = ScaledTarget(base, tau)
        k = len(etas)
        y0 = State(jnp.stack([y1.enc] * k), jnp.stack([y1.pred] * k), None)
        hyper = hyper_lanes(np.array(etas), 1.0, 1.0, "tian")
        ts, ys = euler_lanes(model, v, hyper, y0, jnp.full(k, lr), n_steps=n_steps,
                             save_every=save_every)
        W = np.concatenate([np.asarray(y0.enc)[:, None], np.asarray(ys.enc)], 1)
        P = np.concatenate([np.asarray(y0.pred)[:, None], np.asarray(ys.pred)], 1)
        P = 0.5 * (P + np.swapaxes(P, -1, -2))
        F = W @ np.swapaxes(W, -1, -2)
        comm = np.linalg.norm(F @ P - P @ F, axis=(-2, -1))
        smax = np.linalg.eigvalsh(F)[..., -1]
        lam = np.asarray(lambda_min_K(jnp.asarray(F), jnp.asarray(P), sigma2, 1.0,
                                       jnp.full(F.shape[:2], tau), jnp.asarray(etas)))
        p0 = np.linalg.eigvalsh(P[:, 0])
        for i, eta in enumerate(etas):
            past_fold = bool(eta > tau**2 / (4 * a))
            p_minus = (np.nan if past_fold
                       else (tau - np.sqrt(tau**2 - 4 * a * eta)) / (2 * a))
            collapsed = bool(smax[i, -1] < COLLAPSED_S)
            cause = None
            if collapsed:
                cause = "fold" if past_fold else ("basin" if p0[i].max() < p_minus else "other")
            runs[(tau, eta)] = dict(comm=comm[i], smax=smax[i], lam_min=lam[i],
                                    collapsed=collapsed, theory_collapse=past_fold,
                                    p0_max=float(p0[i].max()), p_minus=float(p_minus),
                                    cause=cause)
    ts = np.concatenate([[0.0], np.asarray(ts)[0]])
    return dict(ts=ts, runs=runs, etas=list(etas), taus=list(taus), a=a,
                params=dict(n1=n, n2=n, sigma2=sigma2, etas=list(etas), taus=list(taus),
                            init_scale=scale, lr=lr, T=T, seed=seed, alpha_p=1.0,
                            predictor="symmetric (Eqn. 67)", collapsed_below=COLLAPSED_S,
                            init=f"W, Wp entries ~ N(0, {scale:g}^2 / n), Wp symmetrised, one "
                                 f"draw (seed {seed}) for every run; target tau W at all times "
                                 "(no EMA state)",
                            collapse_causes={f"tau={t:g}, eta={e:g}": r["cause"]
                                             for (t, e), r in runs.items() if r["collapsed"]},
                            paper="symmetrised dynamics Eqn. 67, time-independent tau, eta "
                                  "down to 0, small initialisation",
                            differences="the paper does not state n, sigma2, the tau and eta "
                                        "values, the init scale or T; these are chosen so "
                                        "that the sweep crosses eta = tau^2/(4a)"))


def draw(d):
    pr, ts, a = d["params"], d["ts"], d["a"]
    taus, etas = d["taus"], d["etas"]
    fig, axes = plt.subplots(2, len(taus), figsize=(5.2 * len(taus), 8.4), squeeze=False)
    cols = plot.sweep_colors(len(etas), "viridis")
    for j, tau in enumerate(taus):
        ax_c, ax_s = axes[:, j]
        for c, eta in zip(cols, etas):
            r = d["runs"][(tau, eta)]
            if r["collapsed"]:
                kw = dict(color=c, ls="--", lw=1.3, alpha=0.8)
                if r["cause"] == "fold":
                    why = r"$\eta > \tau^2/4a$ (Obs. 5)"
                elif r["cause"] == "basin":
                    why = (rf"start in the basin, $p_j(0) \leq$ {r['p0_max']:.3f} $< p_-$ = "
                           rf"{r['p_minus']:.3f} (Obs. 4)")
                else:
                    why = "other"
                lab = rf"$\eta$ = {eta:g}: collapsed, {why}"
            else:
                kw = dict(color=c, ls="-", lw=1.8)
                lab = rf"$\eta$ = {eta:g}"
            ax_c.semilogy(ts, np.maximum(r["comm"], 1e-30), label=lab, **kw)
            ax_s.semilogy(ts, np.maximum(r["smax"], 1e-30), label=lab, **kw)
        ax_c.axhline(d["runs"][(tau, etas[0])]["comm"][0], color="k", ls=":", lw=1,
                     label="value at $t$ = 0")
        ax_c.set_title(rf"$\tau$ = {tau:g}: $\|[F, W_p]\|_F$ (no non-trivial fixed point "
                       rf"for $\eta > \tau^2/4a$ = {tau**2 / (4 * a):.3g})", fontsize=9.5)
        ax_s.set_title(rf"$\tau$ = {tau:g}: largest eigenvalue of $F = WW^\top$", fontsize=9.5)
        ax_c.set_ylabel(r"$\|FW_p - W_pF\|_F$")
        ax_s.set_ylabel(r"$s_{\max}(t)$")
        lo = min(np.min(d["runs"][(tau, e)]["comm"][: len(ts) // 2]) for e in etas)
        ax_c.set_ylim(max(lo * 0.3, 1e-12), None)
        ax_s.set_ylim(1e-8, None)
        for ax in (ax_c, ax_s):
            ax.set_xlabel("time $t$")
            ax.grid(alpha=0.3)
            plot.dedup_legend(ax, loc="lower right", fontsize=6.5)
    fig.suptitle(
        rf"Tian et al. (2021) Fig. 9: symmetrised predictor flow (Eqn. 67) at fixed $\tau$, "
        rf"$n$ = {pr['n1']}, $X = I$, $X' = \sigma^2 I$, $\sigma^2$ = {pr['sigma2']:g}, "
        rf"$\alpha_p$ = 1, small init (scale {pr['init_scale']:g}), Euler step {pr['lr']:g}" "\n"
        r"the commutator shoots up before it decays when $\eta$ is small and/or $\tau$ large; "
        r"collapsed runs (dashed, $s_{\max}(T) < 10^{-6}$) lose F and the commutator together:" "\n"
        r"past $\eta = \tau^2/4a$ because no non-trivial fixed point is left (Obs. 5), below it "
        r"because the small start lies in the collapse basin, $p_j(0) < p_-$ (Obs. 4)",
        fontsize=9.5)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


@register(
    "tian9",
    "Tian et al. (2021) Fig. 9: norm of the commutator [F, Wp] (F = W W^T) under the "
    "symmetrised predictor flow at fixed target scales tau, from a small initialisation, "
    "for weight decays eta down to 0: it shoots up before decaying when eta is small and/or "
    "tau large. Collapsed runs are drawn as collapsed, with their cause: eta > tau^2/(4a) "
    "(no non-trivial fixed point, Obs. 5) or, below it, a start whose predictor eigenvalues "
    "lie under p_- (the collapse basin, Obs. 4).",
)
def build(quick):
    kw = dict(n=4, T=100.0) if quick else {}
    d = data(**kw)
    return draw(d), d["params"]
