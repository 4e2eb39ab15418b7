"""Weight decay on the predictor only (Tian et al. 2021, Table 5, in the linear toy).

Linear SimSiam without EMA (``W_a = W``, ``tau = 1``), ``X = I``, ``X' = sigma2 I``, a small
random start, GD (Euler) on the expected flow, with a symmetric predictor (Theorem 3's
symmetrised update) and a regular one, under three weight decays: on both (``eta_s = eta_p =
eta``), on neither, and on the predictor only (``eta_s = 0``, ``eta_p = eta``; Table 5's
setting). The decays enter as Tian writes them, ``W' = -dL/dW - eta_s W`` and
``W_p' = -alpha_p dL/dW_p - eta_p W_p``.

Closed forms (per aligned mode, ``s`` an eigenvalue of ``F = W W^T``, ``p`` the predictor's on
the same eigenvector, ``a = 1 + sigma2``; docs/theory.md section 3 with the decays split):

    p' = alpha_p s (1 - a p) - eta_p p,        s' = 2 p s (1 - a p) - 2 eta_s s.

With ``eta_s = 0`` there is no fixed point with ``s > 0``: ``p`` relaxes (rate
``alpha_p a s + eta_p``, growing with ``s``) to ``p*(s) = alpha_p s / (alpha_p a s + eta_p)``,
just below ``1/a``, and on that slow manifold

    s' = 2 alpha_p eta_p s^2 / (alpha_p a s + eta_p)^2  ->  2 eta_p / (alpha_p a^2),

so ``G(s) = alpha_p^2 a^2 s + 2 alpha_p a eta_p ln s - eta_p^2 / s`` grows as
``2 alpha_p eta_p t`` exactly: every learned mode grows without bound, linearly at late times
(with a logarithmic correction), and ``1/a - p = eta_p / (a (alpha_p a s + eta_p))`` shrinks
as ``1/s``. The encoder outgrows the predictor (``s / p^2`` is unbounded), which is Tian's
argument for why Theorem 3's condition can hold without EMA.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics.analysis.alignment import eigen_alignment
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper
from dynamics.models.linear import LinearSiamese

__all__ = ["ALIVE", "DECAYS", "build", "data", "draw", "growth_G", "growth_law", "modes",
           "p_slow", "run"]

ALIVE = 1e-4  # an eigenvalue s_j of W W^T above this at the end: a surviving mode
#: (label, eta_s / eta, eta_p / eta) of the compared weight decays, in drawing order
DECAYS = (
    ("decay on both", 1.0, 1.0),
    ("no decay", 0.0, 0.0),
    ("decay on the predictor only", 0.0, 1.0),
)


def growth_G(s, eta_p, alpha_p, a):
    """``G(s) = alpha_p^2 a^2 s + 2 alpha_p a eta_p ln s - eta_p^2 / s``, which grows as
    ``2 alpha_p eta_p t`` on the slow manifold of a mode with ``eta_s = 0``."""
    s = np.asarray(s, float)
    return alpha_p**2 * a**2 * s + 2 * alpha_p * a * eta_p * np.log(s) - eta_p**2 / s


def growth_law(t, t1, s1, eta_p, alpha_p, a):
    """``s(t)`` on the slow manifold from ``s(t1) = s1`` (``eta_s = 0``): the root of
    ``G(s) = G(s1) + 2 alpha_p eta_p (t - t1)`` (``G`` increases in ``s``; bisection on log s)."""
    t, s1 = np.broadcast_arrays(np.asarray(t, float), np.asarray(s1, float))
    target = growth_G(s1, eta_p, alpha_p, a) + 2 * alpha_p * eta_p * (t - t1)
    lo, hi = np.full(t.shape, -60.0), np.full(t.shape, 60.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        up = growth_G(np.exp(mid), eta_p, alpha_p, a) < target
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    return np.exp(0.5 * (lo + hi))


def p_slow(s, eta_p, alpha_p, a):
    """The predictor's eigenvalue on the slow manifold, ``alpha_p s / (alpha_p a s + eta_p)``."""
    s = np.asarray(s, float)
    return alpha_p * s / (alpha_p * a * s + eta_p)


def run(predictor, decays, seeds, *, n=8, sigma2=0.5, eta=0.04, alpha_p=1.0, scale=0.1,
        lr=0.01, T=300.0, save_every=250):
    """One lane per ``(decay, init seed)``, ``decays`` a list of ``(eta_s, eta_p)``; returns
    ``(ts, model, State (L, T, ...))``, lanes ordered decay-major."""
    model = LinearSiamese.isotropic(n, sigma2, predictor=predictor)
    v = VARIANTS["simsiam"]
    keys = jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds] * len(decays))
    y0 = C.init_lanes(model, v, n, keys, scale)
    es = np.repeat([float(e[0]) for e in decays], len(seeds))
    ep = np.repeat([float(e[1]) for e in decays], len(seeds))
    L = len(es)
    # eps dWp/dt = -dL/dWp - eta_phi Wp with eps = 1/alpha_p: Wp' = -alpha_p dL/dWp - eta_p Wp
    hyper = Hyper(eps=jnp.full(L, 1.0 / alpha_p), eta_theta=jnp.asarray(es),
                  eta_phi=jnp.asarray(ep / alpha_p), beta=jnp.ones(L))
    n_steps = int(round(T / lr / save_every)) * save_every
    ts, ys = C.euler_lanes(model, v, hyper, y0, jnp.full(L, lr), n_steps=n_steps,
                           save_every=save_every)
    return np.asarray(ts)[0], model, jax.tree_util.tree_map(np.asarray, ys)


def modes(model, ys):
    """Per lane and saved time: eigenvalues ``s_j`` of ``F = W W^T`` (descending), the applied
    predictor's Rayleigh quotients ``p_j = u_j^T W_p u_j`` on them and the normalised commutator
    ``||[F, W_p]|| / (||F|| ||W_p||)`` (0 once the eigenspaces are aligned)."""
    W, pred = ys.enc, ys.pred
    shape = W.shape[:2]
    Wf = jnp.asarray(W.reshape((-1,) + W.shape[2:]))
    Pf = jnp.asarray(pred.reshape((-1,) + pred.shape[2:]))
    Wp = jax.vmap(lambda w, p: model.predictor_matrix(w, p, w))(Wf, Pf)
    F = Wf @ jnp.swapaxes(Wf, -1, -2)
    s, _, rq = jax.vmap(eigen_alignment)(F, Wp)
    comm = jnp.linalg.norm(F @ Wp - Wp @ F, axis=(-2, -1))
    norm = jnp.linalg.norm(F, axis=(-2, -1)) * jnp.linalg.norm(Wp, axis=(-2, -1))
    comm = comm / jnp.maximum(norm, 1e-300)
    return (np.asarray(s).reshape(shape + (-1,)), np.asarray(rq).reshape(shape + (-1,)),
            np.asarray(comm).reshape(shape))


def data(quick=False, n=8, sigma2=0.5, eta=0.04, alpha_p=1.0, scale=0.1):
    seeds = (0, 1) if quick else (0, 1, 2, 3, 4, 5)
    T = 300.0 if quick else 600.0
    decays = [(fs * eta, fp * eta) for _, fs, fp in DECAYS]
    rows = {}
    for pred in ("symmetric", "trained"):
        ts, model, ys = run(pred, decays, seeds, n=n, sigma2=sigma2, eta=eta, alpha_p=alpha_p,
                            scale=scale, T=T)
        s, p, comm = modes(model, ys)
        k = len(seeds)
        for i, (lab, _, _) in enumerate(DECAYS):
            sl = slice(i * k, (i + 1) * k)
            rows[(pred, lab)] = dict(s=s[sl], p=p[sl], comm=comm[sl])
    return dict(ts=ts, rows=rows, n=n, sigma2=sigma2, eta=eta, alpha_p=alpha_p, seeds=seeds,
                params=dict(model="linear SimSiam without EMA (W_a = W), X = I, X' = sigma2 I, "
                                  "symmetric (Theorem 3's symmetrised update) and regular "
                                  "predictor, expected-loss GD (Euler step 0.01)",
                            n1=n, n2=n, sigma2=sigma2, eta=eta, alpha_p=alpha_p, T=T,
                            decays="W' = -dL/dW - eta_s W, W_p' = -alpha_p dL/dW_p - eta_p W_p;"
                                   " (eta_s, eta_p) = (eta, eta), (0, 0), (0, eta)",
                            init=f"W, W_p entries ~ N(0, {scale:g}^2 / n), init seeds "
                                 f"{list(seeds)}, the same draws for every decay",
                            alive=f"eigenvalue of W W^T > {ALIVE:g} at T",
                            growth_law="eta_s = 0: G(s) = alpha_p^2 a^2 s + 2 alpha_p a eta_p "
                                       "ln s - eta_p^2/s grows as 2 alpha_p eta_p t on the "
                                       "slow manifold p = alpha_p s/(alpha_p a s + eta_p)",
                            paper="Tian et al. Table 5 (STL-10, BYOL, predictor-only decay "
                                  "0.0004 with and without EMA, symmetric and regular W_p, with "
                                  "and without predictor bias); here no EMA, no bias, a larger "
                                  "decay so that the growth shows within T"))


_STYLE = {"decay on both": "#1b9e77", "no decay": "#7570b3",
          "decay on the predictor only": "#d95f02"}


def draw(dd):
    ts, rows, eta, ap = dd["ts"], dd["rows"], dd["eta"], dd["alpha_p"]
    a = 1.0 + dd["sigma2"]
    fig, axes = plt.subplots(1, 4, figsize=(22, 5.6))
    a1, a2, a3, a4 = axes
    tt = np.maximum(ts, ts[1] / 2)
    for (pred, lab), r in rows.items():
        c = _STYLE[lab]
        ls = "-" if pred == "symmetric" else "--"
        n_alive = (r["s"][:, -1] > ALIVE).sum(-1)
        a1.semilogy(tt, np.maximum(r["comm"].mean(0), 1e-17), color=c, ls=ls, lw=1.6,
                    label=f"{lab}, {'symmetric' if pred == 'symmetric' else 'regular'} $W_p$ "
                          f"({n_alive.min()}-{n_alive.max()} of {dd['n']} modes survive)")
    sym = {lab: r for (pred, lab), r in rows.items() if pred == "symmetric"}
    for lab, r in sym.items():
        c = _STYLE[lab]
        for j in range(r["s"].shape[-1]):
            a2.semilogy(ts, np.maximum(r["s"][0, :, j], 1e-12), color=c, lw=1.2,
                        label=lab if j == 0 else None)
    # growth law overlay: from the first saved time each predictor-only mode is past s = 1
    r = sym["decay on the predictor only"]
    first = True
    for j in range(r["s"].shape[-1]):
        sj = r["s"][0, :, j]
        k = np.argmax(sj >= 1.0)
        if sj[k] < 1.0:
            continue
        law = growth_law(ts[k:], ts[k], sj[k], eta, ap, a)
        a2.semilogy(ts[k:], law, color="k", ls=":", lw=2.2,
                    label=r"growth law $G(s) = G(s_1) + 2\alpha_p\eta_p(t - t_1)$ from $s_1 = "
                          r"s(t_1) \geq 1$" if first else None)
        first = False
    a2.set_ylim(1e-8, None)
    for (pred, lab), r in rows.items():
        off = {"symmetric": -0.12, "trained": 0.12}[pred]
        x = np.arange(1, dd["n"] + 1) + off + 0.06 * list(_STYLE).index(lab)
        for i in range(r["s"].shape[0]):
            a3.semilogy(x, np.maximum(r["s"][i, -1], 1e-16), "o" if pred == "symmetric" else "^",
                        color=_STYLE[lab], ms=4, alpha=0.7,
                        mfc=_STYLE[lab] if pred == "symmetric" else "none",
                        label=(f"{lab}, {'symmetric' if pred == 'symmetric' else 'regular'}"
                               " $W_p$") if i == 0 else None)
    pp = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
    a3.axhline(pp**2 / ap, color=_STYLE["decay on both"], lw=5, alpha=0.3,
               label=r"decay on both: $p_+^2/\alpha_p$")
    a3.axhline(ALIVE, color="k", ls=":", lw=1, label=f"survival threshold {ALIVE:g}")
    smax_end = 2 * eta / (ap * a * a) * ts[-1]
    a3.axhline(smax_end, color=_STYLE["decay on the predictor only"], lw=5, alpha=0.3,
               label=r"predictor only: asymptote $2\eta_p t/(\alpha_p a^2)$ at $t = T$")
    for (pred, lab), r in rows.items():
        if lab != "decay on the predictor only":
            continue
        m = ts > ts[-1] / 4
        S, P = r["s"][:, m], r["p"][:, m]
        keep = S > 0.05
        a4.loglog(S[keep], 1 / a - P[keep], "o" if pred == "symmetric" else "^", ms=2.5,
                  alpha=0.4, color="#d95f02", mfc="#d95f02" if pred == "symmetric" else "none",
                  label=f"{'symmetric' if pred == 'symmetric' else 'regular'} $W_p$, "
                        f"$t > T/4$, every mode and init")
    sg = np.geomspace(0.05, max(smax_end * 2, 1.0), 200)
    a4.loglog(sg, 1 / a - p_slow(sg, eta, ap, a), "k-", lw=4, alpha=0.35,
              label=r"slow manifold $1/a - p = \eta_p/(a(\alpha_p a s + \eta_p))$")
    a1.set_xscale("log")
    a1.set_xlabel("time $t$ (log)")
    a1.set_ylabel(r"$\|[F, W_p]\| / (\|F\|\,\|W_p\|)$, mean over inits")
    a1.set_title("(a) eigenspace alignment of $W_p$ and $F = WW^\\top$ (Theorem 3)",
                 fontsize=10)
    a1.legend(fontsize=6.5)
    a2.set_xlabel("time $t$")
    a2.set_ylabel(r"eigenvalues $s_j$ of $F = WW^\top$, symmetric $W_p$, first init")
    a2.set_title("(b) per-mode growth; predictor-only decay: unbounded, linear at late times",
                 fontsize=10)
    a2.legend(fontsize=7)
    a3.set_xlabel("mode $j$ (by size)")
    a3.set_ylabel(r"$s_j$ at $t = T$ (each init)")
    a3.set_title("(c) what is learned at $t = T$", fontsize=10)
    a3.legend(fontsize=7)
    a4.set_xlabel(r"$s_j$")
    a4.set_ylabel(r"$1/a - p_j$,  $p_j = u_j^\top W_p u_j$")
    a4.set_title("(d) predictor-only decay: the predictor stays below $1/a$ as $s$ grows",
                 fontsize=10)
    a4.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
    fig.suptitle(rf"Weight decay on the predictor only (Tian Table 5 in the toy): linear SimSiam "
                 rf"without EMA, $n$ = {dd['n']}, $X = I$, $X' = \sigma^2 I$, $\sigma^2$ = "
                 rf"{dd['sigma2']:g} ($a$ = {a:g}), $\eta$ = {eta:g}, $\alpha_p$ = {ap:g}, "
                 rf"{len(dd['seeds'])} small inits; solid: symmetric $W_p$, dashed/open: "
                 r"regular $W_p$", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


@register(
    "predictor_wd",
    "Weight decay on the predictor only in linear SimSiam without EMA (Tian Table 5): "
    "eigenspace alignment, the modes learned under decay on both, neither and the predictor "
    "only, and the predictor-only case's unbounded growth against its closed-form growth law.",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
