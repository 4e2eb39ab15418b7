"""Data for the linear-model figures (Tian et al. Figs. 5, 7; collapse phase diagrams).

For Tian et al.'s figures the model is :class:`dynamics.models.linear.LinearSiamese` with
``X = I``, ``X' = sigma2 I``, run by explicit Euler on the expected-loss flow
(``dynamics.solve.run_discrete`` without a batch), the discrete mapping used by their synthetic
figures (step 0.01 in ODE time). The phase diagrams come from the linear sweep
(:mod:`dynamics.sweep_linear`). Each ``*_data`` function returns numpy arrays and a ``params``
dict; ``dynamics.plot`` draws.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dynamics.flow import VARIANTS, Hyper, State
from dynamics.solve import run_discrete


def _linear():
    from dynamics.models import linear

    return linear


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ScaledTarget:
    """A model whose target is ``tau`` times the given one: ``L(W, Wp, tau * target)``.

    With the SimSiam variant (stop-gradient, target = encoder) this is Tian et al.'s
    ``Wa = tau W`` assumption of Theorem 3, written as a loss.
    """

    base: Any
    tau: Any = 1.0

    @property
    def trains_predictor(self):
        return self.base.trains_predictor

    def expected_loss(self, W, pred, tgt):
        return self.base.expected_loss(W, pred, self.tau * tgt)

    def encoder_norm(self, W):
        return self.base.encoder_norm(W)


@functools.partial(jax.jit, static_argnames=("variant", "n_steps", "save_every"))
def euler_lanes(model, variant, hyper, y0, lr, *, n_steps, save_every):
    """Explicit Euler on the expected flow, vmapped over a lane axis of ``hyper``, ``y0``, ``lr``.

    ``model`` is shared by all lanes. Returns ``(ts (T,) per lane, State (N, T, ...))``.
    """

    def one(h, y, l):
        sol = run_discrete(model, variant, h, y, l, n_steps, save_every=save_every)
        return sol.ts, sol.ys

    return jax.vmap(one)(hyper, y0, lr)


def hyper_lanes(eta, eps, beta, convention):
    """A ``Hyper`` with one lane per broadcast element of ``eta``, ``eps``, ``beta``."""
    eta, eps, beta = np.broadcast_arrays(np.asarray(eta, float), np.asarray(eps, float),
                                         np.asarray(beta, float))
    h = Hyper.from_convention(convention, jnp.asarray(eta), jnp.asarray(eps), jnp.asarray(beta))
    return h


def _init(model, variant, n, keys, scale, target0="online", pred_scale=None):
    lin = _linear()
    return jax.vmap(lambda k: lin.random_state(k, model, variant, n, scale=scale,
                                               pred_scale=pred_scale, target0=target0))(keys)


def _sym(m):
    return 0.5 * (m + np.swapaxes(m, -1, -2))


@jax.jit
def lambda_min_K(F, P, sigma2, alpha_p, tau, eta):
    """``lambda_min(K)`` of Theorem 3 over (run, time) axes, ``K`` from dynamics.analysis."""
    from dynamics.analysis.alignment import lambda_min_sym, theorem3_K

    def one(Fi, Pi, ti, ei):
        return lambda_min_sym(theorem3_K(Fi, Pi, sigma2, alpha_p, ti, ei))

    over_time = jax.vmap(one, in_axes=(0, 0, 0, None))
    return jax.vmap(over_time)(F, P, tau, eta)


def _tau(W, Wa):
    """Least-squares scalar with ``Wa ~ tau W``: ``tr(Wa W^T) / tr(W W^T)``."""
    return np.einsum("...ij,...ij->...", Wa, W) / np.maximum(np.einsum("...ij,...ij->...", W, W), 1e-300)


# --- Tian Fig. 5: eta and beta sweeps of lambda_min(K), p_j(t), s_j(t) ----------------------


def tian_fig5_data(n=8, sigma2=0.5, alpha_p=1.0, lr=0.01, T=150.0, etas=(0.01, 0.04, 0.1, 0.2),
                   betas=(0.1, 0.4, 1.0, 4.0), eta0=0.04, beta0=0.4, scale=0.6, seed=0,
                   save_every=10, target0="zero"):
    """Linear BYOL with a symmetric predictor (Theorem 3's setting), one init for all runs.

    The target starts at ``Wa(0) = 0`` (``target0="zero"``) as in the paper, so ``tau(0) = 0``
    and the EMA acts as a curriculum from the start; ``target0="online"`` starts it at ``W(0)``.

    Sweeps ``eta`` at ``beta = beta0`` and ``beta`` at ``eta = eta0``. Records the eigenvalues
    ``p_j`` of ``Wp``, ``s_j`` of ``F = W W^T``, ``tau = tr(Wa W^T)/tr(W W^T)`` and
    ``lambda_min(K)``, ``K = a (alpha_p/2 F + Wp^2 - tau/a Wp) + 3/2 eta I``.
    """
    lin = _linear()
    model = lin.LinearSiamese.isotropic(n, sigma2, predictor="symmetric")
    v = VARIANTS["byol"]
    a = 1.0 + sigma2
    n_steps = int(round(T / lr / save_every)) * save_every
    configs = [("eta", e, e, beta0) for e in etas] + [("beta", b, eta0, b) for b in betas]
    key = jax.random.PRNGKey(seed)
    y0 = _init(model, v, n, jnp.stack([key] * len(configs)), scale, target0=target0)
    eta_l = np.array([c[2] for c in configs])
    beta_l = np.array([c[3] for c in configs])
    hyper = hyper_lanes(eta_l, 1.0 / alpha_p, beta_l, "tian")
    ts, ys = euler_lanes(model, v, hyper, y0, jnp.full(len(configs), lr), n_steps=n_steps,
                         save_every=save_every)
    ts = np.concatenate([[0.0], np.asarray(ts)[0]])
    W = np.concatenate([np.asarray(y0.enc)[:, None], np.asarray(ys.enc)], 1)
    P = _sym(np.concatenate([np.asarray(y0.pred)[:, None], np.asarray(ys.pred)], 1))
    Wa = np.concatenate([np.asarray(y0.tgt)[:, None], np.asarray(ys.tgt)], 1)
    F = W @ np.swapaxes(W, -1, -2)
    p = np.linalg.eigvalsh(P)
    s = np.linalg.eigvalsh(F)
    tau = _tau(W, Wa)
    lam_min = np.asarray(lambda_min_K(jnp.asarray(F), jnp.asarray(P), sigma2, alpha_p,
                                       jnp.asarray(tau), jnp.asarray(eta_l)))
    runs = [dict(sweep=c[0], value=c[1], eta=c[2], beta=c[3], p=p[i], s=s[i], tau=tau[i],
                 lam_min=lam_min[i]) for i, c in enumerate(configs)]
    return dict(ts=ts, runs=runs, eta_crit=1.0 / (4 * a),
                params=dict(n1=n, n2=n, sigma2=sigma2, alpha_p=alpha_p, lr=lr, T=T,
                            etas=list(etas), betas=list(betas), eta0=eta0, beta0=beta0,
                            init_scale=scale, seed=seed, predictor="symmetric", variant="byol",
                            Wa0="0" if target0 == "zero" else "W(0)",
                            paper="Euler step 0.01, beta = 0.4 (1 - gamma_a = 0.004), eta = "
                                  "0.04, Wa(0) = 0",
                            differences="the full matrix flow with a symmetrised predictor "
                                        "(Theorem 3's setting) instead of the decoupled "
                                        "per-mode Eqns. 11-13; n, sigma2, the init scale and "
                                        "the sweep values are not stated in the paper"))


# --- Tian Fig. 7: correlation of Wa with W in full matrix BYOL ------------------------------


def tian_fig7_data(n=10, sigma=0.03, lr=0.01, T=60.0, etas=(0.0, 0.01, 0.1),
                   betas=(0.1, 0.4, 1.0, 10.0), repeats=10, scale=0.6, seed=0, save_every=20):
    """Full matrix BYOL (trained predictor), ``X = I``, ``X' = sigma^2 I``, ``Wa(0) = 0``.

    For each ``(eta, beta)``, ``repeats`` random inits; records the correlation
    ``<Wa, W> / (|Wa| |W|)`` (Frobenius) and ``|W|`` over time. With the Euler step ``lr`` the
    EMA coefficient is ``gamma_a = 1 - lr * beta``: the default betas are
    ``gamma_a = 0.999, 0.996`` (BYOL's and the paper's), ``0.99, 0.9``.
    """
    lin = _linear()
    model = lin.LinearSiamese.isotropic(n, sigma**2, predictor="trained")
    v = VARIANTS["byol"]
    n_steps = int(round(T / lr / save_every)) * save_every
    grid = [(e, b) for e in etas for b in betas]
    keys = jax.random.split(jax.random.PRNGKey(seed), repeats)
    keys = jnp.concatenate([keys] * len(grid))
    eta_l = np.repeat([g[0] for g in grid], repeats)
    beta_l = np.repeat([g[1] for g in grid], repeats)
    y0 = _init(model, v, n, keys, scale, target0="zero")
    hyper = hyper_lanes(eta_l, 1.0, beta_l, "tian")
    ts, ys = euler_lanes(model, v, hyper, y0, jnp.full(len(eta_l), lr), n_steps=n_steps,
                         save_every=save_every)
    W, Wa = np.asarray(ys.enc), np.asarray(ys.tgt)
    num = np.einsum("ntij,ntij->nt", Wa, W)
    den = np.sqrt(np.einsum("ntij,ntij->nt", Wa, Wa) * np.einsum("ntij,ntij->nt", W, W))
    corr = num / np.maximum(den, 1e-300)
    wnorm = np.sqrt(np.einsum("ntij,ntij->nt", W, W))
    shape = (len(etas), len(betas), repeats, -1)
    return dict(ts=np.asarray(ts)[0], corr=corr.reshape(shape), wnorm=wnorm.reshape(shape),
                etas=list(etas), betas=list(betas),
                gammas=[float(np.round(1.0 - lr * b, 6)) for b in betas],
                params=dict(n1=n, n2=n, sigma=sigma, lr=lr, T=T, etas=list(etas),
                            betas=list(betas),
                            gamma_a=[float(np.round(1.0 - lr * b, 6)) for b in betas],
                            repeats=repeats, init_scale=scale, seed=seed,
                            alpha_p=1.0, predictor="trained", Wa0="zero", band="mean +- std",
                            paper="sigma = 0.03, Wa(0) = 0, 10 runs (mean and std), eta in "
                                  "{0, 0.01, 0.1}, EMA coefficients including 0.996",
                            differences="n, the init scale, T and the other EMA rates are "
                                        "not stated in the paper"))


# --- collapse phase diagrams (eta x eps, eta x beta) ----------------------------------------


def phase_diagram_data(n1=4, sigma2=0.5, etas=tuple(np.round(np.linspace(0.0, 0.35, 15), 4)),
                       epss=(1.0, 0.3, 0.1, 0.03), betas=(0.1, 0.3, 1.0, 3.0, 10.0), n_init=6,
                       t1=300.0, lr=0.01, x_eig=(0.5, 1.5), seed=0, convention="loss"):
    """Collapse phase diagrams from the linear sweep (:mod:`dynamics.sweep_linear`).

    Linear SimSiam over ``eta x eps`` and linear BYOL (``eps = 1``) over ``eta x beta``; data
    ``X`` with eigenvalues evenly spaced in ``x_eig`` (so mode ``j`` loses its non-trivial fixed
    points at ``eta_j = d_j^2 / (4 (d_j + sigma2))``), ``X' = sigma2 I``, ``n_init`` random
    initial states per cell, explicit Euler (``--method gd``, step ``lr``) to ``t1``. Returns
    the mean collapsed-mode fraction on each plane.
    """
    from dynamics.sweep_linear import build_parser, run_sweep

    common = ["--n1", str(n1), "--sigma2", str(sigma2), "--eta", *map(str, etas),
              "--n-init", str(n_init), "--method", "gd", "--lr", str(lr), "--t1", str(t1),
              "--x-eig", *map(str, x_eig),
              "--seed", str(seed), "--convention", convention, "--quiet", "--no-plot"]
    planes = {}
    for key, variant, extra, axis in (
        ("eta_eps", "simsiam", ["--eps", *map(str, epss)], "eps"),
        ("eta_beta", "byol", ["--eps", "1", "--beta", *map(str, betas)], "beta"),
    ):
        argv = ["--variant", variant, *extra, *common]
        ds = run_sweep(build_parser().parse_args(argv))
        frac = ds["collapsed_fraction"].isel(variant=0, method=0, sigma2=0)
        frac = frac.mean(dim=[d for d in frac.dims if d not in ("eta", axis)]).sortby([axis, "eta"])
        planes[key] = dict(frac=frac.transpose("eta", axis).values, axis=frac[axis].values,
                           command="python -m dynamics.sweep --model linear " + " ".join(argv[:-2]))
        eta_crit = np.asarray(ds["eta_crit"].values[0])
        x_modes = np.asarray(ds["x_eig"].values)
    return dict(etas=np.sort(np.asarray(etas, float)), eta_crit=eta_crit, x_eig=x_modes, **planes,
                params=dict(n1=n1, n2=n1, sigma2=sigma2, etas=list(etas), epss=list(epss),
                            betas=list(betas), n_init=n_init, t1=t1, lr=lr, x_eig=list(x_eig),
                            seed=seed, convention=convention,
                            paper="none: this project's phase diagrams of Tian et al.'s "
                                  "linear model",
                            sweeps=[planes["eta_eps"]["command"], planes["eta_beta"]["command"]]))
