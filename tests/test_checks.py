"""The Python API refuses what it cannot honour: every public constructor and entry point
checks its concrete values and raises ``ValueError`` with one line naming the argument and the
value; traced values (under ``jit``/``vmap``) pass unchecked, so nothing changes there.

The property tests judge each drawn value with an oracle written here, independently of
:mod:`dynamics.checks`: a call must succeed exactly when the oracle says the value is valid,
and must then honour it (the value is what the object holds, the run ends at ``t1``)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dynamics as d
from dynamics.models import IsoLossLinear, LinearSiamese, PerModeSiamese, ScalarSiamese
from dynamics.solve import run_discrete, solve_batch, solve_flow
from dynamics.sweep import SweepConfig
from dynamics.types import Hyper, State, VARIANTS

SIMSIAM = VARIANTS["simsiam"]
Y0 = State(jnp.asarray(0.8), jnp.asarray(0.1))
NAN, INF = float("nan"), float("inf")


def refused(call, *needles):
    """The one-line message of the ``ValueError`` that ``call`` raises; it names ``needles``."""
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


# --- each case the issue lists ---------------------------------------------------------------


def test_a_predictor_typo_is_refused_not_read_as_no_predictor():
    refused(lambda: ScalarSiamese(0.5, predictor="Trained"), "predictor", "'Trained'")
    refused(lambda: PerModeSiamese([1.0], [0.5], predictor="Trained"), "predictor", "'Trained'")


@pytest.mark.parametrize("sigma2, shown", [(-1, "-1"), (NAN, "nan"), (INF, "inf"),
                                            ("0.5", "'0.5'")])
def test_scalar_noise_variance_must_be_a_finite_number_at_least_zero(sigma2, shown):
    refused(lambda: ScalarSiamese(sigma2=sigma2), "sigma2", shown)


@pytest.mark.parametrize("d_, dp, needles", [
    ([1.0, 2.0], [0.5], ("d and dp", "(2,)", "(1,)")),
    ([-1.0], [0.5], ("d must be > 0", "-1.0")),
    ([], [], ("d must hold at least one mode", "(0,)")),
    ([1.0], [NAN], ("dp must be finite", "nan")),
    ([1.0], [-0.5], ("dp must be >= 0", "-0.5")),
])
def test_per_mode_variances_must_match_be_positive_and_non_empty(d_, dp, needles):
    refused(lambda: PerModeSiamese(d_, dp), *needles)


def test_per_mode_lists_are_arrays_not_concatenated():
    """``[1, 2] + [0.5, 0.5]`` would be a list of four: ``a`` must be ``d + dp`` per mode."""
    m = PerModeSiamese([1.0, 2.0], [0.5, 0.5])
    np.testing.assert_array_equal(np.asarray(m.a), [1.5, 2.5])


@pytest.mark.parametrize("X, needles", [
    (-np.eye(2), ("X must be positive semi-definite", "-1")),
    (np.full((2, 2), NAN), ("X must be finite", "nan")),
    (np.array([[1.0, 0.5], [0.0, 1.0]]), ("X must be symmetric", "0.5")),
    (np.ones((2, 3)), ("X must be a square matrix", "(2, 3)")),
])
def test_linear_data_matrix_must_be_symmetric_psd_and_finite(X, needles):
    refused(lambda: LinearSiamese(X, 0.5 * np.eye(2)), *needles)
    refused(lambda: IsoLossLinear(X, 0.5 * np.eye(2)), *needles)
    refused(lambda: LinearSiamese(np.eye(2), X), *(n.replace("X ", "Xp ") for n in needles))


def test_linear_data_matrices_per_lane_are_checked_lane_by_lane():
    X = np.stack([np.eye(2), np.diag([1.0, -1.0])])
    refused(lambda: LinearSiamese(X, np.zeros((2, 2, 2))), "X must be positive semi-definite")


@pytest.mark.parametrize("call, needles", [
    (lambda: Hyper(eps=-1), ("eps must be > 0", "-1")),
    (lambda: Hyper(eps=NAN), ("eps must be finite", "nan")),
    (lambda: Hyper(eps=0.0), ("eps must be > 0", "0.0")),
    (lambda: Hyper(eta_theta=INF), ("eta_theta must be finite", "inf")),
    (lambda: Hyper(beta=-0.5), ("beta must be >= 0", "-0.5")),
    (lambda: Hyper(eps=jnp.array([0.1, -0.1])), ("eps must be > 0", "-0.1")),
    (lambda: Hyper.loss_decay(0.1, eps=0), ("eps must be > 0", "0")),
    (lambda: Hyper.loss_decay(NAN, eps=1.0), ("eta must be finite", "nan")),
    (lambda: Hyper.tian(0.1, alpha_p=0), ("alpha_p must be > 0", "0")),
    (lambda: Hyper.from_convention("tian", 0.1, -1.0), ("eps must be > 0", "-1.0")),
    (lambda: IsoLossLinear.isotropic(2, alpha=0.0), ("alpha must be > 0", "0.0")),
    (lambda: d.Variant("simsiam", stop_grad="no"), ("stop_grad", "'no'")),
])
def test_hyperparameters_and_other_constructors_refuse_bad_values(call, needles):
    refused(call, *needles)


def test_solve_flow_refuses_an_end_time_it_cannot_reach():
    m, h = ScalarSiamese(0.5), Hyper.loss_decay(0.15, 0.01)
    refused(lambda: solve_flow(m, SIMSIAM, h, Y0, NAN), "t1 must be finite", "nan")
    refused(lambda: solve_flow(m, SIMSIAM, h, Y0, -1.0), "t1 must be > 0", "-1.0")
    refused(lambda: solve_flow(m, SIMSIAM, h, Y0, 1.0, ts=jnp.array([0.0, 2.0])),
            "ts must be increasing within [0, t1=1.0]")
    refused(lambda: solve_flow(m, SIMSIAM, h, Y0, 1.0, rtol=-1e-8), "rtol must be > 0")


def test_run_discrete_refuses_no_steps_and_a_negative_step():
    m, h = ScalarSiamese(0.5), Hyper.loss_decay(0.15, 1.0)
    refused(lambda: run_discrete(m, SIMSIAM, h, Y0, 0.01, 0), "n_steps must be an integer >= 1",
            "got 0")
    refused(lambda: run_discrete(m, SIMSIAM, h, Y0, -0.01, 10), "lr must be > 0", "-0.01")
    refused(lambda: run_discrete(m, SIMSIAM, h, Y0, 0.01, 10, save_every=0), "save_every")


@pytest.mark.parametrize("kw", [dict(t1=1.0), dict(method="gd", lr=0.1, n_steps=2),
                                dict(t1=1.0, integrator="diffrax")])
def test_solve_batch_refuses_zero_lanes(kw):
    y0 = State(jnp.zeros((0,)), jnp.zeros((0,)))
    refused(lambda: solve_batch(ScalarSiamese(0.5), SIMSIAM, Hyper(), y0, **kw), "no lanes")


def test_solve_batch_refuses_bad_times_and_steps():
    y0 = State(jnp.full((2,), 0.8), jnp.full((2,), 0.1))
    m = ScalarSiamese(0.5)
    refused(lambda: solve_batch(m, SIMSIAM, Hyper(), y0, t1=NAN, integrator="diffrax"),
            "t1 must be finite", "nan")
    refused(lambda: solve_batch(m, SIMSIAM, Hyper(), y0, method="gd", lr=-0.1, n_steps=2), "lr")
    refused(lambda: solve_batch(m, SIMSIAM, Hyper(), y0, method="gd", lr=0.1, n_steps=2.5),
            "n_steps", "2.5")


def test_sweep_config_sees_duplicates_after_reading_the_numbers():
    refused(lambda: SweepConfig(eps=(0.1, "0.1")), "--eps lists a value twice")
    assert SweepConfig(eps=("0.1", 1)).eps == (0.1, 1.0)


# --- traced values pass unchecked: jit and vmap behave as before -----------------------------


def test_traced_values_pass_unchecked_under_jit_and_vmap():
    """A traced sigma2 of -1 cannot be checked and is not: ``a`` is 1 + sigma2 = 0."""
    assert float(jax.jit(lambda s: ScalarSiamese(s).a)(-1.0)) == 0.0
    eps = jnp.array([0.5, 1.0])
    hyper = jax.vmap(lambda e: Hyper.loss_decay(0.1, e))(eps)
    np.testing.assert_array_equal(np.asarray(hyper.eps), eps)
    f = jax.jit(lambda h: d.vector_field(ScalarSiamese(0.5), SIMSIAM, h, Y0))
    # theta' = -theta (a phi^2 - phi + eta) (docs/theory.md section 2), a = 1.5
    np.testing.assert_allclose(float(f(Hyper.loss_decay(0.15, 1.0)).enc),
                               -0.8 * (1.5 * 0.01 - 0.1 + 0.15), rtol=1e-14)


# --- property: every input works or raises ValueError naming the argument ---------------------

EXAMPLES = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

#: numbers of every kind, and words (numeric ones too)
ANY_NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, -1e-300, 1e300, 0.5, 1.0, 2.0, -1.0, NAN, INF, -INF]),
    st.integers(-3, 3),
    st.sampled_from(["0.5", "abc", "", "nan"]),
)


def _real(v):
    """The value as a float if it is a real number (not a word, not a bool), else None."""
    if isinstance(v, (bool, str)):
        return None
    return float(v)


def _ok(v, *, positive=False, nonneg=False):
    x = _real(v)
    return (x is not None and math.isfinite(x) and (not positive or x > 0)
            and (not nonneg or x >= 0))


def judge(call, valid, names):
    """``call()`` succeeds iff ``valid``; a refusal names one of ``names`` (the bad ones)."""
    if valid:
        return call()
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and any(n in msg for n in names), (names, msg)
    return None


@EXAMPLES
@given(sigma2=ANY_NUMBER, predictor=st.sampled_from(["trained", "none", "Trained", "", "linear"]),
       as_array=st.booleans())
def test_property_scalar_model(sigma2, predictor, as_array):
    if as_array and not isinstance(sigma2, str):
        sigma2 = jnp.asarray(sigma2, dtype=float)
    ok_s = _ok(sigma2 if not isinstance(sigma2, jax.Array) else float(sigma2), nonneg=True)
    ok_p = predictor in ("trained", "none")
    bad = [n for n, ok in (("predictor", ok_p), ("sigma2", ok_s)) if not ok]
    m = judge(lambda: ScalarSiamese(sigma2, predictor=predictor), ok_s and ok_p, bad)
    if m is not None:
        assert float(m.a) == 1.0 + float(sigma2) and m.trains_predictor == (predictor == "trained")


@EXAMPLES
@given(eps=ANY_NUMBER, eta_theta=ANY_NUMBER, eta_phi=ANY_NUMBER, beta=ANY_NUMBER)
def test_property_hyper(eps, eta_theta, eta_phi, beta):
    oks = dict(eps=_ok(eps, positive=True), eta_theta=_ok(eta_theta), eta_phi=_ok(eta_phi),
               beta=_ok(beta, nonneg=True))
    h = judge(lambda: Hyper(eps, eta_theta, eta_phi, beta), all(oks.values()),
              [n for n, ok in oks.items() if not ok])
    if h is not None:
        assert (h.eps, h.eta_theta, h.eta_phi, h.beta) == (eps, eta_theta, eta_phi, beta)


@EXAMPLES
@given(eta=ANY_NUMBER, other=ANY_NUMBER)
def test_property_hyper_conventions(eta, other):
    ok_eta, ok_other = _ok(eta), _ok(other, positive=True)
    # Tian's eps = 1/alpha_p and eta_phi = eps eta (docs/theory.md 1) must be finite too
    ok_tian = ok_eta and ok_other and math.isfinite(1 / other) and math.isfinite((1 / other) * eta)
    bad = [n for n, ok in (("eta", ok_eta), ("alpha_p", ok_other and ok_tian)) if not ok]
    tian = judge(lambda: Hyper.tian(eta, alpha_p=other), ok_tian, bad)
    bad = [n for n, ok in (("eta", ok_eta), ("eps", ok_other)) if not ok]
    loss = judge(lambda: Hyper.loss_decay(eta, eps=other), ok_eta and ok_other, bad)
    if tian is not None:  # Tian et al.: eps = 1/alpha_p, eta_phi = eps eta
        assert tian.eps == 1.0 / other and tian.eta_phi == tian.eps * eta
    if loss is not None:
        assert loss.eps == other and loss.eta_phi == loss.eta_theta == eta


MODE = st.sampled_from([1.0, 0.5, 0.0, -1.0, NAN, INF])


@EXAMPLES
@given(d_=st.lists(MODE, max_size=3), dp=st.lists(MODE, max_size=3))
def test_property_per_mode_model(d_, dp):
    ok_d = bool(d_) and all(_ok(x, positive=True) for x in d_)
    ok_dp = bool(dp) and all(_ok(x, nonneg=True) for x in dp)
    same = len(d_) == len(dp)
    bad = [n for n, ok in (("d", ok_d and same), ("dp", ok_dp and same)) if not ok]
    m = judge(lambda: PerModeSiamese(d_, dp), ok_d and ok_dp and same, bad)
    if m is not None:
        np.testing.assert_array_equal(np.asarray(m.a), np.add(d_, dp))


ENTRY = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, NAN, INF])


@EXAMPLES
@given(x=st.tuples(ENTRY, ENTRY, ENTRY, ENTRY), sigma2=st.sampled_from([0.0, 0.5, -0.5]),
       kind=st.sampled_from(["linear", "isoloss"]))
def test_property_linear_models(x, sigma2, kind):
    """X = [[x0, x1], [x2, x3]] is valid iff finite, x1 == x2 and PSD: for a symmetric 2 x 2
    matrix x0 >= 0, x3 >= 0 and x0 x3 - x1^2 >= 0 (the entries are exact in binary)."""
    X = np.array(x).reshape(2, 2)
    finite = np.isfinite(X).all()
    ok_X = bool(finite and x[1] == x[2] and x[0] >= 0 and x[3] >= 0 and x[0] * x[3] >= x[1] ** 2)
    ok_Xp = sigma2 >= 0
    bad = [n for n, ok in (("X ", ok_X), ("Xp", ok_Xp)) if not ok]
    cls = LinearSiamese if kind == "linear" else IsoLossLinear
    m = judge(lambda: cls(X, sigma2 * np.eye(2)), ok_X and ok_Xp, bad)
    if m is not None:
        np.testing.assert_array_equal(np.asarray(m.S), X + sigma2 * np.eye(2))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(t1=ANY_NUMBER)
def test_property_solve_flow_end_time(t1):
    """A run that returns has integrated to t1 (a few steps only: max_steps=8)."""
    m, h = ScalarSiamese(0.5), Hyper.loss_decay(0.15, 1.0)
    sol = judge(lambda: solve_flow(m, SIMSIAM, h, Y0, t1, solver="tsit5", max_steps=8),
                _ok(t1, positive=True), ["t1"])
    if sol is not None and int(sol.status) == 0:
        assert float(sol.ts[-1]) == float(t1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lr=ANY_NUMBER, n_steps=st.sampled_from([-1, 0, 1, 3, 3.0, 2.5, NAN, "3", True]))
def test_property_run_discrete(lr, n_steps):
    """A run that returns took exactly n_steps steps of size lr: its end time is n_steps lr."""
    ok_n = (not isinstance(n_steps, (bool, str)) and math.isfinite(n_steps)
            and n_steps == int(n_steps) and n_steps >= 1)
    ok_lr = _ok(lr, positive=True)
    bad = [n for n, ok in (("n_steps", ok_n), ("lr", ok_lr)) if not ok]
    m, h = ScalarSiamese(0.5), Hyper.loss_decay(0.15, 1.0)
    sol = judge(lambda: run_discrete(m, SIMSIAM, h, Y0, lr, n_steps), ok_n and ok_lr, bad)
    if sol is not None:
        assert int(sol.num_steps) == n_steps
        np.testing.assert_allclose(float(sol.ts[-1]), n_steps * float(lr), rtol=1e-15)


@EXAMPLES
@given(eps=st.lists(ANY_NUMBER, max_size=3))
def test_property_sweep_config_eps(eps):
    """Valid iff non-empty, every entry reads as a finite number > 0 (words are read: the
    command line passes them on), and no value twice once read."""

    def read(v):
        try:
            x = float(v)
        except ValueError:
            return None
        return x if math.isfinite(x) and x > 0 else None

    vals = [read(v) for v in eps]
    ok = bool(eps) and None not in vals and len(set(vals)) == len(vals)
    config = judge(lambda: SweepConfig(eps=tuple(eps)), ok, ["eps"])
    if config is not None:
        assert config.eps == tuple(vals)
