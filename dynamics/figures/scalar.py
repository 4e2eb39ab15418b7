"""Data for the scalar-model figures (basins, Tian et al. Figs. 3, 4; slow-fast).

Each ``*_data`` function returns a plain dict of numpy arrays plus a ``params`` dict; the
matching ``dynamics.plot`` function draws it. Nothing here draws, nothing there integrates.
"""

from __future__ import annotations

import numpy as np

from dynamics.figures import compute as C
from dynamics.flow import VARIANTS, Hyper, State
from dynamics.models import ScalarSiamese

# --- basins of scalar SimSiam with the theoretical boundary ---------------------------------


def seed_grid(theta_range, phi_range, n=9):
    """An ``n x n`` grid of ``(theta, phi)`` seeds (rows of an (n*n, 2) array) for Newton."""
    th = np.linspace(*theta_range, n)
    ph = np.linspace(*phi_range, n)
    return np.stack(np.meshgrid(th, ph), -1).reshape(-1, 2)


def basin_data(eps=(1.0, 0.1, 0.01), eta=0.1, sigma2=0.5, convention="loss", n=64, t1=200.0,
               theta_range=(-1.0, 1.0), phi_range=(-1.0, 2.0),
               variants=("simsiam", "simsiam-nosg")):
    """Simulated basins (``dynamics.sweep``) plus fixed points and saddle stable manifolds.

    Returns ``dict(ds=Dataset, theory={(variant, eps): dict(fixed=[...], manifolds=[...])})``;
    the manifolds are arrays (n, 2) of ``(theta, phi)``.
    """
    from dynamics.sweep import build_parser, run_sweep

    argv = ["--eps", *map(str, eps), "--eta", str(eta), "--sigma2", str(sigma2),
            "--variant", *variants, "--convention", convention, "--n", str(n),
            "--t1", str(t1), "--theta-range", *map(str, theta_range),
            "--phi-range", *map(str, phi_range), "--quiet"]
    ds = run_sweep(build_parser().parse_args(argv))
    model = ScalarSiamese(sigma2=sigma2)
    theory = {}
    box = max(abs(x) for x in (*theta_range, *phi_range)) * 1.5
    for vn in variants:
        v = VARIANTS[vn]
        for e in eps:
            hyper = Hyper.from_convention(convention, eta, e)
            fps = C.fixed_points(model, v, hyper, seed_grid(theta_range, phi_range))
            mans = []
            for p in fps:
                if p["kind"] == "saddle":
                    mans.extend(C.stable_manifold(model, v, hyper, p, bound=box))
            theory[(vn, float(e))] = dict(fixed=fps, manifolds=mans)
    params = dict(eps=list(eps), eta=eta, sigma2=sigma2, convention=convention, n=n, t1=t1,
                  theta_range=list(theta_range), phi_range=list(phi_range),
                  variants=list(variants), paper="none: this project's basin analysis")
    return dict(ds=ds, theory=theory, params=params)


# --- Tian et al. Fig. 3: (p, s) phase planes -------------------------------------------------


def _line_kinds(model, variant, hyper, pts):
    """Stability of sampled points on a line of fixed points (neutral direction ignored)."""
    w, _ = C.eigen_at(model, variant, hyper, pts)
    return [C.classify_point(x) for x in w]


def _check_fixed(model, variant, hyper, pts, tol=1e-10):
    y = C.make_state(variant, pts[:, 0], pts[:, 1], pts[:, 2] if pts.shape[1] > 2 else None)
    f = C.field_at(model, variant, hyper, y)
    res = max(float(np.max(np.abs(np.asarray(x)))) for x in f if x is not None)
    if res > tol:
        raise RuntimeError(f"points passed as fixed points have |f| = {res:.2e}")


def tian_fig3_data(etas=(0.0, 0.01, 1.0), sigma2=0.5, alpha_p=1.0, p_range=(-0.6, 1.4),
                   s_range=(0.0, 1.2), n=60):
    """``(p, s)`` planes of the per-mode system (SimSiam, ``tau = 1``, Tian convention).

    Each mode is the scalar system with ``s = theta^2``, ``p = phi``; the field in ``(p, s)``
    is ``(phi', 2 theta theta')`` evaluated at ``theta = sqrt(s)``.
    """
    model = ScalarSiamese(sigma2=sigma2)
    v = VARIANTS["simsiam"]
    a = 1.0 + sigma2
    p = np.linspace(*p_range, n)
    s = np.linspace(max(s_range[0], 1e-4), s_range[1], n)
    panels = []
    for eta in etas:
        hyper = Hyper.tian(eta, alpha_p)
        P, S = np.meshgrid(p, s)
        TH = np.sqrt(S)
        f = C.field_at(model, v, hyper, C.make_state(v, TH, P))
        dP = np.asarray(f.pred)
        dS = 2.0 * TH * np.asarray(f.enc)
        fixed, lines = [], []
        if eta > 0:
            seeds = seed_grid((0.0, np.sqrt(s_range[1])), p_range)
            for q in C.fixed_points(model, v, hyper, seeds):
                th, ph = q["z"]
                if th >= -1e-12:
                    fixed.append((ph, th**2, q["kind"]))
        else:
            # eta = 0: the lines theta = 0 and phi = 1/a are fixed (THEORY.md section 2)
            pl = np.linspace(*p_range, 161)
            pts = np.stack([np.zeros_like(pl), pl], 1)
            _check_fixed(model, v, hyper, pts)
            lines.append((pl, np.zeros_like(pl), _line_kinds(model, v, hyper, pts)))
            sl = np.linspace(1e-3, s_range[1], 80)
            pts = np.stack([np.sqrt(sl), np.full_like(sl, 1.0 / a)], 1)
            _check_fixed(model, v, hyper, pts)
            lines.append((np.full_like(sl, 1.0 / a), sl, _line_kinds(model, v, hyper, pts)))
        panels.append(dict(eta=eta, P=P, S=S, dP=dP, dS=dS, fixed=fixed, lines=lines,
                           parabola=(p, p**2 / alpha_p), eta_crit=1.0 / (4 * a)))
    return dict(panels=panels, params=dict(etas=list(etas), sigma2=sigma2, alpha_p=alpha_p,
                                           tau=1.0, p_range=list(p_range),
                                           s_range=list(s_range), n=n,
                                           paper="Eqns. 11-12 at tau = 1, alpha_p = 1, eta in "
                                                 "{0, 0.01, 1}",
                                           differences="sigma2 is not stated in the paper; "
                                                       "0.5 puts eta = 1 past eta_c = 1/(4a). "
                                                       "Colours: green stable, red unstable "
                                                       "(the paper: red stable, green "
                                                       "unstable)"))


# --- Tian et al. Fig. 4: 1-D p dynamics on the invariant parabola ----------------------------


def _parabola_field(model, hyper, p, alpha_p):
    """``p'`` on the invariant parabola ``s = p^2 / alpha_p`` (``theta = |p| / sqrt(alpha_p)``)."""
    v = VARIANTS["simsiam"]
    th = np.abs(p) / np.sqrt(alpha_p)
    return np.asarray(C.field_at(model, v, hyper, C.make_state(v, th, p)).pred)


def _roots_1d(p, f, fine):
    """Roots of a sampled 1-D field: sign changes refined by bisection on ``fine``; exact zeros."""
    roots = []
    for i in range(len(p) - 1):
        if f[i] == 0.0 or abs(f[i]) < 1e-14:
            roots.append(p[i])
        elif f[i] * f[i + 1] < 0:
            lo, hi, flo = p[i], p[i + 1], f[i]
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                fm = fine(np.array([mid]))[0]
                if fm * flo > 0:
                    lo, flo = mid, fm
                else:
                    hi = mid
            roots.append(0.5 * (lo + hi))
    return np.array(roots)


def tian_fig4_data(etas=(0.0, 0.05, 0.25), sigma2=0.5, alpha_p=1.0, p_range=(-0.3, 1.0),
                   eta_range=(0.0, 0.25), n_p=521, n_eta=101):
    """1-D flow ``p' (p)`` on the invariant parabola in three regimes, and its bifurcation diagram.

    Regimes: ``eta = 0`` (line of non-trivial fixed points collapses to ``p = 1/a``),
    ``0 < eta < eta_crit`` (bistable), ``eta > eta_crit`` (collapse only). Stability of a
    root from the sign of ``dp'/dp`` (finite difference; 0 gives 'marginal').
    """
    model = ScalarSiamese(sigma2=sigma2)
    a = 1.0 + sigma2
    p = np.linspace(*p_range, n_p)
    if not np.any(p == 0.0):
        p = np.sort(np.append(p, 0.0))

    def roots_and_kinds(eta):
        hyper = Hyper.tian(eta, alpha_p)

        def fine(q):
            return _parabola_field(model, hyper, q, alpha_p)

        f = fine(p)
        r = _roots_1d(p, f, fine)
        h = 1e-6
        d = (fine(r + h) - fine(r - h)) / (2 * h)
        kinds = ["stable" if x < -1e-7 else "unstable" if x > 1e-7 else "marginal" for x in d]
        return f, r, kinds

    curves = []
    for eta in etas:
        f, r, k = roots_and_kinds(eta)
        curves.append(dict(eta=eta, p=p, dp=f, roots=r, kinds=k))
    eta_grid = np.linspace(*eta_range, n_eta)
    bif = []
    for eta in eta_grid:
        _, r, k = roots_and_kinds(eta)
        bif.extend((eta, x, kk) for x, kk in zip(r, k))
    return dict(curves=curves, bif=bif, eta_crit=1.0 / (4 * a), a=a,
                params=dict(etas=list(etas), sigma2=sigma2, alpha_p=alpha_p,
                            p_range=list(p_range), eta_range=list(eta_range), n_p=n_p,
                            n_eta=n_eta, fold_point=[1.0 / (4 * a), 1.0 / (2 * a)],
                            paper="Eqn. 16 on the invariant parabola: eta = 0, "
                                  "0 < eta < tau^2/(4(1+sigma2)), eta beyond it",
                            differences="sigma2 = 0.5 and the eta values are not stated in "
                                        "the paper; the bifurcation diagram and its fold point "
                                        "are added. Colours: green stable, red unstable (the "
                                        "paper: red stable, green unstable, black saddle)"))


# --- slow-fast: full flow against the reduced flow on the critical manifold ------------------


def slowfast_data(eps=(0.3, 0.1, 0.03, 0.01, 0.003), eta=0.1, sigma2=0.5, t1=150.0,
                  starts=((0.5, -0.5), (0.15, -0.8)), rate_etas=(0.1, 0.01, 0.0), rate_eps=0.01):
    """Scalar SimSiam, weight decay in the loss (``eta_phi = eta``), for shrinking ``eps``.

    - the critical manifold ``phi*(theta)`` and the reduced flow's basin boundary
      (``|theta| = theta_saddle``) against the full basin boundaries (saddle stable manifolds);
    - ``theta(t)`` full vs reduced from each start, and ``sup_t |theta_full - theta_red|``;
    - the predictor's relaxation rate ``(a theta^2 + eta_phi)/eps`` for several decays: where it
      is not large against the slow rates (small ``theta``, small ``eta``) the reduction fails.
    """
    model = ScalarSiamese(sigma2=sigma2)
    v = VARIANTS["simsiam"]
    th_grid = np.linspace(-1.0, 1.0, 401)
    starts = np.asarray(starts, float)
    full, red, bounds, err = {}, {}, {}, np.zeros((len(eps), len(starts)))
    same_basin = np.zeros((len(eps), len(starts)), bool)
    fixed = None
    slow = {}
    for i, e in enumerate(eps):
        hyper = Hyper.loss_decay(eta, e)
        ts, ys, st = C.trajectories(model, v, hyper, starts[:, 0], starts[:, 1], t1=t1)
        tr, er, pr = C.reduced_trajectories(model, v, hyper, starts[:, 0], t1=t1, n_save=len(ts))
        full[e] = dict(theta=ys.enc, phi=ys.pred, status=st)
        red[e] = dict(theta=er, phi=pr)
        err[i] = np.max(np.abs(ys.enc - er), axis=1)
        same_basin[i] = (np.abs(ys.enc[:, -1]) > 1e-3) == (np.abs(er[:, -1]) > 1e-3)
        fps = C.fixed_points(model, v, hyper, seed_grid((-1, 1), (-1, 2)))
        if fixed is None:
            fixed = fps
        # slow eigenvalue (smallest |Re|) at each kind of fixed point, at this eps
        slow = {}
        for p in fps:
            key = "origin" if np.allclose(p["z"], 0.0) else p["kind"]
            slow[key] = float(np.min(np.abs(np.real(p["eigs"]))))
        bounds[e] = [m for p in fps if p["kind"] == "saddle"
                     for m in C.stable_manifold(model, v, hyper, p, bound=3.0)]
    hyper = Hyper.loss_decay(eta, eps[0])
    crit = C.critical_predictor(model, v, hyper, th_grid)
    theta_s = sorted(abs(p["z"][0]) for p in fixed if p["kind"] == "saddle")
    rates = {}
    for et in rate_etas:
        rates[et] = C.predictor_rate(model, v, Hyper.loss_decay(et, rate_eps), th_grid)
    return dict(ts=ts, full=full, red=red, err=err, same_basin=same_basin, slow_rates=slow,
                bounds=bounds, fixed=fixed,
                theta_grid=th_grid, crit=np.asarray(crit), theta_saddle=theta_s[0] if theta_s else None,
                rates=rates, starts=starts, eps=list(eps),
                params=dict(eps=list(eps), eta=eta, sigma2=sigma2, t1=t1,
                            starts=starts.tolist(), rate_etas=list(rate_etas), rate_eps=rate_eps,
                            convention="loss", paper="none: this project's slow-fast analysis"))
