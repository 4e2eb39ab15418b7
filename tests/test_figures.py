"""``python -m dynamics.figures``: every figure builds on small settings, files and manifest.

One subprocess makes every figure with ``--quick`` (compiled functions are shared across
figures within it); the other tests read its output.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dynamics.figures import FIGURES


def _run(*args, cwd=None):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "dynamics.figures", *args], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def quick_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("figs")
    r = _run("--quick", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_every_figure_written_as_png_and_pdf(quick_out):
    for name in FIGURES:
        for ext in ("png", "pdf"):
            p = quick_out / f"{name}.{ext}"
            assert p.is_file() and p.stat().st_size > 5000, p
    assert not list(quick_out.glob(".*.tmp")), "temporary files left behind"


def test_manifest_names_command_and_parameters(quick_out):
    m = json.loads((quick_out / "manifest.json").read_text())
    assert set(m["figures"]) == set(FIGURES)
    for name, e in m["figures"].items():
        assert e["files"] == [f"{name}.png", f"{name}.pdf"]
        assert e["command"] == f"python -m dynamics.figures {name} --quick"
        assert e["quick"] is True and isinstance(e["params"], dict) and e["params"]
        assert e["caption"] == FIGURES[name].caption
    assert m["regenerate"].startswith("python -m dynamics.figures")
    assert "git_revision" in m and "package_version" in m


def test_one_figure_updates_manifest_entry_and_reproduces_its_files(quick_out):
    before = json.loads((quick_out / "manifest.json").read_text())
    files = {f: (quick_out / f).read_bytes() for f in ("tian4.png", "tian4.pdf")}
    r = _run("tian4", "--quick", "--out", str(quick_out))
    assert r.returncode == 0, r.stderr[-2000:]
    after = json.loads((quick_out / "manifest.json").read_text())
    assert set(after["figures"]) == set(before["figures"])
    assert after["figures"]["post_toy"] == before["figures"]["post_toy"]
    for f, data in files.items():
        assert (quick_out / f).read_bytes() == data, f"{f} differs between two runs"


def test_list_names_every_figure():
    r = _run("--list")
    assert r.returncode == 0
    for name in FIGURES:
        assert name in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["nosuchfigure"], "'nosuchfigure'"),
    (["--dpi", "0", "tian4"], "--dpi"),
    (["--dpi", "x", "tian4"], "'x'"),
    (["tian4", "--out", "FILE"], "is a file, not a folder"),
])
def test_bad_input_gives_one_line_error(args, needle, tmp_path):
    (tmp_path / "FILE").write_text("")
    args = [str(tmp_path / a) if a == "FILE" else a for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path)]
    r = _run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "manifest.json").exists()


def test_post_toy_is_su_experiment_with_its_exact_limits():
    """The figure's data: Su's two flows from (0.1, 0.6) reach docs/theory.md 2's exact limits and
    keep their conserved quantities. Tsit5 at rtol 1e-10 (observed errors < 1e-10; 1e-8 margin)."""
    from dynamics.figures import post_toy

    d = post_toy.data(n_grid=5)
    sg, nosg = d["runs"]["sg"], d["runs"]["nosg"]
    assert d["ts"][-1] == 200.0
    assert abs(sg["theta"][-1] - np.sqrt(0.65)) < 1e-8 and abs(sg["phi"][-1] - 1.0) < 1e-8
    assert 0.0 < nosg["theta"][-1] < 1e-13
    assert abs(nosg["phi"][-1] - (1.0 - np.sqrt(0.15))) < 1e-8
    np.testing.assert_allclose(sg["conserved"], 0.01 - 0.36, atol=1e-8)
    np.testing.assert_allclose(nosg["conserved"], -0.15, atol=1e-8)


def test_post_toy_collapse_basins_match_simulation():
    """The closed-form basins drawn in post_toy (sigma2 = eta = 0, alpha_p = 1) against the flow:
    starts a little inside and outside each boundary end collapsed (|theta| < 1e-4) or not
    (|theta| > 0.1). Near a boundary the decay is slow, so the starts keep 0.05 away from it."""
    from dynamics.figures import compute as C
    from dynamics.figures import post_toy
    from dynamics.flow import VARIANTS, Hyper
    from dynamics.models import ScalarSiamese

    model, hyper = ScalarSiamese(sigma2=0.0), Hyper.tian(0.0, 1.0)
    # (theta0, phi0): without stop-grad the boundary is |theta0| = |1 - phi0|
    nosg = np.array([[0.3, 0.6], [0.5, 0.6], [-0.2, 1.3], [-0.4, 1.3], [0.6, -0.5], [1.6, -0.5]])
    # with stop-grad: phi0 = -|theta0| and phi0 = sqrt(1 + theta0^2)
    sg = np.array([[0.3, -0.4], [0.3, -0.2], [0.5, 1.2], [0.5, 1.05], [-1.0, 1.5], [-1.0, 1.35]])
    for vname, pts, basin in (("simsiam-nosg", nosg, post_toy.basin_nosg),
                              ("simsiam", sg, post_toy.basin_sg)):
        _, ys, status = C.trajectories(model, VARIANTS[vname], hyper, pts[:, 0], pts[:, 1],
                                       t1=400.0, n_save=2)
        assert np.all(status == 0)
        end = np.abs(ys.enc[:, -1])
        predicted = basin(pts[:, 0], pts[:, 1])
        assert list(predicted) == [True, False] * 3, (vname, predicted)
        assert np.all(end[predicted] < 1e-4) and np.all(end[~predicted] > 0.1), (vname, end)


def test_basin_boundary_from_theory_separates_the_simulated_basins():
    """Starts a little to either side of the saddle's stable manifold end in different basins."""
    from dynamics.figures import compute as C
    from dynamics.flow import VARIANTS, Hyper
    from dynamics.models import ScalarSiamese

    model, v = ScalarSiamese(sigma2=0.5), VARIANTS["simsiam"]
    hyper = Hyper.loss_decay(0.1, 0.1)
    seeds = np.stack(np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 2, 7)), -1).reshape(-1, 2)
    fps = C.fixed_points(model, v, hyper, seeds)
    kinds = sorted(p["kind"] for p in fps)
    assert kinds == ["saddle", "saddle", "stable", "stable", "stable"]
    saddle = next(p for p in fps if p["kind"] == "saddle" and p["z"][0] > 0)
    branch = C.stable_manifold(model, v, hyper, saddle, bound=3.0)[0]
    pts = branch[len(branch) // 3: len(branch) // 3 + 4]
    inner = pts * np.array([0.97, 1.0])   # towards theta = 0: collapse side
    outer = pts * np.array([1.03, 1.0])
    _, ys, status = C.trajectories(model, v, hyper, np.r_[inner[:, 0], outer[:, 0]],
                                   np.r_[inner[:, 1], outer[:, 1]], t1=400.0, n_save=2)
    assert np.all(status == 0)
    theta_end = np.abs(ys.enc[:, -1])
    assert np.all(theta_end[:4] < 1e-3) and np.all(theta_end[4:] > 0.1)


def test_same_seed_same_result():
    from dynamics.figures import tian7

    kw = dict(n=2, repeats=2, T=0.4, etas=(0.01,), betas=(1.0,))
    a, b = tian7.data(seed=3, **kw), tian7.data(seed=3, **kw)
    np.testing.assert_array_equal(a["corr"], b["corr"])
    c = tian7.data(seed=4, **kw)
    assert not np.array_equal(a["wnorm"], c["wnorm"])


def test_committed_manifest_matches_the_registry_and_files():
    """figures/manifest.json names every registered figure, and every file it names exists."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "figures"
    m = json.loads((root / "manifest.json").read_text())
    assert set(FIGURES) == set(m["figures"])
    for name, e in m["figures"].items():
        assert e["command"] == f"python -m dynamics.figures {name}" and e["quick"] is False
        for f in e["files"]:
            assert (root / f).is_file(), f


def test_tian10_fixed_points_are_the_papers():
    """Tian et al. Fig. 10 (lambda_s = 1, lambda_d = 1/2): the line of non-collapsed fixed points
    sits at w_p = lambda_d / lambda_s = 1/2 with w = w_a; at w_a = 1 the fixed points are the
    hyperbola w_p w = 1/2 (stable; the origin a saddle); on the invariant submanifold w = w_p
    the stable point is w = w_a = 1/2; without a predictor only the origin, stable. Newton
    converges to 1e-10 in the field, so the fixed points are checked to 1e-8."""
    from dynamics.figures import tian10

    d = tian10.data(n_grid=7, t1=20.0)
    found = [p["z"] for p in d["fixed3"]]
    line = [z for z in found if abs(z[0]) > 1e-3]
    assert len(line) >= 5, found
    for w, wp, wa in line:
        assert abs(wp - 0.5) < 1e-8 and abs(w - wa) < 1e-8, (w, wp, wa)
    for h in d["left"]["hyperbola"]:
        np.testing.assert_allclose(h["w"] * h["wp"], 0.5, rtol=1e-12)
        assert set(h["kinds"]) == {"stable"}
    assert [p["kind"] for p in d["left"]["origin"]] == ["saddle"]
    (star,) = d["mid"]["fixed"]
    np.testing.assert_allclose(star["z"], [0.5, 0.5, 0.5], atol=1e-8)
    assert star["kind"] == "stable" and d["mid"]["origin_kind"] == "unstable"
    # w = w_p is invariant (alpha_p = 1): the field has equal w and w_p components there
    np.testing.assert_allclose(d["mid"]["dW"], d["mid"]["dWP"], atol=1e-14)
    (o,) = d["right"]["fixed"]
    assert o["kind"] == "stable" and np.max(np.abs(o["z"][[0, 2]])) < 1e-8


def test_tian5_small_beta_keeps_lambda_min_K_higher_over_the_run():
    """Tian et al. Fig. 5, beta row (target from Wa(0) = 0, small init): "a small EMA also
    boosts the eigenvalue of K, but the training converges much slower". Judged over the whole
    run (t <= 150), not at one time: the lowest lambda_min(K) of the run rises strictly as
    beta falls (observed at n = 4: -0.045, -0.033, -0.023, -0.008 for beta = 4, 1, 0.4, 0.1),
    and the time for the top predictor eigenvalue to reach 0.9 p_+ (tau = 1) grows as beta
    falls (observed 25, 29, 38, 86). The gaps are 0.01 and more, and 4 time units and more;
    from the former init (0.6; n = 8) the first fails (beta = 0.1 dips to -0.063 against -0.082 at
    beta = 4, but beta = 0.4 dips deepest, -0.093)."""
    from dynamics.figures import tian5

    d = tian5.data(n=4, etas=(0.04,))
    ts = d["ts"]
    assert ts[-1] >= 150.0 - 1e-9
    runs = [r for r in d["runs"] if r["sweep"] == "beta"]
    assert [r["beta"] for r in runs] == [0.1, 0.4, 1.0, 4.0]
    lam = np.array([r["lam_min"] for r in runs])
    # t = 0: one shared state with tau = 0, so every run has the same K
    np.testing.assert_allclose(lam[:, 0], lam[0, 0], rtol=1e-12)
    assert np.all([r["tau"][0] == 0.0 for r in runs])
    low = lam.min(axis=1)
    assert np.all(np.diff(low) < -0.005), low
    a = 1.0 + d["params"]["sigma2"]
    eta = d["params"]["eta0"]
    p_plus = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
    t90 = np.array([ts[np.argmax(r["p"].max(axis=1) > 0.9 * p_plus)] for r in runs])
    assert np.all([np.any(r["p"].max(axis=1) > 0.9 * p_plus) for r in runs])
    assert np.all(np.diff(t90) < -2.0), t90


def test_tian8_antisymmetric_part_vanishes_and_modes_reach_p_plus():
    """Tian et al. Fig. 8 (C = 0, fixed tau): ||B||_F decays (observed by 1e4 or more over T) and
    every eigenvalue of A ends at 0 or at p_+ = (tau + sqrt(tau^2 - 4 a eta)) / (2a); past
    eta = tau^2 / (4a) all of A decays. The figure's own settings (n = 8, T = 200). Observed:
    eigenvalues within 4.8e-3 of 0 (modes decaying slowly at eta = 0.001) or within 1e-4 of
    p_+; C = 0 kept to 6e-3 (Euler drift)."""
    from dynamics.figures import tian8

    d = tian8.data()
    for (tau, eta), r in d["runs"].items():
        assert r["B"][-1] < 1e-3 * r["B"][0], (tau, eta, r["B"][-1])
        assert r["C_drift"] < 1e-2
        if r["collapses"]:
            assert tau**2 / (4 * d["a"]) < eta and r["A"][-1] < 1e-2 * r["A"][0]
            continue
        pp = (tau + np.sqrt(tau**2 - 4 * d["a"] * eta)) / (2 * d["a"])
        ev = r["A_eigs_end"]
        assert np.all((np.abs(ev) < 1e-2) | (np.abs(ev - pp) < 3e-4)), (tau, eta, ev, pp)
        assert np.sum(np.abs(ev - pp) < 3e-4) >= 5
    assert d["runs"][(0.5, 0.05)]["collapses"] and not d["runs"][(1.5, 0.05)]["collapses"]


def test_tian9_commutator_rises_above_its_start_at_zero_decay():
    """Tian et al. Fig. 9 (symmetrised flow, small init): at eta = 0 ||[F, Wp]||_F rises above
    its starting value before it decays, more for larger tau (observed peak/start 5.4 and 8.0
    at tau = 1, 1.5 on the quick settings, 6.2 and 8.9 on the full ones); a larger eta lowers
    the peak. Runs marked collapsed have lost F."""
    from dynamics.figures import tian9

    d = tian9.data(n=4, T=100.0, etas=(0.0, 0.01, 0.2), taus=(1.0, 1.5))
    peak = {}
    for (tau, eta), r in d["runs"].items():
        c = r["comm"]
        peak[(tau, eta)] = c.max() / c[0]
        if r["collapsed"]:
            assert r["smax"][-1] < tian9.COLLAPSED_S
    for tau in (1.0, 1.5):
        r = d["runs"][(tau, 0.0)]
        assert peak[(tau, 0.0)] > 3.0 and r["comm"][-1] < r["comm"][0], (tau, peak)
        assert peak[(tau, 0.01)] < peak[(tau, 0.0)]
    assert peak[(1.5, 0.0)] > peak[(1.0, 0.0)]
    assert d["runs"][(1.0, 0.2)]["collapsed"] and peak[(1.0, 0.2)] == 1.0


def test_tian9_collapsed_runs_are_explained_by_the_fold_or_the_basin():
    """Tian et al. Fig. 9's collapsed runs, explained from closed forms the test writes itself:
    past eta = tau^2/(4a) no non-trivial fixed point exists (Obs. 5); below it the start
    collapses when every predictor eigenvalue p_j(0) (of the symmetrised initial Wp, drawn
    here again from the seed) lies under p_- = (tau - sqrt(tau^2 - 4 a eta)) / (2a) (Obs. 4).
    This predicts every run's fate, collapsed or not, and the figure must give the same cause.
    On the full settings (n = 8) two runs collapse below the fold: tau = 1, eta = 0.05
    (p_j(0) <= 0.040 < p_- = 0.054) and tau = 1.5, eta = 0.2 (p_- = 0.158)."""
    import jax

    from dynamics.figures import tian9
    from dynamics.flow import VARIANTS
    from dynamics.models import linear as lin

    for n, T in ((4, 100.0), (8, 150.0)):
        d = tian9.data(n=n, T=T)
        a = d["a"]
        base = lin.LinearSiamese.isotropic(n, 0.5, predictor="symmetric")
        y = lin.random_state(jax.random.PRNGKey(0), base, VARIANTS["simsiam"], n, scale=0.03)
        p0 = np.linalg.eigvalsh(np.asarray(0.5 * (y.pred + y.pred.T))).max()
        for (tau, eta), r in d["runs"].items():
            fold = eta > tau**2 / (4 * a)
            basin = (not fold) and p0 < (tau - np.sqrt(tau**2 - 4 * a * eta)) / (2 * a)
            assert r["collapsed"] == (fold or basin), (n, tau, eta, p0)
            want = "fold" if fold else ("basin" if basin else None)
            assert r["cause"] == want, (n, tau, eta, r["cause"])
        if n == 8:
            causes = {k: r["cause"] for k, r in d["runs"].items() if r["collapsed"]}
            assert causes[(1.0, 0.05)] == causes[(1.5, 0.2)] == "basin", causes


def test_tian7_target_stays_correlated_with_the_online_weights():
    """Tian et al. Fig. 7 (Wa(0) = 0, sigma = 0.03): the correlation between Wa and W stays high
    (the paper: ~0.9 even for gamma_a near 1 and large eta). Observed minimum of the mean over
    runs: 0.975 at beta = 0.1, eta = 0.1; the paper's gamma_a = 0.996 is beta = 0.4 here."""
    from dynamics.figures import tian7

    d = tian7.data(n=4, repeats=3, T=20.0, etas=(0.0, 0.1), betas=(0.1, 0.4))
    assert d["gammas"] == [0.999, 0.996]
    m = d["corr"].mean(axis=2)
    assert np.all(m > 0.9), m.min()
    assert np.all(d["corr"][..., -1] > 0.97)


def test_wd_conventions_tian_shrinks_the_encoder_by_sqrt_eps():
    """Tian's Obs. 2 at the default sweep's eta = 0.15, sigma2 = 0.5: in Tian's convention the
    surviving encoder is sqrt(eps) p_+ (0.4387 at eps = 1, 0.0439 at eps = 0.01), with the decay
    in the loss it stays at sqrt(eta p_+ / (1 - a p_+)) = 0.4387 for every eps; at eps = 0.01
    fewer starts collapse in Tian's convention. The sweep's lanes converge (ftol 1e-6), so the
    medians agree with the closed forms to 1e-4 (observed < 1e-6)."""
    from dynamics.figures import wd_conventions as wd

    p = (1 + np.sqrt(1 - 4 * 1.5 * 0.15)) / 3.0
    assert abs(p - 0.43874) < 1e-5
    d = wd.data(eps=(1.0, 0.01), n=8)
    tian, loss = d["runs"]["tian"], d["runs"]["loss"]
    np.testing.assert_allclose(tian["theta_median"], [p, 0.1 * p], atol=1e-4)
    np.testing.assert_allclose(loss["theta_median"], [p, p], atol=1e-4)
    assert tian["collapsed"][0] == loss["collapsed"][0]   # eps = 1: the same system
    assert tian["collapsed"][1] < loss["collapsed"][1]


def test_tian4_branches_meet_at_the_fold_point():
    """The two non-trivial roots p_pm = (1 +- sqrt(1 - 4 a eta)) / (2a) average to the fold
    point's p = 1/(2a) at every eta < eta_c = 1/(4a), where they meet; past eta_c only p = 0 is
    left. Roots are bisected to ~1e-16 on the grid, so 1e-9 is loose."""
    from dynamics.figures import tian4

    d = tian4.data(n_eta=11)
    a = d["a"]
    assert d["eta_crit"] == pytest.approx(1 / (4 * a), rel=1e-15)
    for eta in np.unique([e for e, _, _ in d["bif"]]):
        nz = sorted(p for e, p, _ in d["bif"] if e == eta and abs(p) > 1e-9)
        if 0 < eta < d["eta_crit"]:
            assert len(nz) == 2 and abs(0.5 * (nz[0] + nz[1]) - 1 / (2 * a)) < 1e-9, (eta, nz)
            assert nz[1] - nz[0] == pytest.approx(np.sqrt(1 - 4 * a * eta) / a, abs=1e-9)
        elif eta > d["eta_crit"]:
            assert nz == [], (eta, nz)


def test_old_figure_names_warn_and_return_the_moved_objects():
    """The names the figure modules replaced keep working for one release: each access warns
    (DeprecationWarning naming the new home) and returns the object that now lives there."""
    from dynamics import plot
    from dynamics.figures import basins, compute, linear, phase, scalar, slowfast, tian3, tian7

    cases = [
        (plot, "tian_fig3", tian3.draw, "dynamics.figures.tian3"),
        (plot, "basins_with_boundary", basins.draw, "dynamics.figures.basins"),
        (plot, "phase_diagrams", phase.draw, "dynamics.figures.phase"),
        (scalar, "basin_data", basins.data, "dynamics.figures.basins.data"),
        (scalar, "slowfast_data", slowfast.data, "dynamics.figures.slowfast.data"),
        (scalar, "seed_grid", compute.seed_grid, "dynamics.figures.compute.seed_grid"),
        (linear, "tian_fig7_data", tian7.data, "dynamics.figures.tian7.data"),
        (linear, "ScaledTarget", compute.ScaledTarget, "dynamics.figures.compute.ScaledTarget"),
    ]
    for module, old, new, where in cases:
        with pytest.warns(DeprecationWarning, match=where):
            assert getattr(module, old) is new
    with pytest.raises(AttributeError):
        plot.no_such_layout
    with pytest.raises(AttributeError):
        scalar.no_such_data
