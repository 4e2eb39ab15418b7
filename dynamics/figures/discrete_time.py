"""Discrete time: the GD step-size bound in ``(h, eps)`` and SGD noise against ``h/B``.

Scalar SimSiam with the decay in the loss. GD with step ``h`` is explicit Euler on the flow:
its map's Jacobian at a fixed point is ``I + h J``, so ``p_+`` stays stable exactly while
``|1 + h lambda| < 1`` for every eigenvalue ``lambda`` of ``J``, i.e. ``h < h_max(eps)``
(docs/theory.md section 1, "Step-size bound"). The phase diagram starts GD next to ``p_+``
and marks where it stays. SGD with minibatch ``B``: its stationary covariance at ``p_+`` from
the discrete Lyapunov equation with the per-sample gradient covariance (proportional to
``h/B`` for small ``h``) against the simulated one, and the collapse probability of starts
across the basin boundary for several ``(h, B)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from scipy.linalg import solve_discrete_lyapunov

from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper, State, jacobian_matrix
from dynamics.models import ScalarSiamese
from dynamics.solve.discrete import discrete_batch

__all__ = ["build", "data", "draw", "gd_stability", "h_max", "sgd_blur", "sgd_covariance"]

V = VARIANTS["simsiam"]


def h_max(eps, sigma2=0.5, eta=0.1):
    """Largest stable GD step at ``p_+`` (decay in the loss), from the closed-form spectrum:
    ``4 eps / (p + sqrt(p^2 - 4 q eps))`` while the eigenvalues are real, ``p / q`` once they
    are complex, ``q = 2 p^2 (2ap - 1)(1 - ap)`` (docs/theory.md section 1)."""
    a = 1.0 + sigma2
    p = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
    q = 2 * p * p * (2 * a * p - 1) * (1 - a * p)
    eps = np.asarray(eps, float)
    disc = p * p - 4 * q * eps
    return np.where(disc >= 0, 4 * eps / (p + np.sqrt(np.maximum(disc, 0))), p / q)


def _p_plus(model, eta):
    fp = model.fixed_points(eta, 1.0, "loss")
    return float(np.sqrt(fp.theta2_plus)), float(fp.phi_plus)


#: a run is called stable when its distance from p_+ shrank over the run (an unstable step grows
#: a 1e-3 perturbation, at times only to a nearby period-2 orbit, ratio ~6)
GROWTH = 1.0


def gd_stability(eps_grid, h_grid, sigma2=0.5, eta=0.1, n_steps=3000, delta=1e-3):
    """GD from ``p_+ (1 + delta)`` for every ``(eps, h)``: ``ratio`` (len(eps), len(h)) of the
    final to the initial distance from ``p_+`` (inf for a non-finite run); stable where it is
    below :data:`GROWTH`."""
    model = ScalarSiamese(sigma2)
    th, ph = _p_plus(model, eta)
    E, H = np.meshgrid(np.asarray(eps_grid, float), np.asarray(h_grid, float), indexing="ij")
    n = E.size
    hyper = Hyper.from_convention("loss", jnp.full(n, eta), jnp.asarray(E.ravel()))
    y0 = State(jnp.full(n, th * (1 + delta)), jnp.full(n, ph * (1 + delta)), None)
    sol = discrete_batch(model, V, hyper, y0, jnp.asarray(H.ravel()), n_steps=n_steps,
                         save_every=n_steps // 20)
    yT = np.stack([np.asarray(sol.ys.enc[:, -1]), np.asarray(sol.ys.pred[:, -1])], 1)
    dist = np.linalg.norm(yT - np.array([th, ph]), axis=1)
    ratio = np.where(np.isfinite(dist), dist / (delta * np.hypot(th, ph)), np.inf)
    return ratio.reshape(E.shape)


def _grad_cov(model, th, ph, n_samples=400_000, seed=0):
    """Covariance (2, 2) of the per-sample stop-gradient gradient at ``(th, ph)`` (Monte Carlo)."""
    x1, x2 = model.sample(jax.random.PRNGKey(seed), n_samples)

    def g(a, b):
        return jnp.stack(jax.grad(model.loss, argnums=(0, 1))(
            jnp.asarray(th), jnp.asarray(ph), jnp.asarray(th), (a[None], b[None])))

    G = np.asarray(jax.vmap(g)(x1, x2))
    return np.cov(G.T)


def sgd_covariance(hs, Bs, sigma2=0.5, eta=0.1, eps=1.0, n_seeds=256, n_steps=4000, seed=0):
    """Stationary covariance of SGD at ``p_+``: simulated (over seeds and the last half of each
    run) against the discrete Lyapunov equation ``S = A S A^T + D Q D / B``, ``A = I + h J``,
    ``D = h diag(1, 1/eps)``, ``Q`` the per-sample gradient covariance.

    Returns rows ``(h, B, var_theta simulated, var_theta theory, its standard error)``."""
    model = ScalarSiamese(sigma2)
    th, ph = _p_plus(model, eta)
    hyper = Hyper.from_convention("loss", eta, eps)
    J = np.asarray(jacobian_matrix(model, V, hyper, State(jnp.asarray(th), jnp.asarray(ph), None)))
    Q = _grad_cov(model, th, ph)
    rows = []
    key = jax.random.PRNGKey(seed)
    save_every = n_steps // 20
    for B in Bs:
        for h in hs:
            key, k = jax.random.split(key)
            keys = jax.random.split(k, n_seeds)
            y0 = State(jnp.full(n_seeds, th), jnp.full(n_seeds, ph), None)
            sol = discrete_batch(model, V, hyper, y0, h, keys, n_steps=n_steps,
                                 batch_size=int(B), save_every=save_every)
            enc = np.asarray(sol.ys.enc)[:, 10:]  # the last half of each run
            dev = enc - enc.mean()
            var = float(np.mean(dev**2))
            # standard error: seeds are independent, saves within a run are treated as
            # correlated (one effective sample per run), so the error uses n_seeds only
            se = float(np.std(np.mean(dev**2, axis=1)) / np.sqrt(n_seeds))
            A = np.eye(2) + h * J
            D = h * np.diag([1.0, 1.0 / eps])
            S = solve_discrete_lyapunov(A, D @ Q @ D / B)
            rows.append((h, int(B), var, float(S[0, 0]), se))
    return np.array(rows)


def sgd_blur(runs, theta0, phi0=0.0, sigma2=0.5, eta=0.1, eps=1.0, n_seeds=64, n_steps=6000,
             seed=1):
    """Collapse probability of SGD starts ``(theta0, phi0)`` for each ``(h, B)`` of ``runs``
    (``B=None``: GD on the expected loss); in the collapse basin when ``|theta_T|`` is below
    half the saddle's ``|theta|`` (``p_-``): after ``T = n_steps h`` a run sits near the origin
    or near ``p_+``, while reaching the sweep's ``1e-3 p_+`` takes ``T ~ 60`` more. Returns ``{(h, B): probability (len(theta0),)}``."""
    model = ScalarSiamese(sigma2)
    hyper = Hyper.from_convention("loss", eta, eps)
    th_saddle = float(np.sqrt(model.fixed_points(eta, 1.0, "loss").theta2_minus))
    theta0 = np.asarray(theta0, float)
    out = {}
    key = jax.random.PRNGKey(seed)
    for h, B in runs:
        n = 1 if B is None else n_seeds
        y0 = State(jnp.repeat(jnp.asarray(theta0), n), jnp.full(len(theta0) * n, phi0), None)
        if B is None:
            sol = discrete_batch(model, V, hyper, y0, h, n_steps=n_steps,
                                 save_every=n_steps // 20)
        else:
            key, k = jax.random.split(key)
            sol = discrete_batch(model, V, hyper, y0, h, jax.random.split(k, y0.enc.shape[0]),
                                 n_steps=n_steps, batch_size=int(B), save_every=n_steps // 20)
        end = np.abs(np.asarray(sol.ys.enc[:, -1])).reshape(len(theta0), n)
        out[(h, B)] = np.mean(end < 0.5 * th_saddle, axis=1)
    return out


def data(quick=False, sigma2=0.5, eta=0.1):
    n = 9 if quick else 33
    # one step count for every run (GD and SGD), so that they share compiled programs
    N = 2000 if quick else 4000
    eps_grid = np.geomspace(0.01, 3.0, n)
    h_grid = np.geomspace(0.005, 50.0, n + 4)
    ratio = gd_stability(eps_grid, h_grid, sigma2, eta, n_steps=N)
    hs = (0.01, 0.02, 0.04) if quick else (0.005, 0.01, 0.02, 0.04, 0.08)
    Bs = (4, 16)
    cov = sgd_covariance(hs, Bs, sigma2, eta, n_seeds=64 if quick else 512, n_steps=N)
    theta0 = np.linspace(0.1, 0.25, 7 if quick else 31)
    runs = [(0.02, None), (0.08, None), (0.02, 4), (0.08, 16), (0.02, 16)]
    blur = sgd_blur(runs, theta0, sigma2=sigma2, eta=eta, n_seeds=16 if quick else 128,
                    n_steps=N)
    return dict(eps=eps_grid, h=h_grid, ratio=ratio, cov=cov, theta0=theta0, blur=blur,
                sigma2=sigma2, eta=eta,
                params=dict(model="scalar SimSiam, decay in the loss", sigma2=sigma2, eta=eta,
                            steps=N,
                            gd=dict(eps=f"geomspace(0.01, 3, {n})",
                                    h=f"geomspace(0.005, 50, {n + 4})",
                                    start="p_+ (1 + 1e-3)",
                                    stable="distance to p_+ shrank over the run"),
                            sgd_covariance=dict(h=list(hs), B=list(Bs), eps=1.0, start="p_+",
                                                seeds=64 if quick else 512,
                                                gradient_covariance="Monte Carlo, 4e5 samples"),
                            sgd_blur=dict(runs=[[h, B] for h, B in runs], phi0=0.0, eps=1.0,
                                          theta0=f"linspace(0.1, 0.25, {len(theta0)})",
                                          seeds=16 if quick else 128,
                                          collapse_basin="|theta_T| < |theta| of p_- / 2"),
                            paper="no figure in Tian et al.; docs/theory.md section 1"))


def draw(d):
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(17, 5.2))
    E, H = np.meshgrid(d["eps"], d["h"], indexing="ij")
    stable = d["ratio"] < GROWTH
    a1.scatter(E[stable], H[stable], s=14, color="#1b7837", label="GD stays at $p_+$ (simulated)")
    a1.scatter(E[~stable], H[~stable], s=14, color="#b2182b", marker="x",
               label="GD leaves $p_+$ or diverges (simulated)")
    e = np.geomspace(d["eps"][0], d["eps"][-1], 300)
    a1.plot(e, h_max(e, d["sigma2"], d["eta"]), "k", lw=2,
            label=r"theory $h_{max}(\varepsilon)$: $\max_\lambda |1 + h\lambda| = 1$")
    a = 1 + d["sigma2"]
    p = (1 + np.sqrt(1 - 4 * a * d["eta"])) / (2 * a)
    a1.plot(e, 2 * e / p, "k--", lw=1, label=r"small-$\varepsilon$ limit $2\varepsilon/p_+$")
    a1.set_xscale("log")
    a1.set_yscale("log")
    a1.set_ylim(d["h"][0], d["h"][-1])
    a1.set_xlabel(r"predictor time scale $\varepsilon$")
    a1.set_ylabel(r"GD step $h$ (ODE time)")
    a1.set_title(r"(a) GD step-size bound at $p_+$ (start $p_+(1 + 10^{-3})$, "
                 f"{d['params']['steps']} steps)", fontsize=10)
    a1.legend(fontsize=7, loc="upper left")
    a1.grid(alpha=0.3, which="both")

    cov = d["cov"]
    for B, c in ((4, "#1b9e77"), (16, "#7570b3")):
        r = cov[cov[:, 1] == B]
        x = r[:, 0] / B
        a2.errorbar(x, r[:, 2], yerr=2 * r[:, 4], fmt="o", color=c, mfc="none", capsize=2,
                    label=f"SGD, $B$ = {B} (simulated, 2 s.e.)")
        a2.plot(x, r[:, 3], "_", color=c, ms=14, mew=2,
                label=f"theory, $B$ = {B}: discrete Lyapunov equation")
    xs = np.geomspace(cov[:, 0].min() / 16, cov[:, 0].max() / 4, 50)
    k = np.median(cov[:, 3] / (cov[:, 0] / cov[:, 1]))
    a2.plot(xs, k * xs, color="0.5", ls=":", label=r"$\propto h/B$ (slope 1)")
    a2.set_xscale("log")
    a2.set_yscale("log")
    a2.set_xlabel(r"$h / B$")
    a2.set_ylabel(r"stationary Var $\theta$ at $p_+$")
    a2.set_title(r"(b) SGD noise at $p_+$ ($\varepsilon = 1$): variance $\propto h/B$",
                 fontsize=10)
    a2.legend(fontsize=7)
    a2.grid(alpha=0.3, which="both")

    colors = iter(("#d95f02", "#1b9e77", "#7570b3"))
    for (h, B), prob in d["blur"].items():
        if B is None:
            a3.plot(d["theta0"], prob, color="k", lw=2.5 if h < 0.05 else 1.2,
                    ls="-" if h < 0.05 else "--", drawstyle="steps-mid",
                    label=f"GD (expected gradient), $h$ = {h:g}")
        else:
            a3.plot(d["theta0"], prob, "o-", color=next(colors), ms=4,
                    label=f"SGD $h$ = {h:g}, $B$ = {B}: $h/B$ = {h / B:.4g}")
    a3.set_xlabel(r"initial encoder $\theta_0$ (with $\phi_0 = 0$)")
    a3.set_ylabel(r"fraction of seeds in the collapse basin ($|\theta_T| < \theta_{p_-}/2$)")
    a3.set_title(r"(c) the basin boundary blurred by minibatch noise ($\varepsilon = 1$):"
                 "\nsame $h/B$, same blur; larger $B$, sharper", fontsize=10)
    a3.legend(fontsize=7)
    a3.grid(alpha=0.3)
    fig.suptitle(rf"Discrete time: scalar SimSiam, decay in the loss, $\sigma^2$ = "
                 rf"{d['sigma2']:g}, $\eta$ = {d['eta']:g}", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return fig


@register(
    "discrete_time",
    "Discrete time: the GD step-size bound h_max(eps) at p_+ (closed form) over the simulated "
    "stability in (h, eps); SGD's stationary variance at p_+ against h/B over the discrete "
    "Lyapunov equation; the collapse probability across the basin boundary for several (h, B).",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
