"""The predictor's relative learning rate ``alpha_p`` in the matrix model (Tian et al. 2021,
Obs. 1, 2, 6 and the symmetric predictor without EMA of their Fig. 6).

Linear SimSiam (no EMA, ``W_a = W``) with a symmetric predictor (Theorem 3's setting), ``X = I``,
``X' = sigma2 I``, from a small random start, GD (Euler step 0.01) and SGD. A larger ``alpha_p``
saves more modes from collapse (Obs. 1) and shortens the time ``K`` of Theorem 3 stays
indefinite (Obs. 6), but the learned eigenvalues shrink (Obs. 2): with weight decay every
surviving mode ends on the invariant parabola at ``p_+``, so ``s = p_+^2 / alpha_p`` with
``p_+ = (1 + sqrt(1 - 4 a eta)) / (2a)`` (docs/theory.md sections 2, 3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS
from dynamics.models.linear import LinearSiamese
from dynamics.solve.discrete import run_discrete

__all__ = ["ALIVE", "build", "data", "draw", "run", "s_theory"]

ALIVE = 1e-4  # an eigenvalue s_j of W W^T above this at the end: a surviving mode


def s_theory(alpha_p, sigma2, eta):
    """Final ``s`` of a surviving mode with weight decay: ``p_+^2 / alpha_p``."""
    a = 1.0 + sigma2
    return ((1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)) ** 2 / np.asarray(alpha_p, float)


def run(alphas, seeds, n=8, sigma2=0.5, eta=0.04, scale=0.1, lr=0.01, T=150.0, save_every=50,
        batch_size=None, sgd_seed=0):
    """One lane per ``(alpha_p, init seed)``; returns ``ts``, eigenvalues ``s`` of ``W W^T``
    (lanes, T, n) and ``lambda_min(K)`` (lanes, T) of Theorem 3 with ``tau = 1``."""
    model = LinearSiamese.isotropic(n, sigma2, predictor="symmetric")
    v = VARIANTS["simsiam"]
    A = np.repeat(np.asarray(alphas, float), len(seeds))
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds] * len(alphas))
    y0 = C.init_lanes(model, v, n, keys, scale)
    hyper = C.hyper_lanes(np.full(len(A), eta), 1.0 / A, np.ones(len(A)), "tian")
    n_steps = int(round(T / lr / save_every)) * save_every
    if batch_size is None:
        ts, ys = C.euler_lanes(model, v, hyper, y0, jnp.full(len(A), lr), n_steps=n_steps,
                               save_every=save_every)
    else:
        sk = jax.random.split(jax.random.PRNGKey(sgd_seed), len(A))
        ts, ys = _sgd_lanes(model, v, hyper, y0, sk, lr, n_steps, save_every, batch_size)
    W = np.asarray(ys.enc)
    P = C.symmetric_part(np.asarray(ys.pred))
    F = W @ np.swapaxes(W, -1, -2)
    lam = np.stack([np.asarray(C.lambda_min_K(jnp.asarray(F[i:i + 1]), jnp.asarray(P[i:i + 1]),
                                              sigma2, float(A[i]), jnp.ones((1, F.shape[1])),
                                              jnp.asarray([eta])))[0] for i in range(len(A))])
    return np.asarray(ts)[0], np.linalg.eigvalsh(F), lam


def _sgd_lanes(model, v, hyper, y0, keys, lr, n_steps, save_every, batch_size):
    @jax.jit
    def go(h, y, k):
        def one(hh, yy, kk):
            sol = run_discrete(model, v, hh, yy, lr, n_steps, batch_size=batch_size, key=kk,
                               save_every=save_every)
            return sol.ts, sol.ys
        return jax.vmap(one)(h, y, k)
    return go(hyper, y0, keys)


def summarise(ts, s, lam, n_alpha):
    """Per lane: surviving modes, largest final ``s`` and the time ``lambda_min(K) < 0``."""
    dt = ts[1] - ts[0]
    surv = (s[:, -1] > ALIVE).sum(-1).reshape(n_alpha, -1)
    smax = s[:, -1].max(-1).reshape(n_alpha, -1)
    neg = ((lam < 0).sum(-1) * dt).reshape(n_alpha, -1)
    return surv, smax, neg


def data(quick=False, sigma2=0.5, eta=0.04, n=8, scale=0.1):
    alphas = np.array([0.5, 2.0, 10.0]) if quick else np.geomspace(0.5, 10.0, 9)
    seeds = (0,) if quick else (0, 1, 2, 3)
    ts, s, lam = run(alphas, seeds, n, sigma2, eta, scale)
    gd = summarise(ts, s, lam, len(alphas))
    sgd = None
    if not quick:
        ts2, s2, lam2 = run(alphas, seeds, n, sigma2, eta, scale, batch_size=16)
        sgd = summarise(ts2, s2, lam2, len(alphas))
    return dict(alphas=alphas, seeds=seeds, ts=ts, lam=lam, gd=gd, sgd=sgd, n=n, eta=eta,
                sigma2=sigma2,
                params=dict(model="linear SimSiam (no EMA), symmetric predictor (Theorem 3's "
                                  "symmetrised update), X = I, X' = sigma2 I, Tian convention",
                            n1=n, n2=n, sigma2=sigma2, eta=eta, lr=0.01, T=150.0,
                            init=f"W, Wp entries ~ N(0, {scale:g}^2 / n), init seeds "
                                 f"{list(seeds)}, the same draws for every alpha_p",
                            alphas=[round(float(x), 4) for x in alphas],
                            sgd="batch 16, step 0.01" if not quick else "left out (--quick)",
                            alive=f"eigenvalue of W W^T > {ALIVE:g} at T",
                            paper="Tian et al. Obs. 1, 2, 6 and Fig. 6 (STL-10/CIFAR-10: a "
                                  "symmetric predictor without EMA works for alpha_p > 1); the "
                                  "paper gives no synthetic setting for it"))


def draw(d):
    al = d["alphas"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 5.0))
    a1, a2, a3, a4 = axes
    for key, st, lab in (("gd", "o-", "GD (Euler step 0.01)"), ("sgd", "s--", "SGD, batch 16")):
        r = d[key]
        if r is None:
            continue
        surv, smax, neg = r
        a1.errorbar(al, surv.mean(1), yerr=surv.std(1), fmt=st, ms=5, capsize=3, label=lab)
        a2.loglog(al, smax.mean(1), st, ms=5, label=lab)
        a3.errorbar(al, neg.mean(1), yerr=neg.std(1), fmt=st, ms=5, capsize=3, label=lab)
    aa = np.geomspace(al[0], al[-1], 200)
    a2.loglog(aa, s_theory(aa, d["sigma2"], d["eta"]), "r-", lw=5, alpha=0.35, zorder=0,
              label=r"theory $p_+^2/\alpha_p$ (invariant parabola)")
    a1.set_ylim(0, d["n"] + 0.5)
    a1.set_ylabel(f"surviving modes (of {d['n']}), mean $\\pm$ sd over inits")
    a1.set_title(r"(a) modes saved from collapse (Obs. 1)", fontsize=10)
    a2.set_ylabel(r"largest eigenvalue $s_{\max}$ of $WW^\top$ at the end")
    a2.set_title(r"(b) the learned scale shrinks as $1/\alpha_p$ (Obs. 2)", fontsize=10)
    a3.set_ylabel(r"time with $\lambda_{\min}(K) < 0$")
    a3.set_title(r"(c) how long $K$ of Theorem 3 stays indefinite (Obs. 6)", fontsize=10)
    cols = plt.cm.viridis(np.linspace(0, 0.9, len(al)))
    n_seeds = len(d["seeds"])
    for i, c in enumerate(cols):
        a4.semilogx(d["ts"], d["lam"][i * n_seeds], color=c, lw=1.3,
                    label=rf"$\alpha_p$ = {al[i]:.3g}")
    a4.axhline(0, color="k", lw=0.8, ls=":")
    a4.set_xlabel("time $t$ (log)")
    a4.set_ylabel(r"$\lambda_{\min}(K)$, GD, first init")
    a4.set_title(r"(d) $\lambda_{\min}(K(t))$, $K = a(\alpha_p F/2 + W_p^2 - W_p/a) + 3\eta I/2$",
                 fontsize=10)
    a4.legend(fontsize=7, ncol=2)
    for ax in (a1, a2, a3):
        ax.set_xscale("log")
        ax.set_xlabel(r"predictor's relative learning rate $\alpha_p$")
        ax.legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(rf"Predictor learning rate: linear SimSiam without EMA, symmetric predictor, "
                 rf"$n$ = {d['n']}, $X = I$, $X' = \sigma^2 I$, $\sigma^2$ = {d['sigma2']:g}, "
                 rf"$\eta$ = {d['eta']:g}, small init (std 0.1$/\sqrt{{n}}$), $t \leq 150$",
                 fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig


@register(
    "predictor_lr",
    "The predictor's relative learning rate alpha_p in linear SimSiam without EMA (symmetric "
    "predictor, small init, GD and SGD): surviving modes, the largest learned eigenvalue against "
    "the invariant parabola's p_+^2/alpha_p, and the time lambda_min(K) < 0 (Tian Obs. 1, 2, 6).",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
