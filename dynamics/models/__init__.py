"""The toy systems, each defined by its loss through the :class:`Model` interface
(see :mod:`dynamics.models.base`)."""

from dynamics.models.barlow import BarlowTwinsLinear
from dynamics.models.base import Model
from dynamics.models.cosine import CosineSiamese
from dynamics.models.dino import DinoToy
from dynamics.models.directcopy import DirectCopyLinear
from dynamics.models.infonce import InfoNCELinear
from dynamics.models.isoloss import IsoLossLinear
from dynamics.models.linear import LinearSiamese
from dynamics.models.moco import MoCoLinear
from dynamics.models.permode import PerModeSiamese
from dynamics.models.scalar import ScalarSiamese
from dynamics.models.swav import SwAVToy
from dynamics.models.vicreg import VICRegLinear

__all__ = [
    "BarlowTwinsLinear", "CosineSiamese", "DinoToy", "DirectCopyLinear", "InfoNCELinear",
    "IsoLossLinear", "LinearSiamese", "Model", "MoCoLinear", "PerModeSiamese", "ScalarSiamese",
    "SwAVToy", "VICRegLinear",
]
