"""Tian, Chen & Ganguli (2021), Fig. 5: linear BYOL with a symmetric predictor.

The model is :class:`dynamics.models.linear.LinearSiamese` with ``X = I``, ``X' = sigma2 I``,
run by explicit Euler on the expected-loss flow (step 0.01 in ODE time, the discrete mapping of
the paper's synthetic figures), the target started at ``W_a(0) = 0``: sweeps of ``eta`` and
of ``beta`` of ``lambda_min(K)`` (Theorem 3), the predictor's eigenvalues ``p_j(t)`` and those
``s_j(t)`` of ``W W^T``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS
from dynamics.models.linear import LinearSiamese

__all__ = ["build", "data", "draw"]


def data(n=8, sigma2=0.5, alpha_p=1.0, lr=0.01, T=150.0, etas=(0.01, 0.04, 0.1, 0.2),
         betas=(0.1, 0.4, 1.0, 4.0), eta0=0.04, beta0=0.4, scale=0.1, seed=0,
         save_every=10, target0="zero"):
    """Linear BYOL with a symmetric predictor (Theorem 3's setting), one init for all runs.

    ``W`` and ``Wp`` start small (entries of std ``scale / sqrt(n)``): the paper's modes
    "grow from small random initial conditions". The init sets the order of the beta row: at
    ``scale = 0.1`` the lowest ``lambda_min(K)`` of the run rises as ``beta`` falls (-0.051,
    -0.050, -0.047, -0.009 for beta = 4, 1, 0.4, 0.1 at n = 8), while from a large init
    (0.6) ``beta = 0.1`` dips below zero for longest (81 time units against 21 for ``beta =
    4``), the opposite of the paper. The target starts at ``Wa(0) = 0`` (``target0="zero"``)
    as in the paper, so ``tau(0) = 0`` and the EMA acts as a curriculum from the start;
    ``target0="online"`` starts it at ``W(0)``.

    Sweeps ``eta`` at ``beta = beta0`` and ``beta`` at ``eta = eta0``. Records the eigenvalues
    ``p_j`` of ``Wp``, ``s_j`` of ``F = W W^T``, ``tau = tr(Wa W^T)/tr(W W^T)`` and
    ``lambda_min(K)``, ``K = a (alpha_p/2 F + Wp^2 - tau/a Wp) + 3/2 eta I``.
    """
    model = LinearSiamese.isotropic(n, sigma2, predictor="symmetric")
    v = VARIANTS["byol"]
    a = 1.0 + sigma2
    n_steps = int(round(T / lr / save_every)) * save_every
    configs = [("eta", e, e, beta0) for e in etas] + [("beta", b, eta0, b) for b in betas]
    key = jax.random.PRNGKey(seed)
    y0 = C.init_lanes(model, v, n, jnp.stack([key] * len(configs)), scale, target0=target0)
    eta_l = np.array([c[2] for c in configs])
    beta_l = np.array([c[3] for c in configs])
    hyper = C.hyper_lanes(eta_l, 1.0 / alpha_p, beta_l, "tian")
    ts, ys = C.euler_lanes(model, v, hyper, y0, jnp.full(len(configs), lr), n_steps=n_steps,
                           save_every=save_every)
    ts = np.concatenate([[0.0], np.asarray(ts)[0]])
    W = np.concatenate([np.asarray(y0.enc)[:, None], np.asarray(ys.enc)], 1)
    P = C.symmetric_part(np.concatenate([np.asarray(y0.pred)[:, None], np.asarray(ys.pred)], 1))
    Wa = np.concatenate([np.asarray(y0.tgt)[:, None], np.asarray(ys.tgt)], 1)
    F = W @ np.swapaxes(W, -1, -2)
    p = np.linalg.eigvalsh(P)
    s = np.linalg.eigvalsh(F)
    tau = C.target_scale(W, Wa)
    lam_min = np.asarray(C.lambda_min_K(jnp.asarray(F), jnp.asarray(P), sigma2, alpha_p,
                                        jnp.asarray(tau), jnp.asarray(eta_l)))
    runs = [dict(sweep=c[0], value=c[1], eta=c[2], beta=c[3], p=p[i], s=s[i], tau=tau[i],
                 lam_min=lam_min[i]) for i, c in enumerate(configs)]
    return dict(ts=ts, runs=runs, eta_crit=1.0 / (4 * a),
                params=dict(n1=n, n2=n, sigma2=sigma2, alpha_p=alpha_p, lr=lr, T=T,
                            etas=list(etas), betas=list(betas), eta0=eta0, beta0=beta0,
                            init_scale=scale, seed=seed, predictor="symmetric", variant="byol",
                            Wa0="0" if target0 == "zero" else "W(0)",
                            init=f"W, Wp entries ~ N(0, {scale:g}^2 / n), Wp symmetrised; "
                                 f"Wa(0) = {'0' if target0 == 'zero' else 'W(0)'}; one draw "
                                 f"(seed {seed}) shared by every run",
                            paper="Euler step 0.01, beta = 0.4 (1 - gamma_a = 0.004), eta = "
                                  "0.04, Wa(0) = 0",
                            differences="the full matrix flow with a symmetrised predictor "
                                        "(Theorem 3's setting) instead of the decoupled "
                                        "per-mode Eqns. 11-13; n, sigma2, the init scale "
                                        "(the paper: small random initial conditions) and "
                                        "the sweep values are not stated in the paper"))


def draw(data):
    """eta and beta sweeps of lambda_min(K), p_j(t), s_j(t) (Tian et al. 2021, Fig. 5)."""
    pr = data["params"]
    ts = data["ts"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.4))
    for row, (sweep, sym, cmap) in enumerate((("eta", r"\eta", "viridis"),
                                               ("beta", r"\beta", "plasma"))):
        runs = [r for r in data["runs"] if r["sweep"] == sweep]
        cols = plot.sweep_colors(len(runs), cmap)
        ax_k, ax_p, ax_s = axes[row]
        for c, r in zip(cols, runs):
            lab = rf"${sym}$ = {r['value']:g}"
            ax_k.semilogx(ts[1:], r["lam_min"][1:], color=c, lw=1.8, label=lab)
            for j in range(r["p"].shape[1]):
                ax_p.plot(ts, r["p"][:, j], color=c, lw=1.0, label=lab if j == 0 else None)
                ax_s.plot(ts, r["s"][:, j], color=c, lw=1.0, label=lab if j == 0 else None)
        ax_k.axhline(0, color="k", lw=0.8, ls=":", label=r"$\lambda_{\min}(K) = 0$")
        fixed = (rf"$\beta$ = {pr['beta0']:g}" if sweep == "eta" else rf"$\eta$ = {pr['eta0']:g}")
        ax_k.set_title(rf"$\lambda_{{\min}}(K)$, sweep of ${sym}$ ({fixed}; log time)", fontsize=10)
        ax_p.set_title(rf"predictor eigenvalues $p_j(t)$, sweep of ${sym}$", fontsize=10)
        ax_s.set_title(rf"eigenvalues $s_j(t)$ of $F = WW^\top$, sweep of ${sym}$", fontsize=10)
        ax_k.set_ylabel(r"$\lambda_{\min}(K)$")
        ax_p.set_ylabel(r"$p_j$")
        ax_s.set_ylabel(r"$s_j$")
        for ax in (ax_k, ax_p, ax_s):
            ax.set_xlabel("time $t$")
            ax.grid(alpha=0.3)
            plot.dedup_legend(ax, loc="best", fontsize=7)
    fig.suptitle(
        rf"Linear BYOL, symmetric predictor (Tian et al. 2021, Fig. 5): $n_1=n_2$={pr['n1']}, "
        rf"$X=I$, $X'=\sigma^2 I$, $\sigma^2$={pr['sigma2']:g}, $\alpha_p$={pr['alpha_p']:g}, "
        rf"Euler step {pr['lr']:g}, small init (std {pr['init_scale']:g}$/\sqrt{{n}}$), "
        rf"target from $W_a(0)$ = {pr['Wa0']}" "\n"
        r"$K = a(\alpha_p F/2 + W_p^2 - \tau W_p/a) + 3\eta I/2$, "
        r"$\tau = \mathrm{tr}(W_aW^\top)/\mathrm{tr}(WW^\top)$" "\n"
        r"a larger $\eta$ keeps $\lambda_{\min}(K)$ above 0 but lowers or kills $p_j$, $s_j$; "
        r"a smaller $\beta$ keeps $\tau$ small and the dip of $\lambda_{\min}(K)$ shallower over "
        r"the whole run (the EMA curriculum), at the cost of slower growth", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.91))
    return fig


@register(
    "tian5",
    "Tian et al. (2021) Fig. 5: linear BYOL with a symmetric predictor, target from "
    "W_a(0) = 0, Euler step 0.01, sweeps of eta (beta = 0.4) and of beta (eta = 0.04): "
    "lambda_min(K), predictor eigenvalues p_j(t), eigenvalues s_j(t) of W W^T, from a small "
    "init; a smaller beta keeps the lowest lambda_min(K) of the run higher and converges slower.",
)
def build(quick):
    kw = dict(n=4, T=60.0) if quick else {}
    d = data(**kw)
    return draw(d), d["params"]
