"""Old names that keep working for one release, with a ``DeprecationWarning`` naming the new one."""

from __future__ import annotations

import warnings


def moved(module_name: str, table: dict):
    """A module ``__getattr__`` serving ``table = {old_name: (new_path, object)}``.

    Each access warns (``DeprecationWarning``, attributed to the caller) and returns the object.
    """

    def __getattr__(name):
        if name in table:
            new, obj = table[name]
            warnings.warn(f"{module_name}.{name} is deprecated; use {new}", DeprecationWarning,
                          stacklevel=2)
            return obj
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    return __getattr__
