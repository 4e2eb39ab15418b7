"""Non-isotropic data whose ``X`` and ``X'`` do not commute (Tian et al. 2021, Appendix D).

Linear SimSiam and BYOL (``beta = 1``, target starting at ``W``), ``n1 = 6`` inputs, ``n2 = 3``
features, trained predictor, ``alpha_p = 1``, no weight decay, GD (Euler) on the expected flow
from small random starts. ``X`` and ``X'`` are random SPD matrices on unrelated eigenbases, so
neither the eigenvectors of ``X`` nor those of ``X'`` diagonalise the flow and the per-mode
reduction of docs/theory.md does not apply.

The paper's prediction (Appendix D.1): with ``Sigma^s = X + X' = S`` and ``Sigma^d = X``, every
fixed point with ``W = W_a`` satisfies ``W_p W = W X S^{-1}``, and the non-collapsed ones have the
rows of ``W`` spanning left eigenvectors of ``X S^{-1}``, with ``W_p``'s eigenvalues the
corresponding eigenvalues; the top ones "control the non-collapsed solutions". Left eigenvectors
of ``X S^{-1}`` are the generalised eigenvectors ``X v_j = lambda_j S v_j`` (``0 < lambda_j <
1``, ``V^T S V = I``). Written out, what this predicts and what is tested:

* the fixed-point residual ``||W_p W S - W X|| / ||W X||`` goes to 0;
* the weight of ``W`` on generalised mode ``j``, ``m_j = ||W S v_j||`` (``W^T = V (W S V)^T``),
  vanishes for every mode not learned, so the row space of ``W`` is spanned by learned ``v_j``:
  the directions are neither the principal components of ``X`` nor those of the whitened
  ``S^{-1/2} X S^{-1/2}`` (whose eigenvectors are ``S^{1/2} v_j``, not ``v_j``);
* each learned ``W S v_j`` is an eigenvector of ``W_p`` with eigenvalue ``lambda_j``
  (``W_p W S v_j = W X v_j = lambda_j W S v_j``).

Which modes are learned from a small start is a matter of dynamics: the top ``n2`` for most
starts; a start whose predictor begins negative on a mode can leave that mode at zero (the
trapped branch of the isotropic analysis), and ``W`` then has lower rank.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import scipy.linalg as sla

from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models.linear import LinearSiamese, random_spd

__all__ = ["LEARNED", "build", "data", "draw", "generalized_modes", "matrices", "mode_weights",
           "run", "sin_angle"]

LEARNED = 1e-3  # a generalised mode with m_j / max_k m_k above this at the end is learned


def matrices(n1=6, key_x=10, key_xp=11):
    """``(X, X')``: random SPD on independent Haar eigenbases (eigenvalues evenly spread over
    [0.2, 2] and [0.05, 1.5]); they do not commute."""
    X = random_spd(jax.random.PRNGKey(key_x), n1, 0.2, 2.0)
    Xp = random_spd(jax.random.PRNGKey(key_xp), n1, 0.05, 1.5)
    return np.asarray(X), np.asarray(Xp)


def generalized_modes(X, Xp):
    """``(lambda (descending), V)`` with ``X V = S V diag(lambda)``, ``S = X + X'``,
    ``V^T S V = I``: the right eigenvectors of ``S^{-1} X`` (left eigenvectors of ``X S^{-1}``)."""
    lam, V = sla.eigh(X, X + Xp)
    return lam[::-1], V[:, ::-1]


def mode_weights(W, S, V):
    """``m_j = ||W S v_j||`` over the leading axes of ``W`` (``... x n2 x n1``)."""
    return np.linalg.norm(np.asarray(W) @ (S @ V), axis=-2)


def sin_angle(W, B, r):
    """Sine of the largest principal angle between the top-``r`` right singular space of ``W``
    (its row space when ``rank W = r``) and the span of ``B``'s columns."""
    _, _, vt = np.linalg.svd(W)
    return float(np.sin(np.max(sla.subspace_angles(vt[:r].T, B))))


def run(variant, seeds, X, Xp, *, n2=3, scale=0.1, lr=0.02, T=400.0, save_every=250):
    """One lane per init seed; returns ``(ts, State (L, T, ...))`` (no weight decay,
    ``alpha_p = beta = 1``)."""
    model = LinearSiamese(jnp.asarray(X), jnp.asarray(Xp))
    v = VARIANTS[variant]
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])
    y0 = C.init_lanes(model, v, n2, keys, scale)
    L = len(seeds)
    hyper = Hyper(eps=jnp.ones(L), eta_theta=jnp.zeros(L), eta_phi=jnp.zeros(L),
                  beta=jnp.ones(L))
    n_steps = int(round(T / lr / save_every)) * save_every
    ts, ys = C.euler_lanes(model, v, hyper, y0, jnp.full(L, lr), n_steps=n_steps,
                           save_every=save_every)
    return np.asarray(ts)[0], jax.tree_util.tree_map(np.asarray, ys)


def data(quick=False, n1=6, n2=3, scale=0.1):
    seeds = tuple(range(4)) if quick else tuple(range(12))
    X, Xp = matrices(n1)
    S = X + Xp
    lam, V = generalized_modes(X, Xp)
    dX, UX = np.linalg.eigh(X)
    dX, UX = dX[::-1], UX[:, ::-1]
    Sih = sla.sqrtm(np.linalg.inv(S)).real  # S^{-1/2}
    Uw = np.linalg.eigh(Sih @ X @ Sih)[1][:, ::-1]
    rows = {}
    for variant in ("simsiam", "byol"):
        ts, ys = run(variant, seeds, X, Xp, n2=n2, scale=scale)
        W, P = ys.enc, ys.pred
        m = mode_weights(W, S, V)  # (L, T, n1)
        learned = m[:, -1] > LEARNED * m[:, -1].max(-1, keepdims=True)
        rank = learned.sum(-1)
        res = (np.linalg.norm(P @ W @ S - W @ X, axis=(-2, -1))
               / np.maximum(np.linalg.norm(W @ X, axis=(-2, -1)), 1e-300))
        ang = {k: np.zeros((len(seeds), len(ts))) for k in ("gen", "pcaX", "white")}
        for i in range(len(seeds)):
            r = int(rank[i])
            Bg = V[:, learned[i]]
            for k in range(len(ts)):
                ang["gen"][i, k] = sin_angle(W[i, k], Bg, r)
                ang["pcaX"][i, k] = sin_angle(W[i, k], UX[:, :r], r)
                ang["white"][i, k] = sin_angle(W[i, k], Uw[:, :r], r)
        # W_p's eigenvalue on each learned W S v_j: the Rayleigh quotient of W_p on it
        u = W[:, -1] @ (S @ V)  # (L, n2, n1): column j is W S v_j
        un = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-300)
        rq = np.einsum("lij,lik,lkj->lj", un, P[:, -1], un)
        rows[variant] = dict(m=m, learned=learned, rank=rank, res=res, ang=ang, rq=rq)
    T = float(ts[-1])
    return dict(ts=ts, rows=rows, lam=lam, dX=dX, n1=n1, n2=n2, seeds=seeds,
                comm=float(np.linalg.norm(X @ Xp - Xp @ X)
                           / (np.linalg.norm(X) * np.linalg.norm(Xp))),
                params=dict(model="linear SimSiam and BYOL (beta = 1, W_a(0) = W(0)), trained "
                                  "predictor, alpha_p = 1, no weight decay, expected-loss GD "
                                  "(Euler step 0.02)",
                            n1=n1, n2=n2, T=T,
                            data="X, X' random SPD on independent eigenbases (PRNGKey 10, 11), "
                                 "eigenvalues evenly over [0.2, 2] and [0.05, 1.5]",
                            init=f"W, W_p entries ~ N(0, {scale:g}^2 / n2), init seeds "
                                 f"{list(seeds)}",
                            prediction="Tian Appendix D.1: W_p W = W X (X + X')^{-1}; rows of W "
                                       "span generalised eigenvectors X v = lambda (X + X') v, "
                                       "W_p's eigenvalues the lambda_j",
                            learned=f"m_j = ||W S v_j|| > {LEARNED:g} max_k m_k at T"))


_VSTYLE = {"simsiam": ("#1b9e77", "o", "SimSiam"), "byol": ("#d95f02", "^", "BYOL")}


def draw(dd):
    ts, rows, lam, n1, n2 = dd["ts"], dd["rows"], dd["lam"], dd["n1"], dd["n2"]
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.6))
    a1, a2, a3, a4 = axes
    tt = np.maximum(ts, ts[1] / 2)
    for variant, r in rows.items():
        c, mk, lab = _VSTYLE[variant]
        ls = "-" if variant == "simsiam" else "--"
        a1.semilogy(tt, np.maximum(r["ang"]["gen"].mean(0), 1e-16), color=c, ls=ls, lw=2,
                    label=f"{lab}: learned generalised eigenvectors $v_j$ (Tian D.1)")
        a1.semilogy(tt, r["ang"]["pcaX"].mean(0), color=c, ls=ls, lw=1, alpha=0.6,
                    label=f"{lab}: top principal components of $X$")
        a1.semilogy(tt, r["ang"]["white"].mean(0), color=c, ls=ls, lw=1, alpha=0.6,
                    marker=".", ms=3,
                    label=rf"{lab}: top eigenvectors of $S^{{-1/2}} X S^{{-1/2}}$")
        a4.semilogy(tt, np.maximum(r["res"].mean(0), 1e-17), color=c, ls=ls, lw=1.8,
                    label=f"{lab}, mean over inits")
    j = np.arange(1, n1 + 1)
    for variant, r in rows.items():
        c, mk, lab = _VSTYLE[variant]
        off = -0.1 if variant == "simsiam" else 0.1
        mend = r["m"][:, -1]
        for i in range(mend.shape[0]):
            a2.semilogy(j + off, np.maximum(mend[i], 1e-17), mk, color=c, ms=4, alpha=0.6,
                        mfc=c if variant == "simsiam" else "none",
                        label=(f"{lab} ({', '.join(str(int(k)) for k in sorted(set(r['rank'])))} "
                               f"modes learned, by init)") if i == 0 else None)
        L = r["learned"]
        x = np.broadcast_to(lam, L.shape)[L]
        a3.plot(x + off / 20, r["rq"][L], mk, color=c, ms=6, alpha=0.6,
                mfc=c if variant == "simsiam" else "none",
                label=rf"{lab}: $W_p$ on $W S v_j$, learned modes, every init")
    mx = max(r["m"][:, -1].max() for r in rows.values())
    a2.axhline(LEARNED * mx, color="k", ls=":", lw=0.8,
               label=f"learned: above {LEARNED:g} of the largest weight")
    a2.set_xticks(j)
    a2.set_xticklabels([f"{k}\n$\\lambda$={l:.2f}" for k, l in zip(j, lam)], fontsize=7)
    g = np.linspace(0, 1, 3)
    a3.plot(g, g, "k-", lw=4, alpha=0.25, label=r"prediction: eigenvalue $= \lambda_j$")
    for l in lam:
        a3.axvline(l, color="grey", lw=0.5, alpha=0.5)
    a3.set_xlim(0.1, 1.0)
    a3.set_ylim(0.1, 1.0)
    a1.set_xscale("log")
    a1.set_xlabel("time $t$ (log)")
    a1.set_ylabel(r"$\sin$ of the largest principal angle, mean over inits")
    a1.set_title("(a) row space of $W$ against candidate directions", fontsize=10)
    a1.legend(fontsize=6.5)
    a2.set_xlabel(r"generalised mode $j$ ($X v_j = \lambda_j (X + X') v_j$, "
                  r"$\lambda_j$ descending)")
    a2.set_ylabel(r"weight of $W$ on mode $j$ at $t = T$: $\|W S v_j\|$")
    a2.set_title(f"(b) which directions are learned ($n_2$ = {n2} of $n_1$ = {n1})", fontsize=10)
    a2.legend(fontsize=7)
    a3.set_xlabel(r"$\lambda_j$ of a learned mode")
    a3.set_ylabel(r"$u^\top W_p u$, $u = W S v_j / \|W S v_j\|$, at $t = T$")
    a3.set_title(r"(c) $W_p$'s eigenvalues are the $\lambda_j$ of the learned modes", fontsize=10)
    a3.legend(fontsize=7)
    a4.set_xscale("log")
    a4.set_xlabel("time $t$ (log)")
    a4.set_ylabel(r"$\|W_p W S - W X\| / \|W X\|$")
    a4.set_title(r"(d) fixed-point residual of $W_p W = W X S^{-1}$", fontsize=10)
    a4.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(rf"Non-isotropic data, $X$ and $X'$ not commuting (Tian Appendix D): linear "
                 rf"SimSiam and BYOL ($\beta$ = 1), $n_1$ = {n1}, $n_2$ = {n2}, no weight decay, "
                 rf"$\alpha_p$ = 1, {len(dd['seeds'])} small inits, $S = X + X'$, "
                 rf"$\|[X, X']\| / (\|X\|\|X'\|)$ = {dd['comm']:.2f}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


@register(
    "nonisotropic",
    "Non-isotropic data with X and X' not commuting (Tian Appendix D) in linear SimSiam and "
    "BYOL: W learns generalised eigenvectors X v = lambda (X + X') v, not the principal "
    "components of X, with W_p's eigenvalues the lambda_j and the fixed-point residual of "
    "W_p W = W X (X + X')^{-1} going to zero.",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
