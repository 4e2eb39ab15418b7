"""Linear SimSiam/BYOL (docs/theory.md section 3): the loss-derived flow against the paper's closed forms.

Every oracle here is written out by hand from docs/theory.md; the library only has the loss. The
matrices are small (n1 = 4, n2 = 3) and non-isotropic, and one jitted solver program is reused
per (variant, predictor) pair to keep compile time down.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics  # noqa: F401  (float64)
from dynamics.flow import Hyper, State, Variant, gd_step
from dynamics.models.linear import LinearSiamese, random_spd, random_state
from dynamics.solve.discrete import discrete_batch
from tests.linear_common import field, solve_tight

N1, N2 = 4, 3
SG_BYOL, SG_SIMSIAM = Variant("byol", True), Variant("simsiam", True)
NOSG_SIMSIAM = Variant("simsiam", False)

# One compiled program per (variant, model statics, shapes); t1 and ts are traced.
_solve = solve_tight


@pytest.fixture(scope="module")
def data():
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    X = random_spd(k[0], N1, 0.6, 1.8)
    Xp = random_spd(k[1], N1, 0.1, 0.5)
    return X, Xp


def _rand(key, shape, scale=0.6):
    return scale * jax.random.normal(key, shape)


def tian_field(X, Xp, W, Wp, Wa, eta, alpha_p, beta):
    """docs/theory.md section 3, written out by hand."""
    R = -Wp @ W @ (X + Xp) + Wa @ X
    return (Wp.T @ R - eta * W, alpha_p * R @ W.T - eta * Wp, beta * (W - Wa))


def test_field_matches_tian_with_stop_grad(data):
    X, Xp = data
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    W, Wp, Wa = _rand(k[0], (N2, N1)), _rand(k[1], (N2, N2)), _rand(k[2], (N2, N1))
    eta, alpha_p, beta = 0.07, 2.5, 0.3
    f = field(LinearSiamese(X, Xp), SG_BYOL, Hyper.tian(eta, alpha_p, beta), State(W, Wp, Wa))
    for got, want in zip(f, tian_field(X, Xp, W, Wp, Wa, eta, alpha_p, beta)):
        # Same polynomial evaluated two ways: agreement to rounding (entries are O(1)).
        np.testing.assert_allclose(got, want, atol=1e-13)


@pytest.mark.parametrize("variant", [SG_BYOL, SG_SIMSIAM], ids=["byol", "simsiam"])
def test_theorem1_invariant(data, variant):
    """``W W^T - Wp^T Wp / alpha_p = exp(-2 eta t) C`` for any target dynamics."""
    X, Xp = data
    eta, alpha_p = 0.05, 2.0
    hyper = Hyper.tian(eta, alpha_p, beta=0.5)
    k = jax.random.split(jax.random.PRNGKey(1), 3)
    W, Wp = _rand(k[0], (N2, N1)), _rand(k[1], (N2, N2))
    Wa = _rand(k[2], (N2, N1)) if variant.has_target else None
    ts = jnp.linspace(0.0, 8.0, 9)
    sol = _solve(LinearSiamese(X, Xp), variant, hyper, State(W, Wp, Wa), ts[-1], ts)
    assert int(sol.status) == 0
    Ws, Wps = sol.ys.enc, sol.ys.pred
    inv = Ws @ jnp.swapaxes(Ws, 1, 2) - jnp.swapaxes(Wps, 1, 2) @ Wps / alpha_p
    want = jnp.exp(-2 * eta * ts)[:, None, None] * inv[0]
    # The invariant is O(1); the solver runs at rtol 1e-11, so 1e-7 leaves four orders of
    # margin while a wrong alpha_p (the appendix's version) or eta convention is off by O(1e-1).
    np.testing.assert_allclose(inv, want, atol=1e-7)
    # The invariant is not trivially conserved: W itself moved by O(1).
    assert float(jnp.abs(Ws[-1] - Ws[0]).max()) > 0.05


def _H(X, Xp, Wp, eta):
    """Theorem 2's H, written out by hand (column-major vec)."""
    X, Xp, Wp = np.asarray(X), np.asarray(Xp), np.asarray(Wp)
    n2 = Wp.shape[0]
    I = np.eye(n2)
    return (
        np.kron(Xp, Wp.T @ Wp + I)
        + np.kron(X, (Wp - I).T @ (Wp - I))
        + eta * np.eye(X.shape[0] * n2)
    )


def _vec(W):
    return W.T.reshape(-1)


def test_theorem2_field_is_minus_H_vecW(data):
    X, Xp = data
    k = jax.random.split(jax.random.PRNGKey(2), 2)
    W, Wp = _rand(k[0], (N2, N1)), _rand(k[1], (N2, N2))
    eta = 0.03
    f = field(LinearSiamese(X, Xp), NOSG_SIMSIAM, Hyper.tian(eta, 1.5), State(W, Wp))
    np.testing.assert_allclose(_vec(f.enc), -_H(X, Xp, Wp, eta) @ _vec(W), atol=1e-13)


def test_theorem2_norm_decays_at_least_exponentially(data):
    """``||W(t)|| <= ||W(0)|| exp(-int lambda_min(H))`` while H stays positive definite."""
    X, Xp = data
    eta, alpha_p = 0.02, 1.0
    k = jax.random.split(jax.random.PRNGKey(4), 2)
    W, Wp = _rand(k[0], (N2, N1), 1.0), _rand(k[1], (N2, N2))
    ts = jnp.linspace(0.0, 6.0, 121)
    sol = _solve(LinearSiamese(X, Xp), NOSG_SIMSIAM, Hyper.tian(eta, alpha_p), State(W, Wp), ts[-1], ts)
    assert int(sol.status) == 0
    lam = np.array([np.linalg.eigvalsh(_H(X, Xp, p, eta))[0] for p in np.asarray(sol.ys.pred)])
    assert lam.min() > 0.05  # H stays positive definite along this trajectory
    norms = np.linalg.norm(np.asarray(sol.ys.enc), axis=(1, 2))
    # Integral of lambda_min by the trapezoid rule on a fine grid; its error is far below the
    # 1e-3 relative slack (lambda_min varies smoothly, dt = 0.05).
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (lam[1:] + lam[:-1]) * np.diff(ts))])
    bound = norms[0] * np.exp(-integral)
    assert np.all(norms <= bound * (1 + 1e-3))
    assert norms[-1] < 0.2 * norms[0]  # and it really collapses


def _K(F, Wp, a, alpha_p, tau, eta):
    """Theorem 3's K, written out by hand."""
    F, Wp = np.asarray(F), np.asarray(Wp)
    return a * (alpha_p / 2 * F + Wp @ Wp - tau / a * Wp) + 1.5 * eta * np.eye(F.shape[0])


def test_theorem3_commutator_identity_and_decay():
    """Isotropic data, symmetric predictor, SimSiam (tau = 1): ``C' = -C K - K C``."""
    sigma2, eta, alpha_p = 0.3, 0.05, 2.0
    a = 1 + sigma2
    model = LinearSiamese.isotropic(N1, sigma2, predictor="symmetric")
    hyper = Hyper.tian(eta, alpha_p)
    k = jax.random.split(jax.random.PRNGKey(5), 2)
    W = _rand(k[0], (N2, N1), 1.0)
    P = _rand(k[1], (N2, N2), 0.8)
    P = 0.5 * (P + P.T) + 0.6 * jnp.eye(N2)

    def comm(W, P):
        F = W @ W.T
        return F @ P - P @ F

    # The identity at the initial state, through a JVP along the loss-derived field.
    f = field(model, SG_SIMSIAM, hyper, State(W, P))
    C, dC = jax.jvp(comm, (W, P), (f.enc, f.pred))
    K = _K(W @ W.T, P, a, alpha_p, 1.0, eta)
    np.testing.assert_allclose(dC, -C @ K - K @ C, atol=1e-12)

    ts = jnp.linspace(0.0, 5.0, 101)
    sol = _solve(model, SG_SIMSIAM, hyper, State(W, P), ts[-1], ts)
    assert int(sol.status) == 0
    Ws, Ps = np.asarray(sol.ys.enc), np.asarray(sol.ys.pred)
    Cs = np.array([comm(w, p) for w, p in zip(Ws, Ps)])
    lam = np.array([np.linalg.eigvalsh(_K(w @ w.T, p, a, alpha_p, 1.0, eta))[0] for w, p in zip(Ws, Ps)])
    assert lam.min() > 0  # K positive definite along the run
    norms = np.linalg.norm(Cs, axis=(1, 2))
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (lam[1:] + lam[:-1]) * np.diff(ts))])
    # d||C||/dt <= -2 lambda_min(K) ||C|| for antisymmetric C; trapezoid slack 1e-3 as above.
    assert np.all(norms <= norms[0] * np.exp(-2 * integral) * (1 + 1e-3))
    assert norms[-1] < 1e-2 * norms[0]


def test_optimal_predictor_conserves_WWt(data):
    X, Xp = data
    model = LinearSiamese(X, Xp, predictor="optimal")
    k = jax.random.split(jax.random.PRNGKey(6), 2)
    W = _rand(k[0], (N2 - 1, N1), 1.0)  # n2 < n1: W may rotate
    y0 = State(W, jnp.eye(N2 - 1))
    ts = jnp.linspace(0.0, 4.0, 5)
    sol = _solve(model, SG_SIMSIAM, Hyper.tian(0.0, 1.0), y0, ts[-1], ts)
    assert int(sol.status) == 0
    F = sol.ys.enc @ jnp.swapaxes(sol.ys.enc, 1, 2)
    # Conserved to solver accuracy (rtol 1e-11 on O(1) entries).
    np.testing.assert_allclose(F, jnp.broadcast_to(F[0], F.shape), atol=1e-8)
    assert float(jnp.abs(sol.ys.enc[-1] - W).max()) > 1e-3  # yet W rotates
    # With weight decay it is no longer conserved, which the check above would catch.
    f = field(model, SG_SIMSIAM, Hyper.tian(0.1, 1.0), y0)
    assert float(jnp.abs(f.enc @ W.T + W @ f.enc.T).max()) > 1e-2
    # The least-squares predictor zeroes the predictor gradient of the loss.
    Wp = model.effective_predictor(SG_SIMSIAM, y0)
    g = jax.grad(LinearSiamese(X, Xp).expected_loss, argnums=1)(W, Wp, W)
    np.testing.assert_allclose(g, 0.0, atol=1e-12)


def test_no_predictor_and_fixed_predictor(data):
    X, Xp = data
    eta = 0.04
    k = jax.random.split(jax.random.PRNGKey(7), 2)
    W, Wp = _rand(k[0], (N2, N1)), _rand(k[1], (N2, N2))
    h = Hyper.tian(eta, 1.0)
    f = field(LinearSiamese(X, Xp, predictor="none"), SG_SIMSIAM, h, State(W, Wp))
    # No predictor, stop-grad: W' = -W X' - eta W (docs/theory.md section 2, matrix form).
    np.testing.assert_allclose(f.enc, -W @ Xp - eta * W, atol=1e-13)
    np.testing.assert_allclose(f.pred, 0.0)
    f = field(LinearSiamese(X, Xp, predictor="fixed"), SG_SIMSIAM, h, State(W, Wp))
    np.testing.assert_allclose(f.enc, tian_field(X, Xp, W, Wp, W, eta, 1.0, 0.0)[0], atol=1e-13)
    np.testing.assert_allclose(f.pred, 0.0)


@pytest.mark.parametrize("mode", ["directpred", "directpred_code"])
def test_directpred(data, mode):
    X, Xp = data
    eps_dp = 0.1
    model = LinearSiamese(X, Xp, predictor=mode, eps_dp=eps_dp)
    k = jax.random.split(jax.random.PRNGKey(8), 3)
    W = _rand(k[0], (N2, N1), 1.0)
    Fhat = W @ (X + Xp) @ W.T
    s, U = np.linalg.eigh(np.asarray(Fhat))
    if mode == "directpred":
        p = np.sqrt(s) + eps_dp * s.max()
    else:
        p = np.sqrt(s / s.max()) + eps_dp
    Wp = model.predictor_matrix(W, Fhat, W)
    np.testing.assert_allclose(Wp, (U * p) @ U.T, atol=1e-12)
    # Flow: eps dFhat/dt = W (X + X') W^T - Fhat; the encoder sees the built predictor.
    Fhat0 = 0.5 * Fhat + 0.1 * jnp.eye(N2)
    h = Hyper.tian(0.01, 4.0)
    f = field(model, SG_SIMSIAM, h, State(W, Fhat0))
    np.testing.assert_allclose(f.pred, 4.0 * (Fhat - Fhat0), atol=1e-12)
    Wp0 = model.predictor_matrix(W, Fhat0, W)
    np.testing.assert_allclose(f.enc, tian_field(X, Xp, W, Wp0, W, 0.01, 1.0, 0.0)[0], atol=1e-12)
    # Discrete step on a batch: the EMA Fhat <- rho Fhat + (1 - rho) E_batch[f f^T], rho = 1 - lr/eps.
    batch = model.sample(k[1], 64)
    lr = 0.05
    y1 = gd_step(model, SG_SIMSIAM, h, State(W, Fhat0), lr, batch)
    feats = np.concatenate([batch[0], batch[1]]) @ np.asarray(W).T
    rho = 1 - lr / h.eps
    np.testing.assert_allclose(y1.pred, rho * Fhat0 + (1 - rho) * feats.T @ feats / 128, atol=1e-12)


def test_sample_moments(data):
    """The sampler's second moments are X + X' and X (checked to ~4 standard errors)."""
    X, Xp = data
    x1, x2 = LinearSiamese(X, Xp).sample(jax.random.PRNGKey(9), 200_000)
    B = x1.shape[0]
    # Var(x_i x_j) = S_ii S_jj + S_ij^2 <= 2 max(S_ii)^2 with S = X + X' (diagonal <= 2.3), so
    # each sample entry has std <= 3.3; four standard errors of the mean:
    tol = 4 * 3.3 / np.sqrt(B)
    np.testing.assert_allclose(x1.T @ x1 / B, X + Xp, atol=tol)
    np.testing.assert_allclose(x2.T @ x1 / B, X, atol=tol)


def test_sgd_approaches_expected_flow(data):
    """SGD's deviation from GD on the expected loss shrinks like 1/sqrt(B)."""
    X, Xp = data
    model = LinearSiamese(X, Xp)
    hyper = Hyper.tian(0.05, 1.0)
    y0 = random_state(jax.random.PRNGKey(10), model, SG_SIMSIAM, N2, scale=1.0)
    n_seeds, lr, n_steps = 16, 0.02, 100
    lanes = jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, (n_seeds,) + x.shape), y0)
    mb = model  # 2-d X, X' are shared by the lanes (LinearSiamese.lane_broadcast)
    keys = jax.random.split(jax.random.PRNGKey(11), n_seeds)
    gd = discrete_batch(mb, SG_SIMSIAM, hyper, lanes, lr, n_steps=n_steps)
    ref = gd.ys.enc[0, -1]
    errs = []
    for B in (16, 256):
        sgd = discrete_batch(mb, SG_SIMSIAM, hyper, lanes, lr, keys, n_steps=n_steps, batch_size=B)
        errs.append(float(jnp.sqrt(jnp.mean((sgd.ys.enc[:, -1] - ref) ** 2))))
    # 16x larger batch -> sqrt(16) = 4x smaller deviation; with 16 seeds the RMS estimate has
    # ~18% relative error, so require a factor of at least 2.5.
    assert errs[0] / errs[1] > 2.5, errs
    assert errs[1] < 0.05


def test_bad_input_messages(data):
    X, Xp = data
    with pytest.raises(ValueError, match="unknown predictor 'optimum'"):
        LinearSiamese(X, Xp, predictor="optimum")
    with pytest.raises(ValueError, match=r"X must be a square matrix, got shape \(4, 3\)"):
        LinearSiamese(X[:, :3], Xp)
    with pytest.raises(ValueError, match="differ in size"):
        LinearSiamese(X, Xp[:3, :3])
    with pytest.raises(ValueError, match="eps_dp must be >= 0, got -0.1"):
        LinearSiamese(X, Xp, predictor="directpred", eps_dp=-0.1)
    with pytest.raises(ValueError, match="sigma2 must be >= 0, got -1"):
        LinearSiamese.isotropic(3, -1)


def test_directpred_flow_settles_where_the_mode_equations_say():
    """DirectPred (paper, eps_dp = 0) with X = I, X' = sigma2 I: at rest Fhat = F = a W W^T, so
    each mode has p = sqrt(a s) and s' = 2 p s (1 - a p) - 2 eta s. Its non-trivial rest point
    solves p (1 - a p) = eta, the same p_+ as the trained predictor, with s = p_+^2 / a; from a
    start well above the collapse threshold every mode goes there."""
    sigma2, eta = 0.5, 0.05
    a = 1 + sigma2
    p_plus = (1 + np.sqrt(1 - 4 * a * eta)) / (2 * a)
    model = LinearSiamese.isotropic(N1, sigma2, predictor="directpred", eps_dp=0.0)
    y0 = random_state(jax.random.PRNGKey(12), model, SG_SIMSIAM, N2, scale=1.5)
    assert float(jnp.linalg.svd(y0.enc, compute_uv=False).min()) > 0.2  # far from p_- = 0.054
    ts = jnp.linspace(0.0, 300.0, 9)
    sol = _solve(model, SG_SIMSIAM, Hyper.tian(eta, 2.0), y0, ts[-1], ts)
    assert int(sol.status) == 0
    W, Fhat = sol.ys.enc[-1], sol.ys.pred[-1]
    # Decay rates near the rest point are >= 2 eta = 0.1, so after t = 300 the state sits at it
    # to ~1e-12; 1e-8 is comfortable and far below the gap to any other rest point.
    np.testing.assert_allclose(np.linalg.svd(W, compute_uv=False) ** 2, p_plus**2 / a, atol=1e-8)
    np.testing.assert_allclose(Fhat, a * W @ W.T, atol=1e-8)
    np.testing.assert_allclose(np.linalg.eigvalsh(model.predictor_matrix(W, Fhat, W)), p_plus, atol=1e-8)
