"""The DINO toy against its closed forms (docs/theory.md, "DINO"): the field against the
hand-derived gradient and centre drift, the spectrum at the uniform state, the between-sample
growth rate lambda_d in a simulation, the Hopf crossing of the common mode, the two collapses
and the band between them in a sweep, and bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.models import DinoToy
from dynamics.models.dino import DINO, DINO_SG
from dynamics.solve import solve_batch

K, N, ETA = 3, 3, 0.5
MODEL = DinoToy.whitened(N, g=2.0, tau_s=0.1, tau_t=0.05, eta_c=20.0)


def state(variant, W, T=None, c=None):
    return d.SlotState(W, None, (W if T is None else T) if variant.has_target else None,
                       {"center": jnp.zeros(K) if c is None else c})


def same_multiset(got, want, tol):
    """Every eigenvalue of ``got`` matched to a distinct one of ``want`` within ``tol``."""
    want = list(want)
    for z in got:
        i = int(np.argmin([abs(z - w) for w in want]))
        assert abs(z - want[i]) <= tol, (z, want[i])
        want.pop(i)


@pytest.mark.parametrize("variant", [DINO, DINO_SG])
def test_field_is_the_hand_derived_gradient_and_centre_drift(variant):
    # L = mean_i H(q_i, p_i): dL/dW = (P - Q)^T x / (N tau_s), teacher and centre held fixed;
    # the centre drifts to the teacher's mean output at rate eta_c; an EMA teacher to W.
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    W, T = jax.random.normal(k1, (K, N)), jax.random.normal(k2, (K, N))
    c = jax.random.normal(k3, (K,))
    x = MODEL.x
    Tt = T if variant.has_target else W
    P = jax.nn.softmax(x @ W.T / 0.1, axis=-1)
    Q = jax.nn.softmax((x @ Tt.T - c) / 0.05, axis=-1)
    h = d.Hyper(eta_theta=ETA, beta=3.0)
    f = d.vector_field(MODEL, variant, h, state(variant, W, T, c))
    # two roundings of one sum of O(10) terms
    np.testing.assert_allclose(f.enc, -(P - Q).T @ x / (N * 0.1) - ETA * W, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f.aux["center"], 20.0 * (jnp.mean(x @ Tt.T, axis=0) - c),
                               rtol=1e-12, atol=1e-12)
    if variant.has_target:
        np.testing.assert_allclose(f.tgt, 3.0 * (W - T), rtol=1e-14)


@pytest.mark.parametrize("variant, beta", [(DINO_SG, None), (DINO, 7.0)])
def test_spectrum_at_the_uniform_state(variant, beta):
    h = d.Hyper(eta_theta=ETA, beta=beta or 1.0)
    J = d.jacobian_matrix(MODEL, variant, h, state(variant, jnp.zeros((K, N))))
    got = np.linalg.eigvals(np.asarray(J))
    want = MODEL.uniform_spectrum(K, ETA, beta)
    assert got.shape == want.shape
    # the autodiff Jacobian is exact; eigvals of a 21 x 21 matrix with entries up to ~100
    # round at ~1e-13 relative, with double eigenvalues ~1e-7 (sqrt of the rounding)
    same_multiset(got, want, 1e-6 * np.max(np.abs(want)))
    lam = MODEL.lambda_d(K)
    assert lam == pytest.approx((1 / 0.05 - 1 / 0.1) / (K * 0.1))
    if beta is None:  # teacher = student: the between modes are exactly lambda_d - eta
        assert np.sum(np.isclose(got.real, lam - ETA, rtol=1e-9)) == (K - 1) * (N - 1)


def test_between_sample_modes_grow_at_lambda_d_in_a_simulation():
    # A between-sample logit pattern Z0 = e u b^T (u, b orthogonal to the ones vectors), far
    # in the linear regime (e = 1e-7): |Z(t)| = |Z0| exp((lambda_d - eta) t) up to O(e^2).
    u = jnp.array([1.0, -1.0, 0.0]) / jnp.sqrt(2)
    b = jnp.array([1.0, 1.0, -2.0]) / jnp.sqrt(6)
    Z0 = 1e-7 * jnp.outer(u, b)
    W0 = jnp.linalg.solve(MODEL.x, Z0.T).T  # Z = W x^T
    h = d.Hyper(eta_theta=ETA)
    y0 = jax.tree_util.tree_map(lambda a: a[None], state(DINO_SG, W0))
    t1 = 0.2
    sol = solve_batch(MODEL, DINO_SG, h, y0, t1=t1, rtol=1e-12, atol=1e-20)
    Z1 = sol.ys.enc[0, -1] @ MODEL.x.T
    rate = float(jnp.log(jnp.linalg.norm(Z1) / jnp.linalg.norm(Z0)) / t1)
    # the growth stays below 1e-5 in size: nonlinear terms ~1e-5 relative; solver 1e-12
    assert rate == pytest.approx(MODEL.lambda_d(K) - ETA, rel=1e-5)


@pytest.mark.parametrize("variant, beta", [(DINO_SG, None), (DINO, 7.0)])
def test_centering_stabilises_the_common_mode_through_a_hopf_bifurcation(variant, beta):
    # closed form: eta_c* = g lambda_d - eta (teacher = student; g = 2 here) or the
    # Routh-Hurwitz root for an EMA teacher; checked on the autodiff Jacobian's complex pair
    ec = MODEL.hopf_eta_c(K, ETA, beta)
    if beta is None:
        assert ec == pytest.approx(2.0 * MODEL.lambda_d(K) - ETA, rel=1e-12)
    h = d.Hyper(eta_theta=ETA, beta=beta or 1.0)

    def pair(rate):
        m = DinoToy(MODEL.x, 0.1, 0.05, rate)
        ev = np.linalg.eigvals(np.asarray(
            d.jacobian_matrix(m, variant, h, state(variant, jnp.zeros((K, N))))))
        cx = ev[np.abs(ev.imag) > 1e-6]
        assert len(cx) == 2 * (K - 1)  # the common mode's pair, once per output direction
        return cx[np.argmax(cx.real)]

    below, at, above = pair(0.98 * ec), pair(ec), pair(1.02 * ec)
    assert below.real > 0 > above.real  # the pair crosses the imaginary axis ...
    assert abs(at.real) < 1e-8 * abs(at.imag)  # ... at eta_c*, with a non-zero frequency
    if beta is None:  # frequency^2 = det = eta_c (g a / tau_s + eta), a = 1/(K tau_s)
        assert abs(at.imag) == pytest.approx(np.sqrt(ec * (2.0 / (K * 0.01) + ETA)), rel=1e-9)


@pytest.mark.parametrize("kw, msg", [
    (dict(tau_s=-1.0), "tau_s must be a finite number > 0, got -1.0"),
    (dict(tau_t=0.0), "tau_t must be a finite number > 0, got 0.0"),
    (dict(eta_c=-2.0), "eta_c must be a finite number >= 0, got -2.0"),
    (dict(sigma2=float("nan")), "sigma2 must be a finite number >= 0, got nan"),
])
def test_bad_values_are_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg.replace(".", r"\.")):
        DinoToy(MODEL.x, **kw)


def test_bad_sweep_options_are_one_line_errors():
    from dynamics.sweep import SweepConfig
    from dynamics.sweep.dino import DinoOptions

    with pytest.raises(ValueError, match=r"tau-t must be > 0, got -0\.1"):
        SweepConfig(model="dino", options=DinoOptions(tau_t=(-0.1,)))
    with pytest.raises(ValueError, match=r"eta-c must be >= 0, got -1"):
        SweepConfig(model="dino", options=DinoOptions(eta_c=(-1.0,)))
    with pytest.raises(ValueError, match="--eta-c gives a value twice: 1 1"):
        SweepConfig(model="dino", options=DinoOptions(eta_c=(1.0, 1.0)))
    with pytest.raises(ValueError, match="--model dino does not use eps"):
        SweepConfig(model="dino", eps=(0.5,))
