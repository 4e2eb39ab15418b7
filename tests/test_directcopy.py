"""DirectCopy against its closed forms (docs/theory.md, "DirectCopy"): the running correlation
as a drift slot, the per-mode fixed points and their spectra, the band of reg without a
collapse basin, and bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
from dynamics.models import DirectCopyLinear
from dynamics.solve import solve_flow
from dynamics.types import SlotState

SG = d.Variant("simsiam")


def mode_model(dd, s2, reg):
    dd = jnp.atleast_1d(jnp.asarray(dd, float))
    return DirectCopyLinear(jnp.diag(dd), jnp.diag(jnp.broadcast_to(s2, dd.shape)), reg)


def test_one_mode_rests_at_p_pm_with_the_closed_form_spectrum():
    dd, s2, eta, reg, eps = 1.0, 0.5, 0.05, 0.02, 0.3
    m, c = mode_model(dd, s2, reg), dd + s2
    h = d.Hyper.loss_decay(eta, eps)
    pm, pp = DirectCopyLinear.mode_roots(dd, c, eta)
    for p, w2 in zip((pm, pp), DirectCopyLinear.fixed_modes(dd, c, reg, eta)):
        y = SlotState(jnp.sqrt(w2)[None, None], None, None, {"F": (c * w2)[None, None]})
        f = d.vector_field(m, SG, h, y)
        assert float(jnp.abs(f.enc).max()) < 1e-14 and float(jnp.abs(f.aux["F"]).max()) < 1e-14
        ev = np.sort_complex(np.linalg.eigvals(d.jacobian_matrix(m, SG, h, y)))
        want = np.sort_complex(np.array(DirectCopyLinear.mode_eigenvalues(dd, c, reg, p, eps)))
        np.testing.assert_allclose(ev, want, rtol=1e-10, atol=1e-12)
    # p_+ stable, p_- a saddle
    lp = DirectCopyLinear.mode_eigenvalues(dd, c, reg, pp, eps)
    lm = DirectCopyLinear.mode_eigenvalues(dd, c, reg, pm, eps)
    assert max(float(jnp.real(v)) for v in lp) < 0 < max(float(jnp.real(v)) for v in lm)


def test_reg_inside_p_pm_leaves_no_collapse_basin_and_above_p_plus_collapses_everything():
    dd, s2, eta, eps = jnp.array([1.5, 1.0, 0.5]), 0.5, 0.02, 0.1
    c = dd + s2
    pm, pp = DirectCopyLinear.mode_roots(dd, c, eta)  # pm in (0.013, 0.045), pp in (0.45, 0.74)
    h = d.Hyper.loss_decay(eta, eps)
    W0 = 1e-2 * jnp.eye(3)  # p(0) = c 1e-4 + reg: far inside p_- when reg = 0
    for reg, survive in ((0.0, [False] * 3), (0.2, [True] * 3), (0.8, [False] * 3)):
        m = mode_model(dd, s2, reg)
        rate = DirectCopyLinear.origin_rate(dd, c, reg, eta)
        assert list(np.asarray(rate) > 0) == survive  # the closed form says which
        y0 = SlotState(W0, None, None, {"F": m.initial_F(W0)})
        sol = solve_flow(m, SG, h, y0, 400.0, solver="tsit5", rtol=1e-9, atol=1e-12)
        w2 = jnp.diag(sol.ys.enc[-1]) ** 2
        if any(survive):
            want = DirectCopyLinear.fixed_modes(dd, c, reg, eta)[1]
            np.testing.assert_allclose(w2, want, rtol=1e-5)  # at rest at p_+
        else:
            assert float(w2.max()) < 1e-10


def test_the_running_correlation_is_an_ema_of_the_batch_correlation():
    m = mode_model(jnp.array([1.0, 0.5]), 0.3, 0.1)
    W = jax.random.normal(jax.random.PRNGKey(0), (2, 2))
    F = jnp.eye(2) * 0.4
    b = m.sample(jax.random.PRNGKey(1), 8)
    lr, eps = 0.02, 0.5
    new = d.gd_step(m, SG, d.Hyper(eps=eps), SlotState(W, None, None, {"F": F}), lr, b)
    f = jnp.concatenate(b) @ W.T
    rho = 1 - lr / eps
    np.testing.assert_allclose(new.aux["F"], rho * F + (1 - rho) * f.T @ f / 16, rtol=1e-13)
    # the encoder's step uses the predictor F + reg I, not differentiated through F
    x1, x2 = b
    Wp = F + 0.1 * jnp.eye(2)
    r = x1 @ (Wp @ W).T - x2 @ W.T
    g = Wp.T @ (r.T @ x1) / 8
    np.testing.assert_allclose(new.enc, W - lr * g, rtol=1e-12)


def test_bad_reg_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"reg must be >= 0, got -0.1"):
        mode_model(1.0, 0.5, -0.1)


def test_sweep_family_shows_the_band_without_a_basin_and_collapse_past_p_plus():
    from dynamics.sweep import SweepConfig, build_parser, run
    from dynamics.sweep.directcopy import DirectCopyOptions

    regs = (0.0, 0.25, 0.45, 0.8)
    cfg = SweepConfig(model="directcopy", eta=(0.05,), sigma2=(0.5,),
                      options=DirectCopyOptions(n1=4, x_eig=(0.5, 1.5), reg=regs,
                                                init_scales=(0.01, 1.0), n_init=2))
    ds = run(cfg)
    assert list(ds.variant.values) == ["directcopy"] and (ds["status"].values == "ok").all()
    # independent closed form: the roots of c p^2 - d p + eta = 0 per mode, c = d + sigma2
    dd = np.linspace(1.5, 0.5, 4)
    c = dd + 0.5
    disc = np.sqrt(dd**2 - 4 * c * 0.05)
    pm, pp = (dd - disc) / (2 * c), (dd + disc) / (2 * c)  # p_- <= 0.14, p_+ in 0.36 ... 0.72
    np.testing.assert_allclose(ds["p_plus"].values.ravel(), pp, rtol=1e-12)
    cf = ds["collapsed_fraction"].squeeze()  # (reg, scale, init)
    for r in regs:
        here = cf.sel(reg=r).values
        if r > pm.max():  # no basin for the modes with reg < p_+: the rest collapse, any start
            np.testing.assert_array_equal(here, np.mean(r >= pp))
    # 0.25 lies inside every mode's (p_-, p_+): even the 0.01 starts keep every mode
    assert (cf.sel(reg=0.25).values == 0).all()
    # reg = 0 < p_-: a basin; starts of size 0.01 (F(0) ~ 1e-4, far below p_-) all collapse
    assert (cf.sel(reg=0.0, scale=0.01).values == 1).all()
    flags = {a for act in build_parser("directcopy")._actions for a in act.option_strings}
    assert not flags & {"--beta", "--convention", "--target0"}
    assert {"--eps", "--reg", "--init-scales"} <= flags
