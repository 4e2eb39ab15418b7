"""The settings of the toy-versus-CIFAR table: each a CIFAR config (flags of
``python -m dynamics.cifar``) and its toy counterpart (:func:`dynamics.predict.mapping.to_toy`).

Two run plans (grids), each fixed before its runs: ``grid1``: width 0.125, a 5000-image subset,
seeds 0 and 1, 3 epochs at base lr 0.1 (batch 128, momentum 0.9), kNN every epoch, no linear
probe, called with mapping ``v1``; ``grid2``: the same with 5 epochs, seeds 2 and 3, kNN at the
start and the end only, called with mapping ``v2`` (:mod:`dynamics.predict.mapping`). The values
not named keep :class:`dynamics.cifar.config.Config`'s defaults.

Why 3 epochs at lr 0.1: the whole grid (17 settings x 2 seeds) must fit in about 50 minutes of a
quiet 2-core CPU; a run costs about 17 s an epoch plus about 25 s of compiling and evaluating, so
3 epochs (117 steps). lr 0.1 rather than 0.03 because one step is ``h = lr * B/256 / (1 - momentum)``
of the toy's time (mapping.step_in_ode_time): 117 steps cover about 58 time units at lr 0.1 and 18
at lr 0.03, and the toy's modes need several ``1 / (A_j p_+^2)`` (a few units) to settle.

``grid2`` runs 5 epochs (195 steps, 98 time units): a quiet epoch measured 12.4 s (the kNN's
2000 test and 5000 training embeddings take a few seconds more each time), so 36 runs of 5
epochs with kNN only at the start and the end, in two runners side by side, fit the hour. It
adds ``wd-1e-1``, a decay that collapsed a 3-epoch run before either grid (kNN 16.7 %, top share
0.99), so that the decays reach a collapsing one on the CIFAR side too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynamics.predict.mapping import ToyParams, to_toy


@dataclass(frozen=True)
class Plan:
    """A grid's run plan: the flags every run shares, the seeds, and the mapping declared for it."""

    common: dict
    seeds: tuple
    mapping: str


_GRID1_COMMON = {"width": 0.125, "subset": 5000, "test_subset": 2000, "epochs": 3, "lr": 0.1,
                 "knn_every": 1, "probe": False}
PLANS = {
    "grid1": Plan(_GRID1_COMMON, (0, 1), "v1"),
    # the first grid's flags with longer runs, kNN only at the start and the end
    "grid2": Plan({**_GRID1_COMMON, "epochs": 5, "knn_every": 5}, (2, 3), "v2"),
}
#: the newest plan: what ``python -m dynamics.predict`` runs without ``--grid``
DEFAULT_PLAN = "grid2"
#: flags every run of the default plan shares, and its seeds
COMMON = PLANS[DEFAULT_PLAN].common
SEEDS = PLANS[DEFAULT_PLAN].seeds


def plan(name: str) -> Plan:
    if name not in PLANS:
        raise ValueError(f"no grid {name!r}; known: {', '.join(PLANS)}")
    return PLANS[name]


@dataclass(frozen=True)
class Setting:
    """One row: ``name``, the mechanism it varies, the CIFAR flags (``None`` where the CIFAR path
    has no such switch yet: ``missing`` says which) and the toy counterpart."""

    name: str
    group: str
    overrides: dict = field(default_factory=dict)
    missing: str | None = None
    grids: tuple = tuple(PLANS)   # the run plans this setting is part of

    @property
    def config(self) -> dict:
        """The run's :class:`dynamics.cifar.config.Config` fields in the default plan."""
        return self.config_in(DEFAULT_PLAN)

    def config_in(self, plan_name: str) -> dict:
        """The run's :class:`dynamics.cifar.config.Config` fields in plan ``plan_name``."""
        return {**plan(plan_name).common, **self.overrides}

    @property
    def runnable(self) -> bool:
        return self.missing is None

    def cli_args(self, plan_name: str = DEFAULT_PLAN) -> list[str] | None:
        """The ``python -m dynamics.cifar`` flags of this setting, or ``None`` if not runnable."""
        if not self.runnable:
            return None
        args = []
        for k, v in self.config_in(plan_name).items():
            if k in ("stop_grad", "probe"):
                args += [] if v else [f"--no-{k.replace('_', '-')}"]
            else:
                args += [f"--{k.replace('_', '-')}", str(v)]
        return args

    def toy(self, plan_name: str = DEFAULT_PLAN, mapping: str | None = None) -> ToyParams:
        """The toy counterpart under ``mapping`` (default: the plan's declared one)."""
        return to_toy(**self.config_in(plan_name), mapping=mapping or plan(plan_name).mapping)


SETTINGS: tuple[Setting, ...] = (
    Setting("baseline", "reference"),
    Setting("no-stop-grad", "stop-gradient", {"stop_grad": False}),
    Setting("predictor-linear", "predictor", {"predictor": "linear"}),
    Setting("predictor-none", "predictor", {"predictor": "none"}),
    Setting("predictor-random", "predictor", {"predictor": "random"}),
    Setting("predictor-directpred", "predictor", {"predictor": "directpred"}),
    Setting("wd-0", "weight decay", {"wd": 0.0}),
    Setting("wd-1e-4", "weight decay", {"wd": 1e-4}),
    Setting("wd-5e-3", "weight decay", {"wd": 5e-3}),
    Setting("wd-2e-2", "weight decay", {"wd": 2e-2}),
    Setting("wd-5e-2", "weight decay", {"wd": 5e-2}),
    Setting("wd-1e-1", "weight decay", {"wd": 1e-1}, grids=("grid2",)),
    Setting("pred-lr-0.1", "predictor lr ratio", {"predictor_lr_ratio": 0.1}),
    Setting("pred-lr-10", "predictor lr ratio", {"predictor_lr_ratio": 10.0}),
    Setting("byol-ema-0.9", "EMA momentum", {"method": "byol", "ema": 0.9}),
    Setting("byol-ema-0.99", "EMA momentum", {"method": "byol", "ema": 0.99}),
    Setting("byol-ema-0.996", "EMA momentum", {"method": "byol", "ema": 0.996}),
    Setting("byol-no-predictor", "predictor", {"method": "byol", "predictor": "none"}),
)


def settings_of(plan_name: str) -> list[Setting]:
    """The settings of run plan ``plan_name``, in table order."""
    plan(plan_name)
    return [s for s in SETTINGS if plan_name in s.grids]


def setting(name: str) -> Setting:
    for s in SETTINGS:
        if s.name == name:
            return s
    raise ValueError(f"no setting {name!r}; known: {', '.join(s.name for s in SETTINGS)}")
