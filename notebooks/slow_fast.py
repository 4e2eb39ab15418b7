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
# # The slow-fast picture as the predictor gets faster
#
# `eps dphi/dt = -dL/dphi - eta phi` with weight decay inside the loss (docs/theory.md section 4).
# For small `eps` the predictor relaxes onto the critical manifold `phi*(theta)` (zero of its
# own field) and the encoder follows the reduced 1-D flow `theta' = f_theta(theta, phi*(theta))`.
# The reduction is accurate to O(eps) away from collapse and fails where the predictor's
# relaxation rate `(a theta^2 + eta)/eps` is not large: near `theta = 0` and the basin boundary.
#
# Set `DYNAMICS_QUICK=1` for small settings.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DYNAMICS_QUICK", "0") == "1"
sigma2 = 0.5
eta = 0.1
eps_list = (0.3, 0.03) if QUICK else (1.0, 0.3, 0.1, 0.03, 0.01)
t1 = 150.0

# %%
import matplotlib.pyplot as plt
import numpy as np

import dynamics
from dynamics import plot
from dynamics.figures import compute as C
from dynamics.figures import slowfast
from dynamics.flow import VARIANTS, Hyper
from dynamics.models import ScalarSiamese

# %matplotlib inline

model = ScalarSiamese(sigma2=sigma2)
v = VARIANTS["simsiam"]
a = 1.0 + sigma2

# %% [markdown]
# ## Phase portraits for shrinking eps
#
# The flow lines fold onto the critical manifold (dashed) ever faster; trajectories then creep
# along it. Fixed points do not move with `eps` (they are zeros of both fields).

# %%
theta = np.linspace(-1, 1, 50)
phi = np.linspace(-1, 2, 50)
th_line = np.linspace(-1, 1, 201)
starts = np.array([[0.5, -0.8], [0.2, 1.8], [-0.7, 1.5], [-0.3, -0.9], [0.15, -0.8]])
ncols = min(3, len(eps_list))
nrows = -(-len(eps_list) // ncols)
fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.2 * nrows), squeeze=False)
for ax in axes.flat[len(eps_list):]:
    ax.axis("off")
for ax, eps in zip(axes.flat, eps_list):
    hyper = Hyper.loss_decay(eta, eps)
    TH, PH, f = C.grid_field(model, v, hyper, theta, phi)
    plot.draw_field(ax, TH, PH, f.enc, f.pred, density=0.9)
    ax.plot(th_line, C.critical_predictor(model, v, hyper, th_line), "k--", lw=1.5,
            label=r"critical manifold $\varphi^*(\theta)$")
    ts, ys, _ = C.trajectories(model, v, hyper, starts[:, 0], starts[:, 1], t1=t1, log_time=True)
    for k in range(len(starts)):
        ax.plot(ys.enc[k], ys.pred[k], color="#1f77b4", lw=1.4, label="trajectories" if k == 0 else None)
    fps = C.fixed_points(model, v, hyper, np.stack(np.meshgrid(np.linspace(-1, 1, 7),
                                                                np.linspace(-1, 2, 7)), -1).reshape(-1, 2))
    plot.draw_fixed_points(ax, [p["z"][0] for p in fps], [p["z"][1] for p in fps],
                           [p["kind"] for p in fps])
    ax.set_xlim(-1, 1)
    ax.set_ylim(-1, 2)
    ax.set_xlabel(r"encoder $\theta$")
    ax.set_ylabel(r"predictor $\varphi$")
    ax.set_title(rf"$\varepsilon$ = {eps:g}")
    plot.dedup_legend(ax, loc="upper left", fontsize=6)
fig.suptitle(rf"scalar SimSiam, $\sigma^2$={sigma2}, $\eta$={eta} (in the loss)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Eigenvalues at the non-trivial fixed point
#
# The fast eigenvalue grows like `1/eps` (about `-(a theta*^2 + eta)/eps`); the slow one tends
# to the reduced flow's eigenvalue `d/dtheta f_theta(theta, phi*(theta))` at `theta*`.

# %%
import jax.numpy as jnp

from dynamics.analysis import FlowSystem
from dynamics.analysis.slowfast import slow_eigenvalues
from dynamics.flow import State

eps_dense = np.geomspace(1.0, 0.003, 6 if QUICK else 20)
hyper = Hyper.loss_decay(eta, 1.0)
fp = C.fixed_points(model, v, hyper, np.array([[0.6, 0.6]]))[0]
theta_star, phi_star = fp["z"]
res = slow_eigenvalues(FlowSystem(model, hyper, v),
                       State(jnp.asarray(theta_star), jnp.asarray(phi_star), None),
                       jnp.asarray(0.5), eps_dense)
fast = np.real(res["full_fast"][:, 0])
slow = np.real(res["full_slow"][:, 0])
lam_red = float(np.real(res["reduced"][0]))
fig, ax = plt.subplots(figsize=(6, 4))
ax.loglog(eps_dense, -np.array(fast), "o-", label=r"$-\lambda_{fast}$")
ax.loglog(eps_dense, (a * theta_star**2 + eta) / eps_dense, "k:", label=r"$(a\theta^{*2}+\eta)/\varepsilon$")
ax.loglog(eps_dense, -np.array(slow), "s-", label=r"$-\lambda_{slow}$")
ax.axhline(-lam_red, color="C3", ls="--", label=rf"reduced flow: $-\lambda$ = {-lam_red:.4f}")
ax.set_xlabel(r"predictor time scale $\varepsilon$")
ax.set_ylabel("decay rate at the fixed point")
ax.set_title(rf"$\theta^*$ = {theta_star:.4f}, $\sigma^2$={sigma2}, $\eta$={eta}")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
plt.show()
# checked: the slow eigenvalue converges to the reduced flow's (the gap is O(eps); observed
# below 1e-2 relative at the smallest eps), and the fast one is -(a theta*^2 + eta)/eps up to
# O(1) (observed relative error below 0.1 at the smallest eps)
assert abs(slow[-1] - lam_red) < 1e-2 * abs(lam_red), (slow[-1], lam_red)
rate = (a * theta_star**2 + eta) / eps_dense[-1]
assert abs(-fast[-1] - rate) < 0.1 * rate, (fast[-1], rate)

# %% [markdown]
# ## Full against reduced, and where the reduction breaks
#
# The same figure as `python -m dynamics.figures slowfast`.

# %%
d = slowfast.data(eps=eps_list, eta=eta, sigma2=sigma2, t1=t1)
fig = slowfast.draw(d)
plt.show()
# checked: the reduction error shrinks with eps from the start away from the boundary (A)
assert np.all(np.diff(d["err"][:, 0]) < 0), d["err"][:, 0]
