"""A live basin explorer of scalar SimSiam/BYOL: ``python -m dynamics.explore``.

Sliders for ``eps``, ``eta``, ``sigma2`` and ``beta``, choices of the variant (SimSiam or
BYOL, with or without stop-gradient), the weight-decay convention and the model; every move
recomputes the basin map (the sweep's labels, by the engine), with the fixed points, their
stability and the separatrix overlaid; a click on the map integrates that start and draws its
trajectory and time course.

- :mod:`~dynamics.explore.compute`: the numbers (no user interface; needs nothing extra).
- :mod:`~dynamics.explore.ui`: the page (Panel and Bokeh: ``pip install -e ".[explore]"``).

In a notebook, ``dynamics.explore.app()`` is the same page, shown inline.
"""

from __future__ import annotations

from dynamics.explore.compute import Settings

__all__ = ["Settings", "app", "explorer"]

MISSING = 'the explorer needs panel: pip install -e ".[explore]"'


def _ui():
    try:
        from dynamics.explore import ui
    except ImportError as e:
        if getattr(e, "name", None) in ("panel", "bokeh"):
            raise ImportError(MISSING) from None
        raise
    return ui


def explorer(settings: Settings | None = None, **changes):
    """The explorer (:class:`dynamics.explore.ui.Explorer`) at ``settings`` with ``changes``;
    its ``layout`` is the page."""
    s = (settings or Settings()).replace(**changes)
    return _ui().Explorer(s)


def app(settings: Settings | None = None, **changes):
    """The explorer's page as a Panel object: serve it, or show it in a notebook."""
    return explorer(settings, **changes).layout
