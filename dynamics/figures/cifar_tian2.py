"""CIFAR-10 counterpart of Tian et al. (2021) Fig. 2 (after SimSiam's Fig. 2): loss, per-channel
std of ``z/||z||`` against ``1/sqrt(d)``, kNN accuracy against the random-init kNN of the same
set-up, and the top direction's share of ``E[u u^T]``, over training, with and without
stop-gradient. The grid's own runs (settings ``baseline`` and ``no-stop-grad``, both seeds),
drawn from the committed record (no training).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics.figures import cifar_record
from dynamics.figures.registry import register

__all__ = ["PANELS", "build", "curves", "data", "draw"]

SETTINGS = {"baseline": ("stop-gradient", "tab:blue"), "no-stop-grad": ("no stop-gradient", "tab:red")}
PANELS = ("loss", "z_std", "knn", "z_top")


def curves(rec: dict, names) -> dict:
    """Per setting and seed: per-step ``loss``, ``z_std``, ``z_top`` against epochs (steps over
    steps per epoch), per-epoch ``knn``; the random-init kNN and ``1/sqrt(d)`` of each run."""
    out = {}
    for name in names:
        for seed in rec.get("seeds", [0, 1]):
            ep = cifar_record.epochs(rec, name, seed)
            if ep is None:
                continue
            spe = ep["step"][1] if len(ep["step"]) > 1 else 1.0
            st = cifar_record.steps(rec, name, seed)
            src = st if st is not None else {k: ep[k][1:] for k in ("step", "loss", "z_std", "z_top")}
            out[(name, seed)] = dict(x=src["step"] / spe, loss=src["loss"], z_std=src["z_std"],
                                     z_top=src["z_top"], knn_epoch=ep["epoch"], knn=ep["knn"],
                                     knn0=float(ep["knn"][0]), z_std_ref=float(np.nanmax(ep["z_std_ref"])))
    return out


def draw_curves(axes, runs: dict, style: dict) -> None:
    """Draw ``runs`` (from :func:`curves`) on four axes (:data:`PANELS`); ``style[name] = (label,
    colour)``; seed 0 solid, others dashed; reference lines from the runs themselves."""
    seen = set()
    for (name, seed), r in runs.items():
        label, color = style[name]
        kw = dict(color=color, lw=1.2, ls="-" if str(seed) == "0" else "--",
                  label=f"{label}, seed {seed}")
        axes[0].plot(r["x"], r["loss"], **kw)
        axes[1].plot(r["x"], r["z_std"], **kw)
        axes[2].plot(r["knn_epoch"], 100 * r["knn"], marker="o", ms=3, **kw)
        axes[3].plot(r["x"], r["z_top"], **kw)
        seen.add(name)
    if runs:
        ref = np.mean([r["z_std_ref"] for r in runs.values()])
        axes[1].axhline(ref, color="k", ls=":", lw=1, label=f"1/sqrt(d) = {ref:.4f}")
        k0 = np.mean([r["knn0"] for r in runs.values()])
        axes[2].axhline(100 * k0, color="k", ls=":", lw=1, label=f"random-init kNN {100 * k0:.1f} %")
    axes[3].axhline(0.9, color="grey", ls="--", lw=0.8, label="collapse call (0.9)")
    for ax, yl in zip(axes, ("loss (negative cosine)", "per-channel std of z/||z||", "kNN accuracy (%)",
                             "top direction's share")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    axes[3].set_ylim(0, 1.02)
    axes[0].set_ylim(-1.02, 0.05)


def data(rec: dict) -> dict:
    runs = curves(rec, SETTINGS)
    return dict(runs=runs, params=dict(command=rec.get("command", ""), settings=list(SETTINGS),
                                       seeds=rec.get("seeds", [0, 1]),
                                       config=rec["settings"].get("baseline", {}).get("config", {}),
                                       paper="Tian et al. 2021 Fig. 2 / SimSiam Fig. 2; here a 5000-image "
                                             "subset, width 0.125, 3 epochs"))


def draw(d: dict):
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    draw_curves(axes, d["runs"], SETTINGS)
    for ax in axes[1:3]:
        ax.legend(fontsize=7)
    axes[0].legend(fontsize=7)
    fig.suptitle("CIFAR-10 SimSiam with and without stop-gradient (width 0.125, 5000 images; "
                 "per step, kNN per epoch)", fontsize=11)
    fig.tight_layout()
    return fig


@register("cifar_tian2",
          "CIFAR-10 counterpart of Tian et al. Fig. 2: loss, per-channel std of z/||z|| against "
          "1/sqrt(d), kNN against the random-init kNN, and the top direction's share over training, "
          "with and without stop-gradient (the grid's baseline and no-stop-grad runs, two seeds). "
          "Drawn from figures/cifar_runs.json.")
def build(quick):
    d = data(cifar_record.load())
    return draw(d), d["params"]
