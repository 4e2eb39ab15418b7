"""Does the toy predict the real runs? The linear toy's call for each setting of
``python -m dynamics.predict`` (from the declared mapping, docs/theory.md section 7b) beside the
CIFAR-10 runs' final collapse measures, each seed a dot, with the thresholds that call a run,
and whether the two agree. Drawn from the committed records of the runs (no training):
``toy_vs_cifar`` the second grid (5 epochs, mapping v2), ``toy_vs_cifar_grid1`` the first
(3 epochs, mapping v1).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from dynamics.figures import cifar_record
from dynamics.figures.registry import register
from dynamics.predict import mapping

__all__ = ["build", "data", "draw"]

COLORS = {"collapsed": "tab:red", "partial": "tab:orange", "healthy": "tab:green"}


def data(rec: dict) -> dict:
    """Per setting (record order): its toy call and modes, each finished seed's measures and
    outcome, and ``agree`` (``"yes"``, ``"no"``, or ``""`` while a seed is missing)."""
    seeds = [str(s) for s in rec.get("seeds", [0, 1])]
    rows = []
    for name, e in rec["settings"].items():
        runs = [e["runs"][k] for k in seeds if k in e.get("runs", {})]
        outs = [r["outcome"] for r in runs]
        agree = "" if len(runs) < len(seeds) else "yes" if all(o == e["toy"]["outcome"] for o in outs) else "no"
        rows.append(dict(name=name, group=e["group"], toy=e["toy"]["outcome"], toy_modes=e["toy"]["modes"],
                         measures=[r["measures"] for r in runs], outcomes=outs, agree=agree))
    n_called = sum(r["agree"] in ("yes", "no") for r in rows)
    n_agree = sum(r["agree"] == "yes" for r in rows)
    epochs = {e.get("config", {}).get("epochs") for e in rec["settings"].values()} - {None}
    return dict(rows=rows, n_agree=n_agree, n_called=n_called,
                title=(f"{rec.get('grid', 'grid1')}, mapping {rec.get('mapping', 'v1')}, "
                       f"{'/'.join(str(e) for e in sorted(epochs)) or '?'} epochs"),
                params=dict(command=rec.get("command", ""), seeds=seeds, grid=rec.get("grid", "grid1"),
                            mapping=rec.get("mapping", "v1"),
                            healthy_modes=mapping.HEALTHY_MODES, collapse_top_share=mapping.COLLAPSE_TOP_SHARE,
                            collapse_std_ratio=mapping.COLLAPSE_STD_RATIO, knn_drop=mapping.KNN_DROP,
                            agreement=f"{n_agree}/{n_called}",
                            paper="none: this project's toy-versus-CIFAR table"))


def draw(d: dict):
    rows = d["rows"]
    n = len(rows)
    y = np.arange(n)[::-1]
    fig, axes = plt.subplots(1, 4, figsize=(16, 0.5 * n + 2.2), sharey=True,
                             gridspec_kw=dict(width_ratios=[1.4, 1, 1, 1]))
    panels = [("effective_rank", "directions kept (toy: live modes, 0 drawn at 0.6;\nCIFAR: effective rank)"),
              ("top_share", "top direction's share of E[u u^T]"),
              ("std_ratio", "std of z/||z|| times sqrt(d)"),
              ("knn_gain", "kNN - random-init kNN")]
    for ax, (key, label) in zip(axes, panels):
        for yi, r in zip(y, rows):
            for m, o in zip(r["measures"], r["outcomes"]):
                v = m["knn"] - m["knn_random_init"] if key == "knn_gain" else m[key]
                ax.plot(v, yi, "o", color=COLORS.get(o, "grey"), ms=6, alpha=0.85)
            if key == "effective_rank":
                ax.plot(max(r["toy_modes"], 0.6), yi, "D", mfc="none", mec="black", ms=8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_xscale("log")
    axes[0].axvline(1.5, color="k", ls=":", lw=1)
    axes[0].axvline(mapping.HEALTHY_MODES, color="k", ls="--", lw=1)
    axes[1].axvline(mapping.COLLAPSE_TOP_SHARE, color="tab:red", ls="--", lw=1)
    axes[1].set_xlim(0, 1.02)
    axes[2].axvline(mapping.COLLAPSE_STD_RATIO, color="tab:red", ls="--", lw=1)
    axes[2].set_xlim(0, 1.05)
    axes[3].axvline(-mapping.KNN_DROP, color="tab:red", ls="--", lw=1)
    axes[3].axvline(0, color="grey", lw=0.8)
    labels = []
    for r in rows:
        mark = {"yes": "agree", "no": "DISAGREE", "": "not run"}[r["agree"]]
        cifar = "/".join(sorted(set(r["outcomes"]))) or "-"
        labels.append(f"{r['name']}\ntoy {r['toy']} | CIFAR {cifar}: {mark}")
    axes[0].set_yticks(y, labels, fontsize=7.5)
    for t, r in zip(axes[0].get_yticklabels(), rows):
        t.set_color({"yes": "darkgreen", "no": "darkred", "": "grey"}[r["agree"]])
    axes[0].set_ylim(-0.7, n - 0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=f"CIFAR run called {k}")
               for k, c in COLORS.items()]
    handles += [plt.Line2D([], [], marker="D", ls="", mfc="none", mec="black", label="toy: live modes"),
                plt.Line2D([], [], ls="--", color="tab:red", label="collapse threshold"),
                plt.Line2D([], [], ls="--", color="k", label=f"healthy: >= {mapping.HEALTHY_MODES} directions")]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    rate = (f"{d['n_agree']}/{d['n_called']} = {100 * d['n_agree'] / d['n_called']:.0f} %"
            if d["n_called"] else "no settings run")
    fig.suptitle(f"Toy prediction vs CIFAR-10 runs ({d.get('title', '')}; width 0.125, 5000 images, "
                 f"each dot a seed): agreement {rate}", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.subplots_adjust(left=max(fig.subplotpars.left, 0.2))  # room for the two-line row labels
    return fig


@register("toy_vs_cifar",
          "The linear toy's call per setting (mapping v2, docs/theory.md 7b) beside the second "
          "grid's CIFAR-10 runs (5 epochs): final collapse measures (effective rank, top-direction "
          "share, std of z/||z||, kNN over the random-init kNN), each seed a dot coloured by its "
          "call, with the thresholds; labels say whether toy and runs agree. Drawn from "
          "figures/cifar_runs_grid2.json.")
def build(quick):
    d = data(cifar_record.load(cifar_record.RECORDS["grid2"]))
    return draw(d), d["params"]


@register("toy_vs_cifar_grid1",
          "The same for the first grid (3 epochs), called with the mapping declared before it (v1). "
          "Drawn from figures/cifar_runs.json.")
def build_grid1(quick):
    d = data(cifar_record.load(cifar_record.RECORDS["grid1"]))
    return draw(d), d["params"]
