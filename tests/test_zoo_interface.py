"""The model interface of the zoo: a model and a family added from outside the package (no
core file touched), declared state slots, a target copied every k steps, a model's own
collapse measure, lane ranks declared per field."""

import dataclasses
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dynamics as d
import dynamics.sweep as sweep
from dynamics.classify import classify
from dynamics.flow import initial_state
from dynamics.models import LinearSiamese, Model, ScalarSiamese
from dynamics.models.base import per_lane
from dynamics.solve import run_discrete

# A tiny model and its family, written as another package would write them: only public
# names of dynamics. Expected loss 1/2 (theta - c)^2, so with weight decay eta the flow is
# theta(t) = c/(1+eta) + (theta0 - c/(1+eta)) exp(-(1+eta) t).
TINY = textwrap.dedent('''
    import dataclasses
    import jax, jax.numpy as jnp, numpy as np
    from dynamics.models import Model
    from dynamics.sweep import Family, option, register
    from dynamics.sweep.family import SHARED_DEFAULTS
    from dynamics.types import Hyper, State, Variant

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass(frozen=True)
    class Relax(Model):
        c: float = 1.0
        trains_predictor = False
        def expected_loss(self, enc, pred, tgt):
            return 0.5 * (enc - self.c) ** 2
        def loss(self, enc, pred, tgt, batch):
            return self.expected_loss(enc, pred, tgt)
        def sample(self, key, batch_size, dtype=jnp.float64):
            return jnp.zeros((batch_size,), dtype)
        def encoder_norm(self, enc):
            return jnp.abs(enc)

    @dataclasses.dataclass(frozen=True)
    class TinyOptions:
        c: float = option(2.0, "the target value", positive=True)

    class TinyFamily(Family):
        name = "NAME"
        description = "relax to c"
        Options = TinyOptions
        variants = {"relax": Variant("simsiam", True, label="relax")}
        ignores = ("eps", "beta", "convention")
        defaults = dict(SHARED_DEFAULTS, variant=("relax",), eps=(1.0,), eta=(0.0, 1.0),
                        t1=3.0, lr=0.01, batch=4, rtol=1e-10, atol=1e-12, chunk=None)
        t1_default = dict(flow=3.0, gd=3.0, sgd=3.0)
        lane_axes = ("theta0",)
        stiff_eps = 0.0
        result_file = "tiny.nc"
        result_patterns = ("tiny.nc",)
        def axis_values(self, config):
            return dict(theta0=np.array([-1.0, 0.5, 3.0]))
        def build(self, config, ctx, variant, eps, lanes):
            eta = jnp.asarray(lanes["eta"])
            hyper = Hyper(eps=jnp.ones_like(eta), eta_theta=eta)
            model = Relax(jnp.full_like(eta, config.options.c))
            return model, hyper, State(jnp.asarray(lanes["theta0"]), None)
        def read(self, config, ctx, method, model, variant, hyper, y, status, window):
            return dict(theta=y.enc)
        def finish(self, config, ctx, dims, values):
            return dict(theta=(dims, values["theta"])), {}, {}
        def plan(self, config, n_inner, n_lanes, memory=None):
            return dict(chunk={m: n_inner for m in config.method}, file_bytes=8 * n_lanes)
        def summarize(self, ds):
            return ""
''')


@pytest.fixture
def restore_families(monkeypatch):
    saved = dict(sweep.FAMILIES)
    yield
    sweep.FAMILIES.clear()
    sweep.FAMILIES.update(saved)
    for name in [m for m in sys.modules if m.startswith(("zoo_tiny", "dynamics.sweep.tinyfam"))]:
        del sys.modules[name]


def _check_relax(name):
    ds = sweep.run(sweep.SweepConfig(model=name))
    assert list(ds.variant.values) == ["relax"]
    th0, eta = ds.theta0.values[None, :], ds.eta.values[:, None]
    star = 2.0 / (1 + eta)
    want = star + (th0 - star) * np.exp(-(1 + eta) * 3.0)
    # the engine's tolerances (rtol 1e-10) bound the error far below 1e-7
    np.testing.assert_allclose(ds["theta"].values.squeeze(), want, rtol=1e-7, atol=1e-9)


def test_another_package_adds_a_family_through_the_entry_point_group(
        tmp_path, monkeypatch, restore_families):
    (tmp_path / "zoo_tiny").mkdir()
    (tmp_path / "zoo_tiny" / "__init__.py").write_text(TINY.replace("NAME", "tiny_ep"))
    info = tmp_path / "zoo_tiny-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-tiny\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        f"[{sweep.ENTRY_POINT_GROUP}]\ntiny_ep = zoo_tiny:TinyFamily\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "tiny_ep" not in sweep.FAMILIES
    # found on first use, without any import line in the package
    assert sweep.family("tiny_ep").name == "tiny_ep"
    assert list(sweep.FAMILIES)[:5] == ["scalar", "linear", "permode", "isoloss", "barlow"]
    _check_relax("tiny_ep")
    flags = {a for act in sweep.build_parser("tiny_ep")._actions for a in act.option_strings}
    assert "--c" in flags and not flags & {"--eps", "--beta", "--convention"}


def test_a_module_dropped_into_the_package_path_is_found(tmp_path, monkeypatch,
                                                          restore_families):
    (tmp_path / "tinyfam.py").write_text(
        TINY.replace("NAME", "tiny_mod").replace("class TinyFamily", "@register\nclass TinyFamily"))
    monkeypatch.setattr(sweep, "__path__", list(sweep.__path__) + [str(tmp_path)])
    sweep.discover()
    assert "tiny_mod" in sweep.FAMILIES
    _check_relax("tiny_mod")


# --- extra state slots: a trained predictor plus a running statistic ------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class CenteredScalar(ScalarSiamese):
    """Scalar SimSiam whose target is centred by a running mean m of the encoder output
    (a BatchNorm-like statistic): loss 1/2 (phi theta x1 - (target x2 - m))^2 expected, and
    m' = beta (theta - m), its rate read from the hyperparameters."""

    slots = {"m": "drift"}

    def expected_loss(self, theta, phi, target, aux):
        a, m = self.a, aux["m"]
        return 0.5 * (a * phi**2 * theta**2 - 2 * phi * theta * target + a * target**2 + m**2)

    def loss(self, theta, phi, target, batch, aux):
        x1, x2 = batch
        return 0.5 * jnp.mean((phi * theta * x1 - (target * x2 - aux["m"])) ** 2)

    def slot_drift(self, state, batch=None, hyper=None):
        return {"m": hyper.beta * (state.enc - state.aux["m"])}


def test_trained_predictor_and_running_statistic_move_together():
    model, v = CenteredScalar(0.5), d.VARIANTS["simsiam"]
    h = d.Hyper(eps=0.1, eta_theta=0.05, eta_phi=0.02, beta=0.7)
    th, ph, m = 0.8, 0.3, 0.4
    y = d.SlotState(jnp.asarray(th), jnp.asarray(ph), None, {"m": jnp.asarray(m)})
    f = d.vector_field(model, v, h, y)
    a = 1.5  # hand-written oracle of the same loss (the centre is a constant shift: no gradient)
    np.testing.assert_allclose(f.enc, -(a * ph**2 * th - ph * th) - 0.05 * th, rtol=1e-14)
    np.testing.assert_allclose(f.pred, (-(a * ph * th**2 - th**2) - 0.02 * ph) / 0.1, rtol=1e-14)
    np.testing.assert_allclose(f.aux["m"], 0.7 * (th - m), rtol=1e-14)
    y1 = d.gd_step(model, v, h, y, 0.01)
    np.testing.assert_allclose(y1.aux["m"], m + 0.01 * 0.7 * (th - m), rtol=1e-14)
    np.testing.assert_allclose(y1.pred, ph + 0.01 * f.pred, rtol=1e-14)
    batch = model.sample(jax.random.PRNGKey(0), 8)
    assert jnp.isfinite(d.gd_step(model, v, h, y, 0.01, batch).aux["m"])


def test_slots_are_checked():
    with pytest.raises(ValueError, match=r"declares the extra slots \['m'\]"):
        d.vector_field(CenteredScalar(0.5), d.VARIANTS["simsiam"], d.Hyper(),
                       d.State(jnp.asarray(0.8), jnp.asarray(0.3)))
    with pytest.raises(TypeError, match="the class must define slot_drift"):
        type("NoDrift", (ScalarSiamese,), {"slots": {"c": "drift"}})
    with pytest.raises(TypeError, match="the rule must be one of"):
        type("BadRule", (ScalarSiamese,), {"slots": {"c": "ema!"}})


# --- a target copied every k steps ---------------------------------------------------------


def test_copy_every_step_is_simsiam_and_every_k_steps_approaches_it():
    model, h = ScalarSiamese(0.5), d.Hyper.loss_decay(0.05, 1.0)
    y0 = d.State(jnp.asarray(0.8), jnp.asarray(0.1))
    ref = run_discrete(model, d.VARIANTS["simsiam"], h, y0, 0.01, 400).ys.enc[-1]
    copy1 = d.Variant("byol", True, copy_every=1)
    got = run_discrete(model, copy1, h, initial_state(copy1, y0.enc, y0.pred), 0.01, 400)
    assert float(got.ys.enc[-1]) == float(ref)  # k = 1: the target is the encoder, exactly
    errs = []
    for k, lr in ((8, 0.01), (8, 0.0025)):
        v = d.Variant("byol", True, copy_every=k)
        y = run_discrete(model, v, h, initial_state(v, y0.enc, y0.pred), lr,
                         int(round(4.0 / lr))).ys.enc[-1]
        flow = run_discrete(model, d.VARIANTS["simsiam"], h, y0, lr, int(round(4.0 / lr)))
        errs.append(abs(float(y - flow.ys.enc[-1])))
    assert errs[1] < 0.35 * errs[0]  # O(k h): a quarter of the step, about a quarter the gap
    with pytest.raises(ValueError, match="has no flow"):
        d.vector_field(model, copy1, h, initial_state(copy1, y0.enc, y0.pred))
    with pytest.raises(ValueError, match="copy_every must be an integer >= 0"):
        d.Variant("byol", True, copy_every=-2)


# --- the model's own collapse measure --------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class NormConserving(ScalarSiamese):
    """Collapse read as phi -> 0 instead of theta -> 0 (a stand-in for a model whose encoder
    norm says nothing about collapse)."""

    def collapse_measure(self, enc):
        return jnp.zeros_like(enc)[..., None]  # every state counts as collapsed


def test_classify_reads_the_models_collapse_measure():
    v, h = d.VARIANTS["simsiam"], d.Hyper.tian(0.05, 1.0)
    a, eta = 1.5, 0.05
    p = (1 + (1 - 4 * a * eta) ** 0.5) / (2 * a)  # the stable non-collapsed fixed point
    y = d.State(jnp.asarray(p / 1.0**0.5), jnp.asarray(p))
    base = classify(ScalarSiamese(0.5), v, h, y, 0)
    other = classify(NormConserving(0.5), v, h, y, 0)
    assert bool(base["decided"]) and not bool(base["collapsed"])
    assert bool(other["collapsed"])


# --- lane ranks declared per field -------------------------------------------------------------


def test_lane_broadcast_is_derived_from_the_declared_ranks():
    X = jnp.eye(3)
    lin = LinearSiamese(X, 0.5 * X).lane_broadcast(5)
    assert lin.X.shape == (5, 3, 3) and lin.Xp.shape == (5, 3, 3)
    per = LinearSiamese(jnp.broadcast_to(X, (5, 3, 3)), 0.5 * X).lane_broadcast(5)
    assert per.X.shape == (5, 3, 3)
    assert ScalarSiamese(0.5).lane_broadcast(4).sigma2.shape == (4,)

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass(frozen=True)
    class Declared(ScalarSiamese):
        M: jax.Array = per_lane(2, default=None)

    assert Declared(0.5, M=jnp.eye(2)).lane_broadcast(3).M.shape == (3, 2, 2)
    with pytest.raises(ValueError, match=r"Declared.M has 1 axes .*declared 2 for one lane"):
        Declared(0.5, M=jnp.ones(2)).lane_broadcast(3)
    assert issubclass(Declared, Model)
