"""CIFAR-10 counterpart of Tian et al. (2021) Fig. 6: the predictor's relative learning rate
(``predictor_lr_ratio`` 0.1, 1, 10; the toy's ``alpha_p``). Top: the end-of-run loss, std of
``z/||z||`` over ``1/sqrt(d)``, kNN (against the random-init kNN) and top direction's share
against the ratio, each seed a dot. Bottom: the same monitors over training. The grid's own
runs (``pred-lr-0.1``, ``baseline``, ``pred-lr-10``), drawn from the committed record.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics.figures import cifar_record
from dynamics.figures.cifar_tian2 import curves, draw_curves
from dynamics.figures.registry import register

__all__ = ["RATIOS", "build", "data", "draw"]

RATIOS = {"pred-lr-0.1": 0.1, "baseline": 1.0, "pred-lr-10": 10.0}
STYLE = {"pred-lr-0.1": ("ratio 0.1", "tab:purple"), "baseline": ("ratio 1", "tab:blue"),
         "pred-lr-10": ("ratio 10", "tab:olive")}


def data(rec: dict) -> dict:
    """End-of-run values per (ratio, seed): the last epoch's mean ``loss`` and ``z_std``
    (over ``1/sqrt(d)``), the final ``knn`` and the last epoch's ``z_top``; and the curves."""
    points = []
    for name, ratio in RATIOS.items():
        for seed in rec.get("seeds", [0, 1]):
            ep = cifar_record.epochs(rec, name, seed)
            if ep is None:
                continue
            points.append(dict(ratio=ratio, seed=seed, loss=float(ep["loss"][-1]),
                               std_ratio=float(ep["z_std"][-1] / ep["z_std_ref"][-1]),
                               knn=float(ep["knn"][-1]), knn0=float(ep["knn"][0]), z_top=float(ep["z_top"][-1])))
    return dict(points=points, runs=curves(rec, RATIOS),
                params=dict(command=rec.get("command", ""), settings=list(RATIOS), ratios=list(RATIOS.values()),
                            seeds=rec.get("seeds", [0, 1]),
                            paper="Tian et al. 2021 Fig. 6 (predictor learning rate); here CIFAR-10, a "
                                  "5000-image subset, width 0.125, 3 epochs"))


def draw(d: dict):
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.2))
    pts = d["points"]
    keys = (("loss", "final epoch's loss"), ("std_ratio", "final epoch's std of z/||z|| x sqrt(d)"),
            ("knn", "final kNN accuracy (%)"), ("z_top", "final epoch's top share"))
    for ax, (k, label) in zip(axes[0], keys):
        scale = 100 if k == "knn" else 1
        for p in pts:
            ax.plot(p["ratio"], scale * p[k], "o", color=STYLE[_name(p["ratio"])][1],
                    mfc="none" if str(p["seed"]) != "0" else None)
        rs = sorted({p["ratio"] for p in pts})
        ax.plot(rs, [scale * np.mean([p[k] for p in pts if p["ratio"] == r]) for r in rs], "k-", lw=1,
                label="seed mean")
        ax.set_xscale("log")
        ax.set_xlabel("predictor lr / encoder lr (toy alpha_p)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if pts:
        k0 = 100 * np.mean([p["knn0"] for p in pts])
        axes[0][2].axhline(k0, color="k", ls=":", lw=1, label=f"random-init kNN {k0:.1f} %")
    axes[0][1].axhline(1.0, color="k", ls=":", lw=1, label="isotropic (1/sqrt(d))")
    axes[0][3].axhline(0.9, color="grey", ls="--", lw=0.8, label="collapse call (0.9)")
    axes[0][3].set_ylim(0, 1.02)
    for ax in axes[0]:
        ax.legend(fontsize=7)
    draw_curves(axes[1], d["runs"], STYLE)
    axes[1][0].legend(fontsize=7)
    axes[1][2].legend(fontsize=6, loc="lower left")
    fig.suptitle("CIFAR-10 SimSiam against the predictor's learning-rate ratio (width 0.125, 5000 images; "
                 "filled: seed 0, open: seed 1)", fontsize=11)
    fig.tight_layout()
    return fig


def _name(ratio: float) -> str:
    return next(n for n, r in RATIOS.items() if r == ratio)


@register("cifar_tian6",
          "CIFAR-10 counterpart of Tian et al. Fig. 6: the end-of-run loss, std of z/||z|| over "
          "1/sqrt(d), kNN (random-init kNN as a reference) and top direction's share against the "
          "predictor learning-rate ratio 0.1 / 1 / 10, and the same monitors over training (the "
          "grid's pred-lr-0.1, baseline and pred-lr-10 runs, two seeds). Drawn from figures/cifar_runs.json.")
def build(quick):
    d = data(cifar_record.load())
    return draw(d), d["params"]
