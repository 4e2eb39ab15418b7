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
# # Linear SimSiam: eigenspace alignment and the per-mode picture
#
# Online `W (n x n)`, predictor `Wp`, isotropic data `X = I`, augmentation `X' = sigma2 I`
# (docs/theory.md section 3). Tian et al.'s Theorem 3: once `K = a(alpha_p F/2 + Wp^2 - tau Wp/a) + 3 eta I/2`
# is positive definite, the commutator `[F, Wp]` (with `F = W W^T`) decays, the eigenbases
# of `F` and `Wp` align, and each shared eigen-direction follows the scalar system with
# `s = theta^2`, `p = phi`. Below: a full matrix run (explicit Euler on the expected flow, step
# 0.01), its alignment, Theorem 1's invariant, and the modes `(p_j(t), s_j(t))` drawn over the
# scalar `(p, s)` phase plane.
#
# Set `DYNAMICS_QUICK=1` for small settings.

# %% tags=["parameters"]
import os

QUICK = os.environ.get("DYNAMICS_QUICK", "0") == "1"
n = 3 if QUICK else 8
sigma2 = 0.5
eta = 0.04
alpha_p = 1.0
T = 40.0 if QUICK else 150.0
lr = 0.01
seed = 1

# %%
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import dynamics
from dynamics import plot
from dynamics.figures import tian3
from dynamics.figures.compute import euler_lanes
from dynamics.flow import VARIANTS, Hyper
from dynamics.models.linear import LinearSiamese, random_state

# %matplotlib inline

model = LinearSiamese.isotropic(n, sigma2, predictor="trained")
v = VARIANTS["simsiam"]
hyper = Hyper.tian(eta, alpha_p)
y0 = random_state(jax.random.PRNGKey(seed), model, v, n, scale=0.8)
lanes = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], y0)
hyper_l = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], hyper)
ts, ys = euler_lanes(model, v, hyper_l, lanes, jnp.asarray([lr]), n_steps=int(T / lr),
                     save_every=20)
ts = np.concatenate([[0.0], np.asarray(ts)[0]])
W = np.concatenate([np.asarray(y0.enc)[None], np.asarray(ys.enc)[0]])
Wp = np.concatenate([np.asarray(y0.pred)[None], np.asarray(ys.pred)[0]])
F = W @ np.swapaxes(W, -1, -2)
print(f"{len(ts)} saved states, W(T) singular values {np.linalg.svd(W[-1], compute_uv=False).round(4)}")

# %% [markdown]
# ## Alignment over time
#
# Relative commutator `|[F, Wp]| / (|F| |Wp|)`, relative antisymmetric part of `Wp`, and for each
# eigenvector `u_j` of `F` the cosine between `u_j` and `Wp u_j` (1 when `u_j` is also an
# eigenvector of `Wp`, up to sign), all from `dynamics.analysis.alignment`. Modes are ordered by
# eigenvalue (`j`-th largest `s_j`);
# collapsed modes (`s_j -> 0`) share a degenerate eigenvalue, so their eigenvectors are not
# defined individually and are left out of the right panel.

# %%
from dynamics.analysis.alignment import commutator_norm, eigen_alignment, sym_antisym

Fj, Wpj = jnp.asarray(F), jnp.asarray(Wp)
comm = np.asarray(jax.vmap(commutator_norm)(Fj, Wpj)) / (
    np.linalg.norm(F, axis=(-2, -1)) * np.linalg.norm(Wp, axis=(-2, -1)))
sym_n, anti_n = map(np.asarray, jax.vmap(sym_antisym)(Wpj))
asym = anti_n / np.linalg.norm(Wp, axis=(-2, -1))
# eigenvalues of F (descending), cosines |u_j^T Wp u_j| / |Wp u_j|, Rayleigh quotients u_j^T Wp u_j
s_eig, cos, p_modes = map(np.asarray, jax.vmap(eigen_alignment)(Fj, Wpj))

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
axes[0].semilogy(ts, comm, label=r"$\|[F, W_p]\| / (\|F\|\|W_p\|)$")
axes[0].semilogy(ts, asym, label=r"$\|W_p - W_p^\top\| / (2\|W_p\|)$")
axes[0].set_xlabel("time $t$")
axes[0].set_ylabel("relative norm")
axes[0].set_title("commutator and asymmetry decay")
for j in range(n):
    if s_eig[-1, j] > 1e-3:
        axes[1].plot(ts, cos[:, j], label=rf"mode {j} ($s_j(T)$ = {s_eig[-1, j]:.3f})")
axes[1].set_xlabel("time $t$")
axes[1].set_ylabel(r"$|u_j^\top W_p u_j| / \|W_p u_j\|$")
axes[1].set_title("eigenvectors of $F$ become eigenvectors of $W_p$")
for ax in axes:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(rf"linear SimSiam, $n$={n}, $\sigma^2$={sigma2}, $\eta$={eta}, $\alpha_p$={alpha_p}")
fig.tight_layout()
plt.show()
# checked: the predictor aligns with F and becomes symmetric (both relative norms fall by 10x)
assert comm[-1] < 0.1 * comm[0] and asym[-1] < 0.1 * asym[0], (comm[[0, -1]], asym[[0, -1]])

# %% [markdown]
# ## Theorem 1: `W W^T - Wp^T Wp / alpha_p = exp(-2 eta t) C`
#
# Exact for the flow; explicit Euler keeps it to O(step).

# %%
M = F - np.swapaxes(Wp, -1, -2) @ Wp / alpha_p
dev = np.linalg.norm(M - np.exp(-2 * eta * ts)[:, None, None] * M[0], axis=(-2, -1))
fig, ax = plt.subplots(figsize=(6, 3.8))
ax.semilogy(ts[1:], dev[1:], label=r"$\|M(t) - e^{-2\eta t} M(0)\|_F$")
ax.semilogy(ts, np.linalg.norm(M, axis=(-2, -1)), label=r"$\|M(t)\|_F$")
ax.set_xlabel("time $t$")
ax.set_ylabel("Frobenius norm")
ax.set_title(rf"invariant $M = WW^\top - W_p^\top W_p/\alpha_p$ (Euler step {lr})")
ax.grid(alpha=0.3)
ax.legend()
plt.show()
# checked: Euler keeps Theorem 1's invariant to O(step): relative deviation below 10 * lr
assert np.max(dev) < 10 * lr * np.linalg.norm(M[0]), np.max(dev) / np.linalg.norm(M[0])

# %% [markdown]
# ## The modes on the scalar `(p, s)` plane
#
# Each aligned mode follows the scalar SimSiam flow with `s = theta^2`, `p = phi`
# (`tau = 1`); the background is that flow at the same `eta` (Tian et al. Fig. 3).

# %%
d = tian3.data(etas=(eta,), sigma2=sigma2, alpha_p=alpha_p, p_range=(-0.6, 1.2),
               s_range=(0.0, max(1.0, float(s_eig.max()) * 1.1)), n=30 if QUICK else 50)
pan = d["panels"][0]
fig, ax = plt.subplots(figsize=(6.5, 5))
plot.draw_field(ax, pan["P"], pan["S"], pan["dP"], pan["dS"])
ax.plot(*pan["parabola"], color="purple", ls="--", lw=1.2, label=r"parabola $s = p^2/\alpha_p$")
plot.draw_fixed_points(ax, [f[0] for f in pan["fixed"]], [f[1] for f in pan["fixed"]],
                       [f[2] for f in pan["fixed"]])
cols = plt.cm.viridis(np.linspace(0.1, 0.9, n))
for j in range(n):
    ax.plot(p_modes[:, j], s_eig[:, j], color=cols[j], lw=2, label=rf"mode {j}: $(p_j, s_j)(t)$")
    ax.plot(p_modes[0, j], s_eig[0, j], "o", color=cols[j], ms=5)
ax.set_xlim(pan["P"][0, 0], pan["P"][0, -1])
ax.set_ylim(-0.02, pan["S"][-1, 0])
ax.set_xlabel(r"$p_j = u_j^\top W_p u_j$")
ax.set_ylabel(r"$s_j$ (eigenvalue of $WW^\top$)")
ax.set_title(rf"matrix modes over the scalar flow, $\eta$={eta}, $\sigma^2$={sigma2}")
plot.dedup_legend(ax, loc="upper left")
plt.show()
