"""``python -m dynamics.figures``: regenerate the paper figures (see :mod:`dynamics.figures`)."""

# ruff: noqa: E402  (the signal handlers come before the imports)
from __future__ import annotations

if __name__ == "__main__":  # a signal from here on: one line, no traceback (before any import)
    from dynamics._signals import install

    install("python -m dynamics.figures")

import argparse
import sys
import time
from pathlib import Path

from dynamics._cli import OneLineParser, number
from dynamics.figures import FIGURES, record, write_figure

#: the largest --dpi: a figure 17 inches wide is then 20400 pixels across
MAX_DPI = 1200


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m dynamics.figures",
        description="Regenerate the paper figures (PNG and PDF) and OUT/manifest.json.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="figures to make (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--quick", action="store_true", help="small settings (for tests)")
    p.add_argument("--out", default="figures", help="output directory")
    p.add_argument("--dpi", type=number("dpi", positive=True, integer=True, maximum=MAX_DPI),
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
    if Path(args.out).exists() and not Path(args.out).is_dir():
        parser.error(f"--out {args.out!r} exists and is not a directory")
    names = list(dict.fromkeys(args.names)) or list(FIGURES)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        t0 = time.perf_counter()
        entry = write_figure(n, out, quick=args.quick, dpi=args.dpi)
        record(out, n, entry)
        print(f"{n}: wrote {', '.join(entry['files'])} in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
