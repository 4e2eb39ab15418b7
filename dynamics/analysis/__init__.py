"""Analyses that work for any model through its vector field (scalar, per-mode, matrix).

- :mod:`~dynamics.analysis.system`: a system or a model's flow, flattening (the system types
  themselves are :class:`dynamics.flow.System` and :class:`dynamics.flow.FlowSystem`).
- :mod:`~dynamics.analysis.fixed_points`: multi-start Newton, de-duplication, autodiff spectra,
  the fixed-point type (:func:`fixed_point_kind`; a run's collapse label is
  :mod:`dynamics.classify`).
- :mod:`~dynamics.analysis.continuation`: pseudo-arclength continuation in one parameter,
  saddle-node location, bifurcation-diagram datasets.
- :mod:`~dynamics.analysis.slowfast`: critical manifold, reduced slow system, full-vs-reduced
  comparison over eps, where the reduction breaks.
- :mod:`~dynamics.analysis.collapse_metrics`: singular values, effective rank, collapsed modes.
- :mod:`~dynamics.analysis.alignment`: commutator ``[F, Wp]``, eigen-alignment, Theorems 2-3.
"""

from dynamics.analysis.alignment import (
    alignment_summary,
    commutator_norm,
    eigen_alignment,
    feature_correlation,
    lambda_min_sym,
    sym_antisym,
    theorem2_H,
    theorem3_K,
)
from dynamics.analysis.collapse_metrics import (
    collapse_scores,
    collapse_summary,
    collapsed_fraction,
    effective_rank,
    encoder_singular_values,
    frobenius_norm,
    n_collapsed,
    participation_ratio,
    singular_values,
)
from dynamics.analysis.continuation import (
    Branch,
    bifurcation_diagram,
    continue_branch,
    eta_param,
    hyper_param,
    locate_fold,
    model_param,
)
from dynamics.analysis.fixed_points import (
    FixedPoint,
    eigenvalues,
    find_fixed_points,
    fixed_point_kind,
    newton,
    random_starts,
    stability,
)
from dynamics.analysis.slowfast import (
    ReducedSystem,
    compare_full_reduced,
    reduction_map,
    relaxation_rate,
    slow_eigenvalues,
    slow_rate,
)
from dynamics.analysis.system import FlowSystem, System, as_system, jacobian
from dynamics.compat import moved

__all__ = [
    "Branch",
    "FixedPoint",
    "FlowSystem",
    "System",
    "ReducedSystem",
    "alignment_summary",
    "bifurcation_diagram",
    "as_system",
    "collapse_scores",
    "collapse_summary",
    "collapsed_fraction",
    "commutator_norm",
    "compare_full_reduced",
    "continue_branch",
    "effective_rank",
    "eigen_alignment",
    "eigenvalues",
    "encoder_singular_values",
    "eta_param",
    "feature_correlation",
    "find_fixed_points",
    "fixed_point_kind",
    "frobenius_norm",
    "hyper_param",
    "jacobian",
    "lambda_min_sym",
    "locate_fold",
    "stability",
    "model_param",
    "n_collapsed",
    "newton",
    "participation_ratio",
    "random_starts",
    "reduction_map",
    "relaxation_rate",
    "singular_values",
    "slow_eigenvalues",
    "slow_rate",
    "sym_antisym",
    "theorem2_H",
    "theorem3_K",
]


__getattr__ = moved("dynamics.analysis", {
    "classify": ("dynamics.analysis.fixed_point_kind (the collapse label of a run is "
                 "dynamics.classify)", fixed_point_kind),
})
