"""Checks of the values a public constructor or entry point receives: one wording everywhere.

Every check raises ``ValueError`` with one line that names the argument and the bad value, and
checks only what it can see. Models and hyperparameters are JAX pytrees: JAX rebuilds them with
tracers (under ``jit``, ``vmap``, ``grad``), with placeholder objects (when it matches axis
specifications to a tree) or with ``None``, so a leaf that is not a concrete number is passed
through unchecked (:func:`concrete`). Under ``jit`` a check therefore costs nothing at run time:
it runs once, at trace time, and sees only tracers.

This module is the ground floor of the package: it imports nothing of it.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

#: relative tolerance of the symmetry and positive-semi-definiteness checks of a matrix
#: (a few hundred float64 roundings of its largest entry)
MATRIX_RTOL = 1e-10


def concrete(value):
    """``value`` as a numpy array when it is concrete, else ``None`` (nothing to check).

    Concrete: Python and numpy numbers, numpy arrays, concrete JAX arrays, (nested) lists and
    tuples of numbers. Not concrete: ``None``, JAX tracers, booleans (the masks with which
    JAX libraries filter a pytree, e.g. equinox inside diffrax) and any other object (JAX's
    placeholders while it rebuilds a pytree). Strings and bytes are not numbers:
    :func:`check_real` raises for them.
    """
    if value is None or isinstance(value, (jax.core.Tracer, bool, np.bool_)):
        return None
    if isinstance(value, (numbers.Number, np.ndarray, np.generic, list, tuple, jax.Array)):
        try:
            arr = np.asarray(value)
        except Exception:  # an abstract array that cannot be read: nothing to check
            return None
        return None if arr.dtype.kind == "b" else arr
    return None


def _show(value) -> str:
    """``value`` for a message: its numbers when few, else its shape."""
    if isinstance(value, (str, bytes)):
        return repr(value)
    try:
        arr = np.asarray(value)
    except Exception:
        return repr(value)
    if arr.dtype == object:
        return repr(value)
    if arr.size > 6:
        return f"an array of shape {arr.shape}"
    return repr(arr.tolist())


def as_leaf(value):
    """A list or tuple of numbers as a float array (so that arithmetic on a model's leaves is
    array arithmetic, not list concatenation); anything else unchanged."""
    if isinstance(value, (list, tuple)):
        arr = np.asarray(value)
        if arr.dtype.kind in "iuf":
            return jnp.asarray(arr, dtype=float)
    return value


def _bad_entry(arr, mask):
    """The first entry of ``arr`` where ``mask`` is set, as a Python number."""
    return arr.reshape(-1)[int(np.argmax(mask.reshape(-1)))].item()


def check_real(name: str, value, *, positive: bool = False, nonneg: bool = False,
               finite: bool = True) -> None:
    """``ValueError`` unless every entry of ``value`` is a real number (finite, and ``> 0`` or
    ``>= 0`` when asked). Non-concrete values (tracers) pass unchecked."""
    if type(value) in (float, int):  # the common case, without numpy
        ok = math.isfinite(value) or not finite
        if ok and (not positive or value > 0) and (not nonneg or value >= 0):
            return
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    arr = concrete(value)
    if arr is None:
        return
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real number, got {_show(value)}")
    if finite and arr.dtype.kind == "f":
        _refuse(name, value, arr, ~np.isfinite(arr), "finite")
    with np.errstate(invalid="ignore"):
        if positive:
            _refuse(name, value, arr, ~(arr > 0), "> 0")
        if nonneg:
            _refuse(name, value, arr, ~(arr >= 0), ">= 0")


def _refuse(name, value, arr, bad, word) -> None:
    """One line naming the first bad entry (and the whole value when it is an array)."""
    if not bad.any():
        return
    if arr.ndim == 0:
        shown = value if isinstance(value, numbers.Number) else arr.item()
        raise ValueError(f"{name} must be {word}, got {shown!r}")
    raise ValueError(f"{name} must be {word}, got {_bad_entry(arr, bad)!r} in {_show(value)}")


def check_number(name: str, value, *, positive=False, nonneg=False, integer=False, maximum=None,
                 **_) -> None:
    """``ValueError`` unless ``value`` is one finite number within the bounds (a string that
    reads as one is taken: command lines pass their words on). The message shows ``value``
    as it was given."""
    number = value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if integer and number != int(number):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if positive and not number > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    if nonneg and not number >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    if maximum is not None and number > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")


def check_count(name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an ``int`` when it is a whole number ``>= minimum``; ``ValueError`` else.

    Counts (steps, lanes, sizes) shape compiled programs, so they must be concrete."""
    if isinstance(value, bool) or isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    arr = concrete(value)
    if arr is None or arr.ndim != 0 or arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = arr.item()
    if not (math.isfinite(v) and v == int(v) and v >= minimum):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(v)


def check_choice(name: str, value, choices) -> None:
    """``ValueError`` unless ``value`` is one of ``choices`` (compared exactly)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"unknown {name} {value!r}: expected {' or '.join(map(repr, choices))}"
            if len(choices) <= 2 else
            f"unknown {name} {value!r}: expected one of {', '.join(choices)}"
        )


def check_psd_matrix(name: str, value) -> None:
    """``ValueError`` unless ``value`` is a finite, symmetric, positive semi-definite square
    matrix (or a stack of them on leading axes; each is checked). Tolerance
    :data:`MATRIX_RTOL` relative to the largest entry. Non-concrete values pass unchecked."""
    arr = concrete(value)
    if arr is None:
        return
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{name} must be a square matrix, got shape {tuple(arr.shape)}")
    check_real(name, arr)
    a = arr.astype(float)
    scale = max(float(np.max(np.abs(a))) if a.size else 0.0, np.finfo(float).tiny)
    asym = float(np.max(np.abs(a - np.swapaxes(a, -1, -2)))) if a.size else 0.0
    if asym > MATRIX_RTOL * scale:
        raise ValueError(f"{name} must be symmetric, got {_show(value)} "
                         f"(largest |{name} - {name}^T| = {asym:.3g})")
    if a.size:
        low = float(np.min(np.linalg.eigvalsh(0.5 * (a + np.swapaxes(a, -1, -2)))))
        if low < -MATRIX_RTOL * scale * a.shape[-1]:
            raise ValueError(f"{name} must be positive semi-definite, got {_show(value)} "
                             f"(smallest eigenvalue {low:.3g})")


def check_times(t1, ts=None) -> None:
    """An end time ``t1`` (finite, > 0) and optional save times ``ts``: a non-empty 1-d
    increasing sequence within ``[0, t1]``. Traced values pass unchecked."""
    check_real("t1", t1, positive=True)
    if ts is None:
        return
    check_real("ts", ts)
    arr = concrete(ts)
    if arr is None:
        return
    end = concrete(t1)
    if (arr.ndim != 1 or arr.size == 0 or np.any(np.diff(arr) <= 0) or arr[0] < 0
            or (end is not None and arr[-1] > end)):
        bound = "" if end is None else f"={end.item()!r}"
        raise ValueError(f"ts must be increasing within [0, t1{bound}], got {_show(ts)}")


def check_tolerances(rtol, atol, max_steps) -> int:
    """Adaptive step control: ``rtol > 0``, ``atol >= 0``, ``max_steps`` an integer >= 1
    (returned as an ``int``)."""
    check_real("rtol", rtol, positive=True)
    check_real("atol", atol, nonneg=True)
    return check_count("max_steps", max_steps)
