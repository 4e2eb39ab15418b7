"""``python -m dynamics.sweep``: the one sweep CLI, for every registered family (``--model``).

The flags are built from the family: its defaults and help texts for the shared flags, and one
flag per field of its options dataclass. Every value is checked by
:class:`~dynamics.sweep.SweepConfig` before any work (a bad one is a one-line error with exit
status 2); the output folder is checked and locked, the sweep runs, and the Dataset and its
figures are written into ``--out`` as one complete-or-absent set.
"""

# ruff: noqa: E402  (the signal handlers come before the imports)
from __future__ import annotations

if __name__ == "__main__":  # a signal from here on: one line, no traceback (before any import)
    from dynamics._signals import install

    install("python -m dynamics.sweep")

import argparse
import dataclasses
import os
import shlex
import signal
import sys
import time

from tqdm import tqdm

from dynamics._cli import (
    CliExit,
    OneLineParser,
    exit_process,
    guarded,
    method,
    number,
    open_results,
    variant,
    write_results,
)
from dynamics._io import OutputError
from dynamics._signals import exit_code
from dynamics.flow import TARGET_STARTS
from dynamics.runtime import enable_compilation_cache, prefer_wide_vectors, split_cpu_cores
from dynamics.sweep.config import SweepConfig
from dynamics.sweep.core import plan, run
from dynamics.sweep.store import RESULT, Store, discard, read_header, store_name
from dynamics.sweep.family import FAMILIES, family
from dynamics.types import MAX_DISCRETE_STEPS, MAX_SEED, VARIANTS

PROG = "python -m dynamics.sweep"
#: what one PNG figure may take on disk (checked before any work)
FIGURE_BYTES = 400_000
#: the ``--engine`` words and the integrators they name
ENGINES = {"batched": "engine", "diffrax": "diffrax"}
#: what ``--backend`` offers
BACKENDS = ("local", "ray")

_SHARED_HELP = dict(
    eta="weight decay; see --convention for how it enters the predictor",
    variant="simsiam, simsiam-nosg (no stop-gradient), byol, byol-nosg",
    method="flow (gradient flow, adaptive ODE solver), gd (discrete GD on the expected loss), "
           "sgd (minibatch SGD on sampled views)",
    t1="integration time (ODE time units; gd/sgd take t1/lr steps)",
    lr="step size of gd/sgd in ODE time (predictor step lr/eps)",
    batch="minibatch size of sgd",
    rtol="relative tolerance of the adaptive solver",
    atol="absolute tolerance of the adaptive solver",
    max_steps="solver step cap per lane (then status max_steps)",
    seed="PRNG seed (same seed, same result)",
    chunk="lanes per compiled batch (bounds memory)",
    collapse_tol="the collapse threshold",
    convention="where the weight decay sits: loss or tian",
    beta="EMA rate of the BYOL target",
    target0="where the BYOL target starts: online, theta_a(0) = theta(0); zero, theta_a(0) = 0 "
            "(Tian et al. 2021); unused by SimSiam",
)


def build_parser(model: str = "scalar") -> argparse.ArgumentParser:
    """The parser of ``--model model``: shared flags with the family's defaults and help, then
    one flag per field of the family's options."""
    fam = family(model)
    d = fam.defaults

    def helps(name):
        return fam.help.get(name, _SHARED_HELP.get(name, ""))

    p = OneLineParser(prog=PROG if model == "scalar" else f"{PROG} --model {model}",
                      description=fam.description)
    p.add_argument("--model", choices=tuple(FAMILIES), default=model,
                   help="the model family: " + ", ".join(FAMILIES)
                   + " (each has its own flags: --model NAME --help)")
    g = p.add_argument_group("swept parameters (each takes one or more values)")
    for name, kind in (("eps", dict(positive=True)), ("eta", dict(nonneg=True)),
                       ("sigma2", dict(nonneg=True)), ("beta", dict(positive=True))):
        if name in fam.ignores:  # a flag the family does not read is not offered
            continue
        g.add_argument(f"--{name}", nargs="+", type=number(name, **kind), default=list(d[name]),
                       help=helps(name))
    g.add_argument("--variant", nargs="+", default=list(d["variant"]),
                   type=variant if fam.variants is VARIANTS else _variant_of(fam),
                   help=helps("variant") if fam.variants is VARIANTS or "variant" in fam.help
                   else ", ".join(fam.variants))
    g.add_argument("--method", nargs="+", type=method, default=list(d["method"]),
                   help=helps("method"))

    g = p.add_argument_group(f"{model} model options")
    for f in dataclasses.fields(fam.Options):
        _add_option(g, f)

    g = p.add_argument_group("dynamics and integration")
    if "convention" not in fam.ignores:
        g.add_argument("--convention", choices=("loss", "tian"), default=d["convention"],
                       help=helps("convention"))
    if "target0" not in fam.ignores:
        g.add_argument("--target0", choices=TARGET_STARTS, default=d["target0"],
                       help=helps("target0"))
    g.add_argument("--t1", type=number("t1", positive=True), default=d["t1"], help=helps("t1"))
    g.add_argument("--lr", type=number("lr", positive=True), default=d["lr"], help=helps("lr"))
    g.add_argument("--batch", type=number("batch", positive=True, integer=True),
                   default=d["batch"], help=helps("batch"))
    g.add_argument("--rtol", type=number("rtol", positive=True), default=d["rtol"],
                   help=helps("rtol"))
    g.add_argument("--atol", type=number("atol", positive=True), default=d["atol"],
                   help=helps("atol"))
    g.add_argument("--max-steps", type=number("max-steps", positive=True, integer=True,
                                              maximum=MAX_DISCRETE_STEPS),
                   default=d["max_steps"], help=helps("max_steps"))
    g.add_argument("--seed", type=number("seed", nonneg=True, integer=True, maximum=MAX_SEED),
                   default=d["seed"], help=helps("seed"))
    g.add_argument("--early-exit", dest="early_exit", action="store_true",
                   help="flow on the engine: a lane stops once its field stays below ftol / 100, "
                        "where it is classified the same (final states move within ~1e-8; "
                        "default: every lane to t1)")
    g.add_argument("--engine", choices=tuple(ENGINES), default=None,
                   help="integrator of flow: batched (dynamics.solve.engine, per-lane adaptive "
                        "steps) or diffrax (jit(vmap(diffeqsolve))); default "
                        + ("batched" if fam.default_integrator == "engine" else "diffrax")
                        + " for this model, or the integrator --solver needs")
    g.add_argument("--solver", choices=fam.solvers, default=d["solver"],
                   help="ODE solver for flow; auto = the stiffness policy: batched engine "
                        "dopri5, each lane switching to rodas5p (Rosenbrock 5(4); rodas4 above "
                        "rtol 1e-4) when its stiffness estimate says so; diffrax: tsit5 for "
                        "eps >= 5e-3, else kvaerno5. rodas4 and rodas5p are batched-only; tsit5, kvaerno5, "
                        "kvaerno3 diffrax-only")
    g.add_argument("--collapse-tol", type=number("collapse-tol", positive=True),
                   default=d["collapse_tol"], help=helps("collapse_tol"))

    g = p.add_argument_group("output")
    g.add_argument("--out", default="sweep_results", help="output folder")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an earlier sweep of this model in --out (else such a folder "
                        "is refused)")
    g.add_argument("--chunk", type=number("chunk", positive=True, integer=True),
                   default=d["chunk"], help=helps("chunk"))
    g.add_argument("--resume", action="store_true",
                   help=f"complete the sweep whose store ({store_name(fam)}) is in --out: its "
                        f"finished work units are kept, the rest run (the config must be the "
                        f"same)")

    g = p.add_argument_group("where the work units run")
    g.add_argument("--backend", choices=BACKENDS, default="local",
                   help="local: one after the other in this process; ray: as Ray tasks on a "
                        "cluster (pip install -e '.[ray]')")
    g.add_argument("--address", default=None,
                   help="ray: the address of a running cluster (ray://HOST:10001, HOST:6379 or "
                        "auto); without it a local cluster is started and stopped")
    g.add_argument("--workers", type=number("workers", positive=True, integer=True),
                   default=None,
                   help="ray: worker processes of the local cluster (default: one per core)")
    g.add_argument("--no-netcdf", action="store_true",
                   help=f"write the Dataset as the zarr store {result_zarr(fam)} in --out, slab "
                        f"by slab (memory bounded by a chunk from start to end; read it with "
                        f"xarray.open_zarr), instead of {fam.result_file}, which is assembled in "
                        f"memory; for grids too large for one netCDF file")
    g.add_argument("--no-plot", action="store_true", help="skip the PNG figures")
    g.add_argument("--no-compile-cache", action="store_true",
                   help="do not use the persistent compilation cache (in the user cache dir, "
                        "or $DYNAMICS_COMPILE_CACHE; 0 there also turns it off)")
    g.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def result_zarr(fam) -> str:
    """The Dataset's name under ``--no-netcdf``: the result file's stem + ``.zarr``."""
    return os.path.splitext(fam.result_file)[0] + ".zarr"


def _variant_of(fam):
    """An argparse ``type`` for a variant label of ``fam`` (:attr:`Family.variants`)."""

    def check(text):
        if text not in fam.variants:
            raise argparse.ArgumentTypeError(
                f"unknown variant {text!r} (choose from {', '.join(fam.variants)})")
        return text

    return check


def _add_option(group, f) -> None:
    """One flag for the options field ``f``, from its :func:`~dynamics.sweep.option` metadata."""
    meta = f.metadata
    flag = "--" + f.name.replace("_", "-")
    if meta.get("flag"):
        group.add_argument(flag, action="store_true", help=meta["help"])
        return
    kw = dict(default=f.default, help=meta["help"])
    if meta.get("nargs"):
        kw.update(nargs=meta["nargs"], metavar=meta.get("metavar"))
    if meta.get("choices"):
        kw["choices"] = meta["choices"]
    elif isinstance(f.default, str):
        pass
    else:
        kw["type"] = number(f.name.replace("_", "-"), positive=meta["positive"],
                            nonneg=meta["nonneg"], integer=meta["integer"],
                            maximum=meta["maximum"])
    group.add_argument(flag, **kw)


def config_from_args(args, argv=None) -> SweepConfig:
    """The :class:`~dynamics.sweep.SweepConfig` of parsed arguments (``ValueError``, one line,
    for values that do not fit together)."""
    fam = family(args.model)
    opts = {f.name: getattr(args, f.name) for f in dataclasses.fields(fam.Options)}
    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in opts.items()}
    argv = sys.argv[1:] if argv is None else argv
    return SweepConfig(
        model=args.model, variant=tuple(args.variant), method=tuple(args.method),
        eps=_given(args, "eps"), eta=tuple(args.eta), sigma2=tuple(args.sigma2),
        beta=_given(args, "beta"), convention=getattr(args, "convention", None),
        target0=getattr(args, "target0", None), t1=args.t1,
        lr=args.lr,
        batch=args.batch, seed=args.seed, rtol=args.rtol, atol=args.atol, solver=args.solver,
        integrator=ENGINES.get(args.engine, "auto"), max_steps=args.max_steps, chunk=args.chunk,
        collapse_tol=args.collapse_tol, early_exit=args.early_exit, options=fam.Options(**opts),
        command=" ".join([PROG, *argv]),
    )


def _given(args, name):
    """A swept flag's values, or ``None`` (the family's default) where it is not offered."""
    v = getattr(args, name, None)
    return None if v is None else tuple(v)


def _model_asked(argv) -> str:
    """The ``--model`` of ``argv`` (``scalar`` when absent or unknown: the full parser then
    names the bad value)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--model", default="scalar")
    known, _ = pre.parse_known_args(argv)
    return known.model if known.model in FAMILIES else "scalar"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_model_asked(argv))
    args = parser.parse_args(argv)
    return guarded(parser.prog, lambda guard: _main(parser, args, argv, guard))


def _main(parser, args, argv, guard) -> int:
    try:
        if args.resume and args.overwrite:
            raise ValueError("give --resume (complete the sweep in --out) or --overwrite "
                             "(discard it), not both")
        if args.backend != "ray" and (args.address is not None or args.workers is not None):
            raise ValueError(f"--{'address' if args.address is not None else 'workers'} needs "
                             f"--backend ray")
        if args.address is not None and args.workers is not None:
            raise ValueError("--workers sets up a local cluster; with --address the cluster "
                             "has its own workers")
        prefer_wide_vectors()  # before any JAX computation: AVX-512 where the CPU has it
        split_cpu_cores()  # before any JAX computation: one device per core for the engine
        config = config_from_args(args, argv)
        pl = plan(config, streamed=args.no_netcdf)  # --no-netcdf never holds the grid
    except ValueError as e:
        parser.error(str(e))
    fam = config.family
    n_figs = 0 if args.no_plot else fam.n_figures(config)
    name = store_name(fam)
    if os.path.lexists(os.path.join(args.out, "zarr.json")):
        raise OutputError(f"output folder {args.out} is a zarr store, not an output folder; "
                          f"choose another output folder")
    # the store and the --no-netcdf result are named among the set's patterns so that the
    # folder's lock removes their temporaries (``.<name>.<random>.tmp``) left by a killed run
    rs = open_results(guard, args.out, fam.result_kind,
                      fam.result_patterns + (name, result_zarr(fam)),
                      overwrite=args.overwrite or args.resume,
                      min_free=2 * pl["file_bytes"] + n_figs * FIGURE_BYTES)
    store = _open_store(rs, config, pl, args)
    dest = rs.folder / result_zarr(fam)
    if os.path.lexists(dest):  # checked before any work
        _check_result(dest, fam, args)
    resume_cmd = shlex.join([*PROG.split(), *[a for a in argv if a != "--overwrite"]]
                            + ([] if args.resume else ["--resume"]))
    guard.saved = lambda: (f"{store.summary()} are saved in {store.path}; resume with: "
                           f"{resume_cmd}" if store.header is not None else
                           f"nothing was written; {rs.folder} is as it was before the run")
    backend = None
    if args.backend == "ray":
        from dynamics.sweep.ray_backend import RayBackend

        try:
            backend = RayBackend(address=args.address, workers=args.workers)
        except ValueError as e:
            raise CliExit(2, f"error: {e}") from None
    if not args.no_compile_cache:
        enable_compilation_cache()
    if not args.quiet:
        print("sweep: " + fam.describe(config, pl["lanes"])
              + (f"; resuming: {store.summary()} done" if store.finished else ""),
              file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    guard.soft_interrupt = True
    try:
        with tqdm(total=pl["lanes"], unit="lane", delay=0.0, mininterval=0.5,
                  disable=args.quiet, file=sys.stderr, desc="sweep",
                  bar_format="{l_bar}{bar}| {n:.0f}/{total} lanes [{elapsed}<{remaining}]") as bar:
            ds = run(config, progress=bar, plan_=pl, sink=store, backend=backend,
                     should_stop=guard.stop_requested, load=not args.no_netcdf)
    finally:
        guard.soft_interrupt = False
        if backend is not None:
            backend.close()
    if ds is None:
        code = exit_code(guard.signals[0] if guard.signals else signal.SIGINT)
        raise CliExit(code, f"interrupted; {guard.saved()}")
    guard.check()
    if os.path.lexists(dest):  # an earlier run's zarr result: replaced or removed
        discard(dest)
    if args.no_netcdf:
        ds = store.write_dataset(dest)
    guard.check()
    elapsed = time.perf_counter() - t0
    figures = [] if args.no_plot else fam.figures(ds, config)
    write_results(guard, ds, None if args.no_netcdf else fam.result_file, figures,
                  quiet=args.quiet, summary=fam.summarize(ds), n_lanes=pl["lanes"],
                  elapsed=elapsed, kind=fam.figure_kind,
                  info=dict(store=name, **({"dataset": dest.name} if args.no_netcdf else {})))
    return 0


def _check_result(dest, fam, args) -> None:
    """:class:`OutputError` unless ``dest`` is the zarr Dataset an earlier ``--no-netcdf`` run
    of this family wrote and ``--overwrite`` or ``--resume`` was given (it is then replaced)."""
    import json

    try:
        kind = json.loads((dest / "zarr.json").read_text())["attributes"].get(RESULT)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        kind = None
    if kind != fam.result_kind:
        raise OutputError(f"{dest} is not a sweep result of this model, and this run would "
                          f"replace it; move it away or choose another output folder")
    if not (args.overwrite or args.resume):
        raise OutputError(f"{dest} holds an earlier sweep's results; pass --overwrite to "
                          f"replace them, or choose another output folder")


def _open_store(rs, config, pl, args) -> Store:
    """The sweep's store in the (locked) output folder: a new one, or with ``--resume`` the
    one there (same config, its finished units checked). One-line :class:`OutputError` for a
    store of another kind or config, a damaged one, or an unfinished sweep without
    ``--resume``/``--overwrite``."""
    path = rs.folder / store_name(config.family)
    header = read_header(path)
    if header is not None and args.overwrite:
        if header.get("kind") != config.family.result_kind:  # never discard another's store
            Store(path, config, dict(pl), header).check()
        discard(path)
        header = None
    if header is None:
        if args.resume and rs.previous:
            raise OutputError(f"nothing to resume in {rs.folder}: it holds finished results "
                              f"and no {path.name}; pass --overwrite to replace them")
        if args.resume and not args.quiet:
            print(f"sweep: no unfinished sweep in {rs.folder}; starting it", file=sys.stderr)
        # a new store holds what it writes unless the Dataset is streamed from it: the
        # Dataset assembled in memory needs the grid's memory anyway
        return Store(path, config, pl, hold=not args.no_netcdf)
    store = Store(path, config, pl, header)
    store.check()
    if not args.resume:
        raise OutputError(f"{rs.folder} holds an unfinished sweep ({store.summary()} done in "
                          f"{path.name}); pass --resume to complete it, or --overwrite to "
                          f"discard it")
    store.clean()
    store.verify()
    return store


if __name__ == "__main__":
    exit_process(main())
