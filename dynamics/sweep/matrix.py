"""The matrix families: collapse phase diagrams of linear SimSiam/BYOL and its per-mode reduction.

Lanes are the shared axes crossed with ``init``, an index of random initial states. Every lane
is integrated to ``t1``; what is kept is the spectrum of the final encoder and the collapse
measures of :mod:`dynamics.analysis.collapse_metrics` (number and fraction of collapsed modes,
effective rank, ``||W||``). ``python -m dynamics.sweep --model linear`` writes
``OUT/sweep_linear.nc`` and ``OUT/phase_linear_<variant>.png`` (the mean collapsed-mode fraction
over the initial states, ``eta`` across, ``eps`` up).

Data: ``X = Q diag(d) Q^T`` with ``d`` evenly spaced from ``x_eig`` HI down to LO and ``Q`` a
random rotation drawn from the seed; ``X' = sigma2 I``. Mode ``j`` has non-trivial fixed points
only while ``eta <= d_j^2 / (4 (d_j + sigma2))`` (the models' ``eta_crit``, docs/theory.md
section 3), so the collapsed fraction climbs in steps as ``eta`` grows. ``--model permode``
runs the per-mode reduction on the same spectrum (``n1`` modes).

Default size (``python -m dynamics.sweep --model linear``): n1 = n2 = 4, 8 eta x 3 eps x
8 initial states = 192 lanes, SimSiam, flow to t1 = 300.

A family of this kind (a model whose encoder is a matrix or a vector of modes) subclasses
:class:`MatrixFamily` and gives only its model, its initial states and its closed forms; see
:mod:`dynamics.sweep.isoloss`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from dynamics._io import check_memory, memory_limit
from dynamics.analysis.alignment import commutator_norm, feature_correlation
from dynamics.analysis.collapse_metrics import (
    collapse_scores,
    collapse_summary,
    encoder_singular_values,
)
from dynamics.classify import encoder_scale
from dynamics.flow import initial_state, vector_field
from dynamics.models import LinearSiamese, PerModeSiamese
from dynamics.models.linear import random_orthogonal
from dynamics.plot import collapse_phase_figure
from dynamics.sweep.config import option
from dynamics.sweep.family import SHARED_DEFAULTS, Family, register
from dynamics.types import Hyper

#: the axes a phase diagram can be drawn over
PHASE_AXES = ("eps", "eta", "sigma2", "beta")
#: float64 copies of one lane's state an adaptive solve holds (stages, error estimate, buffers)
STATE_COPIES = 16
#: bytes per sgd minibatch element and input dimension (x, two noises, with temporaries)
SAMPLE_BYTES = 4 * 3 * 8
FIGURE_BYTES = 400_000
#: a block runs in at least this many lane chunks, so that its progress bar moves
PROGRESS_CHUNKS = 4

MATRIX_DEFAULTS = dict(SHARED_DEFAULTS, eps=(1.0, 0.1, 0.03),
                       eta=(0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35), t1=300.0, lr=0.01,
                       batch=64, rtol=1e-7, atol=1e-9, chunk=2048)


def plan_sweep(*, state: int, data: int, r: int, what: str, n_lanes: int, n_inner: int,
               methods, n1: int, batch: int, chunk: int, memory: int | None = None,
               held: int | None = None) -> dict:
    """Check that a matrix-model sweep fits before any work; return its plan.

    Args:
        state, data: numbers in one lane's state and in its model's data; r: singular values
        kept a lane; what: how the flags that set the size read (for the message);
        n_lanes: all lanes; n_inner: lanes of one block; n1: input dimension (sgd samples);
        held: lanes whose results are in memory at once (default: all; fewer when the result
        is streamed).

    Returns ``{"chunk", "file_bytes"}``: the lanes per compiled call (``chunk`` lowered until
    one call fits in a quarter of the memory, and to a quarter of a block's lanes so that
    progress shows), the estimated file size.

    Raises:
        ValueError: one line naming the value and the limit it breaks.
    """
    memory = memory_limit() if memory is None else int(memory)
    per_lane = 8 * (data + STATE_COPIES * state)
    if "sgd" in methods:
        per_lane += batch * n1 * SAMPLE_BYTES
        what += f" with --batch {batch}"
    check_memory(per_lane, f"{what} (one lane)", memory)
    at_once = n_lanes if held is None else min(n_lanes, int(held))
    check_memory(at_once * (r + 8) * 8 * 2, f"{n_lanes} lanes of {r} singular values"
                 + ("" if at_once == n_lanes else f" ({at_once} in memory at once)"), memory)
    fit = max(1, (memory // 4) // per_lane)
    chunk = max(1, min(int(chunk), fit, -(-n_inner // PROGRESS_CHUNKS)))
    return dict(chunk=chunk, file_bytes=n_lanes * (r + 8) * 8)


@functools.partial(jax.jit, static_argnames=("variant",))
def fnorm_lanes(model, variant, hyper, y):
    """max |f| of the expected-loss flow at each lane's final state (lanes on every leaf)."""

    def one(m, h, yy):
        return jnp.max(jnp.abs(ravel_pytree(vector_field(m, variant, h, yy))[0]))

    return jax.vmap(one)(model, hyper, y)


@functools.partial(jax.jit, static_argnames=("variant",))
def commutator_lanes(model, variant, y):
    """``||[F, Wp]|| / (||F|| ||Wp||)`` per lane, ``F = W X W^T`` (0 where either is 0)."""

    def one(m, yy):
        Wp = m.effective_predictor(variant, yy)
        F = feature_correlation(yy.enc, m.X)
        scale = jnp.linalg.norm(F) * jnp.linalg.norm(Wp)
        return jnp.where(scale > 0, commutator_norm(F, Wp) / jnp.where(scale > 0, scale, 1.0), 0.0)

    return jax.vmap(one)(model, y)


class MatrixFamily(Family):
    """What the matrix families share: the ``init`` axis, the spectrum and collapse measures
    of the final encoder, the summary table and the phase diagram. A subclass gives
    :meth:`prepare` (its data and initial states), :meth:`build`, :meth:`sizes` and, when it
    has any, :meth:`closed_forms`."""

    lane_axes = ("init",)
    sgd_stream = 3
    figure_kind = "phase diagram"
    #: whether the lanes' commutator ``[F, Wp]`` is measured (a trained matrix predictor)
    has_commutator = False
    help = dict(convention="loss: eta_theta = eta_phi = eta; tian: eta_phi = eps*eta",
                collapse_tol="a mode is collapsed when its singular value is below this times "
                             "sqrt(eta_phi/eta_theta) (sqrt(eps) in the tian convention)")

    @property
    def result_file(self):
        return f"sweep_{self.name}.nc"

    @property
    def result_patterns(self):
        return (f"sweep_{self.name}.nc", f"phase_{self.name}_*.png")

    def sizes(self, config) -> dict:
        """``{"n1", "n2", "r", "state", "data", "what"}``: dimensions, singular values kept,
        numbers in a lane's state and data, and the flags that set them (for messages)."""
        raise NotImplementedError

    def closed_forms(self, config, ctx) -> dict:
        """Extra coordinates from the model's closed forms (default none)."""
        return {}

    def check(self, config) -> None:
        o = config.options
        if not hasattr(o, "phase"):  # a family that draws no phase diagram of these axes
            return
        if o.phase[0] == o.phase[1]:
            raise ValueError(f"--phase needs two different axes, got {o.phase[0]} twice")
        for a in o.phase:
            if a not in PHASE_AXES:
                raise ValueError(f"--phase axis {a!r} is not one of {', '.join(PHASE_AXES)}")

    def axis_values(self, config) -> dict:
        return dict(init=np.arange(config.options.n_init))

    def axis_sizes(self, config):
        return (config.options.n_init,)

    def extra_dims(self, name):
        return ("mode",) if name in ("sv", "score") else ()

    def read(self, config, ctx, method, model, variant, hyper, y, status, window):
        n = status.shape[0]
        out = dict(sv=jax.vmap(encoder_singular_values)(model, y.enc),
                   score=jax.vmap(collapse_scores)(model, y.enc),
                   enc_scale=encoder_scale(hyper),
                   fnorm=fnorm_lanes(model, variant, hyper, y),
                   commutator=(commutator_lanes(model, variant, y) if self.has_commutator
                               else np.full(n, np.nan)))
        return out

    def finish(self, config, ctx, dims, values):
        sv, status = values["sv"], values["status"]
        summ = {k: np.asarray(v) for k, v in
                collapse_summary(jnp.asarray(sv), config.collapse_tol,
                                 jnp.asarray(values["enc_scale"]),
                                 scores=jnp.asarray(values["score"])).items()}
        finite = np.isfinite(sv).all(-1) & (status == "ok")
        for k in summ:
            summ[k] = np.where(finite, summ[k], np.nan)
        data_vars = {
            "sv": (dims + ("mode",), sv,
                   {"long_name": "singular values of the final encoder W(t1), descending"}),
            "norm": (dims, summ["norm"], {"long_name": "||W(t1)||_F"}),
            "effective_rank": (dims, summ["effective_rank"], {
                "long_name": "entropy effective rank exp(H(s/sum s)) of the non-collapsed "
                             "singular values of W(t1) (0 when all collapsed)"}),
            "n_collapsed": (dims, summ["n_collapsed"],
                            {"long_name": "number of singular values of W(t1) below collapse_tol "
                                          "x sqrt(eta_phi / eta_theta)"}),
            "collapsed_fraction": (dims, summ["collapsed_fraction"],
                                   {"long_name": "fraction of modes collapsed"}),
            "fnorm": (dims, values["fnorm"],
                      {"long_name": "max |f(y(t1))| of the expected-loss flow"}),
            "commutator": (dims, values["commutator"], {
                "long_name": "||[F, Wp]||_F / (||F||_F ||Wp||_F) at t1, F = W X W^T (linear only; "
                             "0 when the predictor shares F's eigenvectors)"}),
            "status": (dims, status,
                       {"long_name": "solver status per lane: ok / max_steps / nonfinite"}),
        }
        s = self.sizes(config)
        coords = dict(mode=np.arange(s["r"]), **self.closed_forms(config, ctx))
        o = config.options
        attrs = dict(
            n1=s["n1"], n2=s["n2"],
            collapse_rule="a mode is collapsed when its singular value of W(t1) is below "
                          "collapse_tol x sqrt(eta_phi / eta_theta) (the scale of the non-trivial "
                          "fixed point: sqrt(eps) in the tian convention, 1 in the loss "
                          "convention; 1 where either decay is 0); measures are NaN on lanes "
                          "whose status is not ok",
        )
        if hasattr(o, "init_scale"):  # one size of initial states (else the family's own axis)
            attrs["init_scale"] = o.init_scale
        return data_vars, coords, attrs

    def plan(self, config, n_inner, n_lanes, memory=None, held=None):
        s = self.sizes(config)
        p = plan_sweep(state=s["state"], data=s["data"], r=s["r"], what=s["what"],
                       n_lanes=n_lanes, n_inner=n_inner, methods=config.method, n1=s["n1"],
                       batch=config.batch, chunk=config.chunk, memory=memory, held=held)
        return dict(p, chunk={m: p["chunk"] for m in config.method})

    def describe(self, config, n_lanes):
        what = [f"{n_lanes} lanes, n1 = {self.sizes(config)['n1']}"]
        for m in config.method:
            if m != "flow":
                what.append(f"{m}: {config.n_steps(m)} steps a lane (t1 {config.t1_for(m):g} / "
                            f"lr {config.lr:g})")
        return "; ".join(what)

    def summarize(self, ds) -> str:
        return summarize(ds)

    def figures(self, ds, config):
        y, x = config.options.phase
        out = []
        for v in ds.variant.values:
            for meth in ds.method.values:
                suffix = "" if len(ds.method) == 1 else f"_{meth}"
                out.append((f"phase_{self.name}_{v}{suffix}.png",
                            lambda v=str(v), meth=str(meth): collapse_phase_figure(ds, v, meth, y, x)))
        return out

    def n_figures(self, config):
        return len(config.variant) * len(config.method)


def summarize(ds) -> str:
    """Mean collapsed-mode fraction per (variant, method, eps) across eta."""
    etas = ds.eta.values
    head = f"{'variant':<14}{'method':<7}{'eps':>7}  " + " ".join(f"{e:>6.3g}" for e in etas)
    lines = ["mean collapsed-mode fraction (over init, sigma2, beta); columns: eta", head]
    for v, m, e in itertools.product(ds.variant.values, ds.method.values, ds.eps.values):
        cf = ds["collapsed_fraction"].sel({"variant": v, "method": m, "eps": e})
        row = cf.mean(dim=[k for k in cf.dims if k != "eta"], skipna=True).values
        lines.append(f"{v:<14}{m:<7}{e:>7.3g}  " + " ".join(f"{x:>6.2f}" for x in row))
    bad = int((ds["status"].values != "ok").sum())
    lines.append(f"lanes not ok: {bad} of {ds['status'].size}")
    return "\n".join(lines)


def data_matrices(n1: int, x_eig, seed: int):
    """``(X, eigenvalues d)``: ``X = Q diag(d) Q^T``, ``d`` from ``hi`` down to ``lo``, ``Q``
    a random rotation from ``seed``."""
    lo, hi = x_eig
    d = jnp.linspace(hi, lo, n1)
    Q = random_orthogonal(jax.random.fold_in(jax.random.PRNGKey(seed), 1), n1)
    return (Q * d) @ Q.T, d


def init_keys(seed: int):
    """The two keys of the initial states (encoder, predictor)."""
    return jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 2))


class EncoderFamily(MatrixFamily):
    """A linear encoder ``W`` (n1 x n1) alone, no predictor, on the matrix families' data
    (``X = Q diag(x_eig) Q^T``, ``X' = sigma2 I``) from random starts ``W0 ~ N(0,
    init_scale^2 / n1)``: what the Barlow Twins, InfoNCE, MoCo and VICReg families share. Their
    options give ``n1``, ``x_eig``, ``n_init`` and ``init_scale``; each lane axis other than
    ``init`` is the option of the same name, whose values must differ."""

    def check(self, config) -> None:
        super().check(config)
        o = config.options
        lo, hi = o.x_eig
        if not lo <= hi:
            raise ValueError(f"--x-eig needs LO <= HI, got {lo:g} {hi:g}")
        for axis in self.lane_axes:
            values = getattr(o, axis) if axis != "init" else ()
            if len(set(values)) != len(values):
                raise ValueError(f"--{axis} values must differ, got "
                                 f"{' '.join(map(str, values))}")

    def sizes(self, config):
        n1 = config.options.n1
        return dict(n1=n1, n2=n1, r=n1, state=n1 * n1, data=2 * n1 * n1, what=f"--n1 {n1}")

    def prepare(self, config):
        o = config.options
        X, d = data_matrices(o.n1, o.x_eig, config.seed)
        kw, _ = init_keys(config.seed)
        W = o.init_scale * jax.random.normal(kw, (o.n_init, o.n1, o.n1)) / jnp.sqrt(o.n1)
        return dict(X=X, d=d, W=W)

    @staticmethod
    def lane_data(config, ctx, lanes):
        """``(X, Xp, W0)`` of a chunk's lanes: the data, ``sigma2 I`` and the initial encoders,
        each with a leading lane axis."""
        n1 = config.options.n1
        sigma2 = jnp.asarray(lanes["sigma2"])
        ii = jnp.asarray(lanes["init"].astype(int))
        X = jnp.broadcast_to(ctx["X"], (ii.shape[0], n1, n1))
        return X, sigma2[:, None, None] * jnp.eye(n1)[None], ctx["W"][ii]

    @staticmethod
    def encoder_hyper(lanes, beta=None) -> Hyper:
        """Decay ``eta`` on the encoder alone (there is no predictor), unit ``eps`` and
        ``beta`` unless given."""
        eta = jnp.asarray(lanes["eta"])
        return Hyper(eps=jnp.ones_like(eta), eta_theta=eta, eta_phi=jnp.zeros_like(eta),
                     beta=jnp.ones_like(eta) if beta is None else beta)


@dataclasses.dataclass(frozen=True)
class MatrixOptions:
    """Model size, data spectrum, random initial states and the phase diagram's axes."""

    n1: int = option(4, "input dimension (and number of modes for permode)",
                     positive=True, integer=True)
    n2: int | None = option(None, "output dimension of W (default: n1; linear only)",
                            positive=True, integer=True)
    x_eig: tuple = option((0.5, 1.5), "eigenvalues of the data correlation X, evenly spaced",
                          positive=True, nargs=2, metavar=("LO", "HI"))
    n_init: int = option(8, "random initial states per hyperparameter cell",
                         positive=True, integer=True)
    init_scale: float = option(1.0, "W0 entries ~ N(0, scale^2 / n1)", positive=True)
    pred_scale: float = option(0.5, "Wp0 entries ~ N(0, scale^2 / n2)", nonneg=True)
    phase: tuple = option(("eps", "eta"), "axes of the phase diagram, from "
                          f"{', '.join(PHASE_AXES)}; the other axes are averaged over",
                          nargs=2, metavar=("Y", "X"), choices=PHASE_AXES)


class _DataFamily(MatrixFamily):
    """Linear and per-mode: data ``X = Q diag(d) Q^T``, ``X' = sigma2 I``, a trained predictor."""

    Options = MatrixOptions
    defaults = MATRIX_DEFAULTS
    t1_default = {m: MATRIX_DEFAULTS["t1"] for m in ("flow", "gd", "sgd")}
    help = dict(MatrixFamily.help, eps="predictor time scale: eps * dWp/dt = -dL/dWp - eta_phi*Wp",
                sigma2="augmentation covariance X' = sigma2 I",
                seed="seed of X's eigenvectors, the initial states and SGD (same seed, same result)")

    def check(self, config) -> None:
        super().check(config)
        lo, hi = config.options.x_eig
        if not lo <= hi:
            raise ValueError(f"--x-eig needs LO <= HI, got {lo:g} {hi:g}")

    def closed_forms(self, config, ctx) -> dict:
        d = np.asarray(ctx["d"])
        s2 = np.asarray(config.sigma2, float)
        # the per-mode saddle-node of each sigma2, read from the per-mode model's closed form
        eta_crit = np.stack([np.asarray(PerModeSiamese(ctx["d"], jnp.full_like(ctx["d"], v)).eta_crit)
                             for v in s2])
        return {
            "x_eig": ("mode_x", d, {"long_name": "eigenvalues d_j of the data correlation X"}),
            "eta_crit": (("sigma2", "mode_x"), eta_crit,
                         {"long_name": "per-mode saddle-node d_j^2 / (4 (d_j + sigma2))"}),
        }

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        attrs.update(pred_scale=config.options.pred_scale,
                     data="X = Q diag(x_eig) Q^T (Q random from seed), X' = sigma2 I")
        return data_vars, coords, attrs


@register
class LinearFamily(_DataFamily):
    order = 1
    name = "linear"
    description = (
        "Sweep linear SimSiam/BYOL over hyperparameters and random initial states; report per "
        "lane the singular values of W, the number and fraction of collapsed modes and the "
        "effective rank; write OUT/sweep_linear.nc and an eta x eps phase diagram per variant."
    )
    has_commutator = True

    def sizes(self, config):
        o = config.options
        n1 = o.n1
        n2 = o.n2 or n1
        what = f"--n1 {n1}" + (f" --n2 {n2}" if n2 != n1 else "")
        return dict(n1=n1, n2=n2, r=min(n1, n2), state=n2 * n1 * 2 + n2 * n2,
                    data=2 * n1 * n1, what=what)

    def prepare(self, config):
        s, o = self.sizes(config), config.options
        X, d = data_matrices(s["n1"], o.x_eig, config.seed)
        kw, kp = init_keys(config.seed)
        n1, n2 = s["n1"], s["n2"]
        W = o.init_scale * jax.random.normal(kw, (o.n_init, n2, n1)) / jnp.sqrt(n1)
        Wp = o.pred_scale * jax.random.normal(kp, (o.n_init, n2, n2)) / jnp.sqrt(n2)
        return dict(X=X, d=d, W=W, Wp=Wp)

    def build(self, config, ctx, variant, eps, lanes):
        eta, sigma2, beta = (jnp.asarray(lanes[k]) for k in ("eta", "sigma2", "beta"))
        ii = jnp.asarray(lanes["init"].astype(int))
        n, n1 = ii.shape[0], ctx["X"].shape[0]
        model = LinearSiamese(jnp.broadcast_to(ctx["X"], (n, n1, n1)),
                              sigma2[:, None, None] * jnp.eye(n1)[None])
        hyper = Hyper.from_convention(config.convention, eta, jnp.full_like(eta, eps), beta)
        W = ctx["W"][ii]
        return model, hyper, initial_state(variant, W, ctx["Wp"][ii], target0=config.target0)


@register
class PerModeFamily(_DataFamily):
    order = 2
    name = "permode"
    description = (
        "Sweep the per-mode reduction of linear SimSiam/BYOL (n1 decoupled scalar modes with "
        "the spectrum of X) over hyperparameters and random initial states; write "
        "OUT/sweep_permode.nc and an eta x eps phase diagram per variant."
    )

    def check(self, config) -> None:
        super().check(config)
        o = config.options
        if o.n2 is not None and o.n2 != o.n1:
            raise ValueError(f"--model permode has n1 modes; --n2 {o.n2} differs from --n1 {o.n1}")

    def sizes(self, config):
        n1 = config.options.n1
        return dict(n1=n1, n2=n1, r=n1, state=3 * n1, data=2 * n1, what=f"--n1 {n1}")

    def prepare(self, config):
        o = config.options
        X, d = data_matrices(o.n1, o.x_eig, config.seed)
        kw, kp = init_keys(config.seed)
        theta = o.init_scale * jax.random.normal(kw, (o.n_init, o.n1))
        phi = o.pred_scale * jax.random.normal(kp, (o.n_init, o.n1))
        return dict(X=X, d=d, W=theta, Wp=phi)

    def build(self, config, ctx, variant, eps, lanes):
        eta, sigma2, beta = (jnp.asarray(lanes[k]) for k in ("eta", "sigma2", "beta"))
        ii = jnp.asarray(lanes["init"].astype(int))
        n, n1 = ii.shape[0], ctx["d"].shape[0]
        model = PerModeSiamese(jnp.broadcast_to(ctx["d"], (n, n1)),
                               sigma2[:, None] * jnp.ones((1, n1)))
        hyper = Hyper.from_convention(config.convention, eta, jnp.full_like(eta, eps), beta)
        theta = ctx["W"][ii]
        return model, hyper, initial_state(variant, theta, ctx["Wp"][ii],
                                           target0=config.target0)
