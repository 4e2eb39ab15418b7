"""Figures from metrics files: SimSiam Fig. 2 (loss, std of z/||z||, kNN accuracy), plus the
top-direction share of z/||z|| (the collapse signature that survives the projector's final BN).

Reads ``metrics.json`` and ``config.json`` only; never trains.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from dynamics._io import atomic_write_bytes


def _label(cfg: dict) -> str:
    parts = [cfg["method"]]
    if not cfg.get("stop_grad", True):
        parts.append("no stop-grad")
    if cfg.get("predictor", "mlp") != "mlp":
        parts.append(f"pred={cfg['predictor']}")
    if cfg.get("predictor_lr_ratio", 1.0) != 1.0:
        parts.append(f"pred-lr x{cfg['predictor_lr_ratio']:g}")
    parts.append(f"lr={cfg['lr']:g}, wd={cfg['wd']:g}")
    return ", ".join(parts)


def compare_runs(run_dirs, out: str | Path) -> None:
    """Four panels to ``out``: per-step loss, std of z/||z|| (with 1/sqrt(d)), top-direction share, kNN per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 4, figsize=(17, 3.6))
    ref = None
    for d in map(Path, run_dirs):
        m = json.loads((d / "metrics.json").read_text())
        cfg = json.loads((d / "config.json").read_text())
        lab = _label(cfg)
        steps = m["steps"]
        if steps:
            spe = max(1, steps[-1]["step"] // max(1, m["epochs"][-1]["epoch"]))
            x = [s["step"] / spe for s in steps]
            ax[0].plot(x, [s["loss"] for s in steps], label=lab, lw=1)
            ax[1].plot(x, [s["z_std"] for s in steps], label=lab, lw=1)
            if "z_top" in steps[0]:
                ax[2].plot(x, [s["z_top"] for s in steps], label=lab, lw=1)
        ep = [r for r in m["epochs"] if r.get("knn") is not None]
        ax[3].plot([r["epoch"] for r in ep], [100 * r["knn"] for r in ep], "o-", label=lab)
        ref = m["epochs"][0].get("z_std_ref", ref)
    if ref is not None:
        ax[1].axhline(ref, color="k", ls=":", lw=1, label="1/sqrt(d)")
    titles = ("training loss", "std of z/||z|| (per channel)", "top-direction share of z/||z||", "kNN accuracy (%)")
    for a, t in zip(ax, titles):
        a.set_title(t)
        a.set_xlabel("epoch")
    ax[0].set_ylim(-1.05, 0.05)
    ax[1].set_ylim(bottom=0)
    ax[2].set_ylim(0, 1.02)
    ax[3].legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(out), buf.getvalue())


def plot_run(run_dir: str | Path) -> Path:
    """``run_dir/curves.png`` for one run."""
    out = Path(run_dir) / "curves.png"
    compare_runs([run_dir], out)
    return out
