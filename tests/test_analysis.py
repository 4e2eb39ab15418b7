"""Analyses on the scalar, per-mode and matrix models against docs/theory.md's closed forms.

The oracles (p_pm, eta_crit, the critical manifold, the reduced flow, relaxation rates) are
written out here by hand; the library derives everything from the models' losses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics  # noqa: F401  (float64)
from dynamics.analysis import (
    FlowSystem,
    ReducedSystem,
    bifurcation_diagram,
    collapse_summary,
    compare_full_reduced,
    continue_branch,
    effective_rank,
    eigen_alignment,
    eta_param,
    find_fixed_points,
    fixed_point_kind,
    random_starts,
    reduction_map,
    relaxation_rate,
    singular_values,
    slow_eigenvalues,
    theorem2_H,
    theorem3_K,
)
from dynamics.analysis.alignment import commutator_norm
from dynamics.flow import Hyper, State, Variant
from dynamics.models import LinearSiamese, PerModeSiamese, ScalarSiamese
from tests.linear_common import field

SIMSIAM = Variant("simsiam", True)


def p_pm(a, eta):
    r = np.sqrt(1 - 4 * a * eta)
    return (1 + r) / (2 * a), (1 - r) / (2 * a)


# --- fixed points ------------------------------------------------------------------------------


def _scalar_fixed_points(alpha_p):
    model = ScalarSiamese(0.5)  # a = 1.5
    starts = random_starts(jax.random.PRNGKey(0), State(0.0, 0.0), 48, scale=1.0)
    return find_fixed_points(FlowSystem(model, Hyper.tian(0.05, alpha_p), SIMSIAM), starts)


def test_fixed_points_scalar_worked_numbers():
    """docs/theory.md section 2: a = 1.5, eta = 0.05, alpha_p = 1."""
    fps = _scalar_fixed_points(1.0)
    assert len(fps) == 5  # origin, (+-theta_-, p_-), (+-theta_+, p_+)
    origin = fps[0]
    np.testing.assert_allclose(origin.eigenvalues, [-0.05, -0.05], atol=1e-12)
    by_p = {}
    for fp in fps[1:]:
        by_p.setdefault(round(float(fp.state.pred), 6), []).append(fp)
    # The printed numbers carry six decimals: compare to 1e-6.
    assert sorted(by_p) == [0.054447, 0.61222]
    for fp in by_p[0.61222]:
        assert fp.kind == "stable node"
        np.testing.assert_allclose(np.sort(fp.eigenvalues.real), [-0.512220, -0.1], atol=1e-6)
        np.testing.assert_allclose(float(fp.state.enc) ** 2, 0.612220**2, atol=1e-6)
    for fp in by_p[0.054447]:
        assert fp.kind == "saddle"
        np.testing.assert_allclose(np.sort(fp.eigenvalues.real), [-0.1, 0.045553], atol=1e-6)
    assert origin.kind == "stable node"


def test_fixed_point_spectra_do_not_depend_on_alpha_p():
    """Eigenvalues at p_pm are {-2 eta, 2 eta - p_pm} for every alpha_p; theta^2 = p^2/alpha_p."""
    alpha_p, eta, a = 3.0, 0.05, 1.5
    fps = _scalar_fixed_points(alpha_p)
    pp, pm = p_pm(a, eta)
    nontrivial = [fp for fp in fps if abs(float(fp.state.pred)) > 1e-9]
    assert len(nontrivial) == 4
    for fp in nontrivial:
        p = float(fp.state.pred)
        assert min(abs(p - pp), abs(p - pm)) < 1e-10  # Newton converges to machine precision
        np.testing.assert_allclose(float(fp.state.enc) ** 2, p**2 / alpha_p, atol=1e-10)
        np.testing.assert_allclose(np.sort(fp.eigenvalues.real), np.sort([-2 * eta, 2 * eta - p]), atol=1e-10)


def test_fixed_points_per_mode_are_products_of_scalar_ones():
    """Two decoupled modes with different augmentation strength: p_j in {0, p_pm(a_j)}."""
    model = PerModeSiamese(jnp.array([1.0, 1.0]), jnp.array([0.5, 1.0]))
    eta = 0.05
    starts = random_starts(jax.random.PRNGKey(1), State(jnp.zeros(2), jnp.zeros(2)), 96, scale=1.0)
    fps = find_fixed_points(FlowSystem(model, Hyper.tian(eta, 1.0), SIMSIAM), starts)
    allowed = [np.array([0.0, *p_pm(a, eta)]) for a in (1.5, 2.0)]
    assert len(fps) >= 9
    for fp in fps:
        for j in range(2):
            assert np.min(np.abs(allowed[j] - float(fp.state.pred[j]))) < 1e-10
        # Stable iff no mode sits at its saddle p_-.
        at_saddle = any(abs(float(fp.state.pred[j]) - allowed[j][2]) < 1e-10 for j in range(2))
        assert fp.kind == ("saddle" if at_saddle else "stable node")


def test_fixed_point_kind():
    assert fixed_point_kind([-1.0, -2.0]) == "stable node"
    assert fixed_point_kind([-1 + 1j, -1 - 1j]) == "stable focus"
    assert fixed_point_kind([1.0, 2.0]) == "unstable node"
    assert fixed_point_kind([0.5 + 2j, 0.5 - 2j]) == "unstable focus"
    assert fixed_point_kind([1.0, -2.0]) == "saddle"
    assert fixed_point_kind([-1.0, 1e-12]) == "non-hyperbolic"
    with pytest.raises(ValueError, match="empty"):
        fixed_point_kind([])


def test_fixed_points_matrix_model_are_non_hyperbolic():
    """The matrix model's fixed points come in rotation families: a zero eigenvalue, flagged."""
    model = LinearSiamese.isotropic(2, 0.5)
    eta = 0.05
    like = State(jnp.zeros((2, 2)), jnp.zeros((2, 2)))
    starts = random_starts(jax.random.PRNGKey(2), like, 16, scale=0.8)
    fps = find_fixed_points(FlowSystem(model, Hyper.tian(eta, 1.0), SIMSIAM), starts)
    nontrivial = [fp for fp in fps if float(jnp.abs(fp.state.enc).max()) > 1e-6]
    assert nontrivial
    pp, pm = p_pm(1.5, eta)
    for fp in nontrivial:
        assert fp.kind == "non-hyperbolic"
        # The eigenvalues of the fixed point's predictor are per-mode fixed points.
        ev = np.linalg.eigvals(np.asarray(fp.state.pred))
        assert np.all(np.min(np.abs(ev[:, None] - np.array([0.0, pp, pm])[None]), axis=1) < 1e-8)
    with pytest.raises(ValueError, match="not isolated"):
        continue_branch(FlowSystem(model, Hyper.tian(eta, 1.0), SIMSIAM), nontrivial[0].state, eta,
                        eta_param("tian"), bounds=(0.0, 0.3))


# --- continuation ------------------------------------------------------------------------------


@pytest.mark.parametrize("sigma2", [0.5, 0.2])
def test_continuation_finds_eta_crit(sigma2):
    a = 1 + sigma2
    eta0 = 0.05
    pp, _ = p_pm(a, eta0)
    system = FlowSystem(ScalarSiamese(sigma2), Hyper.tian(eta0, 1.0), SIMSIAM)
    br = continue_branch(system, State(pp, pp), eta0, eta_param("tian"), bounds=(0.01, 0.5), param_name="eta")
    assert len(br.folds) == 1
    eta_c, z_c = br.folds[0]
    assert abs(eta_c - 1 / (4 * a)) < 1e-6
    np.testing.assert_allclose(z_c, [1 / (2 * a)] * 2, atol=1e-4)  # p = 1/(2a) at the fold
    # Upper branch (before the turn) a stable node, lower branch (after it) a saddle; away from
    # the fold, p on both matches the closed form p_pm(eta) to Newton accuracy.
    turn = int(np.argmax(br.params))
    for eta, z in zip(br.params, br.states):
        if abs(eta - eta_c) > 1e-3:
            pp_, pm_ = p_pm(a, eta)
            assert min(abs(z[1] - pp_), abs(z[1] - pm_)) < 1e-9
    before, after = br.kinds[:turn], br.kinds[turn + 1 :]
    assert np.all(before[br.params[:turn] < eta_c - 1e-3] == "stable node")
    assert np.all(after[br.params[turn + 1 :] < eta_c - 1e-3] == "saddle")
    ds = br.to_dataset()
    assert float(ds["fold_eta"][0]) == eta_c and bool(ds["stable"][0]) and not bool(ds["stable"][-1])
    if sigma2 == 0.5:
        # Both directions joined: from the p_+ end at eta = 0.01, over the fold, down p_-.
        full = bifurcation_diagram(system, State(pp, pp), eta0, eta_param("tian"), bounds=(0.01, 0.5))
        assert len(full.folds) == 1 and abs(full.folds[0][0] - eta_c) < 1e-12
        assert full.params[0] < eta0 and full.kinds[0] == "stable node" and full.kinds[-1] == "saddle"
        assert np.all((full.params >= 0.01) & (full.params <= 0.5))


@pytest.mark.parametrize("convention", ["tian", "loss"])
def test_continuation_in_eta_at_small_eps_follows_the_convention(convention):
    """At eps = 0.1 the two conventions share the fold eta_crit = 1/(4a) and the branch's p =
    p_pm(eta) (set by the encoder's equation alone), but not its encoder: Tian's
    eta_phi = eps eta gives theta^2 = eps p^2 (docs/theory.md 4), weight decay in the loss gives
    theta^2 = eta p / (1 - a p). Away from the fold (where the branch is steep) the corrector
    solves to rounding: observed 4e-16, checked to 1e-12."""
    sigma2, eps, eta0 = 0.5, 0.1, 0.05
    a = 1 + sigma2
    pp, _ = p_pm(a, eta0)

    def theta2(eta, p):
        return eps * p**2 if convention == "tian" else eta * p / (1 - a * p)

    hyper = Hyper.from_convention(convention, eta0, eps)
    system = FlowSystem(ScalarSiamese(sigma2), hyper, SIMSIAM)
    start = State(np.sqrt(theta2(eta0, pp)), pp)
    br = continue_branch(system, start, eta0, eta_param(convention), bounds=(0.01, 0.5),
                         param_name="eta")
    assert len(br.folds) == 1
    eta_c, z_c = br.folds[0]
    assert abs(eta_c - 1 / (4 * a)) < 1e-6
    np.testing.assert_allclose(z_c[1], 1 / (2 * a), atol=1e-4, rtol=0)
    far = np.abs(br.params - eta_c) > 1e-3
    assert far.sum() > 10
    for eta, z in zip(br.params[far], br.states[far]):
        pp_, pm_ = p_pm(a, eta)
        p = pp_ if abs(z[1] - pp_) < abs(z[1] - pm_) else pm_
        np.testing.assert_allclose(z[1], p, atol=1e-12, rtol=0)
        np.testing.assert_allclose(z[0] ** 2, theta2(eta, p), atol=1e-12, rtol=0)


# --- slow-fast ---------------------------------------------------------------------------------

SF_A, SF_ETA = 1.5, 0.05


@pytest.fixture(scope="module")
def sf_system():
    """Weight decay inside the loss (eta_phi = eta), the slow-fast convention of section 4."""
    return FlowSystem(ScalarSiamese(SF_A - 1), Hyper.loss_decay(SF_ETA, 0.01), SIMSIAM)


def test_critical_manifold_and_reduced_field(sf_system):
    red = ReducedSystem.of(sf_system, jnp.array(0.0))
    pred_star = jax.jit(lambda r, th: r.critical_pred(th))
    slow_field = jax.jit(lambda r, th: r.field(State(th, None)).enc)
    for th in (0.3, 0.8, 1.7):
        phi = th**2 / (SF_A * th**2 + SF_ETA)  # phi*(theta) = theta theta_a / (a theta^2 + eta)
        np.testing.assert_allclose(pred_star(red, jnp.array(th)), phi, rtol=1e-13)
        want = phi * (th - SF_A * phi * th) - SF_ETA * th
        np.testing.assert_allclose(slow_field(red, jnp.array(th)), want, rtol=1e-12)
        # The predictor's relaxation rate (a theta^2 + eta_phi)/eps.
        rate = relaxation_rate(sf_system, State(th, phi))
        np.testing.assert_allclose(rate, (SF_A * th**2 + SF_ETA) / 0.01, rtol=1e-12)
    # Where the reduction breaks: with eta_phi = 0 the rate vanishes at collapse.
    nodecay = sf_system.replace(hyper=Hyper(eps=0.01, eta_theta=SF_ETA, eta_phi=0.0))
    assert float(relaxation_rate(nodecay, State(0.0, 0.3))) == 0.0
    m = reduction_map(red, State(jnp.array([0.05, 0.5, 1.0]), None))
    assert m["ratio"][0] < m["ratio"][2]


def test_reduced_system_is_order_eps_close(sf_system):
    """Away from collapse (theta0 = 1 flows to p_+), max |theta_full - theta_red| = O(eps)."""
    out = compare_full_reduced(
        sf_system, State(jnp.array(1.0), None), jnp.array(0.0), [0.04, 0.02, 0.01, 0.005],
        jnp.linspace(0.0, 20.0, 41),
    )
    assert np.all(out["status"] == 0)
    # Measured slope 1.0006; the first-order correction is linear in eps, so 0.9-1.1 is
    # tight enough to fail for an O(1) or O(eps^2) discrepancy.
    assert 0.9 < out["slope"] < 1.1, out
    assert out["distance"][-1] < 1e-4


def test_reduced_system_tian_convention_moves_the_manifold_with_eps():
    """Tian convention (eta_phi = eps eta, ``eta_phi_of_eps``): the manifold and its reduced
    flow change with eps, and every full and reduced run from theta0 = 1 must end at that eps's
    fixed point theta* = sqrt(eps) p_+ (docs/theory.md 4; the fixed point lies on the critical
    manifold, so it is the reduced flow's too), the full predictor at p_+. Over t = 200 the
    slowest rate 2 eta = 0.1 leaves ~1e-9; observed errors 5e-8 (full) and 2.3e-7 (reduced),
    tolerance 1e-6. A reduced system shared by every eps would end at one theta* for all."""
    eps = np.array([0.04, 0.01])
    system = FlowSystem(ScalarSiamese(SF_A - 1), Hyper.tian(SF_ETA, 1 / eps[0]), SIMSIAM)
    out = compare_full_reduced(system, State(jnp.array(1.0), None), jnp.array(0.0), eps,
                               jnp.linspace(0.0, 200.0, 41), eta_phi_of_eps=lambda e: e * SF_ETA)
    assert np.all(out["status"] == 0)
    pp, _ = p_pm(SF_A, SF_ETA)
    np.testing.assert_allclose(out["full"].enc[:, -1], np.sqrt(eps) * pp, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["reduced"].enc[:, -1], np.sqrt(eps) * pp, atol=1e-6, rtol=0)
    np.testing.assert_allclose(out["full"].pred[:, -1], pp, atol=1e-6, rtol=0)


def test_relaxation_rate_is_the_slowest_predictor_direction():
    """With several predictor directions the rate is the *smallest* -Re eigenvalue of
    d(pred')/d(pred). Per-mode model: that Jacobian is diagonal, -(a_j theta_j^2 + eta_phi)/eps.
    Matrix model: d(Wp')/d(Wp) = -(W (X + X') W^T (x) I + eta_phi) / eps, so the rate is
    (lambda_min(W (X + X') W^T) + eta_phi)/eps. Rounding only (eigvals of a 9 x 9 matrix for
    the second): observed 4e-16 relative, checked to 1e-13."""
    eps, eta = 0.01, 0.05
    modes = PerModeSiamese(jnp.array([1.0, 0.7, 1.4]), jnp.array([0.3, 0.5, 0.2]))
    theta = jnp.array([0.3, 1.2, 0.7])
    state = State(theta, jnp.array([0.2, -0.4, 0.9]))
    sys_m = FlowSystem(modes, Hyper.loss_decay(eta, eps), SIMSIAM)
    rates = (np.asarray(modes.a) * np.asarray(theta) ** 2 + eta) / eps
    assert rates.max() > 5 * rates.min()
    np.testing.assert_allclose(relaxation_rate(sys_m, state), rates.min(), rtol=1e-13)

    model = LinearSiamese(jnp.diag(jnp.array([1.5, 1.0, 0.5])), 0.3 * jnp.eye(3))
    W = jnp.array([[1.2, 0.1, 0.0], [0.0, 0.3, 0.2], [0.1, 0.0, 0.8]])
    Wp = jax.random.normal(jax.random.PRNGKey(4), (3, 3))
    sys_l = FlowSystem(model, Hyper.loss_decay(eta, eps), SIMSIAM)
    M = np.asarray(W @ (model.X + model.Xp) @ W.T)
    lam = np.linalg.eigvalsh(M)
    assert lam.max() > 5 * lam.min()
    np.testing.assert_allclose(relaxation_rate(sys_l, State(W, Wp)), (lam.min() + eta) / eps,
                               rtol=1e-13)


def test_slow_eigenvalue_converges(sf_system):
    pp, _ = p_pm(SF_A, SF_ETA)
    th = np.sqrt(SF_ETA * pp / (1 - SF_A * pp))  # theta*^2 on the manifold at phi = p_+
    fp = State(jnp.array(th), jnp.array(pp))
    eps = [0.04, 0.02, 0.01, 0.005]
    out = slow_eigenvalues(sf_system, fp, jnp.array(0.0), eps)
    err = out["error"]
    assert np.all(np.diff(err) < 0)
    slope = np.polyfit(np.log(eps), np.log(err), 1)[0]
    assert 0.9 < slope < 1.1
    # The fast eigenvalue is about -(a theta^2 + eta)/eps (docs/theory.md section 4).
    fast = out["full_fast"][:, 0].real * np.array(eps)
    np.testing.assert_allclose(fast, -(SF_A * th**2 + SF_ETA), rtol=0.05)


# --- collapse measures and alignment --------------------------------------------------------------


def test_collapse_measures():
    W = jnp.array([[3.0, 0.0, 0.0], [0.0, 1e-5, 0.0]])
    sv = singular_values(W)
    np.testing.assert_allclose(sv, [3.0, 1e-5])
    s = collapse_summary(sv)
    assert int(s["n_collapsed"]) == 1 and float(s["collapsed_fraction"]) == 0.5
    np.testing.assert_allclose(s["norm"], np.sqrt(9 + 1e-10))
    np.testing.assert_allclose(effective_rank(jnp.array([2.0, 2.0, 2.0])), 3.0, rtol=1e-12)
    np.testing.assert_allclose(effective_rank(jnp.array([1.0, 0.0])), 1.0, rtol=1e-12)
    assert float(effective_rank(jnp.zeros(3))) == 0.0
    np.testing.assert_allclose(singular_values(jnp.array([-2.0, 0.5]), "modes"), [2.0, 0.5])
    batch = jnp.stack([W, 2 * W])  # batched
    assert collapse_summary(singular_values(batch))["n_collapsed"].shape == (2,)
    with pytest.raises(ValueError, match="unknown kind 'tensor'"):
        singular_values(W, "tensor")


def test_alignment_measures_and_theorem_matrices():
    k = jax.random.split(jax.random.PRNGKey(3), 3)
    U, _ = jnp.linalg.qr(jax.random.normal(k[0], (3, 3)))
    F = (U * jnp.array([3.0, 2.0, 1.0])) @ U.T
    Wp = (U * jnp.array([0.5, -0.2, 0.9])) @ U.T
    assert float(commutator_norm(F, Wp)) < 1e-12
    s, cos, rq = eigen_alignment(F, Wp)
    np.testing.assert_allclose(cos, 1.0, atol=1e-12)
    np.testing.assert_allclose(rq, [0.5, -0.2, 0.9], atol=1e-12)
    Wq = Wp + 0.3 * jax.random.normal(k[1], (3, 3))
    assert float(commutator_norm(F, Wq)) > 1e-2 and float(jnp.min(eigen_alignment(F, Wq)[1])) < 1
    # H by autodiff against the Kronecker formula of Theorem 2.
    X = jnp.diag(jnp.array([1.0, 0.5, 2.0, 1.5]))
    Xp = 0.3 * jnp.eye(4)
    W = jax.random.normal(k[2], (3, 4))
    eta = 0.02
    H = theorem2_H(LinearSiamese(X, Xp), Hyper.tian(eta, 1.0), State(W, Wq))
    I = np.eye(3)
    Wn = np.asarray(Wq)
    H_oracle = np.kron(Xp, Wn.T @ Wn + I) + np.kron(X, (Wn - I).T @ (Wn - I)) + eta * np.eye(12)
    np.testing.assert_allclose(H, H_oracle, atol=1e-12)
    # K of Theorem 3 makes C' = -CK - KC along the loss-derived flow (symmetric predictor).
    sigma2, alpha_p = 0.4, 1.5
    model = LinearSiamese.isotropic(4, sigma2, predictor="symmetric")
    P = 0.5 * (Wq + Wq.T)
    f = field(model, SIMSIAM, Hyper.tian(eta, alpha_p), State(W, P))
    comm = lambda W, P: W @ W.T @ P - P @ W @ W.T  # noqa: E731
    C, dC = jax.jvp(comm, (W, P), (f.enc, f.pred))
    K = theorem3_K(W @ W.T, P, sigma2, alpha_p, 1.0, eta)
    np.testing.assert_allclose(dC, -C @ K - K @ C, atol=1e-11)


def test_stability_agrees_with_the_fixed_point_kind_and_ignores_neutral_directions():
    """The two fixed-point labels of dynamics.analysis: on hyperbolic spectra ``stability`` is
    the sign pattern that ``fixed_point_kind`` names; a zero eigenvalue (a line of fixed
    points) makes the point non-hyperbolic, and ``stability`` then reads the other directions."""
    from dynamics.analysis import stability

    rng = np.random.default_rng(0)
    for _ in range(200):
        ev = rng.normal(size=3) + 1j * rng.normal(size=3) * (rng.random() < 0.5)
        kind = fixed_point_kind(ev)
        want = {"stable": "stable", "unstable": "unstable", "saddle": "saddle"}[kind.split()[0].split("-")[0]]
        assert stability(ev) == want, (ev, kind)
    assert fixed_point_kind([0.0, -1.0]) == "non-hyperbolic" and stability([0.0, -1.0]) == "stable"
    assert stability([0.0, -1.0, 2.0]) == "saddle" and stability([0.0, 1e-12]) == "marginal"
