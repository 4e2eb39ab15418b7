"""``python -m dynamics.figures``: regenerate the paper figures into ``figures/``.

Every figure is registered in :data:`FIGURES` with a builder ``build(quick) -> (fig, params)``.
Each figure is one module of this package, named after it, with its data (``data(...)``), its
layout (``draw(data)``) and its builder registered by ``@register(name, caption)``; what several
figures compute lives in :mod:`dynamics.figures.compute`, reusable drawing (basin maps, phase
portraits, phase diagrams) in :mod:`dynamics.plot`. Each run writes ``NAME.png`` and
``NAME.pdf`` atomically and records, in ``OUT/manifest.json``, the command, parameters
(the paper's, and any deliberate difference) and caption of every file.

Usage::

    python -m dynamics.figures                 # all figures into figures/
    python -m dynamics.figures basins tian3    # some of them
    python -m dynamics.figures --list          # names and captions
    python -m dynamics.figures --quick --out /tmp/f   # small settings (tests)
"""

from __future__ import annotations

import datetime
import importlib
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import dynamics
from dynamics._io import atomic_path, save_figure
from dynamics.figures.registry import FIGURES, FigureSpec, register
from dynamics.sweep.provenance import git_revision

__all__ = ["FIGURES", "FigureSpec", "build_figure", "main", "manifest_files", "manifest_text",
           "read_manifest", "record", "register", "write_figure"]


# each figure is one module (data and drawing together) that registers itself; the import
# order is the order of FIGURES (and of a full run)
from dynamics.figures import (  # noqa: E402,F401
    basins,
    nosg,
    discrete_time,
    ema_curriculum,
    predictor_lr,
    predictor_compare,
    predictor_wd,
    nonisotropic,
    bifurcation,
    tian3,
    tian4,
    slowfast,
    sweep_basins_simsiam,
    tian5,
    tian7,
    phase,
    post_toy,
    tian8,
    tian9,
    tian10,
    wd_conventions,
    zoo,
    toy_vs_cifar,
    cifar_tian2,
    cifar_tian6,
)


def _jsonable(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (tuple, set)):
        return list(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def build_figure(name: str, quick: bool = False):
    """Build one registered figure; returns ``(fig, params)``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}: expected one of {', '.join(FIGURES)}")
    return FIGURES[name].build(quick)


def write_figure(name: str, out: Path, quick: bool = False, dpi: int = 130) -> dict:
    """Build figure ``name``, save ``out/name.png`` and ``.pdf``; return its manifest entry."""
    t0 = time.perf_counter()
    fig, params = build_figure(name, quick)
    files = []
    for ext in ("png", "pdf"):
        path = out / f"{name}.{ext}"
        # no creation date in the PDF: same data, same bytes
        meta = {"CreationDate": None} if ext == "pdf" else None
        save_figure(fig, path, dpi=dpi, metadata=meta)
        files.append(path.name)
    plt.close(fig)
    command = "python -m dynamics.figures " + name + (" --quick" if quick else "")
    return dict(files=files, command=command, quick=quick, params=params,
                caption=FIGURES[name].caption, seconds=round(time.perf_counter() - t0, 1))


def _load_manifest(path: Path) -> dict:
    if path.exists():
        try:
            m = json.loads(path.read_text())
            if isinstance(m, dict) and isinstance(m.get("figures"), dict):
                return m
        except json.JSONDecodeError:
            pass
    return dict(figures={})


def read_manifest(out: Path) -> dict:
    """``out/manifest.json`` (``{"figures": {}}`` when there is none or it is not one)."""
    return _load_manifest(Path(out) / "manifest.json")


def manifest_files(text: str) -> list[str]:
    """The files a manifest's text lists (``ValueError`` when it is not a figures manifest)."""
    m = json.loads(text)
    if not (isinstance(m, dict) and isinstance(m.get("figures"), dict)):
        raise ValueError("not a figures manifest")
    return [str(f) for e in m["figures"].values() if isinstance(e, dict)
            for f in e.get("files", [])]


def manifest_text(manifest: dict, entries: dict) -> str:
    """The text of ``manifest`` with ``entries`` (``{name: entry}`` of :func:`write_figure`)
    added; entries of figures no longer registered (renamed or removed) are dropped."""
    manifest = dict(manifest)
    manifest["figures"] = {k: v for k, v in manifest.get("figures", {}).items() if k in FIGURES}
    manifest["figures"].update(entries)
    manifest.update(
        package_version=dynamics.__version__,
        git_revision=git_revision(),
        updated=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        regenerate="python -m dynamics.figures [NAME ...] [--quick] [--out DIR]",
    )
    return json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n"


def record(out: Path, name: str, entry: dict) -> None:
    """Add ``entry`` (from :func:`write_figure`) to ``out/manifest.json`` atomically; entries of
    figures no longer registered (renamed or removed) are dropped."""
    mpath = out / "manifest.json"
    with atomic_path(mpath) as tmp:
        tmp.write_text(manifest_text(_load_manifest(mpath), {name: entry}))


def _cli(name):
    # The command line lives in ``__main__``, imported on first use (so that
    # ``python -m dynamics.figures`` does not find it already imported under another name).
    return getattr(importlib.import_module("dynamics.figures.__main__"), name)


def __getattr__(name):
    if name in ("main", "build_parser", "MAX_DPI"):
        return _cli(name)
    raise AttributeError(f"module 'dynamics.figures' has no attribute {name!r}")
