"""Bifurcation diagrams of SimSiam and BYOL: spectra against ``eta``, fold curves, ``beta``.

Every fixed point of one SimSiam mode is followed in ``eta`` by pseudo-arclength continuation
(:mod:`dynamics.analysis.continuation`), and the Jacobian eigenvalues along each branch are
drawn against ``eta``, real and imaginary parts, coloured by stability. The saddle-node is
then followed in a second parameter (``sigma2`` for modes of data variance ``d``, and
``alpha_p`` in both weight-decay conventions) by Newton on the fold system, seeded with the
previous fold: the two-parameter fold curves, drawn over ``d^2 / (4 (d + sigma2))``
(``1/(4a)`` for ``d = 1``). Last, BYOL's spectrum at ``p_pm`` against the EMA rate ``beta``,
over the roots of its characteristic polynomial (docs/theory.md section 2, "BYOL spectrum").
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from dynamics import plot
from dynamics.analysis import FlowSystem, stability
from dynamics.analysis.continuation import continue_branch
from dynamics.figures import compute as C
from dynamics.figures.registry import register
from dynamics.flow import VARIANTS, Hyper, State
from dynamics.models import PerModeSiamese, ScalarSiamese

__all__ = ["build", "byol_char_roots", "data", "draw", "fold_curve", "spectrum_branches"]

SIMSIAM, BYOL = VARIANTS["simsiam"], VARIANTS["byol"]


@dataclasses.dataclass(frozen=True)
class decay_param:
    """``param(system, eta)``: ``eta_theta = eta`` and ``eta_phi = r eta``, ``r`` the ratio
    ``eta_phi / eta_theta`` of the system's own ``Hyper`` (``eps`` in the Tian convention, 1
    with the decay in the loss). One parameter map for both conventions, so both share one
    compiled continuation."""

    def __call__(self, system, eta):
        h = system.hyper
        return system.replace(hyper=dataclasses.replace(
            h, eta_theta=eta, eta_phi=h.eta_phi / h.eta_theta * eta))


def _mode(d, sigma2):
    """One SimSiam mode of data variance ``d`` and augmentation variance ``sigma2`` (``d = 1``:
    the scalar model)."""
    return PerModeSiamese(jnp.asarray([float(d)]), jnp.asarray([float(sigma2)]))


def _start(model, eta, eps, convention):
    """The stable fixed point ``p_+`` at ``eta`` (a start; continuation polishes it)."""
    fp = model.fixed_points(eta, eps, convention)
    return State(jnp.sqrt(fp.theta2_plus), fp.phi_plus, None)


def _hyper(convention, eta, eps):
    return Hyper.from_convention(convention, eta, eps)


def spectrum_branches(sigma2=0.5, eps=1.0, convention="tian", eta0=0.05, eta_max=0.25,
                      n_origin=41, ds_max=0.01):
    """Every fixed point of one SimSiam mode (``d = 1``) against ``eta``: the non-trivial branch
    (``p_+`` through the fold onto ``p_-``) by continuation from ``p_+`` at ``eta0``, and the
    origin on a grid. Returns ``dict(branch=dict(eta, phi, eigs, kinds), origin=...,
    folds)``; ``kinds`` from :func:`dynamics.analysis.stability`."""
    model = _mode(1.0, sigma2)
    system = FlowSystem(model, _hyper(convention, eta0, eps), SIMSIAM)
    br = continue_branch(system, _start(model, eta0, eps, convention), eta0,
                         decay_param(), bounds=(1e-3, eta_max), ds=0.005,
                         ds_max=ds_max, max_points=400)
    # the branch continued the other way, from eta0 towards 0, on p_+
    lo = continue_branch(system, _start(model, eta0, eps, convention), eta0,
                         decay_param(), bounds=(1e-3, eta_max), ds=0.005,
                         ds_max=ds_max, direction=-1, max_points=400)
    eta = np.concatenate([lo.params[::-1], br.params[1:]])
    states = np.concatenate([lo.states[::-1], br.states[1:]])
    eigs = np.concatenate([lo.eigenvalues[::-1], br.eigenvalues[1:]])
    kinds = [stability(e) for e in eigs]
    eta_o = np.linspace(1e-3, eta_max, n_origin)
    w = []
    for e in eta_o:
        wi, _ = C.eigen_at(model, SIMSIAM, _hyper(convention, e, eps), np.zeros((1, 2)))
        w.append(np.sort_complex(wi[0]))
    w = np.array(w)
    return dict(branch=dict(eta=eta, phi=states[:, 1], theta=states[:, 0], eigs=eigs,
                            kinds=kinds),
                origin=dict(eta=eta_o, eigs=w, kinds=[stability(x) for x in w]),
                folds=[f[0] for f in br.folds])


def fold_curve(values, *, over="sigma2", d=1.0, sigma2=0.5, convention="tian", eta0=0.01):
    """The saddle-node ``eta`` against a second parameter ``over``: ``"sigma2"`` (``values`` of
    the augmentation variance, ``alpha_p = 1``) or ``"alpha_p"`` (``values`` of it; ``sigma2``
    fixed).

    Each fold is found by pseudo-arclength continuation in ``eta`` from ``p_+`` at ``eta0``
    (detected where the tangent's ``eta`` component turns, located by regula falsi). Returns
    ``(eta_fold (K,), phi_fold (K,), residual (K,))``, the residual the largest field
    component there."""
    out = []
    for v in values:
        if over not in ("sigma2", "alpha_p"):
            raise ValueError(f"over must be 'sigma2' or 'alpha_p', got {over!r}")
        s2, ap = (float(v), 1.0) if over == "sigma2" else (sigma2, float(v))
        eps = 1.0 / ap
        model = _mode(d, s2)
        system = FlowSystem(model, _hyper(convention, eta0, eps), SIMSIAM)
        br = continue_branch(system, _start(model, eta0, eps, convention), eta0,
                             decay_param(), bounds=(eta0 / 2, 2.0), ds=0.01, ds_max=0.05,
                             max_points=200)
        if not br.folds:
            raise RuntimeError(f"no fold found on the branch from eta = {eta0} at {over} = {v}")
        eta_f, z = br.folds[0]
        fold = State(jnp.asarray(z[:1]), jnp.asarray(z[1:]), None)
        f = C.field_at(model, SIMSIAM, _hyper(convention, eta_f, eps), fold)
        res = float(max(np.max(np.abs(f.enc)), np.max(np.abs(f.pred))))
        out.append((eta_f, float(z[1]), res))
    return tuple(np.array(c) for c in zip(*out))


def byol_char_roots(p, a, beta):
    """BYOL's Jacobian eigenvalues at ``(theta, phi, theta_a) = (p/sqrt(alpha_p), p, theta)``
    (Tian convention): roots of ``lambda^3 + (2p + beta) lambda^2 + (p^2 (1 - (1 - 2ap)^2) +
    p beta) lambda - 2 beta p^2 (1 - 2ap)(1 - ap)`` (docs/theory.md section 2), sorted by real
    part, decreasing."""
    c = [1.0, 2 * p + beta, p * p * (1 - (1 - 2 * a * p) ** 2) + p * beta,
         -2 * beta * p * p * (1 - 2 * a * p) * (1 - a * p)]
    r = np.roots(c)
    return r[np.lexsort((-r.imag, -r.real))]


def byol_spectrum(betas, sigma2=0.5, eta=0.05, alpha_p=1.0):
    """Jacobian eigenvalues (autodiff of the BYOL loss) at ``p_+`` and ``p_-`` for each
    ``beta``: ``{"plus": (B, 3), "minus": (B, 3)}`` sorted by real part, decreasing."""
    model = _mode(1.0, sigma2)
    fp = model.fixed_points(eta, 1.0 / alpha_p, "tian")
    out = {}
    for name, p, t2 in (("plus", fp.phi_plus, fp.theta2_plus),
                        ("minus", fp.phi_minus, fp.theta2_minus)):
        th = float(np.sqrt(t2[0]))
        rows = []
        for b in betas:
            w, _ = C.eigen_at(model, BYOL, Hyper.tian(eta, alpha_p, float(b)),
                              np.array([[th, float(p[0]), th]]))
            rows.append(w[0][np.lexsort((-w[0].imag, -w[0].real))])
        out[name] = np.array(rows)
    return out


def data(quick=False, sigma2=0.5):
    a = 1.0 + sigma2
    n = 5 if quick else 21
    s2_grid = np.linspace(0.0, 2.0, n)
    ap_grid = np.geomspace(0.1, 10.0, n)
    ds = [0.5, 1.0, 2.0]
    betas = np.geomspace(0.01, 100.0, 9 if quick else 61)
    tian = spectrum_branches(sigma2, 1.0, "tian", ds_max=0.02 if quick else 0.005)
    loss = spectrum_branches(sigma2, 4.0, "loss", ds_max=0.02 if quick else 0.005)
    folds_s2 = {d: fold_curve(s2_grid, d=d) for d in ds}
    folds_ap = {conv: fold_curve(ap_grid, over="alpha_p", sigma2=sigma2, convention=conv)
                for conv in ("tian", "loss")}
    spec = byol_spectrum(betas, sigma2)
    return dict(a=a, sigma2=sigma2, tian=tian, loss=loss, s2_grid=s2_grid, ap_grid=ap_grid,
                folds_s2=folds_s2, folds_ap=folds_ap, betas=betas, byol=spec, eta_byol=0.05,
                params=dict(
                    sigma2=sigma2, a=a, eta_crit=1.0 / (4 * a),
                    spectra="one SimSiam mode (d = 1: the scalar model); Tian convention at "
                            "alpha_p = 1 and weight decay in the loss at eps = 4 (a slow "
                            "predictor, where p_+ turns into a stable focus)",
                    continuation="pseudo-arclength in eta from p_+ at eta = 0.05, both ways; "
                                 "the origin on a grid of eta",
                    fold_sigma2=dict(d=ds, sigma2=f"linspace(0, 2, {n})", theory="d^2 / (4 (d + sigma2))"),
                    fold_alpha_p=dict(alpha_p=f"geomspace(0.1, 10, {n})", sigma2=sigma2, conventions=["tian", "loss"],
                                      theory="1/(4a), independent of alpha_p"),
                    byol=dict(eta=0.05, alpha_p=1.0, beta=f"geomspace(0.01, 100, {len(betas)})",
                              theory="roots of the cubic of docs/theory.md section 2"),
                    paper="Tian et al. (2021) Obs. 5 and Eqn. 16 (the saddle-node at "
                          "eta = tau^2/(4a)); no figure of the paper shows these diagrams",
                    colours="green stable, orange saddle, red unstable"))


def _by_kind(ax, x, y, kinds, **kw):
    """Points coloured by the stability of the fixed point they belong to."""
    kinds = np.asarray(kinds)
    for k in ("stable", "saddle", "unstable", "marginal"):
        m = kinds == k
        if np.any(m):
            st = plot.FIXED_POINT_STYLE[k]
            ax.plot(np.asarray(x)[m], np.asarray(y)[m], ls="none", marker=".", ms=4,
                    color=st["color"], label=st["label"].replace("fixed point", "point"), **kw)


def _spectrum_panels(ax_re, ax_im, d, a, eps, convention):
    b, o = d["branch"], d["origin"]
    for k in range(b["eigs"].shape[1]):
        _by_kind(ax_re, b["eta"], b["eigs"][:, k].real, b["kinds"])
        if ax_im is not None:
            _by_kind(ax_im, b["eta"], b["eigs"][:, k].imag, b["kinds"])
    for k in range(o["eigs"].shape[1]):
        ax_re.plot(o["eta"], o["eigs"][:, k].real, ls="none", marker="^", ms=3.5,
                   color=plot.FIXED_POINT_STYLE["stable"]["color"], mfc="none",
                   label="origin (stable)")
    # theory: the closed-form spectra of p_pm, and of the origin
    e = np.linspace(1e-3, 1.0 / (4 * a), 400)
    # (2 points, len(e), 2 eigenvalues): the scalar model's closed form
    ev = np.asarray(ScalarSiamese(a - 1.0).fixed_point_eigenvalues(e, eps, convention))
    for i in range(2):
        for k in range(2):
            ax_re.plot(e, ev[i, :, k].real, color="k", lw=0.8, ls="--",
                       label="theory at $p_\\pm$" + (r": $\{-2\eta,\ 2\eta - p\}$"
                                                      if convention == "tian" else
                                                      " (roots of the quadratic)"))
            if ax_im is not None:
                ax_im.plot(e, ev[i, :, k].imag, color="k", lw=0.8, ls="--",
                           label="theory at $p_\\pm$")
    eta_o = o["eta"]
    ax_re.plot(eta_o, -eta_o, color="0.3", lw=0.8, ls=":", label=r"theory at 0: $-\eta$")
    if convention == "loss":
        ax_re.plot(eta_o, -eta_o / eps, color="0.3", lw=0.8, ls=":",
                   label=r"theory at 0: $-\eta/\varepsilon$")
    for ax in (ax_re, ax_im):
        if ax is None:
            continue
        ax.axvline(1.0 / (4 * a), color="k", lw=1, ls="-.",
                   label=rf"fold $\eta_c = 1/(4a)$ = {1 / (4 * a):.3g}")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xlabel(r"weight decay $\eta$")
        ax.grid(alpha=0.3)


def draw(d):
    a = d["a"]
    fig, axs = plt.subplots(2, 3, figsize=(17, 10))
    (a1, a2, a3), (a4, a5, a6) = axs
    _spectrum_panels(a1, None, d["tian"], a, 1.0, "tian")
    a1.set_ylabel(r"Re $\lambda$ (Jacobian eigenvalue)")
    a1.set_title(r"(a) every fixed point, Tian convention, $\alpha_p = 1$: Re $\lambda$"
                 "\n(all eigenvalues real here)", fontsize=10)
    plot.dedup_legend(a1, loc="lower left", fontsize=7)
    _spectrum_panels(a2, a3, d["loss"], a, 4.0, "loss")
    a2.set_ylabel(r"Re $\lambda$")
    a2.set_title(r"(b) decay in the loss, $\varepsilon = 4$ (slow predictor): Re $\lambda$",
                 fontsize=10)
    a3.set_ylabel(r"Im $\lambda$")
    a3.set_title(r"(c) the same, Im $\lambda$: $p_+$ is a stable focus for small $\eta$",
                 fontsize=10)
    plot.dedup_legend(a2, loc="lower left", fontsize=7)
    plot.dedup_legend(a3, loc="center", fontsize=7)

    s2 = np.linspace(0.0, d["s2_grid"][-1], 200)
    for c, (dd, (ef, _, _)) in zip(("#1b9e77", "#7570b3", "#d95f02"), d["folds_s2"].items()):
        a4.plot(d["s2_grid"], ef, "o", color=c, ms=6, mfc="none",
                label=f"fold by continuation, $d$ = {dd:g}")
        a4.plot(s2, dd**2 / (4 * (dd + s2)), color=c, lw=1.2,
                label=rf"$d^2/(4(d+\sigma^2))$, $d$ = {dd:g}")
    a4.set_xlabel(r"augmentation variance $\sigma^2$")
    a4.set_ylabel(r"saddle-node weight decay $\eta$")
    a4.set_title(r"(d) fold curves in $(\eta, \sigma^2)$ for modes of data variance $d$"
                 "\n(collapse from every start above each curve; $d = 1$: $1/(4a)$)",
                 fontsize=10)
    a4.grid(alpha=0.3)
    a4.legend(fontsize=7, ncol=2)

    for (conv, (ef, _, _)), m, c in zip(d["folds_ap"].items(), ("o", "s"), ("#1b9e77", "#7570b3")):
        lab = ("Tian convention" if conv == "tian" else "decay in the loss")
        a5.plot(d["ap_grid"], ef, m, color=c, ms=7 if m == "o" else 4, mfc="none",
                label=f"fold by continuation, {lab}")
    a5.axhline(1.0 / (4 * a), color="k", lw=1, ls="--",
               label=rf"theory $1/(4a)$ = {1 / (4 * a):.4g} for every $\alpha_p$")
    a5.set_xscale("log")
    a5.set_ylim(0, 0.3)
    a5.set_xlabel(r"predictor rate $\alpha_p = 1/\varepsilon$")
    a5.set_ylabel(r"saddle-node weight decay $\eta$")
    a5.set_title(rf"(e) fold curve in $(\eta, \alpha_p)$, $\sigma^2$ = {d['sigma2']:g}: "
                 r"the fold does not move with $\alpha_p$",
                 fontsize=10)
    a5.grid(alpha=0.3)
    a5.legend(fontsize=7, loc="lower right")

    betas = d["betas"]
    bb = np.geomspace(betas[0], betas[-1], 300)
    fp = _mode(1.0, d["sigma2"]).fixed_points(d["eta_byol"])
    for name, p, c in (("plus", float(fp.phi_plus[0]), "#1b7837"),
                       ("minus", float(fp.phi_minus[0]), "#e08214")):
        w = d["byol"][name]
        lab = r"$p_+$" if name == "plus" else r"$p_-$"
        for k in range(3):
            a6.plot(betas, w[:, k].real, "o", color=c, ms=4, mfc="none",
                    label=f"Re $\\lambda$ at {lab} (autodiff Jacobian)")
        th = np.array([byol_char_roots(p, d["a"], b) for b in bb])
        for k in range(3):
            a6.plot(bb, th[:, k].real, color=c, lw=0.9,
                    label=f"theory at {lab}: roots of the cubic")
        a6.axhline(-2 * d["eta_byol"], color="0.4", lw=0.6, ls=":",
                   label=r"SimSiam's $-2\eta$ ($\beta \to \infty$)")
        a6.axhline(2 * d["eta_byol"] - p, color=c, lw=0.6, ls=":",
                   label=rf"SimSiam's $2\eta - p$ at {lab} ($\beta \to \infty$)")
    imax = max(np.abs(d["byol"][k].imag).max() for k in ("plus", "minus"))
    a6.plot([], [], ls="none", label=f"max |Im $\\lambda$| = {imax:.1g}: all real")
    a6.set_xscale("log")
    a6.set_yscale("symlog", linthresh=0.02, linscale=0.5)
    a6.set_yticks([-100, -10, -1, -0.1, 0, 0.1])
    a6.set_yticklabels(["-100", "-10", "-1", "-0.1", "0", "0.1"])
    a6.set_xlabel(r"EMA rate $\beta$")
    a6.set_ylabel(r"Re $\lambda$ (symlog)")
    a6.set_title(rf"(f) BYOL at $p_\pm$ against $\beta$, $\eta$ = {d['eta_byol']:g}, "
                 r"$\alpha_p = 1$" "\n" r"one eigenvalue $\approx -\beta$, the others tend to "
                 "SimSiam's", fontsize=10)
    a6.grid(alpha=0.3)
    plot.dedup_legend(a6, loc="lower left", fontsize=7)
    fig.suptitle(
        rf"Bifurcation diagrams of SimSiam / BYOL ($\sigma^2$ = {d['sigma2']:g}, "
        rf"$a$ = {a:g}): points from continuation and autodiff Jacobians, lines from theory; "
        "colours: green stable, orange saddle, red unstable", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


@register(
    "bifurcation",
    "Bifurcation diagrams: Jacobian eigenvalues (real and imaginary parts) of every fixed "
    "point against eta in both weight-decay conventions; saddle-node curves in (eta, sigma2) "
    "and (eta, alpha_p) traced by continuation over d^2/(4(d + sigma2)) and 1/(4a); BYOL's "
    "spectrum at p_pm against beta over its characteristic cubic.",
)
def build(quick):
    d = data(quick)
    return draw(d), d["params"]
