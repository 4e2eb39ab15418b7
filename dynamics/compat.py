"""Old names that keep working for one release, with a ``DeprecationWarning`` naming the new one."""

from __future__ import annotations

import warnings


class Lazy:
    """An object of a :func:`moved` table that is only loaded (``load()``) when it is asked
    for: one that lives in a module the package does not import up front."""

    def __init__(self, load):
        self.load = load


def moved(module_name: str, table: dict, lazy: dict | None = None):
    """A module ``__getattr__`` serving ``table = {old_name: (new_path, object)}``, and the
    current names of ``lazy = {name: load}`` (objects of modules imported on first use).

    Each access to an old name warns (``DeprecationWarning``, attributed to the caller) and
    returns the object (a :class:`Lazy` one loaded then); a ``lazy`` name returns ``load()``.
    """
    lazy = lazy or {}

    def __getattr__(name):
        if name in table:
            new, obj = table[name]
            warnings.warn(f"{module_name}.{name} is deprecated; use {new}", DeprecationWarning,
                          stacklevel=2)
            return obj.load() if isinstance(obj, Lazy) else obj
        if name in lazy:
            return lazy[name]()
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__


def duck_hook(obj, name: str):
    """The optional hook ``name`` of a model that does not subclass
    :class:`dynamics.models.Model` (the attribute, or ``None``), with a ``DeprecationWarning``:
    such models keep working for this release with the old attribute lookup."""
    warnings.warn(f"{type(obj).__name__} does not subclass dynamics.models.Model; its optional "
                  f"hook {name!r} is looked up by attribute for this release only",
                  DeprecationWarning, stacklevel=3)
    return getattr(obj, name, None)
