# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Scalar BYOL: the EMA target
#
# BYOL replaces SimSiam's target `theta` by an exponential moving average `theta_a`,
# `theta_a' = beta (theta - theta_a)` (THEORY.md section 1). As `beta -> infinity` the target
# follows the encoder and BYOL becomes SimSiam; a slow target (small `beta`) delays the encoder.
# Everything below is derived from the loss by autodiff (`dynamics.flow`).
#
# Set `DYNAMICS_QUICK=1` for small settings.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DYNAMICS_QUICK", "0") == "1"
sigma2 = 0.5
eta = 0.05                     # weight decay, Tian convention (alpha_p = 1/eps, eta_phi = eps*eta)
alpha_p = 1.0
betas = (0.1, 1.0, 10.0)
t1 = 60.0
n_grid = 10 if QUICK else 40

# %%
import matplotlib.pyplot as plt
import numpy as np

import dynamics
from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures import scalar
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

# %matplotlib inline

model = ScalarSiamese(sigma2=sigma2)
byol, simsiam = VARIANTS["byol"], VARIANTS["simsiam"]

# %% [markdown]
# ## Trajectories for several EMA rates against SimSiam
#
# Same start `(theta, phi) = (0.3, 0.05)`, target started at the encoder. A slow target holds
# the encoder back; all of them reach the same non-trivial fixed point here, which does not
# depend on `beta` (at a fixed point `theta_a = theta`).

# %%
theta0, phi0 = np.array([0.3]), np.array([0.05])
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
cols = plt.cm.viridis(np.linspace(0.1, 0.85, len(betas)))
for c, beta in zip(cols, betas):
    ts, ys, _ = C.trajectories(model, byol, Hyper.tian(eta, alpha_p, beta), theta0, phi0, t1=t1)
    axes[0].plot(ts, ys.enc[0], color=c, lw=1.8, label=rf"BYOL $\beta$={beta:g}")
    axes[1].plot(ts, ys.enc[0] - ys.tgt[0], color=c, lw=1.8, label=rf"$\beta$={beta:g}")
    axes[2].plot(ys.enc[0], ys.pred[0], color=c, lw=1.8, label=rf"BYOL $\beta$={beta:g}")
ts, ys, _ = C.trajectories(model, simsiam, Hyper.tian(eta, alpha_p), theta0, phi0, t1=t1)
axes[0].plot(ts, ys.enc[0], "k--", lw=1.5, label=r"SimSiam ($\beta\to\infty$)")
axes[2].plot(ys.enc[0], ys.pred[0], "k--", lw=1.5, label=r"SimSiam ($\beta\to\infty$)")
axes[0].set_xlabel("time $t$")
axes[0].set_ylabel(r"encoder $\theta(t)$")
axes[1].set_xlabel("time $t$")
axes[1].set_ylabel(r"target lag $\theta - \theta_a$")
axes[2].set_xlabel(r"encoder $\theta$")
axes[2].set_ylabel(r"predictor $\varphi$")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(rf"scalar BYOL vs SimSiam, $\sigma^2$={sigma2}, $\eta$={eta}, $\alpha_p$={alpha_p}")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Fixed points and spectra
#
# The fixed points are SimSiam's with `theta_a = theta`; the Jacobian gains one eigenvalue
# from the target. THEORY.md: at the origin `{-eta, -eta, -beta}`; at `p_pm` SimSiam's
# `{-2 eta, 2 eta - p}` is not kept exactly once the target lags, but stability is.

# %%
seeds = np.random.default_rng(0).uniform(-1, 1, (64, 3))
for beta in betas:
    fps = C.fixed_points(model, byol, Hyper.tian(eta, alpha_p, beta), seeds)
    print(f"beta = {beta:g}")
    for p in fps:
        eig = ", ".join(f"{x.real:+.4f}" for x in p["eigs"])
        print(f"  (theta, phi, theta_a) = ({p['z'][0]:+.4f}, {p['z'][1]:+.4f}, {p['z'][2]:+.4f})"
              f"   eigenvalues {eig}   {p['kind']}")

# %% [markdown]
# ## Collapse fraction against the EMA rate
#
# A sweep over initial conditions `(theta0, phi0)` (target started at `theta0`) for each `beta`.

# %%
from dynamics.sweep import build_parser, run_sweep

argv = ["--variant", "byol", "--convention", "tian", "--eps", str(1 / alpha_p), "--eta", str(eta),
        "--sigma2", str(sigma2), "--beta", *map(str, betas), "--n", str(n_grid), "--t1", "300",
        "--theta-range", "-1", "1", "--phi-range", "-1", "2", "--quiet"]
ds = run_sweep(build_parser().parse_args(argv))
frac = (ds["outcome"] == 1).mean(dim=("phi0", "theta0")).squeeze()
fig, ax = plt.subplots(figsize=(5, 3.6))
ax.semilogx(ds.beta.values, np.atleast_1d(frac.values), "o-", label="collapsed fraction")
ax.set_xlabel(r"EMA rate $\beta$")
ax.set_ylabel("fraction of starts that collapse")
ax.set_title(rf"scalar BYOL, $\eta$={eta}, $\sigma^2$={sigma2}, {n_grid}$\times${n_grid} starts")
ax.grid(alpha=0.3)
ax.legend()
plt.show()

# %% [markdown]
# ## Tian et al. (2021) Fig. 10
#
# Scalar BYOL with `lambda_s = 1`, `lambda_d = 1/2`, `alpha_p = beta = 1`, no weight decay:
# lines of fixed points with a trained predictor, and without a predictor only the origin.

# %%
d = scalar.tian_fig10_data(quick=QUICK, n_grid=20 if QUICK else 40)
fig = plot.tian_fig10(d)
plt.show()
