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
# # Scalar SimSiam: with and without stop-gradient
#
# Encoder `theta`, predictor `phi`, views `x_i = x + xi_i` with noise variance `sigma2`,
# `a = 1 + sigma2`, expected loss `Lbar = 1/2 [a phi^2 theta^2 - 2 phi theta target + a target^2]`
# (docs/theory.md section 2). The flow, its Jacobian and the fixed points below are all derived from
# that loss by autodiff (`dynamics.flow`); nothing is hand-written.
#
# * **with stop-gradient** the target `theta` is held constant when differentiating:
#   `theta' = -theta (a phi^2 - phi + eta)`, `eps phi' = theta^2 (1 - a phi) - eta_phi phi`;
# * **without** it the encoder also gets the target branch's gradient and every start collapses
#   when `sigma2 > 0`.
#
# Set `DYNAMICS_QUICK=1` for small grids (the test suite does).

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DYNAMICS_QUICK", "0") == "1"
sigma2 = 0.5          # augmentation noise variance
eta = 0.1             # weight decay (inside the loss: eta_theta = eta_phi = eta)
eps = 0.1             # predictor time scale
t1 = 200.0            # integration time
n_grid = 12 if QUICK else 48

# %%
import matplotlib.pyplot as plt
import numpy as np

import dynamics
from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures import basins
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

# %matplotlib inline

model = ScalarSiamese(sigma2=sigma2)
hyper = Hyper.loss_decay(eta, eps)
a = 1.0 + sigma2
theta = np.linspace(-1.0, 1.0, 60)   # even counts: the nullcline theta = 0 falls between nodes
phi = np.linspace(-1.0, 2.0, 60)
seeds = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 2, 9)), -1).reshape(-1, 2)

# %% [markdown]
# ## Fixed points and their stability
#
# Newton on the autodiff field from a grid of seeds; eigenvalues of the autodiff Jacobian.
# Theory (section 2): the non-trivial fixed points have `phi = p_pm = (1 +- sqrt(1 - 4 a eta)) / (2a)`,
# real iff `eta <= 1/(4a)`; `p_+` is a stable node, `p_-` a saddle.

# %%
p_pm = ((1 + np.sqrt(1 - 4 * a * eta)) / (2 * a), (1 - np.sqrt(1 - 4 * a * eta)) / (2 * a))
print(f"theory: p_+ = {p_pm[0]:.6f}, p_- = {p_pm[1]:.6f}, eta_crit = {1 / (4 * a):.4f}")
fixed = {}
for name in ("simsiam", "simsiam-nosg"):
    fixed[name] = C.fixed_points(model, VARIANTS[name], hyper, seeds)
    print(f"\n{name}:")
    for p in fixed[name]:
        eig = ", ".join(f"{x.real:+.4f}" for x in p["eigs"])
        print(f"  theta = {p['z'][0]:+.5f}, phi = {p['z'][1]:+.5f}   eigenvalues {eig}   {p['kind']}")

# the claims above, checked: with decay in the loss the non-trivial points sit at phi = p_pm,
# theta^2 = eta phi / (1 - a phi); p_+ stable, p_- a saddle, the origin stable; without
# stop-gradient only the origin (Newton converges to 1e-10, hence 1e-8)
for p in fixed["simsiam"]:
    th_, ph_ = p["z"]
    if abs(th_) < 1e-8:
        assert abs(ph_) < 1e-8 and p["kind"] == "stable"
        continue
    k = 0 if p["kind"] == "stable" else 1
    assert p["kind"] == ("stable", "saddle")[k] and abs(ph_ - p_pm[k]) < 1e-8
    assert abs(th_**2 - eta * ph_ / (1 - a * ph_)) < 1e-8
assert sorted(p["kind"] for p in fixed["simsiam"]) == ["saddle", "saddle", "stable", "stable", "stable"]
assert len(fixed["simsiam-nosg"]) == 1 and np.allclose(fixed["simsiam-nosg"][0]["z"], 0.0, atol=1e-8)
assert eta < 1 / (4 * a)

# %% [markdown]
# ## Phase portraits
#
# Flow lines, nullclines, fixed points coloured by stability, a few trajectories, and (with
# stop-gradient) the stable manifolds of the saddles, which are the boundary of the collapse basin.

# %%
starts = np.array([[0.9, -0.8], [0.3, 1.8], [-0.5, -0.5], [0.15, 0.9], [-0.9, 1.5], [0.6, 0.0]])
fig, axes = plt.subplots(1, 2, figsize=(12, 5))
for ax, name in zip(axes, ("simsiam", "simsiam-nosg")):
    v = VARIANTS[name]
    TH, PH, f = C.grid_field(model, v, hyper, theta, phi)
    plot.draw_field(ax, TH, PH, f.enc, f.pred)
    plot.draw_nullclines(ax, TH, PH, f.enc, f.pred, names=(r"$\theta$", r"$\varphi$"))
    ts, ys, status = C.trajectories(model, v, hyper, starts[:, 0], starts[:, 1], t1=t1,
                                    log_time=True)
    for k in range(len(starts)):
        ax.plot(ys.enc[k], ys.pred[k], color="k", lw=1.2, label="trajectories" if k == 0 else None)
        ax.plot(starts[k, 0], starts[k, 1], "ks", ms=4)
    for p in fixed[name]:
        if p["kind"] == "saddle":
            for m in C.stable_manifold(model, v, hyper, p, bound=3.0):
                ax.plot(m[:, 0], m[:, 1], color="#e08214", lw=2.2, label="stable manifold of saddle")
    z = np.array([p["z"] for p in fixed[name]])
    plot.draw_fixed_points(ax, z[:, 0], z[:, 1], [p["kind"] for p in fixed[name]], size=9)
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 2)
    ax.set_xlabel(r"encoder $\theta$")
    ax.set_ylabel(r"predictor $\varphi$")
    sg = "with" if VARIANTS[name].stop_grad else "without"
    ax.set_title(rf"{sg} stop-gradient, $\sigma^2$={sigma2}, $\eta$={eta}, $\varepsilon$={eps}")
    plot.dedup_legend(ax, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Basins: simulation against theory
#
# A sweep over the initial grid (`dynamics.sweep`, the same code as `python -m dynamics.sweep`)
# classifies every start; the black curves are the theory's boundary from above.

# %%
eps_list = (1.0, 0.1) if QUICK else (1.0, 0.1, 0.01)
d = basins.data(eps=eps_list, eta=eta, sigma2=sigma2, n=n_grid, t1=t1)
fig = basins.draw(d)
plt.show()

# %% [markdown]
# ## A Lyapunov function without stop-gradient
#
# Without stop-gradient the flow is a gradient flow of `V = Lbar + (eta_theta theta^2 + eta_phi phi^2) / 2`
# with the predictor's gradient scaled by `1/eps` (docs/theory.md section 2), so `V` decreases along
# every trajectory. With stop-gradient it need not.

# %%
import jax.numpy as jnp

fig, ax = plt.subplots(figsize=(6, 4))
for name, c in (("simsiam-nosg", "#d62728"), ("simsiam", "#1f77b4")):
    v = VARIANTS[name]
    ts, ys, _ = C.trajectories(model, v, hyper, starts[:, 0], starts[:, 1], t1=40.0)
    V = np.asarray(model.expected_loss(jnp.asarray(ys.enc), jnp.asarray(ys.pred), jnp.asarray(ys.enc)))
    V = V + 0.5 * (hyper.eta_theta * ys.enc**2 + hyper.eta_phi * ys.pred**2)
    for k in range(len(starts)):
        ax.plot(ts, np.maximum(V[k], 1e-16), color=c, lw=1.2, label=name if k == 0 else None)
    if name == "simsiam-nosg":
        V_nosg = V
ax.set_xlabel("time $t$")
ax.set_ylabel(r"$V = \bar L + (\eta_\theta\theta^2 + \eta_\varphi\varphi^2)/2$ (floored at $10^{-16}$)")
ax.set_yscale("log")
ax.set_title("decreasing for every start without stop-gradient")
ax.legend()
plt.show()
# V is a Lyapunov function without stop-gradient: it never increases along the saved states
# (the solver's tolerance allows increases of ~1e-9 at most)
assert np.all(np.diff(V_nosg, axis=1) <= 1e-9)
