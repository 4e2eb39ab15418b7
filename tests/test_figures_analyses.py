"""The analyses behind the bifurcation, discrete-time, no-stop-gradient and EMA figures, each
against a closed form of docs/theory.md written out here by hand (not read from the package)."""

import numpy as np


# --- hand-written closed forms ------------------------------------------------------------------


def p_pm(d, a, eta):
    """Non-trivial fixed points of one SimSiam mode: roots of a p^2 - d p + eta = 0."""
    r = np.sqrt(d * d - 4.0 * a * eta)
    return (d + r) / (2.0 * a), (d - r) / (2.0 * a)


def simsiam_eigs(p, a, eta, eps, convention):
    """Jacobian eigenvalues at p (d = 1): Tian {-2 eta, 2 eta - p}; decay in the loss the roots
    of lambda^2 + (p/eps) lambda + 2 p^2 (2ap - 1)(1 - ap)/eps (docs/theory.md sections 2, 4)."""
    if convention == "tian":
        return np.array([-2 * eta, 2 * eta - p], complex)
    return np.roots([1.0, p / eps, 2 * p * p * (2 * a * p - 1) * (1 - a * p) / eps])


def byol_eigs(p, a, beta):
    """BYOL at (p/sqrt(alpha_p), p, theta), Tian convention: the cubic of docs/theory.md 2."""
    return np.roots([1.0, 2 * p + beta, p * p * (1 - (1 - 2 * a * p) ** 2) + p * beta,
                     -2 * beta * p * p * (1 - 2 * a * p) * (1 - a * p)])


def _same_multiset(x, y, tol):
    x, y = np.sort_complex(np.asarray(x)), np.sort_complex(np.asarray(y))
    return np.max(np.abs(x - y)) <= tol


# --- item 3: bifurcation diagrams --------------------------------------------------------------


def test_bifurcation_branch_spectra_are_the_closed_forms():
    """Every point of the continued branch (both conventions) is p_+ or p_- and its Jacobian
    eigenvalues are the closed form at the branch's own phi; the fold is at 1/(4a). Continuation
    corrects to a field residual <= 1e-10 with O(1) Jacobians, so 1e-8 is a safe bound away from
    the fold (p is sqrt-sensitive to eta there, so p_pm is compared for eta < 0.95 eta_c)."""
    from dynamics.figures import bifurcation as B

    a = 1.5
    for eps, conv in ((1.0, "tian"), (4.0, "loss")):
        d = B.spectrum_branches(0.5, eps, conv, ds_max=0.02)
        assert len(d["folds"]) == 1 and abs(d["folds"][0] - 1 / (4 * a)) < 1e-10
        b = d["branch"]
        for eta, phi, ev, kind in zip(b["eta"], b["phi"], b["eigs"], b["kinds"]):
            assert _same_multiset(ev, simsiam_eigs(phi, a, eta, eps, conv), 1e-8), (conv, eta)
            if eta < 0.95 / (4 * a):
                pp, pm = p_pm(1.0, a, eta)
                on_plus = abs(phi - pp) < 1e-8
                assert on_plus or abs(phi - pm) < 1e-8, (conv, eta, phi)
                assert kind == ("stable" if on_plus else "saddle"), (conv, eta, kind)
        assert np.any(np.abs(b["eigs"].imag) > 0.05) == (conv == "loss")  # a focus at eps = 4
        o = d["origin"]
        expect = np.stack([-o["eta"], -o["eta"] / (eps if conv == "loss" else 1.0)], 1)
        np.testing.assert_allclose(np.sort(o["eigs"].real, 1), np.sort(expect, 1), atol=1e-12)


def test_fold_curves_follow_the_per_mode_threshold():
    """The folds found by continuation lie on d^2 / (4 (d + sigma2)) in (eta, sigma2) and on
    1/(4a) for every alpha_p in both conventions. The fold is located by regula falsi on the
    tangent to ~1e-15 in eta (quadratic in the arclength error): 1e-10 leaves room."""
    from dynamics.figures import bifurcation as B

    s2 = np.array([0.0, 0.7, 2.0])
    for dd in (0.5, 2.0):
        ef, pf, res = B.fold_curve(s2, d=dd)
        np.testing.assert_allclose(ef, dd**2 / (4 * (dd + s2)), atol=1e-10)
        np.testing.assert_allclose(pf, dd / (2 * (dd + s2)), atol=1e-6)  # sqrt-sensitive
        assert np.all(res < 1e-10)
    for conv in ("tian", "loss"):
        ef, _, _ = B.fold_curve([0.2, 5.0], over="alpha_p", sigma2=0.5, convention=conv)
        np.testing.assert_allclose(ef, 1 / 6, atol=1e-10)


def test_byol_spectrum_is_the_roots_of_its_cubic():
    """The autodiff Jacobian of BYOL at p_pm against the hand-derived cubic, over beta from 0.01
    to 100; both exact in float64, the roots well separated: 1e-9 relative to max(1, beta)."""
    from dynamics.figures import bifurcation as B

    betas = np.array([0.01, 0.3, 5.0, 100.0])
    spec = B.byol_spectrum(betas, sigma2=0.5, eta=0.05, alpha_p=1.0)
    pp, pm = p_pm(1.0, 1.5, 0.05)
    for name, p in (("plus", pp), ("minus", pm)):
        for b, ev in zip(betas, spec[name]):
            assert _same_multiset(ev, byol_eigs(p, 1.5, b), 1e-9 * max(1.0, b)), (name, b)


# --- item 7: discrete time -----------------------------------------------------------------------


def h_max_by_hand(eps, a=1.5, eta=0.1):
    """docs/theory.md 1: min over the eigenvalues at p_+ of -2 Re(lambda) / |lambda|^2."""
    p = p_pm(1.0, a, eta)[0]
    lam = simsiam_eigs(p, a, eta, eps, "loss")
    return float(np.min(-2 * lam.real / np.abs(lam) ** 2))


def test_gd_step_bound_separates_the_simulated_stability():
    """GD from p_+ (1 + 1e-3) stays below 0.7 h_max and leaves above 1.4 h_max (the margins keep
    the slow growth or decay near |1 + h lambda| = 1 out of the 2000-step verdict)."""
    from dynamics.figures import discrete_time as M

    eps = np.array([0.01, 0.1, 1.0, 3.0])
    hm = np.array([h_max_by_hand(e) for e in eps])
    np.testing.assert_allclose(M.h_max(eps, 0.5, 0.1), hm, rtol=1e-12)
    for factor, want in ((0.7, True), (1.4, False)):
        r = np.array([M.gd_stability([e], [factor * h], n_steps=2000)[0, 0]
                      for e, h in zip(eps, hm)])
        assert list(r < M.GROWTH) == [want] * len(eps), (factor, r)


def test_sgd_stationary_variance_scales_like_h_over_B():
    """Simulated Var(theta) at p_+ against the discrete Lyapunov equation (h = 0.01, B = 4, 16):
    within 4 standard errors (the error of the seed average, 256 seeds) plus 5 % for the
    linearisation (O(h) and third moments); and the B = 4 / B = 16 ratio near 4."""
    from dynamics.figures import discrete_time as M

    rows = M.sgd_covariance((0.01,), (4, 16), n_seeds=256, n_steps=2000)
    for h, B, sim, theory, se in rows:
        assert abs(sim - theory) < 4 * se + 0.05 * theory, (h, B, sim, theory, se)
    ratio = rows[0, 2] / rows[1, 2]
    err = ratio * np.hypot(rows[0, 4] / rows[0, 2], rows[1, 4] / rows[1, 2])
    assert abs(ratio - 4.0) < 4 * err + 0.2, (ratio, err)


# --- item 8: BYOL without stop-gradient ----------------------------------------------------------


def test_byol_without_stop_gradient_fixed_points_and_threshold():
    """The hand-derived non-trivial fixed points of BYOL without stop-gradient zero the autodiff
    field (1e-12: float64 with O(1) terms); p_+ is stable, p_- a saddle; Newton from a grid of
    seeds finds them 1 % below eta_threshold(beta) and only the origin 1 % above it."""
    from dynamics.figures import compute as C
    from dynamics.flow import VARIANTS, Hyper
    from dynamics.models import ScalarSiamese

    a, v, model = 1.5, VARIANTS["byol-nosg"], ScalarSiamese(0.5)
    for beta in (0.3, 3.0):
        k = a * beta + a * a - 1
        eta_c = beta**2 / (4 * (beta + a) * k)  # by hand: max of phi (tau - a phi)
        eta = 0.99 * eta_c
        for sign, kind in ((1, "stable"), (-1, "saddle")):
            phi = (beta + sign * np.sqrt(beta**2 - 4 * k * (beta + a) * eta)) / (2 * k)
            th, ta = phi, phi * (beta + phi) / (beta + a)
            hyper = Hyper.tian(eta, 1.0, beta)
            f = C.field_at(model, v, hyper, C.make_state(v, th, phi, ta))
            assert max(abs(float(f.enc)), abs(float(f.pred)), abs(float(f.tgt))) < 1e-12
            w, _ = C.eigen_at(model, v, hyper, np.array([[th, phi, ta]]))
            from dynamics.analysis import stability
            assert stability(w[0]) == kind
        seeds = np.stack(np.meshgrid(np.linspace(0.05, 1.5, 5), np.linspace(0.02, 1.0, 5),
                                     np.linspace(0.02, 1.0, 3)), -1).reshape(-1, 3)
        for factor, n_nontrivial in ((0.99, 2), (1.01, 0)):
            fps = C.fixed_points(model, v, Hyper.tian(factor * eta_c, 1.0, beta), seeds)
            nontrivial = [p for p in fps if p["z"][0] > 1e-6]
            assert len(nontrivial) == n_nontrivial, (beta, factor, [p["z"] for p in fps])


# --- item 2: the EMA curriculum ------------------------------------------------------------------


def test_ema_curriculum_end_states_and_trapping():
    """Per-mode BYOL from W_a(0) = 0 at eta = 0.1 (8 starts x 8 modes, the figure's quick shapes).
    By hand (docs/theory.md 3): a surviving mode ends at tau = 1, p = p_+ = roots of
    a p^2 - d p + eta, s = p^2 / alpha_p; every mode with eta > d^2/(4a) is trapped; a fast EMA
    (beta = 30) traps the same modes as SimSiam from the same starts, a slow one (0.01) more
    (Obs. 10). t1 = 2000 is > 100 / (slowest rate) at these settings, so 1e-6 bounds the
    distance to the fixed point together with the solver's tolerance (rtol 1e-8)."""
    from dynamics.figures import ema_curriculum as E

    eta = 0.1
    d, dp = E.setting(8, 0.5)
    a = d + dp
    ts = np.concatenate([[0.0], np.geomspace(1e-2, 2000.0, 300)])
    th, ph = E.starts(8, 8, seed=2)
    ys, status = E.run_modes(d, dp, "byol", eta, 0.4, th, ph, ts)
    assert np.all(status == 0)
    theta, phi, theta_a = ys.enc[:, -1], ys.pred[:, -1], ys.tgt[:, -1]
    alive = np.abs(theta) > E.COLLAPSED
    assert alive.any() and (~alive).any()
    p_plus = np.broadcast_to((d + np.sqrt(np.maximum(d * d - 4 * a * eta, 0))) / (2 * a),
                             theta.shape)
    np.testing.assert_allclose(phi[alive], p_plus[alive], atol=1e-6)
    np.testing.assert_allclose(theta[alive] ** 2, p_plus[alive] ** 2, atol=1e-6)
    np.testing.assert_allclose(theta_a[alive] / theta[alive], 1.0, atol=1e-6)
    assert np.all(~alive[:, eta > d * d / (4 * a)])
    fast, _ = E.run_modes(d, dp, "byol", eta, 30.0, th, ph, ts)
    sim, _ = E.run_modes(d, dp, "simsiam", eta, 1.0, th, ph, ts)
    trapped = lambda y: np.abs(y.enc[:, -1]) < E.COLLAPSED  # noqa: E731
    np.testing.assert_array_equal(trapped(fast), trapped(sim))
    slow, _ = E.run_modes(d, dp, "byol", eta, 0.01, th, ph, ts)
    assert trapped(slow).sum() > trapped(sim).sum()
    assert np.all(trapped(slow) >= trapped(sim))


# --- item 1: the predictor's learning rate -------------------------------------------------------


def test_predictor_lr_surviving_modes_sit_on_the_invariant_parabola():
    """Linear SimSiam, symmetric predictor, eta = 0.04, X = I (the figure's quick lanes): every
    surviving eigenvalue of W W^T ends at p_+^2 / alpha_p, p_+ = (1 + sqrt(1 - 4 a eta)) / (2a)
    written here by hand (Theorem 1 with eta > 0 and the fixed point of docs/theory.md 2). GD's
    fixed points are the flow's, and the slowest rate at p_+ (~2 eta) leaves e^-12 of the start
    by T = 150: 1e-3 relative. More modes survive as alpha_p grows (Obs. 1)."""
    from dynamics.figures import predictor_lr as M

    alphas, a, eta = np.array([0.5, 2.0, 10.0]), 1.5, 0.04
    ts, s, lam = M.run(alphas, (0,))
    p_plus = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
    alive = s[:, -1] > M.ALIVE
    for i, al in enumerate(alphas):
        np.testing.assert_allclose(s[i, -1][alive[i]], p_plus**2 / al, rtol=1e-3)
        half = s.shape[1] // 2  # the rest are still shrinking (collapsing, not stalled)
        assert np.all(s[i, -1][~alive[i]] < 0.5 * s[i, half][~alive[i]])
    n_alive = alive.sum(-1)
    assert np.all(np.diff(n_alive) >= 0) and n_alive[-1] > n_alive[0], n_alive


# --- item 4: predictors compared in the linear toy -----------------------------------------------


def test_predictor_comparison_end_states_and_exact_laws():
    """Linear BYOL on the figure's non-isotropic X (X' = 0.5 I, eta = 0.02, Euler h = 0.05 to
    T = 400, its quick inits), against closed forms written here by hand (docs/theory.md 3):
    - trained and DirectPred (eps 0): a learned data mode ends at m_j = ||W v_j||^2 = p_+^2 and
      p_+^2 / (d_j + sigma2), p_+ the larger root of (d + sigma2) p^2 - d p + eta = 0; no mode
      with eta > d^2 / (4 (d + sigma2)) is learned. GD's fixed points are the flow's, and the
      slowest rate there (~2 eta) leaves e^-16 of the start at T: rtol 1e-5.
    - optimal least-squares predictor: W_p* W S = W_a X for invertible W, so only weight decay
      acts: W_k = (1 - h eta)^k W_0 (k steps on from a saved state), to rounding (1e-9 relative).
    - no predictor and a fixed predictor: the Euler map of Lemma 1 written out by hand,
      W+ = W - h (Wp^T (Wp W S - Wa X) + eta W), Wa+ = (1 - beta h) Wa + beta h W+, iterated
      from the run's first saved state; 1e-9 relative (float64 over 8000 steps)."""
    from dynamics.figures import predictor_compare as M

    eta, beta, h, s2 = 0.02, 1.0, 0.05, 0.5
    X, Xp, d, V = M.setting(8, s2)
    a = d + s2
    disc = d * d - 4 * a * eta
    pp = np.where(disc >= 0, (d + np.sqrt(np.abs(disc))) / (2 * a), np.nan)
    seeds = (0, 1)
    for pred, want in (("trained", pp**2), ("directpred", pp**2 / a)):
        ts, model, ys = M.run(pred, 0.0, X, Xp, seeds)
        m = np.sum((ys.enc[:, -1] @ V) ** 2, axis=-2)
        learned = m > M.LEARNED
        assert learned.sum() >= 8, (pred, m)
        assert not learned[:, disc < 0].any(), (pred, m)
        np.testing.assert_allclose(m[learned], np.broadcast_to(want, m.shape)[learned],
                                   rtol=1e-5)
    ts, model, ys = M.run("optimal", 0.0, X, Xp, seeds)
    k = np.round((ts - ts[0]) / h)  # steps since the first saved state
    expect = (1 - h * eta) ** k[None, :, None, None] * ys.enc[:, :1]
    np.testing.assert_allclose(ys.enc, expect, rtol=1e-9, atol=1e-12 * np.abs(ys.enc[:, 0]).max())
    S = X + Xp
    for pred in ("none", "fixed"):
        ts, model, ys = M.run(pred, 0.0, X, Xp, seeds)
        stride = int(round((ts[1] - ts[0]) / h))
        for lane in range(len(seeds)):
            Wp = np.eye(8) if pred == "none" else ys.pred[lane, 0]
            W, Wa = ys.enc[lane, 0].copy(), ys.tgt[lane, 0].copy()
            for i in range(1, len(ts)):
                for _ in range(stride):
                    W = W - h * (Wp.T @ (Wp @ W @ S - Wa @ X) + eta * W)
                    Wa = (1 - beta * h) * Wa + beta * h * W
                scale = np.abs(W).max()
                np.testing.assert_allclose(ys.enc[lane, i], W, rtol=0, atol=1e-9 * scale)
                np.testing.assert_allclose(ys.tgt[lane, i], Wa, rtol=0, atol=1e-9 * scale)
        if pred == "none":
            assert np.abs(ys.enc[:, -1]).max() < 1e-6 * np.abs(ys.enc[:, 0]).max()


# --- item 5: weight decay on the predictor only ---------------------------------------------------


def test_predictor_only_decay_grows_by_the_slow_manifold_law():
    """Linear SimSiam without EMA, X = I, X' = 0.5 I, eta_s = 0, eta_p = 0.04 (the figure's quick
    lanes), symmetric and regular predictor. On the slow manifold p = s / (a s + eta_p) of the
    aligned mode equations p' = s (1 - a p) - eta_p p, s' = 2 p s (1 - a p), written here by hand,
    G(s) = a^2 s + 2 a eta_p ln s - eta_p^2 / s grows as 2 eta_p t (alpha_p = 1). Each mode past
    s = 4 at T/2 must reach the root of G(s) = G(s(T/2)) + 2 eta_p (T - T/2) at T, and its
    predictor eigenvalue sit at 1/a - p = eta_p / (a (a s + eta_p)). p lags the manifold by a
    relative 2 eta_p / (a^3 s^2) in 1/a - p (1.5e-3 at s = 4, 2e-4 at the end's s ~ 10), which
    bounds both errors: rtol 2e-3 for s, 1e-3 for 1/a - p. With decay on both, nothing grows
    past p_+^2 and fewer modes survive than with decay on the predictor only."""
    from scipy.optimize import brentq

    from dynamics.figures import predictor_wd as M

    eta, a = 0.04, 1.5
    G = lambda s: a * a * s + 2 * a * eta * np.log(s) - eta**2 / s  # noqa: E731
    p_plus = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
    for pred in ("symmetric", "trained"):
        ts, model, ys = M.run(pred, [(eta, eta), (0.0, 0.0), (0.0, eta)], (0, 1))
        s, p, comm = M.modes(model, ys)
        both, only = s[:2, -1], s[4:]
        k = len(ts) // 2
        grown = only[:, k] >= 4.0
        assert grown.sum() >= 8, only[:, k]
        want = [brentq(lambda x: G(x) - G(s1) - 2 * eta * (ts[-1] - ts[k]), 1.0, 1e3)
                for s1 in only[:, k][grown]]
        np.testing.assert_allclose(only[:, -1][grown], want, rtol=2e-3)
        gap = 1 / a - p[4:, -1][grown]
        np.testing.assert_allclose(gap, eta / (a * (a * only[:, -1][grown] + eta)), rtol=1e-3)
        assert np.all(comm[4:, -1] < 1e-8)  # the eigenspaces align
        assert np.all(both < p_plus**2 * (1 + 1e-6))
        alive = lambda x: (x > M.ALIVE).sum(-1)  # noqa: E731
        assert np.all(alive(only[:, -1]) > alive(both)), (alive(only[:, -1]), alive(both))


def test_nonisotropic_learns_generalized_eigenvectors():
    """Tian Appendix D.1, written here by hand: at a fixed point W_p W S = W X (S = X + X'), the
    rows of W span generalised eigenvectors X v = lambda S v (scipy's eigh(X, S), independent of
    the package) and W_p has eigenvalue lambda_j on each learned W S v_j. X and X' do not commute,
    so these are not the principal components of X. GD without decay converges geometrically to
    an exact fixed point of the flow (Euler's fixed points are the flow's); at T = 400 the
    figure measured residuals below 1e-7 (BYOL, slower through its target), so 1e-5 leaves
    room for every bound below."""
    import scipy.linalg as sla

    from dynamics.figures import nonisotropic as M

    X, Xp = M.matrices()
    S = X + Xp
    assert np.linalg.norm(X @ Xp - Xp @ X) > 0.1  # the case the per-mode reduction misses
    lam, V = sla.eigh(X, S)
    lam, V = lam[::-1], V[:, ::-1]
    pcs = np.linalg.eigh(X)[1][:, ::-1]
    for variant in ("simsiam", "byol"):
        ts, ys = M.run(variant, range(4), X, Xp)
        W, P = ys.enc[:, -1], ys.pred[:, -1]
        res = np.linalg.norm(P @ W @ S - W @ X, axis=(1, 2)) / np.linalg.norm(W @ X, axis=(1, 2))
        assert np.all(res < 1e-5), res
        m = np.linalg.norm(W @ S @ V, axis=1)  # weight of W on each generalised mode
        learned = m > 1e-3 * m.max(1, keepdims=True)
        assert learned[:, 0].all() and np.all(learned.sum(1) >= 2)
        assert np.all(m[~learned] < 1e-5 * m.max()), m
        for i in range(len(W)):
            # the row space of W is the span of its learned generalised eigenvectors
            r = int(learned[i].sum())
            _, _, vt = np.linalg.svd(W[i])
            ang = sla.subspace_angles(vt[:r].T, V[:, learned[i]])
            assert np.max(np.sin(ang)) < 1e-5, (variant, i, ang)
            assert np.max(np.sin(sla.subspace_angles(vt[:r].T, pcs[:, :r]))) > 0.1
            for j in np.flatnonzero(learned[i]):
                u = W[i] @ S @ V[:, j]
                np.testing.assert_allclose(P[i] @ u, lam[j] * u, atol=1e-5 * np.linalg.norm(u))
