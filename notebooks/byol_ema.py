# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Scalar BYOL: the EMA target
#
# BYOL replaces SimSiam's target `theta` by an exponential moving average `theta_a`,
# `theta_a' = beta (theta - theta_a)` (docs/theory.md section 1). As `beta -> infinity` the target
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
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

# %matplotlib inline

model = ScalarSiamese(sigma2=sigma2)
byol, simsiam = VARIANTS["byol"], VARIANTS["simsiam"]

# %% [markdown]
# ## Trajectories for several EMA rates against SimSiam
#
# Same start `(theta, phi) = (0.3, 0.05)`, target started at zero (`theta_a(0) = 0`, as Tian
# et al. do). A slow target holds the encoder back; all of them reach the same non-trivial
# fixed point here, which does not depend on `beta` (at a fixed point `theta_a = theta`,
# `phi = p_+`, `theta^2 = p_+^2 / alpha_p`).

# %%
theta0, phi0 = np.array([0.3]), np.array([0.05])
fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
cols = plt.cm.viridis(np.linspace(0.1, 0.85, len(betas)))
a = 1.0 + sigma2
p_plus = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
ends = {}
for c, beta in zip(cols, betas):
    ts, ys, _ = C.trajectories(model, byol, Hyper.tian(eta, alpha_p, beta), theta0, phi0,
                               np.zeros_like(theta0), t1=t1)
    ends[beta] = (ys.enc[0, -1], ys.pred[0, -1], ys.tgt[0, -1])
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
fig.suptitle(rf"scalar BYOL ($\theta_a(0) = 0$) vs SimSiam, $\sigma^2$={sigma2}, $\eta$={eta}, "
             rf"$\alpha_p$={alpha_p}")
fig.tight_layout()
plt.show()
# every beta reaches SimSiam's stable point (phi = p_+, theta^2 = p_+^2/alpha_p, theta_a = theta)
# by t1, except possibly the slowest target, which is still moving (observed error < 1e-3)
for beta, (th_, ph_, ta_) in ends.items():
    if beta >= 1.0:
        assert abs(ph_ - p_plus) < 1e-3 and abs(th_**2 - p_plus**2 / alpha_p) < 1e-3
        assert abs(ta_ - th_) < 1e-3

# %% [markdown]
# ## Fixed points and spectra
#
# The fixed points are SimSiam's with `theta_a = theta`; the Jacobian gains one eigenvalue
# from the target. docs/theory.md: at the origin `{-eta, -eta, -beta}`; at `p_pm` SimSiam's
# `{-2 eta, 2 eta - p}` is not kept exactly once the target lags, but stability is.

# %%
seeds = np.random.default_rng(0).uniform(-1, 1, (64, 3))
p_minus = (1 - np.sqrt(1 - 4 * a * eta)) / (2 * a)
for beta in betas:
    fps = C.fixed_points(model, byol, Hyper.tian(eta, alpha_p, beta), seeds)
    print(f"beta = {beta:g}")
    for p in fps:
        eig = ", ".join(f"{x.real:+.4f}" for x in p["eigs"])
        print(f"  (theta, phi, theta_a) = ({p['z'][0]:+.4f}, {p['z'][1]:+.4f}, {p['z'][2]:+.4f})"
              f"   eigenvalues {eig}   {p['kind']}")
        # checked: SimSiam's points with theta_a = theta; the origin's spectrum {-eta, -eta, -beta}
        th_, ph_, ta_ = p["z"]
        assert abs(ta_ - th_) < 1e-8
        if abs(th_) < 1e-8:
            np.testing.assert_allclose(np.sort(p["eigs"].real), np.sort([-eta, -eta, -beta]),
                                       atol=1e-10)
        else:
            assert min(abs(ph_ - p_plus), abs(ph_ - p_minus)) < 1e-8
            assert abs(th_**2 - ph_**2 / alpha_p) < 1e-8
            assert p["kind"] == ("stable" if abs(ph_ - p_plus) < 1e-8 else "saddle")

# %% [markdown]
# ## Collapse fraction against the EMA rate
#
# The sweep (`dynamics.sweep`, gradient flow to `t1 = 300`, its scale-free collapse rule) over a
# grid of starts `(theta0, phi0)` for nine EMA rates, with the target started at zero (Tian et
# al.'s start) and, for comparison, at the encoder (`--target0 online`); SimSiam, the limit
# `beta -> infinity`, is the dashed line. Lanes that have not settled by `t1` count as
# undecided, not as collapsed; below `beta` of about 0.1 most of them have not, so the curve
# starts at 0.15.
#
# From zero the dependence on `beta` is not monotone: a slow target (small `tau`) moves `p_-` up
# and traps more starts (Tian et al.'s Obs. 10), while a fast one approaches SimSiam. From the
# online start a slow target protects instead: the start decides the sign of the effect.

# %%
from dynamics.sweep import SweepConfig, run
from dynamics.sweep.scalar import ScalarOptions

betas_curve = tuple(float(b) for b in np.round(np.geomspace(0.15, 40.0, 9), 4))
grid = ScalarOptions(n=n_grid, theta_range=(-1.0, 1.0), phi_range=(-1.0, 2.0))
common = dict(convention="tian", eta=(eta,), sigma2=(sigma2,), eps=(1.0 / alpha_p,), t1=300.0,
              options=grid)
curves = {}
for start in ("zero", "online"):
    ds = run(SweepConfig(variant=("byol",), beta=betas_curve, target0=start, **common))
    o = ds["outcome"].isel(variant=0, method=0, eps=0, eta=0, sigma2=0)
    curves[start] = dict(collapsed=(o == 1).mean(["phi0", "theta0"]).values,
                         undecided=(o == 2).mean(["phi0", "theta0"]).values)
ds = run(SweepConfig(variant=("simsiam",), **common))
simsiam_frac = float((ds["outcome"] == 1).mean())

fig, ax = plt.subplots(figsize=(6.2, 4.0))
for start, c, lab in (("zero", "C0", r"BYOL, $\theta_a(0) = 0$"),
                      ("online", "C1", r"BYOL, $\theta_a(0) = \theta(0)$")):
    ax.semilogx(betas_curve, curves[start]["collapsed"], "o-", color=c, label=lab + ": collapsed")
    ax.semilogx(betas_curve, curves[start]["undecided"], ":", color=c, lw=1,
                label=lab + ": undecided")
ax.axhline(simsiam_frac, color="k", ls="--", lw=1.2, label=r"SimSiam ($\beta \to \infty$)")
ax.set_xlabel(r"EMA rate $\beta$")
ax.set_ylabel("share of all starts")
ax.set_title(rf"scalar BYOL, Tian convention, $\eta$={eta}, $\sigma^2$={sigma2}, "
             rf"{n_grid}$\times${n_grid} starts, flow to $t_1$ = 300", fontsize=9)
ax.grid(alpha=0.3)
ax.legend(fontsize=7)
plt.show()
for start in curves:
    print(start, {b: round(float(x), 3) for b, x in zip(betas_curve, curves[start]["collapsed"])})
print("SimSiam", round(simsiam_frac, 3))
# checked: the lanes settle (undecided below 5 %); a fast target is SimSiam (within 0.02 at
# beta = 40, both starts); below beta = 1 the zero start collapses more starts than the
# online one (observed 0.32-0.36 against 0.19-0.23 on 40 x 40 starts)
for start in curves:
    assert np.all(curves[start]["undecided"] < 0.05), curves[start]["undecided"]
    assert abs(curves[start]["collapsed"][-1] - simsiam_frac) < 0.02
slow = np.asarray(betas_curve) < 1.0
assert np.all(curves["zero"]["collapsed"][slow] > curves["online"]["collapsed"][slow])

# %% [markdown]
# ## Tian et al. (2021) Fig. 10
#
# Scalar BYOL with `lambda_s = 1`, `lambda_d = 1/2`, `alpha_p = beta = 1`, no weight decay
# (`a = lambda_s / lambda_d = 2` here): with the target frozen at `w_a = 1` the fixed points are
# the hyperbola `w_p w = 1/2`; on the invariant submanifold `w = w_p` the stable point is
# `w = w_a = 1/2`; without a predictor only the origin, stable.

# %%
from dynamics.figures import tian10

d = tian10.data(n_grid=13 if QUICK else 21, t1=30.0 if QUICK else 60.0)
fig = tian10.draw(d)
plt.show()
# the line of non-collapsed fixed points sits at w_p = lambda_d / lambda_s = 1/2, with w = w_a
line = [p["z"] for p in d["fixed3"] if abs(p["z"][0]) > 1e-3]
assert line and all(abs(wp - 0.5) < 1e-8 and abs(w - wa) < 1e-8 for w, wp, wa in line)
np.testing.assert_allclose(d["mid"]["fixed"][0]["z"], [0.5, 0.5, 0.5], atol=1e-8)
