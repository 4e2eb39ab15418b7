"""The compact record of the toy-versus-CIFAR grid's runs, from which the CIFAR figures are drawn
(``toy_vs_cifar``, ``cifar_tian2``, ``cifar_tian6``): no figure trains anything.

``figures/cifar_runs.json`` is ``OUT/record.json`` of ``python -m dynamics.predict --data-dir
PATH --out OUT --grid grid1`` (the first grid, 3 epochs) and ``figures/cifar_runs_grid2.json`` that
of ``--grid grid2`` (the second, 5 epochs) (:func:`dynamics.predict.grid.compact_record`): per setting its group, config,
toy call and, per finished seed, the final measures, outcome, per-epoch monitors (rows of
``epoch_keys``) and, for a few settings, per-step monitors (rows of ``step_keys``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["RECORD", "RECORDS", "epochs", "load", "steps"]

_FIGURES = Path(__file__).resolve().parents[2] / "figures"
#: the committed records of the two grids (the repository's figures/ folder)
RECORDS = {"grid1": _FIGURES / "cifar_runs.json", "grid2": _FIGURES / "cifar_runs_grid2.json"}
#: the record with per-epoch kNN and per-step monitors (the first grid), which cifar_tian2 and
#: cifar_tian6 draw
RECORD = RECORDS["grid1"]


def load(path: Path | None = None) -> dict:
    """The record at ``path`` (default :data:`RECORD`); ``ValueError`` in one line if absent."""
    path = Path(path) if path is not None else RECORD
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"no CIFAR run record at {path} ({type(e).__name__}); make it with "
                         f"python -m dynamics.predict --data-dir PATH --out OUT and copy OUT/record.json") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("settings"), dict):
        raise ValueError(f"{path} is not a record of python -m dynamics.predict")
    return rec


def _table(rows, keys, wanted) -> dict:
    a = np.array([[np.nan if v is None else v for v in r] for r in rows], float).reshape(-1, len(keys))
    return {k: a[:, keys.index(k)] for k in wanted}


def epochs(rec: dict, name: str, seed) -> dict | None:
    """Per-epoch monitors of one run as arrays (``None`` if the run is not in the record)."""
    run = rec["settings"].get(name, {}).get("runs", {}).get(str(seed))
    if run is None:
        return None
    keys = rec["epoch_keys"]
    return _table(run["epochs"], keys, keys)


def steps(rec: dict, name: str, seed) -> dict | None:
    """Per-step monitors of one run as arrays (``None`` if the record has none for it)."""
    run = rec["settings"].get(name, {}).get("runs", {}).get(str(seed))
    if run is None or "steps" not in run:
        return None
    keys = rec["step_keys"]
    return _table(run["steps"], keys, keys)
