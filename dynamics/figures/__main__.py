"""``python -m dynamics.figures``: regenerate the paper figures (see :mod:`dynamics.figures`)."""

# ruff: noqa: E402  (the signal handlers come before the imports)
from __future__ import annotations

if __name__ == "__main__":  # a signal from here on: one line, no traceback (before any import)
    from dynamics._signals import install

    install("python -m dynamics.figures")

import argparse
import sys
import time

from dynamics._cli import CliExit, OneLineParser, exit_process, guarded, number, open_results
from dynamics.figures import FIGURES, manifest_files, manifest_text, read_manifest, write_figure

#: the largest --dpi: a figure 17 inches wide is then 20400 pixels across
MAX_DPI = 1200
PROG = "python -m dynamics.figures"
#: where figures go: full-quality ones, and --quick ones (never over the full ones by default)
OUT_DEFAULT, QUICK_OUT_DEFAULT = "figures", "figures-quick"
#: what one figure (PNG and PDF) may take on disk (checked before any work)
FIGURE_BYTES = 2_000_000
#: the files of a figures folder (their temporaries left by a killed run are removed)
PATTERNS = ("*.png", "*.pdf", "manifest.json")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=PROG,
        description="Regenerate the paper figures (PNG and PDF) and OUT/manifest.json. The "
                    "figures of a run appear together when all are made (an interrupt or a "
                    "write failure leaves --out as it was); other figures in --out stay.",
    )
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="figures to make (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the figures and exit")
    p.add_argument("--quick", action="store_true",
                   help=f"small settings (for tests); written into {QUICK_OUT_DEFAULT}/ unless "
                        f"--out is given, and never over full-quality figures without --overwrite")
    p.add_argument("--out", default=None,
                   help=f"output folder (default: {OUT_DEFAULT}, with --quick {QUICK_OUT_DEFAULT})")
    p.add_argument("--overwrite", action="store_true",
                   help="let --quick replace full-quality figures in --out")
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
    return guarded(parser.prog, lambda guard: _main(parser, args, guard))


def _main(parser, args, guard) -> int:
    for n in args.names:
        if n not in FIGURES:
            parser.error(f"unknown figure {n!r} (choose from {', '.join(FIGURES)})")
    names = list(dict.fromkeys(args.names)) or list(FIGURES)
    out = args.out if args.out is not None else (QUICK_OUT_DEFAULT if args.quick else OUT_DEFAULT)
    files = [f"{n}.{ext}" for n in names for ext in ("png", "pdf")]
    # checked, locked and cleared before any figure is computed
    rs = open_results(guard, out, "figures", PATTERNS, overwrite=False, update=True,
                      manifest_name="manifest.json", read_manifest=manifest_files,
                      expected=files, min_free=FIGURE_BYTES * len(names))
    mpath = rs.folder / "manifest.json"
    if mpath.exists():
        try:
            manifest_files(mpath.read_text())
        except (OSError, ValueError, TypeError, AttributeError):
            raise CliExit(2, f"error: {mpath} is not a manifest of this command; move it away "
                             f"or choose another --out") from None
    manifest = read_manifest(rs.folder)
    if args.quick and not args.overwrite:
        full = [n for n in names if manifest["figures"].get(n, {}).get("quick") is False
                and any(f in rs.previous for f in manifest["figures"][n].get("files", []))]
        if full:
            shown = ", ".join(full[:3]) + (", ..." if len(full) > 3 else "")
            raise CliExit(2, f"error: {rs.folder} holds full-quality figures ({shown}) that "
                             f"--quick would replace with coarse ones; pass --overwrite to "
                             f"replace them, or choose another --out")
    entries = {}
    try:
        for n in names:
            t0 = time.perf_counter()
            entries[n] = write_figure(n, rs.staging, quick=args.quick, dpi=args.dpi)
            print(f"{n}: made {', '.join(entries[n]['files'])} in {time.perf_counter() - t0:.1f} s",
                  file=sys.stderr, flush=True)
        guard.check()  # an interrupt a library swallowed may have cut a file short
        written = [f for n in names for f in entries[n]["files"]]
        rs.commit(written, manifest_text=lambda listed: manifest_text(manifest, entries))
    except OSError as e:
        where = ("its manifest may be out of date" if rs.committing
                 else f"nothing was written; {rs.folder} is as it was before the run")
        raise CliExit(1, f"error: could not write the figures to {rs.folder}: "
                         f"{e.strerror or e}; {where}") from None
    print(f"wrote {len(names)} figure(s) (PNG and PDF) and manifest.json in {rs.folder}/",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    exit_process(main())
