"""The scalar family: collapse basins of scalar SimSiam/BYOL over a grid of ``(theta0, phi0)``.

Each lane starts at one grid point and is classified by the rule of :mod:`dynamics.classify`
(sgd lanes by the statistics of their trailing window): collapsed, non-collapsed, undecided or
failed (:class:`dynamics.types.Outcome`). The Dataset holds the final weights, the outcome and
what it was decided from. ``python -m dynamics.sweep --eps 0.01`` is this family on defaults.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np

from dynamics.classify import Criterion, WindowCriterion, classify_batch, classify_window_batch
from dynamics.models import ScalarSiamese
from dynamics.plot import basin_map
from dynamics.solve.engine import CHUNK_SIZE
from dynamics.sweep.config import option
from dynamics.sweep.core import SEGMENTS, SGD_WINDOW
from dynamics.sweep.family import SHARED_DEFAULTS, Family, register
from dynamics._io import check_memory
from dynamics.flow import initial_state
from dynamics.types import Hyper, Outcome

DEFAULTS = dict(SHARED_DEFAULTS, eps=(0.01,), eta=(0.15,), variant=("simsiam", "simsiam-nosg"),
                lr=0.005, batch=16, rtol=1e-8, atol=1e-10)

#: integration time of each method when t1 is not given: sgd's lanes settle by t ~ 40 at the
#: default eps, eta, sigma2 (the slowest, near the basin boundary, by about t ~ 55)
T1_DEFAULT = {"flow": 200.0, "gd": 200.0, "sgd": 60.0}
#: estimates of what a sweep holds in memory / writes to disk per lane, and what one sgd
#: minibatch element costs (x, two noises, float64, with the step's temporaries)
RESULT_BYTES_PER_LANE = 200
FILE_BYTES_PER_LANE = 80
FIGURE_BYTES = 400_000
SAMPLE_BYTES = 4 * 3 * 8
SGD_CHUNK_BYTES = 512 << 20
#: lanes per compiled call of gd, sgd and the diffrax flow (the engine's flow: CHUNK_SIZE)
DISCRETE_CHUNK = 4096

#: the one definition of the percentages the sweep reports (table, basin maps, README)
PERCENT_NOTE = ("percent of all lanes: collapsed + non-collapsed + undecided + failed = 100 "
                "(undecided: not settled at a stable point by t1)")


@dataclasses.dataclass(frozen=True)
class ScalarOptions:
    """The initial-condition grid and the collapse rule's residual tolerance."""

    theta_range: tuple = option((-1.0, 1.0), "range of theta0", nargs=2, metavar=("LO", "HI"))
    phi_range: tuple = option((-1.0, 2.0), "range of phi0", nargs=2, metavar=("LO", "HI"))
    n: int = option(64, "grid points along theta0 (and phi0 unless --n-phi)",
                    positive=True, integer=True)
    n_phi: int | None = option(None, "grid points along phi0 (default: --n)",
                               positive=True, integer=True)
    ftol: float = option(1e-6, "flow, gd: converged when max|gradient + decay| at y_T <= ftol",
                         positive=True)

    @property
    def grid(self) -> tuple[int, int]:
        """``(n_theta, n_phi)``."""
        return self.n, self.n if self.n_phi is None else self.n_phi


def plan_sweep(*, n_theta: int, n_phi: int, n_blocks: int, n_inner: int, methods, batch: int,
               chunk: int | None, memory: int | None = None, held: int | None = None) -> dict:
    """Check that a scalar sweep fits in memory before any work; return its sgd chunk.

    Args:
        n_theta, n_phi: grid points; n_blocks: (variant, method, eps) blocks; n_inner: lanes
        per block; methods: the methods swept; batch: sgd minibatch; chunk: the config's
        (``None``: default); memory: bytes allowed (default: this machine's memory); held:
        lanes whose results are in memory at once (default: all of them; fewer when the result
        is streamed).

    Returns:
        ``{"sgd_chunk", "result_bytes", "file_bytes"}``.

    Raises:
        ValueError: one line naming the value and the limit it breaks.
    """
    lanes = n_blocks * n_inner
    at_once = lanes if held is None else min(lanes, int(held))
    need = at_once * RESULT_BYTES_PER_LANE + n_inner * 5 * 8 * 2
    what = f"{lanes:.4g} lanes in all" + ("" if at_once == lanes else
                                          f", {at_once:.4g} in memory at once")
    check_memory(need, f"a grid of {n_theta} x {n_phi} initial states ({what})", memory)
    sgd_chunk = None
    if "sgd" in methods:
        check_memory(batch * SAMPLE_BYTES, f"--batch {batch} (one lane's minibatch)", memory)
        sgd_chunk = max(1, min(chunk or DISCRETE_CHUNK, n_inner,
                               SGD_CHUNK_BYTES // (batch * SAMPLE_BYTES)))
    return dict(sgd_chunk=sgd_chunk, result_bytes=need, file_bytes=lanes * FILE_BYTES_PER_LANE)


def summarize(ds) -> str:
    """One row per setting: variant, method, eps and each swept eta, sigma2 and beta (nothing
    is pooled), with the share of all of its lanes in each outcome."""
    swept = [d for d in ("eta", "sigma2", "beta") if ds.sizes.get(d, 1) > 1]
    lines = [f"{'variant':<14}{'method':<7}{'eps':>9}" + "".join(f"{d:>8}" for d in swept)
             + f"  {'collapsed':>9}  {'non-coll.':>9}  {'undecided':>9}  {'failed':>6}  lanes"]
    dims = ("variant", "method", "eps", *swept)
    for values in itertools.product(*(ds[d].values for d in dims)):
        at = dict(zip(dims, values))
        o = ds["outcome"].sel(at).values
        share = {k: np.mean(o == k) for k in Outcome}
        v, m, e = values[:3]
        lines.append(
            f"{v:<14}{m:<7}{e:>9.3g}" + "".join(f"{x:>8.3g}" for x in values[3:])
            + f"  {share[Outcome.COLLAPSED]:>9.1%}  "
            f"{share[Outcome.NON_COLLAPSED]:>9.1%}  {share[Outcome.UNDECIDED]:>9.1%}  "
            f"{share[Outcome.FAILED]:>6.1%}  {o.size}"
        )
    lines.append(PERCENT_NOTE)
    return "\n".join(lines)


def basin_title(ds, variant: str) -> str:
    """The basin map's title: model, variant, convention and how each method ran."""
    how = []
    for m in ds.method.values:
        t1 = float(ds["t1"].sel({"method": m}))
        if m == "flow":
            how.append(f"gradient flow to t1={t1:g}")
        elif m == "gd":
            how.append(f"GD, lr {ds.attrs['lr']:g}, to t1={t1:g}")
        else:
            how.append(f"SGD, minibatch {ds.attrs['batch']}, lr {ds.attrs['lr']:g}, to t1={t1:g}, "
                       f"seed {ds.attrs['seed']}")
    return (f"collapse basins, scalar {variant}, {ds.attrs['convention']} convention\n"
            + "\n".join(how))


COLLAPSE_RULE = (
    "flow, gd: converged: status ok and max|g(y_T)| <= ftol (g: the flow at eps = 1); "
    "decided: converged and (|theta_T| <= tol or max Re eig J(y_T) <= 1e-9); "
    "collapsed: decided and |theta_T| <= tol, where tol = collapse_tol x sqrt(eta_phi / "
    "eta_theta) is scale-free (the non-trivial fixed point sits at sqrt(eta_phi / eta_theta) "
    "p: sqrt(eps) p_+ in the tian convention, p_+ in the loss convention; the factor is 1 where "
    f"either decay is 0). sgd: over the last {SGD_WINDOW} of {SEGMENTS} segment ends, collapsed "
    "when mean |theta| <= tol; non-collapsed when the fitted |theta| changes by <= 10% across "
    "the window, mean - 3 std > tol and the Jacobian at the mean state has no eigenvalue "
    "with real part > 1e-9; else undecided"
)


@register
class ScalarFamily(Family):
    order = 0
    name = "scalar"
    description = (
        "Sweep the scalar SimSiam/BYOL toy models over a grid of initial conditions "
        "(theta0, phi0) and any lists of hyperparameters; classify every lane as "
        "collapsed / non-collapsed / undecided; write OUT/sweep.nc and a basin map per variant."
    )
    Options = ScalarOptions
    defaults = DEFAULTS
    t1_default = T1_DEFAULT
    lane_axes = ("phi0", "theta0")
    result_file = "sweep.nc"
    result_kind = "sweep"
    result_patterns = ("sweep.nc", "basins_*.png")
    figure_kind = "basin map"
    help = dict(
        eps="predictor time scale: eps * dphi/dt = -dL/dphi - eta_phi*phi",
        sigma2="augmentation noise variance (a = 1 + sigma2)",
        beta="EMA rate of the BYOL target, dtheta_a/dt = beta (theta - theta_a)",
        convention="loss: weight decay inside the loss, eta_theta = eta_phi = eta; "
                   "tian: Tian et al. 2021, alpha_p = 1/eps, eta_theta = eta, eta_phi = eps*eta",
        t1="integration time in ODE time units (default: "
           + ", ".join(f"{v:g} for {k}" for k, v in T1_DEFAULT.items())
           + "; gd/sgd take t1/lr steps)",
        collapse_tol="collapsed when |theta_T| <= collapse-tol x sqrt(eta_phi/eta_theta), "
                     "i.e. x sqrt(eps) in the tian convention, where the survivors sit at "
                     f"sqrt(eps) p_+ (sgd: the mean over the last {SGD_WINDOW} of {SEGMENTS} "
                     "segments of the run)",
        chunk="lanes per compiled batch (bounds memory); default 65536 for flow on the "
              "batched engine (about 100 bytes a lane), else 4096",
        seed="PRNG seed of sgd (same seed, same result)",
    )

    def check(self, config) -> None:
        o = config.options
        for name in ("theta_range", "phi_range"):
            lo, hi = getattr(o, name)
            if not lo < hi:
                raise ValueError(f"--{name.replace('_', '-')} needs LO < HI, got {lo:g} {hi:g}")
        if o.n < 2 or (o.n_phi is not None and o.n_phi < 2):
            raise ValueError(f"grid needs at least 2 points per axis, got --n {o.n}"
                             + (f" --n-phi {o.n_phi}" if o.n_phi is not None else ""))

    def axis_values(self, config) -> dict:
        o = config.options
        n_theta, n_phi = o.grid
        return dict(phi0=np.linspace(*o.phi_range, n_phi),
                    theta0=np.linspace(*o.theta_range, n_theta))

    def axis_sizes(self, config):
        n_theta, n_phi = config.options.grid
        return n_phi, n_theta

    def build(self, config, ctx, variant, eps, lanes):
        eta, sigma2, beta, phi0, theta0 = (jnp.asarray(lanes[k]) for k in
                                           ("eta", "sigma2", "beta", "phi0", "theta0"))
        model = ScalarSiamese(sigma2=sigma2)
        hyper = Hyper.from_convention(config.convention, eta, jnp.full_like(eta, eps), beta)
        return model, hyper, initial_state(variant, theta0, phi0, target0=config.target0)

    def read(self, config, ctx, method, model, variant, hyper, y, status, window):
        st = jnp.asarray(status)
        if method == "sgd":
            cls = classify_window_batch(model, variant, hyper, window, st,
                                        WindowCriterion(collapse_tol=config.collapse_tol))
        else:
            cls = classify_batch(model, variant, hyper, y, st,
                                 Criterion(ftol=config.options.ftol,
                                           collapse_tol=config.collapse_tol))
        n = status.shape[0]
        nan = np.full(n, np.nan)
        return dict(
            theta=y.enc, phi=y.pred, theta_a=y.tgt if variant.has_target else y.enc,
            fnorm=cls["fnorm"], lam_max=cls["lam_max"],
            enc_mean=cls["enc_mean"] if method == "sgd" else nan,
            drift=cls["drift"] if method == "sgd" else nan,
            outcome=np.asarray(cls["outcome"]).astype(np.int8),
            decided=np.asarray(cls["decided"]).astype(bool),
            collapsed=np.asarray(cls["collapsed"]).astype(bool),
        )

    def finish(self, config, ctx, dims, values):
        v = values
        data_vars = {
            "theta": (dims, v["theta"], {"long_name": "final encoder weight theta(t1)"}),
            "phi": (dims, v["phi"], {"long_name": "final predictor weight phi(t1)"}),
            "theta_a": (dims, v["theta_a"],
                        {"long_name": "final target weight theta_a(t1) (SimSiam: equals theta)"}),
            "status": (dims, v["status"],
                       {"long_name": "solver status per lane: ok / max_steps / nonfinite"}),
            "collapsed": (dims, v["collapsed"], {"long_name": "decided and |theta(t1)| <= "
                          "collapse_tol x sqrt(eta_phi / eta_theta) (sgd: its mean over the "
                          "trailing window)"}),
            "decided": (dims, v["decided"],
                        {"long_name": "converged to a fixed point that is not a saddle (sgd: "
                                      "stationary about one; see dynamics.classify)"}),
            "outcome": (dims, v["outcome"], {
                "long_name": ", ".join(f"{int(o)} {o.label}" for o in Outcome),
                "flag_values": np.arange(len(Outcome), dtype=np.int8),
                "flag_meanings": " ".join(Outcome.labels()),
            }),
            "fnorm": (dims, v["fnorm"], {"long_name": "max |gradient + decay| at y(t1) (the "
                      "flow with eps = 1; sgd: at the window-averaged state)"}),
            "lam_max": (dims, v["lam_max"],
                        {"long_name": "largest real part of the Jacobian eigenvalues at y(t1) "
                                      "(sgd: at the window-averaged state)"}),
            "enc_mean": (dims, v["enc_mean"], {"long_name": "sgd: mean |theta| over the "
                         "trailing window (NaN for flow, gd)"}),
            "drift": (dims, v["drift"],
                      {"long_name": "sgd: relative change of |theta| across the trailing window"}),
        }
        attrs = dict(
            ftol=config.options.ftol, collapse_rule=COLLAPSE_RULE,
            collapsed_percent="collapsed lanes / all lanes (undecided and failed lanes count in "
                              "the denominator)",
        )
        return data_vars, {}, attrs

    def plan(self, config, n_inner, n_lanes, memory=None, held=None):
        n_theta, n_phi = config.options.grid
        p = plan_sweep(n_theta=n_theta, n_phi=n_phi, n_blocks=n_lanes // n_inner,
                       n_inner=n_inner, methods=config.method, batch=config.batch,
                       chunk=config.chunk, memory=memory, held=held)
        chunk = {}
        for m in config.method:
            if m == "sgd":
                chunk[m] = p["sgd_chunk"]
            elif config.chunk is not None:
                chunk[m] = config.chunk
            elif m == "flow" and config.flow_integrator == "engine":
                chunk[m] = CHUNK_SIZE
            else:
                chunk[m] = DISCRETE_CHUNK
        return dict(p, chunk=chunk)

    def describe(self, config, n_lanes):
        n_theta, n_phi = config.options.grid
        what = [f"{n_lanes} lanes ({n_theta} x {n_phi} initial states x "
                f"{n_lanes // (n_theta * n_phi)} settings)"]
        for m in config.method:
            if m != "flow":
                what.append(f"{m}: {config.n_steps(m)} steps a lane (t1 {config.t1_for(m):g} / "
                            f"lr {config.lr:g})" + (f", minibatch {config.batch}" if m == "sgd" else ""))
        return "; ".join(what)

    def summarize(self, ds) -> str:
        return summarize(ds)

    def figures(self, ds, config):
        return [(f"basins_{v}.png", lambda v=str(v): basin_map(ds, v, suptitle=basin_title(ds, v)))
                for v in ds.variant.values]

    def n_figures(self, config):
        return len(config.variant)
