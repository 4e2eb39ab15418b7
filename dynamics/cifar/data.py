"""Loader for the standard ``cifar-10-batches-py`` folder.

The folder holds ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and (optionally read)
``batches.meta``. Each batch is a pickle of a dict with ``b"data"`` (``N x 3072`` uint8,
channel-major rows: 1024 red, 1024 green, 1024 blue values of a 32 x 32 image) and
``b"labels"`` (``N`` ints in ``0..9``). Files written by Python 3 may use ``str`` keys instead
of ``bytes``; both are accepted.

Pickles can run arbitrary code, so they are read with :class:`RestrictedUnpickler`, which
resolves only the handful of globals such files contain (numpy array and dtype
reconstruction, ``_codecs.encode`` used by protocol 2 for ``bytes``). Anything else raises
:class:`CifarDataError` before it is called.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
FOLDER_NAME = "cifar-10-batches-py"
EXPECTED = (
    f"a '{FOLDER_NAME}' folder (or its parent) holding data_batch_1..data_batch_5 and "
    "test_batch: pickled dicts with 'data' (N x 3072 uint8) and 'labels' (N ints 0-9)"
)

# (module, name) pairs a CIFAR-10 pickle may reference. numpy moved ``core`` to ``_core`` in 2.0;
# pickles written by either version must load under either.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class CifarDataError(ValueError):
    """A CIFAR-10 folder or file is missing, malformed or not safe to load (one-line message)."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array reconstruction and ``_codecs.encode``."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


@dataclass(frozen=True)
class Cifar10:
    """The data set held as uint8 NHWC arrays.

    Attributes:
        train_x: ``[N, 32, 32, 3]`` uint8.   train_y: ``[N]`` int32.
        test_x: ``[M, 32, 32, 3]`` uint8.    test_y: ``[M]`` int32.
        label_names: class names (10 strings).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    label_names: tuple[str, ...]


def _get(d: dict, key: str):
    if key.encode() in d:
        return d[key.encode()]
    if key in d:
        return d[key]
    raise KeyError(key)


def load_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file safely.

    Returns:
        ``(x, y)``: ``x`` ``[N, 32, 32, 3]`` uint8 (NHWC), ``y`` ``[N]`` int32.

    Raises:
        CifarDataError: the file is missing, truncated, not a CIFAR batch, or references a
            global other than numpy array reconstruction.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarDataError(f"missing file {path}: expected {EXPECTED}")
    try:
        obj = RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise CifarDataError(f"{path}: rejected, not a plain CIFAR-10 pickle ({e})") from None
    except Exception as e:  # truncated or garbage: EOFError, ValueError, ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CifarDataError(f"{path}: unreadable pickle ({msg}); expected {EXPECTED}") from None
    if not isinstance(obj, dict):
        raise CifarDataError(f"{path}: holds a {type(obj).__name__}, expected a dict; expected {EXPECTED}")
    try:
        data, labels = _get(obj, "data"), _get(obj, "labels")
    except KeyError as e:
        raise CifarDataError(f"{path}: no '{e.args[0]}' entry; expected {EXPECTED}") from None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarDataError(f"{path}: 'data' is {desc}, expected an N x 3072 uint8 array")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise CifarDataError(f"{path}: 'labels' is not a list of ints") from None
    if y.shape != (data.shape[0],) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise CifarDataError(
            f"{path}: 'labels' has shape {y.shape} and range "
            f"[{y.min() if y.size else '-'}, {y.max() if y.size else '-'}], expected {data.shape[0]} ints in 0-9"
        )
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), y.astype(np.int32)


def find_root(data_dir: str | Path) -> Path:
    """The folder holding the batch files: ``data_dir`` itself or ``data_dir/cifar-10-batches-py``."""
    p = Path(data_dir)
    if not p.exists():
        raise CifarDataError(f"data folder {p} does not exist: expected {EXPECTED}")
    if not p.is_dir():
        raise CifarDataError(f"{p} is not a folder: expected {EXPECTED}")
    if (p / FOLDER_NAME).is_dir():
        p = p / FOLDER_NAME
    missing = [f for f in TRAIN_FILES + (TEST_FILE,) if not (p / f).is_file()]
    if missing:
        raise CifarDataError(f"{p} lacks {', '.join(missing)}: expected {EXPECTED}")
    return p


def _label_names(root: Path) -> tuple[str, ...]:
    default = tuple(f"class_{i}" for i in range(10))
    path = root / META_FILE
    if not path.is_file():
        return default
    try:
        obj = RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        names = _get(obj, "label_names")
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    except pickle.UnpicklingError as e:
        raise CifarDataError(f"{path}: rejected, not a plain CIFAR-10 pickle ({e})") from None
    except Exception:
        return default


def load_cifar10(data_dir: str | Path) -> Cifar10:
    """Load the training and test batches from a ``cifar-10-batches-py`` folder (or its parent)."""
    root = find_root(data_dir)
    parts = [load_batch(root / f) for f in TRAIN_FILES]
    test_x, test_y = load_batch(root / TEST_FILE)
    return Cifar10(
        train_x=np.concatenate([p[0] for p in parts]),
        train_y=np.concatenate([p[1] for p in parts]),
        test_x=test_x,
        test_y=test_y,
        label_names=_label_names(root),
    )


def write_batch(path: str | Path, x: np.ndarray, y, str_keys: bool = False) -> None:
    """Write ``x`` (``[N, 32, 32, 3]`` uint8) and labels ``y`` in the CIFAR-10 pickle format."""
    x = np.asarray(x, dtype=np.uint8)
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)
    k = (lambda s: s) if str_keys else (lambda s: s.encode())
    obj = {k("batch_label"): b"batch", k("data"): rows, k("labels"): [int(v) for v in y]}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
