"""``python -m dynamics.predict``: the toy's predictions beside short CIFAR-10 runs.

Example::

    python -m dynamics.predict --data-dir data/ --out runs/predict
    python -m dynamics.predict --data-dir data/ --quick --out runs/predict-quick

Runs every runnable setting of dynamics.predict.settings (2 seeds each) resumably: one folder
per setting and seed under OUT/runs/, a run whose result.json is complete is skipped, a stopped
one continues from its last finished epoch. A run being trained by another runner on the same
OUT (its folder's lock is held) is skipped; a killed runner's lock is taken over. Prints the
table (setting, toy prediction, CIFAR outcome with its numbers, agree) and writes it to
OUT/table.md and OUT/table.csv, and OUT/record.json: the finished runs' measures and monitors
in one small file, the source of the figures toy_vs_cifar, cifar_tian2 and cifar_tian6.
--grid: the run plan (grid1: 3 epochs, seeds 0 and 1, called with mapping v1; grid2, the
default: 5 epochs, seeds 2 and 3, called with mapping v2); --mapping calls a grid with the other
mapping (the runs are the same; only the toy column changes).
--quick: 2 settings, 1 seed, a tiny network for 2 epochs (checks the pipeline; not a result).
"""

# ruff: noqa: E402  (the signal handlers come before the imports)
from __future__ import annotations

if __name__ == "__main__":  # a signal from here on: one line, no traceback (before any import)
    from dynamics._signals import install

    install("python -m dynamics.predict")

import argparse
import importlib.util
import json
import shlex
from pathlib import Path

from dynamics._cli import CliExit, OneLineParser, exit_process, guarded, number
from dynamics.predict import grid
from dynamics.predict.mapping import MAPPINGS
from dynamics.predict.settings import DEFAULT_PLAN, PLANS, setting, settings_of

PROG = "python -m dynamics.predict"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__.replace("``", "").replace("::", ":"),
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="folder 'cifar-10-batches-py' (or its parent)")
    p.add_argument("--out", help="output folder: runs/ and the table (required)")
    p.add_argument("--quick", action="store_true",
                   help=f"the quick grid: settings {' '.join(grid.QUICK_SETTINGS)}, seed 0, a tiny network")
    p.add_argument("--settings", nargs="+", metavar="NAME",
                   help="only these settings (default: all; with --quick: the quick pair)")
    p.add_argument("--epochs", type=number("epochs", positive=True, integer=True, maximum=10_000),
                   default=None, help="epochs per run (default: the run config's)")
    p.add_argument("--grid", choices=sorted(PLANS), default=DEFAULT_PLAN,
                   help=f"run plan (default {DEFAULT_PLAN}): epochs, seeds and the mapping declared for it")
    p.add_argument("--mapping", choices=MAPPINGS, default=None,
                   help="the toy column's mapping (default: the one declared for the grid)")
    p.add_argument("--list", action="store_true", help="list the settings and the toy's call, run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    command = " ".join([PROG, *map(shlex.quote, argv if argv is not None else __import__("sys").argv[1:])])
    return guarded(parser.prog, lambda guard: _main(parser, a, guard, command))


def _main(parser, a, guard, command) -> int:
    try:
        settings = [setting(n) for n in (a.settings or (grid.QUICK_SETTINGS if a.quick else
                                                        [s.name for s in settings_of(a.grid)]))]
    except ValueError as e:
        parser.error(str(e))
    outside = [s.name for s in settings if a.grid not in s.grids]
    if outside:
        parser.error(f"setting {outside[0]} is not part of {a.grid}")
    if len({s.name for s in settings}) != len(settings):
        parser.error("--settings names a setting twice")
    plan = PLANS[a.grid]
    seeds = grid.QUICK_SEEDS if a.quick else plan.seeds
    if a.list:
        rows = grid.table_rows(settings, {}, a.quick, 10**9, 10**9, a.epochs, seeds, a.grid, a.mapping)
        for r in rows:
            print(f"{r['setting']:24s} {r['group']:20s} toy: {r['toy']} ({r['toy_modes']} modes)")
        return 0
    if a.out is None or a.out.strip() == "":
        parser.error(f"--out is required (a folder), got {a.out!r}")
    if a.data_dir is None:
        parser.error("--data-dir is required (a cifar-10-batches-py folder or its parent)")
    if not a.data_dir.is_dir():
        parser.error(f"--data-dir {a.data_dir} does not exist or is not a folder")
    out = Path(a.out)
    if out.exists() and not out.is_dir():
        parser.error(f"--out {out} is a file, not a folder")
    if importlib.util.find_spec("flax") is None or importlib.util.find_spec("optax") is None:
        parser.error('the runs need the cifar extra (flax, optax): pip install -e ".[cifar]"')

    from dynamics.cifar.data import CifarDataError, load_cifar10

    try:
        data = load_cifar10(a.data_dir)
    except CifarDataError as e:
        raise CliExit(1, f"error: {e}") from None
    n_train, n_test = len(data.train_x), len(data.test_x)
    guard.saved = lambda: (f"the finished runs in {out / 'runs'} are kept; a stopped run continues "
                           f"from its last epoch on a rerun")
    results, done, ran, busy = {}, 0, 0, 0
    for s in settings:
        if not s.runnable:
            print(f"{s.name}: not runnable on the CIFAR path ({s.missing})", flush=True)
            continue
        for seed in seeds:
            fields = grid.run_config(s, a.quick, seed, n_train, n_test, a.epochs, a.grid)
            if not a.quick and fields.get("subset") and fields["subset"] > n_train:
                parser.error(f"setting {s.name} needs {fields['subset']} training images; "
                             f"{a.data_dir} has {n_train}")
            folder = grid.run_dir(out, s.name, seed)
            prev = grid.read_result(folder)
            if prev is not None:
                if not _same_config(prev["config"], fields):
                    raise CliExit(2, f"error: {folder} holds a run with another config; "
                                     f"give another --out")
                results[(s.name, seed)] = prev
                done += 1
                print(f"{s.name} seed {seed}: done before ({prev['outcome']}), skipped", flush=True)
                continue
            lock = grid.RunLock(folder)
            try:
                got = lock.acquire()
            except OSError as e:
                raise CliExit(1, f"error: cannot lock {folder}: {e.strerror or e}") from None
            if not got:
                busy += 1
                print(f"{s.name} seed {seed}: another runner (pid {lock.holder}) is training it, skipped",
                      flush=True)
                continue
            with lock:
                prev = grid.read_result(folder)  # finished by another runner since the check above
                if prev is not None and _same_config(prev["config"], fields):
                    results[(s.name, seed)] = prev
                    done += 1
                    print(f"{s.name} seed {seed}: done before ({prev['outcome']}), skipped", flush=True)
                    continue
                print(f"{s.name} seed {seed}: training in {folder}", flush=True)
                try:
                    r = grid.run_one(s, fields, data, folder, a.data_dir, command, log=lambda m: None)
                except ValueError as e:
                    raise CliExit(1, f"error: {s.name} seed {seed}: {str(e).splitlines()[0]}") from None
                except OSError as e:
                    raise CliExit(1, f"error: could not write to {folder}: {e.strerror or e}") from None
            guard.check()
            results[(s.name, seed)] = r
            ran += 1
            print(f"{s.name} seed {seed}: {r['outcome']}", flush=True)
    rows = grid.table_rows(settings, results, a.quick, n_train, n_test, a.epochs, seeds, a.grid, a.mapping)
    text = grid.format_table(rows)
    try:
        from dynamics._io import atomic_write_text

        atomic_write_text(out / "table.md", text)
        atomic_write_text(out / "table.csv", grid.format_csv(rows))
        if not a.quick:
            rec = grid.compact_record(out, settings, seeds, _grid_command(a), a.grid, a.mapping)
            atomic_write_text(out / "record.json", json.dumps(rec, separators=(",", ":")) + "\n")
    except OSError as e:
        raise CliExit(1, f"error: could not write the table to {out}: {e.strerror or e}") from None
    print(text, end="")
    busy_note = f", {busy} left to the runner training them" if busy else ""
    print(f"{ran} run(s) trained, {done} skipped (finished before){busy_note}; wrote {out / 'table.md'} and "
          f"{out / 'table.csv'}")
    return 0


def _grid_command(a) -> str:
    """The command that makes these runs, with the data folder as a placeholder."""
    parts = [PROG, "--data-dir", "PATH", "--out", "OUT", "--grid", a.grid]
    if a.mapping:
        parts += ["--mapping", a.mapping]
    if a.settings:
        parts += ["--settings", *a.settings]
    if a.epochs is not None:
        parts += ["--epochs", str(a.epochs)]
    return " ".join(parts)


def _same_config(saved: dict, fields: dict) -> bool:
    """Does a finished run's saved config hold the fields this run would use?"""
    import json

    now = json.loads(json.dumps(fields))
    return all(saved.get(k) == v for k, v in now.items())


if __name__ == "__main__":
    exit_process(main())
