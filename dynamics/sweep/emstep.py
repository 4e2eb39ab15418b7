"""The EM k-step family: scalar SimSiam whose target is a copy of the encoder refreshed every
``k`` discrete steps (Chen & He 2021, the EM view of SimSiam; docs/theory.md section "EM k-step").

``python -m dynamics.sweep --model emstep`` runs the scalar family's grid of ``(theta0, phi0)``
starts with GD on the expected loss for SimSiam (the target is the encoder at every step) and
for targets copied every ``k = 10, 100, 1000`` steps (variants ``em-k10`` ...; ``em-k1`` is
SimSiam's update exactly). As ``k h -> 0`` the copied target follows the encoder and the runs
recover SimSiam's flow; for ``k h`` long enough that each phase settles, the run is the map
``|T| -> sqrt((|T| - eta) / a)`` on the target (at ``eps = 1``), whose fixed points are
SimSiam's ``p_pm``: the basin boundary becomes the lines ``|theta0| = p_-``, whatever
``phi0``. A lane is classified by SimSiam's rule (a fixed point of the k-step map is a fixed
point of SimSiam's flow with the target equal to the encoder, and the reverse).

This module is all the family costs (the model is :class:`~dynamics.models.ScalarSiamese`).
"""

from __future__ import annotations

import numpy as np

from dynamics.plot import basin_map
from dynamics.sweep.family import register
from dynamics.sweep.scalar import DEFAULTS, ScalarFamily, basin_title
from dynamics.types import State, Variant

#: the copy intervals the family offers
K_VALUES = (1, 10, 100, 1000)
#: SimSiam (the target is the encoder at every step) and the k-step copies, by label
EM_VARIANTS = {"simsiam": Variant("simsiam"),
               **{f"em-k{k}": Variant("byol", True, copy_every=k, label=f"em-k{k}")
                  for k in K_VALUES}}
#: SimSiam's stop-gradient placement: what a k-step run's end state is judged by
SIMSIAM = Variant("simsiam")


@register
class EMStepFamily(ScalarFamily):
    order = 100  # after the built-in families (the scalar family it extends is listed first)
    name = "emstep"
    description = (
        "Sweep scalar SimSiam with its target copied from the encoder every k GD steps (the EM "
        "view of Chen & He 2021; variants em-k1 ... em-k1000, em-k1 is SimSiam) over a grid of "
        "initial conditions (theta0, phi0); classify every lane by SimSiam's rule; write "
        "OUT/sweep_emstep.nc and a basin map per variant."
    )
    variants = EM_VARIANTS
    ignores = ("beta",)
    defaults = dict(DEFAULTS, eps=(1.0,), eta=(0.15,), method=("gd",), lr=0.01,
                    variant=("simsiam", "em-k10", "em-k100", "em-k1000"))
    t1_default = {"flow": 400.0, "gd": 400.0, "sgd": 60.0}
    result_file = "sweep_emstep.nc"
    result_patterns = ("sweep_emstep.nc", "basins_emstep_*.png")
    help = dict(ScalarFamily.help,
                lr="GD/SGD step h in ODE time; a copy every k steps refreshes the target every "
                   "k h time units")

    @property
    def result_kind(self) -> str:
        return f"sweep-{self.name}"

    def check(self, config) -> None:
        super().check(config)
        copied = [v for v in config.variant if self.variants[v].copy_every]
        if copied and "flow" in config.method:
            raise ValueError(f"variant {copied[0]!r} copies its target every "
                             f"{self.variants[copied[0]].copy_every} steps: it has no flow "
                             "(use --method gd or sgd)")

    def read(self, config, ctx, method, model, variant, hyper, y, status, window):
        # judged as SimSiam: the online weights, the target set to the encoder
        out = super().read(config, ctx, method, model, SIMSIAM, hyper,
                           State(y.enc, y.pred), status,
                           None if window is None else State(window.enc, window.pred))
        if variant.has_target:
            out["theta_a"] = y.tgt
        return out

    def finish(self, config, ctx, dims, values):
        data_vars, coords, attrs = super().finish(config, ctx, dims, values)
        data_vars["theta_a"][2]["long_name"] = ("final target theta_a(t1): the encoder at the "
                                                "last copy (SimSiam: equals theta)")
        k = np.array([self.variants[v].copy_every for v in config.variant])
        coords["copy_every"] = ("variant", k, {"long_name": "steps between target copies (0: "
                                               "the target is the encoder at every step)"})
        attrs["judged_as"] = "SimSiam's flow and Jacobian at the online weights (target = encoder)"
        return data_vars, coords, attrs

    def figures(self, ds, config):
        return [(f"basins_emstep_{v}.png",
                 lambda v=str(v): basin_map(ds, v, suptitle=basin_title(ds, v)))
                for v in ds.variant.values]

