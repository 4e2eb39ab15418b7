"""The configuration of a CIFAR-10 run (no heavy imports: the command line's ``--help`` and
argument checks work without the ``cifar`` extra)."""

from __future__ import annotations

import math
from dataclasses import dataclass

METHODS = ("simsiam", "byol")
PREDICTORS = ("mlp", "linear", "random", "none", "directpred")


@dataclass(frozen=True)
class Config:
    """One training run. ``lr`` is the base rate; the step uses ``lr * batch_size / 256``."""

    method: str = "simsiam"
    epochs: int = 10
    batch_size: int = 128
    width: float = 0.25
    lr: float = 0.03
    momentum: float = 0.9
    wd: float = 5e-4
    predictor: str = "mlp"
    stop_grad: bool = True
    predictor_lr_ratio: float = 1.0
    fixed_predictor_lr: bool = False
    ema: float = 0.99
    dp_rho: float = 0.3
    dp_eps: float = 0.1
    subset: int | None = None
    test_subset: int | None = None
    knn_k: int = 200
    knn_t: float = 0.1
    knn_every: int = 1
    probe: bool = True
    seed: int = 0
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    compute_dtype: str = "float32"

    def validate(self) -> None:
        """Raise ``ValueError`` (one line, naming the value) for an inconsistent config."""
        if self.method not in METHODS:
            raise ValueError(f"method {self.method!r} is not one of {', '.join(METHODS)}")
        if self.predictor not in PREDICTORS:
            raise ValueError(f"predictor {self.predictor!r} is not one of {', '.join(PREDICTORS)}")
        for name in ("epochs", "batch_size", "knn_k", "knn_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("width", "lr", "predictor_lr_ratio", "knn_t"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive finite number, got {v}")
        if not (self.wd >= 0 and math.isfinite(self.wd)):
            raise ValueError(f"wd must be >= 0, got {self.wd}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.ema <= 1:
            raise ValueError(f"ema must be in [0, 1], got {self.ema}")
        if not 0 <= self.dp_rho < 1:
            raise ValueError(f"dp_rho must be in [0, 1), got {self.dp_rho}")
        if self.method == "byol" and not self.stop_grad:
            raise ValueError("no-stop-grad applies to simsiam only (BYOL's target is an EMA, never differentiated)")
        for name in ("subset", "test_subset"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"compute_dtype {self.compute_dtype!r} is not float32 or bfloat16")
        if not self.blocks or any(b < 1 for b in self.blocks) or len(self.blocks) != 4:
            raise ValueError(f"blocks must be 4 positive ints, got {self.blocks}")
        if self.subset is not None and self.subset < self.batch_size:
            raise ValueError(f"subset {self.subset} is smaller than batch_size {self.batch_size}")
