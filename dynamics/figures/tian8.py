"""Tian, Chen & Ganguli (2021), Fig. 8: the predictor becomes symmetric (their Appendix B).

Their Eqn. 62 is the non-symmetrised flow with a time-independent target scale ``tau``
(``Wa = tau W``, Assumption 1) and isotropic data (``X = I``, ``X' = sigma2 I``), in the setting
``F = Wp^T Wp``, i.e. Theorem 1's invariant ``W W^T - Wp^T Wp / alpha_p = e^{-2 eta t} C`` with
``C = 0`` (``alpha_p = 1``). Here it is the linear model with a trained predictor, target
``tau W`` under stop-gradient (:class:`dynamics.figures.compute.ScaledTarget`), started on
``C = 0`` by taking ``W(0) = (Wp(0)^T Wp(0))^{1/2}``; the flow keeps ``C = 0`` (up to the
Euler step's O(h) drift, which the figure reports).

Drawn: ``||A||_F`` and ``||B||_F`` of ``A = (Wp + Wp^T)/2``, ``B = (Wp - Wp^T)/2`` over time,
one row per ``eta`` in the paper's ``{0.001, 0.01, 0.05}``, one curve per ``tau``. ``B`` decays;
``A`` keeps the modes whose eigenvalue reaches ``p_+ = (tau + sqrt(tau^2 - 4 a eta)) / (2a)``
and loses every mode when ``eta > tau^2 / (4a)`` (Obs. 4, 5).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.figures.registry import register
from dynamics.figures.compute import ScaledTarget, euler_lanes, hyper_lanes
from dynamics.flow import VARIANTS, State
from dynamics.models import linear as lin

__all__ = ["build", "data", "draw", "p_plus"]


def p_plus(tau, eta, a):
    """Stable non-trivial predictor eigenvalue at fixed ``tau`` (nan past ``eta = tau^2/(4a)``)."""
    disc = tau**2 - 4.0 * a * eta
    return np.where(disc >= 0, (tau + np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a), np.nan)


def data(n=8, sigma2=0.5, etas=(0.001, 0.01, 0.05), taus=(0.5, 1.0, 1.5), scale=0.6, lr=0.01,
         T=200.0, seed=0, save_every=50):
    base = lin.LinearSiamese.isotropic(n, sigma2, predictor="trained")
    v = VARIANTS["simsiam"]
    a = 1.0 + sigma2
    key = jax.random.PRNGKey(seed)
    P0 = scale * jax.random.normal(key, (n, n)) / jnp.sqrt(n)
    w, U = jnp.linalg.eigh(P0.T @ P0)
    W0 = (U * jnp.sqrt(jnp.clip(w, 0.0))) @ U.T          # W W^T = Wp^T Wp: C = 0
    grid = [(tau, eta) for eta in etas for tau in taus]
    n_steps = int(round(T / lr / save_every)) * save_every
    out = {}
    for tau in taus:
        model = ScaledTarget(base, tau)
        k = len(etas)
        y0 = State(jnp.stack([W0] * k), jnp.stack([P0] * k), None)
        hyper = hyper_lanes(np.array(etas), 1.0, 1.0, "tian")
        ts, ys = euler_lanes(model, v, hyper, y0, jnp.full(k, lr), n_steps=n_steps,
                             save_every=save_every)
        W = np.concatenate([np.asarray(y0.enc)[:, None], np.asarray(ys.enc)], 1)
        P = np.concatenate([np.asarray(y0.pred)[:, None], np.asarray(ys.pred)], 1)
        A = 0.5 * (P + np.swapaxes(P, -1, -2))
        B = 0.5 * (P - np.swapaxes(P, -1, -2))
        F = W @ np.swapaxes(W, -1, -2)
        G = np.swapaxes(P, -1, -2) @ P
        for i, eta in enumerate(etas):
            out[(tau, eta)] = dict(
                A=np.linalg.norm(A[i], axis=(-2, -1)), B=np.linalg.norm(B[i], axis=(-2, -1)),
                A_eigs_end=np.linalg.eigvalsh(A[i, -1]),
                C_drift=np.max(np.linalg.norm(F[i] - G[i], axis=(-2, -1))
                               / np.maximum(np.linalg.norm(F[i], axis=(-2, -1)), 1e-300)),
                p_plus=float(p_plus(tau, eta, a)), collapses=bool(eta > tau**2 / (4 * a)))
    ts = np.concatenate([[0.0], np.asarray(ts)[0]])
    return dict(ts=ts, runs=out, etas=list(etas), taus=list(taus), a=a, grid=grid,
                params=dict(n1=n, n2=n, sigma2=sigma2, etas=list(etas), taus=list(taus),
                            init_scale=scale, lr=lr, T=T, seed=seed, alpha_p=1.0,
                            predictor="trained (not symmetrised)", C=0,
                            paper="Eqn. 62, time-independent tau, eta in {0.001, 0.01, 0.05}, "
                                  "F = Wp^T Wp (C = 0)",
                            differences="n, sigma2, the tau values, the init and T are not "
                                        "stated in the paper; F = W W^T is integrated with W "
                                        "(C = 0 at the start) rather than substituted"))


def draw(d):
    pr, ts = d["params"], d["ts"]
    etas, taus = d["etas"], d["taus"]
    fig, axes = plt.subplots(len(etas), 2, figsize=(12.5, 3.3 * len(etas) + 1.0), squeeze=False)
    cols = plot.sweep_colors(len(taus), "plasma")
    for i, eta in enumerate(etas):
        ax_a, ax_b = axes[i]
        for c, tau in zip(cols, taus):
            r = d["runs"][(tau, eta)]
            lab = rf"$\tau$ = {tau:g}" + (" (collapses: $\\eta > \\tau^2/4a$)" if r["collapses"]
                                          else "")
            ax_a.semilogy(ts, np.maximum(r["A"], 1e-12), color=c, lw=1.8, label=lab)
            ax_b.semilogy(ts, np.maximum(r["B"], 1e-12), color=c, lw=1.8, label=lab)
        drift = max(d["runs"][(t, eta)]["C_drift"] for t in taus)
        ax_a.set_title(rf"$\eta$ = {eta:g}: symmetric part $\|A\|_F$", fontsize=10)
        ax_b.set_title(rf"$\eta$ = {eta:g}: antisymmetric part $\|B\|_F$ "
                       rf"(max $\|WW^\top - W_p^\top W_p\|/\|WW^\top\|$ = {drift:.0e})",
                       fontsize=10)
        for ax in (ax_a, ax_b):
            ax.set_xlabel("time $t$")
            ax.grid(alpha=0.3)
            plot.dedup_legend(ax, loc="lower left", fontsize=7)
        ax_a.set_ylabel(r"$\|(W_p + W_p^\top)/2\|_F$")
        ax_b.set_ylabel(r"$\|(W_p - W_p^\top)/2\|_F$")
    fig.suptitle(
        rf"Tian et al. (2021) Fig. 8: non-symmetrised predictor flow (Eqn. 62) at fixed $\tau$, "
        rf"$F = W_p^\top W_p$ ($C$ = 0), $n$ = {pr['n1']}, $X = I$, $X' = \sigma^2 I$, "
        rf"$\sigma^2$ = {pr['sigma2']:g}, $\alpha_p$ = 1, Euler step {pr['lr']:g}" "\n"
        r"$\|B\|_F \to 0$; $\|A\|_F$ is dragged to 0 when $\eta$ is large and/or $\tau$ small "
        r"($\eta > \tau^2/(4a)$)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


@register(
    "tian8",
    "Tian et al. (2021) Fig. 8: norms of the symmetric part A and antisymmetric part B of a "
    "trained (non-symmetrised) predictor at fixed target scales tau, one row per weight decay "
    "eta in {0.001, 0.01, 0.05}, in the paper's C = 0 setting (F = Wp^T Wp): B vanishes; A "
    "vanishes too when eta > tau^2 / (4a).",
)
def build(quick):
    kw = dict(n=4, T=60.0) if quick else {}
    d = data(**kw)
    return draw(d), d["params"]
