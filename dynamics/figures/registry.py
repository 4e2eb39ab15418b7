"""The figure registry: ``@register(name, caption)`` adds a builder to :data:`FIGURES`.

A builder is ``build(quick) -> (matplotlib figure, params dict)``; ``params`` goes into the
manifest next to the caption, so it should name the paper's parameters and every deliberate
difference from them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

__all__ = ["FIGURES", "FigureSpec", "register"]


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A registered figure: ``build(quick)`` returns ``(matplotlib figure, params dict)``."""

    name: str
    caption: str
    build: Callable


FIGURES: dict[str, FigureSpec] = {}


def register(name: str, caption: str):
    """Decorator registering ``build(quick)`` as figure ``name`` (names are unique)."""

    def deco(build):
        if name in FIGURES:
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES[name] = FigureSpec(name, caption, build)
        return build

    return deco
