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

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from dynamics.figures.registry import FIGURES, FigureSpec, register
from dynamics.sweep.provenance import git_revision

__all__ = ["FIGURES", "FigureSpec", "build_figure", "main", "register", "write_figure"]


# each figure is one module (data and drawing together) that registers itself; the import
# order is the order of FIGURES (and of a full run)
from dynamics.figures import (  # noqa: E402,F401
    basins,
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
)


def _jsonable(x):
    import numpy as np

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
    import matplotlib.pyplot as plt

    from dynamics._io import save_figure

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


def _save_manifest(path: Path, manifest: dict):
    from dynamics._io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=_jsonable) + "\n")


from dynamics._cli import OneLineParser as _Parser  # noqa: E402
from dynamics._cli import number as _number  # noqa: E402

#: the largest --dpi: a figure 17 inches wide is then 20400 pixels across
MAX_DPI = 1200


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m dynamics.figures",
        description="Regenerate the paper figures (PNG and PDF) and OUT/manifest.json.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="figures to make (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--quick", action="store_true", help="small settings (for tests)")
    p.add_argument("--out", default="figures", help="output directory")
    p.add_argument("--dpi", type=_number("dpi", positive=True, integer=True, maximum=MAX_DPI),
                   default=130, help="PNG resolution")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        width = max(map(len, FIGURES)) + 2
        for s in FIGURES.values():
            print(f"{s.name:<{width}}{s.caption}")
        return 0
    for n in args.names:
        if n not in FIGURES:
            parser.error(f"unknown figure {n!r} (choose from {', '.join(FIGURES)})")
    if args.dpi <= 0:
        parser.error(f"--dpi must be > 0, got {args.dpi}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        parser.error(f"--out {args.out!r} exists and is not a directory")
    names = list(dict.fromkeys(args.names)) or list(FIGURES)

    import dynamics

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mpath = out / "manifest.json"
    for n in names:
        t0 = time.perf_counter()
        entry = write_figure(n, out, quick=args.quick, dpi=args.dpi)
        manifest = _load_manifest(mpath)
        # entries of figures no longer registered (renamed or removed) are dropped
        manifest["figures"] = {k: v for k, v in manifest["figures"].items() if k in FIGURES}
        manifest["figures"][n] = entry
        manifest.update(
            package_version=dynamics.__version__,
            git_revision=git_revision(),
            updated=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            regenerate="python -m dynamics.figures [NAME ...] [--quick] [--out DIR]",
        )
        _save_manifest(mpath, manifest)
        print(f"{n}: wrote {', '.join(entry['files'])} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return 0
