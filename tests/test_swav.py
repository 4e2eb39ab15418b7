"""The SwAV toy against its closed forms (docs/theory.md, "SwAV"): the Sinkhorn codes against
SwAV's own iteration written independently, the field against the hand-derived gradient, the
spectrum at the uniform state with and without equipartition, the collapse without the
constraint and the balance with it in a sweep, and bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.models import SwAVToy
from dynamics.models.swav import SWAV, sinkhorn

K = N = 3


def swav_sinkhorn(scores, eps, n_iter):
    """SwAV's distributed_sinkhorn (Caron et al. 2020, one process) in numpy, with its global
    scalings; n_iter = 0 is read as the per-sample softmax (the unconstrained code)."""
    Q = np.exp(np.asarray(scores) / eps).T  # K x B
    Q /= Q.sum()
    Kp, B = Q.shape
    if n_iter == 0:
        return (Q / Q.sum(0, keepdims=True)).T
    for _ in range(n_iter):
        Q /= Q.sum(1, keepdims=True)
        Q /= Kp
        Q /= Q.sum(0, keepdims=True)
        Q /= B
    return (Q * B).T


@pytest.mark.parametrize("n_iter", [0, 1, 3, 200])
def test_codes_are_swavs_sinkhorn_and_equipartition_when_iterated(n_iter):
    S = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (6, K)))
    got = np.asarray(sinkhorn(jnp.asarray(S), 0.5, n_iter))
    np.testing.assert_allclose(got, swav_sinkhorn(S, 0.5, n_iter), rtol=1e-12)  # same sums
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-14)
    if n_iter == 200:  # Sinkhorn-Knopp converges (linearly: 4e-8 after 50 rounds here):
        # every prototype gets B / K of the mass
        np.testing.assert_allclose(got.sum(0), 6 / K, rtol=1e-10)


@pytest.mark.parametrize("n_iter", [0, 3])
def test_field_is_the_hand_derived_gradient_with_codes_held_fixed(n_iter):
    m = SwAVToy.whitened(N, g=2.0, tau=0.1, eps_ent=0.05, n_iter=n_iter)
    W = jax.random.normal(jax.random.PRNGKey(1), (K, N))
    x = np.asarray(m.x)
    S = x @ np.asarray(W).T
    P = np.asarray(jax.nn.softmax(S / 0.1, axis=-1))
    Q = swav_sinkhorn(S, 0.05, n_iter)
    want = -(P - Q).T @ x / (N * 0.1) - 0.3 * np.asarray(W)
    got = d.vector_field(m, SWAV, d.Hyper(eta_theta=0.3), d.State(W, None)).enc
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)  # roundings of O(10) terms


@pytest.mark.parametrize("n_iter", [0, 1, 3])
def test_spectrum_at_the_uniform_state(n_iter):
    m = SwAVToy.whitened(N, g=4.0, tau=0.1, eps_ent=0.05, n_iter=n_iter)
    J = d.jacobian_matrix(m, SWAV, d.Hyper(eta_theta=1.0), d.State(jnp.zeros((K, N)), None))
    got = np.sort(np.linalg.eigvals(np.asarray(J)).real)
    # the field is a gradient of a loss of symmetric Hessian at W = 0 up to the codes' part,
    # which keeps the eigenvalues real; rounding of entries up to ~130: 1e-9 relative
    np.testing.assert_allclose(got, np.sort(m.uniform_spectrum(K, 1.0)), rtol=1e-9, atol=1e-9)
    lam = (1 / 0.05 - 1 / 0.1) / (K * 0.1)
    common = 4.0 * lam - 1.0 if n_iter == 0 else -4.0 / (K * 0.01) - 1.0
    assert np.sum(np.isclose(got, common, rtol=1e-9)) == K - 1


@pytest.mark.parametrize("kw, msg", [
    (dict(tau=-1.0), r"tau must be a finite number > 0, got -1\.0"),
    (dict(eps_ent=0.0), r"eps_ent must be a finite number > 0, got 0\.0"),
    (dict(n_iter=-1), "n_iter must be an integer >= 0, got -1"),
    (dict(n_iter=1.5), r"n_iter must be an integer >= 0, got 1\.5"),
])
def test_bad_values_are_one_line_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SwAVToy.whitened(N, **kw)


def test_bad_sweep_options_are_one_line_errors():
    from dynamics.sweep import SweepConfig
    from dynamics.sweep.swav import SwAVOptions

    with pytest.raises(ValueError, match=r"n-iter must be an integer, got 0\.5"):
        SweepConfig(model="swav", options=SwAVOptions(n_iter=(0.5,)))
    with pytest.raises(ValueError, match=r"eps-ent must be > 0, got -0\.1"):
        SweepConfig(model="swav", options=SwAVOptions(eps_ent=(-0.1,)))
    with pytest.raises(ValueError, match="--model swav does not use beta"):
        SweepConfig(model="swav", beta=(0.5,))
