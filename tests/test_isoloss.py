"""IsoLoss and the Euclidean loss with the predictor (W W^T)^alpha (Halvagal et al. 2023).

The model is only a loss; its eigenvalue ODEs and their solutions are its closed forms. Checks:
the autodiff field reproduces the eigenvalue ODE at random states (the derivation), the
integrated matrix flow follows the exact IsoLoss trajectory and, for the Euclidean loss, an
independent scipy solution of the 1-D ODE, and the expected loss is the mean of the sampled one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dynamics  # noqa: F401  (float64)
from dynamics.flow import vector_field
from dynamics.models.isoloss import IsoLossLinear
from dynamics.solve import solve_batch, solve_flow
from dynamics.types import Hyper, State, VARIANTS

SIMSIAM = VARIANTS["simsiam"]
SIGMA2, ALPHA = 0.4, 0.6  # a = 1.4, s* = a^(-1/alpha) = 0.571


def _W0(key=0, n2=3, n1=4, scale=0.5):
    return scale * jax.random.normal(jax.random.PRNGKey(key), (n2, n1))


def _eig(W):
    return np.sort(np.linalg.eigvalsh(np.asarray(W @ W.T)))


def _rate_by_hand(s, kind, a=1 + SIGMA2, alpha=ALPHA):
    # docs/theory.md section 5, written out independently of the model
    return 2 * s * (1 - a * s**alpha) if kind == "iso" else 2 * s ** (1 + alpha) * (1 - a * s**alpha)


@pytest.mark.parametrize("kind", ["iso", "euclidean"])
def test_field_gives_the_eigenvalue_ode(kind):
    """F' = W' W^T + W W'^T from the autodiff field is diagonal in F's eigenbasis with the
    ODE's rates on the diagonal (observed error ~3e-14; tolerance 1e-11)."""
    m = IsoLossLinear.isotropic(4, SIGMA2, ALPHA, kind)
    for key in range(3):
        W = _W0(key)
        f = vector_field(m, SIMSIAM, Hyper(), State(W, None))
        F, dF = W @ W.T, f.enc @ W.T + W @ f.enc.T
        s, U = np.linalg.eigh(np.asarray(F))
        M = U.T @ np.asarray(dF) @ U
        np.testing.assert_allclose(M - np.diag(np.diag(M)), 0.0, atol=1e-11)
        np.testing.assert_allclose(np.diag(M), _rate_by_hand(s, kind), rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(np.asarray(m.eigenvalue_rate(s)), _rate_by_hand(s, kind),
                                   rtol=1e-13)


def test_isoloss_flow_follows_the_exact_trajectory():
    """Tsit5 at rtol 1e-10 on the matrix flow vs the closed-form s(t) of every eigenvalue
    (observed relative error 2.5e-10; tolerance 1e-8). Small and large starts go to s* = a^(-1/alpha)."""
    m = IsoLossLinear.isotropic(4, SIGMA2, ALPHA, "iso")
    W0 = _W0(1, scale=0.4).at[0].multiply(3.0)  # one eigenvalue above s*, the others below
    ts = jnp.linspace(0.0, 6.0, 7)
    sol = solve_flow(m, SIMSIAM, Hyper(), State(W0, None), 6.0, ts=ts, solver="tsit5",
                     rtol=1e-10, atol=1e-12)
    assert int(sol.status) == 0
    s0 = _eig(W0)
    assert s0.max() > float(m.fixed_point()) > s0.min()
    for k, t in enumerate(np.asarray(ts)):
        want = np.sort(np.asarray(m.eigenvalue_trajectory(jnp.asarray(s0), t)))
        np.testing.assert_allclose(_eig(sol.ys.enc[k]), want, rtol=1e-8)
    np.testing.assert_allclose(float(m.fixed_point()), (1 + SIGMA2) ** (-1 / ALPHA), rtol=1e-15)


def test_euclidean_flow_against_scipy_and_the_implicit_solution():
    """The Euclidean loss learns more slowly from small s (rate ~ s^(1+alpha)); each eigenvalue
    of the matrix flow matches scipy's Radau on the 1-D ODE (both at rtol 1e-10; observed
    2.5e-11, tolerance 1e-9), and the exact time to reach s(t) from s0 equals t (observed
    8e-10, tolerance 1e-7)."""
    m = IsoLossLinear.isotropic(4, SIGMA2, ALPHA, "euclidean")
    W0 = _W0(2, scale=0.4)
    T = 8.0
    ts = np.linspace(0.0, T, 5)
    sol = solve_flow(m, SIMSIAM, Hyper(), State(W0, None), T, ts=jnp.asarray(ts), solver="tsit5",
                     rtol=1e-10, atol=1e-12)
    s0 = _eig(W0)
    for j, s0j in enumerate(s0):
        ref = solve_ivp(lambda t, s: _rate_by_hand(s, "euclidean"), (0, T), [s0j], method="Radau",
                        t_eval=ts, rtol=1e-10, atol=1e-14)
        got = np.array([_eig(sol.ys.enc[k])[j] for k in range(ts.size)])
        np.testing.assert_allclose(got, ref.y[0], rtol=1e-9)
        np.testing.assert_allclose(np.asarray(m.time_to_reach(s0j, got[1:])), ts[1:], rtol=1e-7)
    iso = IsoLossLinear.isotropic(4, SIGMA2, ALPHA, "iso")
    small = 1e-3  # the Euclidean loss takes much longer to leave a small eigenvalue
    assert float(m.time_to_reach(small, 0.3)) > 5 * float(iso.time_to_reach(small, 0.3))


def test_engine_integrates_the_matrix_model_as_diffrax_does():
    """The new model runs on the batched engine unchanged: W is 8 x 9 (d = 72, above the
    engine's lane-last limit, so the field is evaluated lane-first), explicit Dopri5 under the
    policy's size cap; it agrees with diffrax Tsit5 lane by lane (both at rtol 1e-10; observed
    6e-12 at d = 12, tolerance 1e-9) and the eigenvalues follow the exact trajectory."""
    m = IsoLossLinear.isotropic(9, SIGMA2, ALPHA, "iso")
    W0 = jnp.stack([_W0(k, 8, 9, scale=0.1 + 0.1 * k) for k in range(3)])
    y0 = State(W0, None)
    kw = dict(t1=2.0, rtol=1e-10, atol=1e-12)
    eng = solve_batch(m, SIMSIAM, Hyper(), y0, **kw)
    ref = solve_batch(m, SIMSIAM, Hyper(), y0, integrator="diffrax", solver="tsit5", **kw)
    assert np.all(eng.status == 0) and np.all(np.asarray(ref.status) == 0)
    np.testing.assert_allclose(eng.ys.enc[:, -1], np.asarray(ref.ys.enc)[:, -1], rtol=0,
                               atol=1e-9)
    for k in range(3):
        want = np.asarray(m.eigenvalue_trajectory(jnp.asarray(_eig(W0[k])), 2.0))
        np.testing.assert_allclose(_eig(eng.ys.enc[k, -1]), np.sort(want), rtol=1e-8)


@pytest.mark.parametrize("kind", ["iso", "euclidean"])
def test_expected_loss_is_the_mean_sampled_loss(kind):
    """Monte Carlo over 4 x 50000 samples: the mean of the sampled loss agrees with the closed
    form within 4 standard errors (estimated from the four blocks)."""
    m = IsoLossLinear.isotropic(3, SIGMA2, ALPHA, kind)
    W, T = _W0(5, 2, 3), _W0(6, 2, 3)
    vals = [float(m.loss(W, None, T, m.sample(jax.random.PRNGKey(10 + i), 50_000)))
            for i in range(4)]
    se = np.std(vals, ddof=1) / 2.0
    assert abs(np.mean(vals) - float(m.expected_loss(W, None, T))) < 4 * se + 1e-12


def test_bad_parameters_are_rejected_in_one_line():
    for kw, needle in ((dict(kind="cosine"), "'cosine'"), (dict(alpha=-1.0), "-1.0")):
        with pytest.raises(ValueError) as e:
            IsoLossLinear(jnp.eye(2), jnp.eye(2), **kw)
        assert needle in str(e.value) and "\n" not in str(e.value)


# --- the isoloss sweep family: a model added to the sweep without touching its core ----------


def test_isoloss_sweep_from_the_cli_ends_at_the_closed_form(tmp_path, capsys):
    """``python -m dynamics.sweep --model isoloss`` (in-process): with stop-gradient every
    eigenvalue of W W^T ends at the model's s* = ((1 - eta)/a)^(1/alpha) (docs/theory.md
    section 5). IsoLoss converges at rate 2 alpha (1 - eta) >= 1.4 here, so by t1 = 40 the
    remaining distance is exp(-56) of the start: what is left is the solver's error (rtol 1e-8;
    2e-8 observed), tolerance 1e-6. The expected s* is written out here, not read from the
    model."""
    from dynamics.sweep import main

    out = tmp_path / "o"
    code = main(["--model", "isoloss", "--n-init", "2", "--eta", "0", "0.1", "--sigma2", "0.5",
                 "--alpha", str(ALPHA), "--t1", "40", "--out", str(out), "--quiet",
                 "--no-compile-cache"])
    assert code == 0, capsys.readouterr().err
    import xarray as xr

    ds = xr.load_dataset(out / "sweep_isoloss.nc")
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "phase_isoloss_simsiam.png", "sweep_isoloss.nc"]
    assert (ds["status"].values == "ok").all()
    a = 1.5
    for eta in (0.0, 0.1):
        s = ds["s"].sel({"eta": eta}).values
        expected = ((1 - eta) / a) ** (1 / ALPHA)
        np.testing.assert_allclose(ds["s_star"].sel({"eta": eta}).values, expected, rtol=1e-12)
        np.testing.assert_allclose(s, expected, atol=1e-6)
    assert float(ds["collapsed_fraction"].max()) == 0.0


def test_euclidean_sweep_basin_and_fixed_point_match_the_closed_form():
    """The Euclidean loss with weight decay, ``s' = 2 s (s^alpha (1 - a s^alpha) - eta)``
    (alpha = 1): an eigenvalue that starts above the unstable root q_- = (1 - sqrt(1 - 4 a eta))
    / (2a) ends at s* = q_+, one below it collapses to 0. Each lane's starting eigenvalues come
    from the family's own initial states; starts within 30 % of q_- (slow, near the boundary)
    are not judged. Tolerance 1e-5 on s*: the approach is exponential at rate
    2 q_+ (2 a q_+ - 1) ~ 0.9, so by t1 = 150 only the solver's error is left."""
    from dynamics.sweep import SweepConfig, family, run
    from dynamics.sweep.isoloss import IsoLossOptions

    eta, a = 0.05, 1.5
    config = SweepConfig(model="isoloss", eta=(eta,), sigma2=(a - 1,), t1=150.0,
                         options=IsoLossOptions(kind="euclidean", alpha=1.0, n_init=4,
                                                init_scale=0.6))
    ds = run(config)
    disc = np.sqrt(1 - 4 * a * eta)
    q_minus, q_plus = (1 - disc) / (2 * a), (1 + disc) / (2 * a)
    W0 = np.asarray(family("isoloss").prepare(config)["W"])
    s0 = np.sort(np.linalg.eigvalsh(np.einsum("nij,nkj->nik", W0, W0)), axis=-1)[:, ::-1]
    s1 = ds["s"].squeeze(["variant", "method", "eps", "eta", "sigma2", "beta"]).values
    judged = np.abs(s0 - q_minus) > 0.3 * q_minus
    above = judged & (s0 > q_minus)
    below = judged & (s0 < q_minus)
    assert above.sum() >= 4 and below.sum() >= 1, (s0, q_minus)
    np.testing.assert_allclose(s1[above], q_plus, atol=1e-5)
    assert np.all(s1[below] < 1e-6)


def test_sweep_core_and_cli_know_no_family():
    """The proof that a family costs only its own module: the loop, the config and the CLI
    name no model, so the isoloss family was added without touching them."""
    from pathlib import Path

    import dynamics.sweep as sweep

    root = Path(sweep.__file__).parent
    for name in ("core.py", "__main__.py", "family.py"):
        text = (root / name).read_text().lower()
        for word in ("isoloss", "permode", "linearsiamese", "scalarsiamese"):
            assert word not in text, (name, word)


@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_euclidean_fixed_point_on_both_sides_of_the_fold(alpha):
    """The Euclidean loss's stable eigenvalue with decay eta solves q (1 - a q) = eta with
    q = s^alpha (the rate 2 s (q (1 - a q) - eta) vanishes); q (1 - a q) peaks at 1/(4a), so
    below the fold eta_c = 1/(4a) the stable root is the larger one and past it there is none
    (NaN). The root is found here by bisection of the hand-written rate, not from the model's
    formula; tolerance 1e-12 (bisection to 1e-15, the closed form to rounding)."""
    from scipy.optimize import brentq

    a = 1 + SIGMA2
    m = IsoLossLinear.isotropic(2, sigma2=SIGMA2, alpha=alpha, kind="euclidean")
    eta_c = 1 / (4 * a)
    for eta in (0.5 * eta_c, 0.9 * eta_c):
        # the larger root lies between the peak q = 1/(2a) and q = 1/a, where g(q) <= 0 < eta
        g = lambda q, eta=eta: q * (1 - a * q) - eta  # noqa: E731
        q = brentq(g, 1 / (2 * a), 1 / a, xtol=1e-15)
        s_star = q ** (1 / alpha)
        np.testing.assert_allclose(float(m.fixed_point(eta)), s_star, rtol=1e-12)
        rate = lambda s, eta=eta: _rate_by_hand(s, "euclidean", a, alpha) - 2 * s * eta  # noqa: E731
        assert rate(0.99 * s_star) > 0 > rate(1.01 * s_star)  # stable from both sides
    for eta in (1.1 * eta_c, 2.0 * eta_c):
        q = np.linspace(0, 1 / a, 10001)
        assert (q * (1 - a * q) < eta).all()  # no root: every eigenvalue decays
        assert np.isnan(float(m.fixed_point(eta)))
