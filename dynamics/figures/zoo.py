"""The collapse zoo on one linear setting: every linear mechanism on the same data, the same
augmentation strengths and the same random initial encoders.

Data as in the matrix sweeps: ``X = Q diag(d) Q^T`` (``d`` from 1.5 down to 0.5, ``Q`` random
from the seed), ``X' = sigma2 I`` with ``sigma2`` swept; ``n1 = n2 = 4``; the same random
``W0`` (and, where a predictor trains, the same ``Wp0``) for every mechanism. Each mechanism is
one row of :data:`MECHANISMS`, ``(label, model factory, variant, hyper, contrastive)`` and
optionally its initial state, so that adding one is one line. Panel (a): the model's per-mode collapse scores
(the singular values of ``W``; of ``W / ||W||`` for the cosine loss, which keeps the norm) over
time at one ``sigma2``; panel (b): the final effective rank (of the modes not collapsed,
:func:`dynamics.analysis.collapse_metrics.collapse_summary`) against ``sigma2``, mean over the
initial encoders. The DINO and SwAV toys are softmax models on other data and are not drawn.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import NullFormatter

import dynamics.models as M
from dynamics.analysis.collapse_metrics import collapse_scores, collapse_summary
from dynamics.classify import encoder_scale
from dynamics.figures.registry import register
from dynamics.models.barlow import BARLOW
from dynamics.models.infonce import INFONCE
from dynamics.models.moco import MOCO
from dynamics.models.vicreg import VICREG
from dynamics.solve import solve_batch
from dynamics.sweep.matrix import data_matrices, init_keys
from dynamics.types import VARIANTS, Hyper, SlotState, State, Variant

__all__ = ["MECHANISMS", "Mechanism", "build", "data", "draw", "mechanisms"]

#: weight decay of every mechanism but the cosine loss (which is scale-free: there decay only
#: shrinks ||W|| and stiffens the flow)
ETA = 0.05
#: DirectCopy's reg: inside (p_-, p_+) of every mode at small sigma2 (docs/theory.md 5c)
REG = 0.2
#: the queue length of the MoCo row (in pushed batches)
MOCO_QUEUE = 8
#: where panel (a) is drawn
SIGMA2_A = 0.5
#: a mode is collapsed when its score is below this (x the encoder scale, 1 here)
COLLAPSE_TOL = 1e-3
#: the solver's step cap per lane: ten times what the slowest settled lane takes (MoCo, about
#: 2,000 steps); a lane that needs more does not settle smoothly (VICReg's flow on its variance
#: hinge's corner, where the field jumps) and is drawn as stopped, not as a rank
MAX_STEPS = 20_000


class Mechanism(NamedTuple):
    """One row of the comparison: ``model(X, Xp)`` builds the model from the shared ``X``
    (n1, n1) and per-lane ``Xp`` (n, n1, n1); ``state(model, W0, Wp0)`` the initial state
    from the model with every leaf per lane and the lanes' ``W0``, ``Wp0`` (n, n1, n1)
    (default: ``State(W0, Wp0 if the predictor trains, W0 if the variant has a target)``);
    ``solver`` the engine's method: ``dopri5`` for a flow that is not stiff on the figure's grid
    (it compiles in half the time of ``auto`` and gives the same ranks), ``auto`` (each lane
    switching to Rosenbrock when it turns stiff) for one that is. A row given ``dopri5`` that
    turns out stiff runs into the step cap and is drawn as stopped, never silently."""

    label: str
    model: Callable
    variant: Variant
    hyper: Hyper
    contrastive: bool
    state: Callable | None = None
    solver: str = "dopri5"


def _directcopy_state(model, W, Wp):
    return SlotState(W, None, None, {"F": jax.vmap(lambda m, w: m.initial_F(w))(model, W)})


def _moco_state(model, W, Wp):
    K = jnp.broadcast_to(W[:, None], (W.shape[0], MOCO_QUEUE) + W.shape[1:])
    return SlotState(W, None, W, {"queue": K})


_EUCLID = Hyper.loss_decay(ETA, 1.0)

#: the rows of the figure, non-contrastive then contrastive
MECHANISMS: list[Mechanism] = [
    Mechanism("SimSiam (Euclidean)", lambda X, Xp: M.LinearSiamese(X, Xp), VARIANTS["simsiam"],
              _EUCLID, False),
    Mechanism("BYOL (EMA target)", lambda X, Xp: M.LinearSiamese(X, Xp), VARIANTS["byol"],
              _EUCLID, False),
    Mechanism("cosine SimSiam", lambda X, Xp: M.CosineSiamese(X, Xp), VARIANTS["simsiam"],
              Hyper.loss_decay(0.0, 1.0), False),
    Mechanism("no predictor", lambda X, Xp: M.LinearSiamese(X, Xp, predictor="none"),
              VARIANTS["simsiam"], _EUCLID, False),
    Mechanism(f"DirectCopy (reg {REG:g})", lambda X, Xp: M.DirectCopyLinear(X, Xp, REG),
              VARIANTS["simsiam"], Hyper(eps=1.0, eta_theta=ETA, eta_phi=0.0), False,
              _directcopy_state),
    Mechanism("Barlow Twins", lambda X, Xp: M.BarlowTwinsLinear(X, Xp, 1.0), BARLOW,
              Hyper(eta_theta=ETA, eta_phi=0.0), False),
    Mechanism("InfoNCE (tau 1)", lambda X, Xp: M.InfoNCELinear(X, Xp, 1.0), INFONCE,
              Hyper(eta_theta=ETA, eta_phi=0.0), True),
    Mechanism(f"MoCo (queue {MOCO_QUEUE})", lambda X, Xp: M.MoCoLinear(X, Xp, 1.0, MOCO_QUEUE, 1.0),
              MOCO, Hyper(eta_theta=ETA, eta_phi=0.0, beta=1.0), True, _moco_state),
    # stiff at strong augmentation: the invariance term's rate 4 inv sigma2 reaches 800
    Mechanism("VICReg", lambda X, Xp: M.VICRegLinear(X, Xp), VICREG,
              Hyper(eta_theta=ETA, eta_phi=0.0), False, solver="auto"),
]


def mechanisms(labels=None) -> list[Mechanism]:
    """The rows of :data:`MECHANISMS` (those named in ``labels``, when given)."""
    if labels is None:
        return list(MECHANISMS)
    known = {m.label: m for m in MECHANISMS}
    bad = [lab for lab in labels if lab not in known]
    if bad:
        raise ValueError(f"unknown mechanism {bad[0]!r} (choose from {', '.join(known)})")
    return [known[lab] for lab in labels]


def _run(mech: Mechanism, X, sig, W0, Wp0, t1, ts) -> dict:
    """One mechanism's gradient flow on every ``(sigma2, init)`` lane (the batched engine):
    its collapse scores at ``ts`` and the final collapse measures."""
    n1 = X.shape[0]
    n_s, n_i = len(sig), W0.shape[0]
    s2 = jnp.repeat(jnp.asarray(sig, float), n_i)
    W = jnp.tile(W0, (n_s, 1, 1))
    Wp = jnp.tile(Wp0, (n_s, 1, 1))
    n = W.shape[0]
    model = mech.model(X, s2[:, None, None] * jnp.eye(n1)[None]).lane_broadcast(n)
    variant = mech.variant
    if mech.state is not None:
        y0 = mech.state(model, W, Wp)
    else:
        pred = Wp if model.trains_predictor else None
        y0 = State(W, pred, W if variant.has_target else None)
    sol = solve_batch(model, variant, mech.hyper, y0, t1=t1, ts=ts, solver=mech.solver,
                      rtol=1e-7, atol=1e-9, max_steps=MAX_STEPS)
    enc, status = sol.ys.enc, np.asarray(sol.status)  # enc (n, saves, n1, n1)
    model_l = model
    scores = jax.vmap(jax.vmap(collapse_scores, in_axes=(None, 0)))(model_l, enc)
    sv = jax.vmap(lambda m, w: m.singular_values(w))(model_l, enc[:, -1])
    summ = collapse_summary(sv, COLLAPSE_TOL, encoder_scale(mech.hyper.lane_broadcast(n)),
                            scores=scores[:, -1])
    shape = (n_s, n_i)
    ok = status == 0
    rank = np.where(ok, np.asarray(summ["effective_rank"]), np.nan).reshape(shape)
    return dict(scores=np.asarray(scores).reshape(shape + scores.shape[1:]),
                effective_rank=rank,
                collapsed_fraction=np.where(ok, np.asarray(summ["collapsed_fraction"]),
                                            np.nan).reshape(shape),
                status=status.reshape(shape))


def data(quick: bool = False, labels=None, seed: int = 0) -> dict:
    """Every mechanism (or those of ``labels``) on the shared setting.

    Returns ``{"sigma2", "ts", "runs": {label: {"scores" (sigma2, init, time, mode),
    "effective_rank" (sigma2, init), "collapsed_fraction", "status"}}, "contrastive":
    {label: bool}, "params"}``.
    """
    n1 = 4
    # powers of 2 times SIGMA2_A, so that panel (a)'s sigma2 is on the grid
    sig = SIGMA2_A * 2.0 ** (np.arange(-2, 5, 2) if quick else np.arange(-3, 5))
    n_init = 2 if quick else 6
    t1 = 200.0
    ts = jnp.linspace(0.0, t1, 41 if quick else 201)
    X, d = data_matrices(n1, (0.5, 1.5), seed)
    kw, kp = init_keys(seed)
    W0 = jax.random.normal(kw, (n_init, n1, n1)) / math.sqrt(n1)
    Wp0 = 0.5 * jax.random.normal(kp, (n_init, n1, n1)) / math.sqrt(n1)
    rows = mechanisms(labels)
    runs = {m.label: _run(m, X, sig, W0, Wp0, t1, ts) for m in rows}
    params = dict(
        data="X = Q diag(1.5 ... 0.5) Q^T (n1 = 4, Q random from seed 0), X' = sigma2 I",
        sigma2=[float(v) for v in sig], sigma2_panel_a=SIGMA2_A, n_init=n_init,
        init="W0 entries N(0, 1/n1), Wp0 entries N(0, 0.25/n1), the same for every mechanism; "
             "BYOL's target from W0",
        t1=t1, solver="gradient flow of the expected loss, dynamics.solve.solve_batch on the "
                      "batched engine, rtol 1e-7 (per mechanism: dopri5, or auto where stiff)",
        weight_decay=f"eta = {ETA} (loss convention, eps = 1); cosine SimSiam eta = 0",
        collapse=f"a mode is collapsed when its collapse score is below {COLLAPSE_TOL}; "
                 "effective rank of the modes not collapsed (0: complete collapse)",
        mechanisms={m.label: dict(model=type(m.model(X, X[None])).__name__,
                                  variant=m.variant.name, contrastive=m.contrastive,
                                  solver=m.solver)
                    for m in rows},
        left_out="DINO and SwAV toys (softmax models on other data)",
        max_steps=MAX_STEPS,
        stopped={lab: [float(v) for v, bad in zip(sig, (r["status"] != 0).any(1)) if bad]
                 for lab, r in runs.items() if (r["status"] != 0).any()},
    )
    return dict(sigma2=sig, ts=np.asarray(ts), runs=runs, n1=n1,
                contrastive={m.label: m.contrastive for m in rows}, params=params)


def draw(dd):
    labels = list(dd["runs"])
    n = len(labels)
    cols = math.ceil(n / 2)
    fig = plt.figure(figsize=(3.0 * cols + 6.5, 7.6))
    gs = fig.add_gridspec(2, cols + 2, width_ratios=[1] * cols + [1.2, 1.2])
    sig, ts = dd["sigma2"], dd["ts"]
    ia = int(np.flatnonzero(np.isclose(sig, SIGMA2_A))[0])
    colors = plt.get_cmap("tab10")
    for k, lab in enumerate(labels):
        ax = fig.add_subplot(gs[k % 2, k // 2])
        sc = dd["runs"][lab]["scores"][ia, 0]  # (time, mode)
        for j in range(sc.shape[-1]):
            ax.semilogy(ts, np.clip(sc[:, j], 1e-8, None), lw=1.3, color=f"C{j}")
        ax.axhline(COLLAPSE_TOL, color="k", ls=":", lw=0.8)
        ax.set_ylim(1e-8, 10)
        tag = " (contrastive)" if dd["contrastive"][lab] else ""
        ax.set_title(f"{lab}{tag}", fontsize=9)
        if k // 2 == 0:
            ax.set_ylabel("singular values of W")
        if k % 2 == 1 or k == n - 1:
            ax.set_xlabel("time t")
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axb = fig.add_subplot(gs[:, cols:])
    top = dd["n1"] + 0.15
    stopped_any = False
    for k, lab in enumerate(labels):
        run = dd["runs"][lab]
        ok = run["status"] == 0
        # the mean over the starts that reached t1; a setting where any start stopped early
        # is drawn as an x on its line (or at the top, where none reached t1), never dropped
        with np.errstate(invalid="ignore"):
            r = np.where(ok.any(1), np.nansum(run["effective_rank"], axis=1)
                         / np.maximum(ok.sum(1), 1), np.nan)
        con = dd["contrastive"][lab]
        axb.plot(sig, r, ls="--" if con else "-", marker="s" if con else "o",
                 mfc="none" if con else colors(k), color=colors(k), lw=1.6, ms=6,
                 label=lab + (" (contrastive)" if con else ""))
        bad = ~ok.all(1)
        if bad.any():
            stopped_any = True
            axb.plot(sig[bad], np.where(np.isnan(r[bad]), top, r[bad]), "x", color=colors(k),
                     ms=10, mew=2.2)
    if stopped_any:
        axb.plot([], [], "x", color="0.3", ms=10, mew=2.2,
                 label=f"solver stopped before t1 ({MAX_STEPS:,} steps); VICReg: its flow\n"
                       "rests on the variance hinge's corner, where the field jumps")
    axb.set_xscale("log")
    axb.xaxis.set_minor_formatter(NullFormatter())
    axb.set_ylim(-0.15, dd["n1"] + 0.35)
    axb.axvline(SIGMA2_A, color="0.6", ls=":", lw=1)
    axb.set_xlabel("augmentation strength sigma2 (X' = sigma2 I)")
    axb.set_ylabel("effective rank of W(t1) (0: collapsed)")
    axb.set_title("(b) final effective rank against augmentation strength\n"
                  "solid: non-contrastive, dashed: contrastive; mean over initial encoders",
                  fontsize=9)
    axb.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2)
    axb.grid(alpha=0.3, which="both")
    fig.suptitle(f"(a) singular values over time at sigma2 = {SIGMA2_A:g} (one initial encoder; "
                 f"cosine: of W/||W||; dotted: collapse threshold {COLLAPSE_TOL:g})   |   same X, "
                 "same initial encoders for every mechanism", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


@register(
    "zoo",
    "The collapse zoo on one linear setting (n1 = 4, the same X, X' = sigma2 I, the same "
    "random initial encoders): (a) each mechanism's singular values of W over time at "
    "sigma2 = 0.5 (cosine loss: of W/||W||), (b) the final effective rank against sigma2, "
    "contrastive mechanisms dashed. Without a predictor every mode collapses; SimSiam and BYOL "
    "lose modes as augmentation grows (mode j past d_j^2/(4(d_j + sigma2)) = eta); Barlow "
    "Twins' expected loss does not see sigma2. At weak augmentation VICReg's flow rests on its "
    "variance hinge's corner, where the field jumps; the solver stops there and those settings "
    "are drawn as x. DINO and SwAV are softmax toys on other data and are left out.",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
