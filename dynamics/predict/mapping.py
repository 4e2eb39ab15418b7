"""How a CIFAR run's hyperparameters map onto the linear toy, the toy's prediction, and the
thresholds that call a CIFAR run's outcome. Fixed here before any run (docs/theory.md,
"From the real pipeline to the toy"); nothing here reads a CIFAR result.

The toy is linear SimSiam / BYOL (docs/theory.md section 3) reduced to independent modes, with
data spectrum ``d_j`` and isotropic augmentation noise ``sigma2``. Mode ``j`` follows

    theta' = phi (d theta_a - A phi theta) - eta theta,       A = d + sigma2
    eps phi' = theta (d theta_a - A phi theta) - eta phi       (loss convention)
    theta_a' = beta (theta - theta_a)                         (SimSiam: theta_a = theta)

and survives when a fixed point with ``theta != 0`` exists and is stable.

Two mappings are declared, each before the grid it was first tested on (docs/theory.md 7b):

- ``v1`` (before the first grid: 3 epochs, seeds 0 and 1): weight decay ``eta = wd * d`` (unit-vector
  units); a fixed random predictor counts the data directions with a growing mode; DirectPred's
  modes are compared with the first data mode held at ``p = 1 + eps_dp``.
- ``v2`` (written after the first grid's outcomes were known, committed before the second grid:
  5 epochs, seeds 2 and 3): ``eta = wd`` (the embedding's per-channel variance is 1, set by the
  projector's output BatchNorm, and one step of SGD with momentum is ``h`` of ODE time for the
  gradient and for the decay alike); a fixed random predictor's embedding is the end state of the
  toy's linear flow, which keeps only its fastest-growing eigenspace; DirectPred's loss is
  scale-free, so its call is the stationary shares of the embedding under the running ``s_max``.
  Everything else is ``v1``'s.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from dynamics.models.permode import mode_eta_crit

#: weight decay convention: the CIFAR step is ``phi -= lr * ratio * (g + wd * phi)``, i.e. the
#: decay is inside each group's gradient: docs/theory.md's "loss convention", eta_phi = eta.
CONVENTION = "loss"
#: augmentation strength: the CIFAR path has one (SimSiam's) augmentation, with crops down to
#: 20 % of the area and strong colour jitter; taken as noise as strong as the signal.
SIGMA2 = 1.0
#: data spectrum of the toy: d_j proportional to 1/j (natural-image spectra), mean 1 over the d modes
SPECTRUM_EXPONENT = 1.0
#: seed of the toy's fixed random predictor
RANDOM_PREDICTOR_SEED = 0
#: the declared mappings (module docstring); the default is the newest
MAPPINGS = ("v1", "v2")
DEFAULT_MAPPING = "v2"
#: v2, DirectPred: the toy time its share dynamics run to before the shares are read (a
#: direction that is not kept loses its share exponentially long before)
DP_SETTLE_TIME = 2000.0
#: outcome classes, shared by the toy column and the CIFAR column
OUTCOMES = ("collapsed", "partial", "healthy")
#: a run (toy or CIFAR) keeping at least this many embedding directions is healthy
HEALTHY_MODES = 16
#: CIFAR thresholds: collapsed if the top direction holds at least this share of E[u u^T] ...
COLLAPSE_TOP_SHARE = 0.9
#: ... or the std of z/||z|| is below this fraction of 1/sqrt(d) ...
COLLAPSE_STD_RATIO = 0.1
#: ... or the final kNN is below the random-init kNN of the same set-up by more than this. A kNN
#: accuracy near 0.25 on the 2000 test images has a binomial standard error of
#: sqrt(0.25 * 0.75 / 2000) = 0.0097; a healthy SimSiam's kNN first dips below the random-init
#: value before it rises (notes on the CIFAR path), so a short run level with the random-init kNN
#: is no sign of collapse: only a drop beyond 3 standard errors is.
KNN_DROP = 0.03


@dataclass(frozen=True)
class ToyParams:
    """The toy's counterpart of one CIFAR setting."""

    method: str            # "simsiam" or "byol"
    stop_grad: bool
    predictor: str         # "trained", "none", "random", "directpred"
    eta: float             # weight decay in toy units (loss convention)
    alpha_p: float         # predictor rate ratio, 1/eps
    beta: float | None     # EMA rate (BYOL), None for SimSiam
    sigma2: float
    d: int                 # embedding dimension (modes)
    dp_eps: float = 0.1
    mapping: str = DEFAULT_MAPPING


def embedding_dim(width: float) -> int:
    """Projector output size of the CIFAR network: 2048 x width (dynamics.cifar.model.widths)."""
    return max(1, int(round(2048 * width)))


def step_in_ode_time(lr: float, batch_size: int, momentum: float) -> float:
    """ODE time of one SGD step: the scaled rate ``lr * B / 256`` over ``1 - momentum`` (heavy
    ball's stationary step; docs/theory.md section 1, "Discrete updates")."""
    return lr * batch_size / 256.0 / (1.0 - momentum)


def to_toy(method: str = "simsiam", stop_grad: bool = True, predictor: str = "mlp", wd: float = 5e-4,
           predictor_lr_ratio: float = 1.0, ema: float = 0.99, lr: float = 0.03, batch_size: int = 128,
           momentum: float = 0.9, width: float = 0.125, dp_eps: float = 0.1, mapping: str = DEFAULT_MAPPING,
           **_ignored) -> ToyParams:
    """Map CIFAR hyperparameters (names of :class:`dynamics.cifar.config.Config`) onto the toy.

    - ``v1``: ``wd -> eta = wd * d``: the toy's data has unit variance per mode; the real loss
      compares unit vectors, whose variance per direction is ``1/d``. Scaling the data by ``c``
      scales every per-mode threshold ``eta_crit_j = d_j^2 / (4 A_j)`` by ``c``, which is the same
      as scaling ``eta`` by ``1/c = d``.
    - ``v2``: ``wd -> eta = wd``: the embedding that meets the loss has per-channel variance 1 (the
      projector's output BatchNorm), the toy's data has mean variance 1 per mode, so no rescaling;
      a step moves the weights by ``lr_eff (g + wd w)`` with ``lr_eff = lr B/256 / (1 - momentum)``
      in the heavy ball's stationary regime, and ``h = lr_eff`` is one step of ODE time, so the
      decay per unit of ODE time is ``wd``.
    - ``predictor_lr_ratio -> alpha_p = 1/eps``; ``mlp`` and ``linear`` are both a trained predictor.
    - ``ema m, step h -> beta = (1 - m)/h`` (``theta_a <- m theta_a + (1 - m) theta``).
    - augmentation -> ``sigma2 = SIGMA2``.
    """
    for name, v in (("wd", wd), ("lr", lr), ("predictor_lr_ratio", predictor_lr_ratio), ("width", width)):
        if not (math.isfinite(v) and v >= 0) or (name != "wd" and v == 0):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'wd' else 'positive'} number, got {v}")
    kinds = {"mlp": "trained", "linear": "trained", "none": "none", "random": "random",
             "directpred": "directpred"}
    if predictor not in kinds:
        raise ValueError(f"predictor {predictor!r} is not one of {', '.join(kinds)}")
    if method not in ("simsiam", "byol"):
        raise ValueError(f"method {method!r} is not simsiam or byol")
    if mapping not in MAPPINGS:
        raise ValueError(f"mapping {mapping!r} is not one of {', '.join(MAPPINGS)}")
    d = embedding_dim(width)
    beta = (1.0 - ema) / step_in_ode_time(lr, batch_size, momentum) if method == "byol" else None
    return ToyParams(method=method, stop_grad=stop_grad, predictor=kinds[predictor],
                     eta=wd * d if mapping == "v1" else wd, alpha_p=predictor_lr_ratio, beta=beta,
                     sigma2=SIGMA2, d=d, dp_eps=dp_eps, mapping=mapping)


def spectrum(d: int) -> np.ndarray:
    """The toy's data variances ``d_j ~ j^-SPECTRUM_EXPONENT``, mean 1, descending."""
    s = np.arange(1, d + 1, dtype=float) ** -SPECTRUM_EXPONENT
    return s * d / s.sum()


def _mode_survives(dj: float, aj: float, eta: float, eps: float, beta: float | None) -> bool:
    """Trained predictor: does mode ``(d_j, A_j)`` have a stable fixed point with ``theta != 0``?"""
    if eta == 0:
        return True      # every theta with phi = d/A is a fixed point: nothing decays
    if eta > float(mode_eta_crit(dj, aj - dj)):
        return False     # past the saddle-node, eta > eta_crit_j = d_j^2 / (4 A_j)
    p = (dj + math.sqrt(max(dj * dj - 4 * aj * eta, 0.0))) / (2 * aj)
    s = eta * p / (dj - aj * p)             # theta^2 at the fixed point (loss convention)
    th = math.sqrt(s)
    r = dj * th - 2 * aj * p * th           # d/dtheta and d/dphi of the shared residual
    jac = [[-aj * p * p - eta, r, p * dj],
           [r / eps, (-aj * s - eta) / eps, th * dj / eps]]
    if beta is None:     # SimSiam: theta_a = theta
        j = np.array([[jac[0][0] + jac[0][2], jac[0][1]], [jac[1][0] + jac[1][2], jac[1][1]]])
    else:
        j = np.array(jac + [[beta, 0.0, -beta]])
    return bool(np.max(np.linalg.eigvals(j).real) < 0)


@functools.lru_cache(maxsize=128)
def live_modes(tp: ToyParams) -> int:
    """How many of the toy's ``d`` modes survive (0: collapsed)."""
    dj = spectrum(tp.d)
    aj = dj + tp.sigma2
    if not tp.stop_grad:
        return 0         # Theorem 2: lambda_min(H) >= lambda_min(X') + eta > 0
    if tp.predictor == "none":
        # Wp = I: theta' = d theta_a - (A + eta) theta; SimSiam: -(sigma2 + eta) theta;
        # BYOL: the (theta, theta_a) block has trace < 0 and determinant beta (sigma2 + eta) > 0.
        return 0
    if tp.predictor == "trained":
        return sum(_mode_survives(a, b, tp.eta, 1.0 / tp.alpha_p, tp.beta) for a, b in zip(dj, aj))
    if tp.predictor == "random":
        # SimSiam, fixed Wp (Dense init, entries N(0, 1/d)): column j of W follows the linear flow
        # w_j' = M_j w_j, M_j = d_j Wp^T - A_j Wp^T Wp - eta I.
        rng = np.random.default_rng(RANDOM_PREDICTOR_SEED)
        wp = rng.normal(scale=1 / math.sqrt(tp.d), size=(tp.d, tp.d))
        c = wp.T @ wp
        ev = [np.linalg.eigvals(a * wp.T - b * c) for a, b in zip(dj, aj)]
        if tp.mapping == "v1":  # data directions with a growing mode
            return sum(bool(np.max(e.real) - tp.eta > 0) for e in ev)
        return _random_predictor_end_state(ev, tp.eta)
    if tp.mapping == "v2":
        return _directpred_kept(dj, aj, tp.eta, tp.dp_eps)
    # v1, DirectPred: p_j = sqrt(s_j / s_max) + eps_dp fixes the top mode's p at 1 + eps_dp; mode j
    # grows at g_j(p) = p d_j - p^2 A_j - eta. All decay if the top mode does; else mode j keeps a
    # share of the embedding if some p in [eps_dp, 1 + eps_dp] lets it grow as fast as the top.
    p1 = 1.0 + tp.dp_eps
    g1 = p1 * dj[0] - p1 * p1 * aj[0] - tp.eta
    if g1 < 0:
        return 0
    pv = np.clip(dj / (2 * aj), tp.dp_eps, p1)      # maximiser of g_j on the interval
    return int(np.sum(pv * dj - pv * pv * aj - tp.eta >= g1 - 1e-12))


def _random_predictor_end_state(eigenvalues, eta: float) -> int:
    """v2, fixed random predictor: directions of the toy's embedding at its end state.

    The flow is linear, so from a generic start ``W(t)`` is dominated by the eigenspace of the
    largest real part over all ``M_j``: one direction for a real eigenvalue, a plane for a complex
    pair. If nothing grows (largest real part ``<= eta``) the embedding decays to zero: collapsed.
    """
    tops = [e[np.argmax(e.real)] for e in eigenvalues]
    top = max(tops, key=lambda z: z.real)
    if top.real - eta <= 0:
        return 0
    return 1 if abs(top.imag) <= 1e-12 * max(1.0, abs(top.real)) else 2


def directpred_shares(dj: np.ndarray, aj: np.ndarray, eta: float, dp_eps: float,
                      t_end: float = DP_SETTLE_TIME) -> np.ndarray:
    """v2, DirectPred: the shares of the toy's embedding ``d_j theta_j^2`` after ``t_end``.

    Mode ``j`` grows at ``g_j = p_j d_j - p_j^2 A_j - eta`` with ``p_j = sqrt(s_j / s_max) + eps_dp``
    and ``s_j = A_j theta_j^2`` (the running correlation of the online embedding, as DirectPred
    estimates it). The flow of ``u_j = log theta_j`` depends on differences of ``u`` only: scaling
    every ``theta`` leaves it unchanged, as the real loss on ``z / ||z||`` does, so the overall
    scale (which the MSE toy lets decay) has no counterpart and only the shares are read. Start:
    every ``theta_j`` equal.
    """
    from scipy.integrate import solve_ivp

    def field(_t, u):
        s = aj * np.exp(2 * (u - u.max()))
        p = np.sqrt(s / s.max()) + dp_eps
        return p * dj - p * p * aj - eta

    sol = solve_ivp(field, (0.0, t_end), np.zeros(len(dj)), method="LSODA", rtol=1e-8, atol=1e-10)
    if not sol.success:  # pragma: no cover - a smooth, bounded field
        raise RuntimeError(f"DirectPred share flow failed: {sol.message}")
    v = dj * np.exp(2 * (sol.y[:, -1] - sol.y[:, -1].max()))
    return v / v.sum()


def effective_rank_of_variances(v: np.ndarray) -> float:
    """Effective rank of an embedding whose principal variances are ``v``: the entropy rank of
    its singular values ``sqrt(v)``, the measure the CIFAR runs are called by
    (:func:`dynamics.analysis.collapse_metrics.embedding_collapse`)."""
    from dynamics.analysis.collapse_metrics import effective_rank

    return float(effective_rank(np.sqrt(np.asarray(v, dtype=float))))


def _directpred_kept(dj, aj, eta, dp_eps) -> int:
    """v2, DirectPred: the effective rank of the embedding at its stationary shares, rounded down."""
    return int(math.floor(effective_rank_of_variances(directpred_shares(dj, aj, eta, dp_eps)) + 1e-9))


def classify_modes(n: float) -> str:
    """Outcome class from a number of kept directions (toy modes or a CIFAR effective rank)."""
    return "collapsed" if n < 1.5 else "partial" if n < HEALTHY_MODES else "healthy"


def toy_prediction(tp: ToyParams) -> dict:
    """``{"outcome", "modes"}``: the toy's call for one setting."""
    n = live_modes(tp)
    return {"outcome": "collapsed" if n == 0 else classify_modes(n), "modes": int(n)}


def cifar_outcome(effective_rank: float, std_ratio: float, top_share: float, knn: float,
                  knn_random_init: float) -> str:
    """The outcome class of a finished CIFAR run from its final embedding measures and kNN."""
    vals = dict(effective_rank=effective_rank, std_ratio=std_ratio, top_share=top_share, knn=knn,
                knn_random_init=knn_random_init)
    for k, v in vals.items():
        if not math.isfinite(v):
            raise ValueError(f"{k} must be finite, got {v}")
    if (top_share >= COLLAPSE_TOP_SHARE or std_ratio < COLLAPSE_STD_RATIO
            or knn < knn_random_init - KNN_DROP):
        return "collapsed"
    return classify_modes(effective_rank)
