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
