"""``python -m dynamics.cifar``: SimSiam / BYOL on CIFAR-10 with the toy models' switches.

Example (a CPU-sized run)::

    python -m dynamics.cifar --data-dir data/ --method simsiam --epochs 5 --width 0.125 \\
        --subset 5000 --out runs/simsiam

Writes ``OUT/metrics.csv`` (one row per epoch), ``OUT/metrics.json`` (epochs, per-step loss and
std, final kNN and linear probe), ``OUT/config.json``, ``OUT/checkpoint.*`` (after every epoch;
``--resume`` continues from it) and ``OUT/curves.png``. ``--compare RUN_DIR ...`` draws the
SimSiam-Fig.-2 figure (loss, std of z/||z||, kNN) of finished runs instead of training.
"""

# ruff: noqa: E402  (the signal handlers come before the imports)
from __future__ import annotations

if __name__ == "__main__":  # a signal from here on: one line, no traceback (before any import)
    from dynamics._signals import install

    install("python -m dynamics.cifar")

import argparse
import sys
from pathlib import Path

import contextlib
import importlib.util

from dynamics._cli import (
    MAX_SEED,
    CliExit,
    OneLineParser,
    check_memory,
    exit_process,
    guarded,
    number,
    open_results,
)
from dynamics.cifar.config import METHODS, PREDICTORS, Config

#: the files of a run folder
RUN_PATTERNS = ("config.json", "metrics.json", "metrics.csv", "checkpoint.msgpack",
                "checkpoint.json", "curves.png")
EXTRA = 'the cifar extra (flax, optax): pip install -e ".[cifar]"'
FIGURE_FORMATS = ("png",)
#: the most epochs a run may ask for (a full CIFAR-10 epoch is minutes even on a GPU)
MAX_EPOCHS = 10_000


def _unit(kind):
    """An argparse ``type`` for a number in [0, 1] (momenta, EMA factors)."""
    parse_nonneg = number(kind, nonneg=True)

    def parse(text):
        v = parse_nonneg(text)
        if v > 1:
            raise argparse.ArgumentTypeError(f"{kind} must be in [0, 1], got {text!r}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    d = Config()
    p = OneLineParser(prog="python -m dynamics.cifar", description=__doc__.replace("``", "").replace("::", ":"),
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path,
                   help="folder 'cifar-10-batches-py' (or its parent) with data_batch_1..5 and test_batch")
    p.add_argument("--out", default=None,
                   help="output folder for metrics, checkpoint and figure (default: runs/<method>)")
    p.add_argument("--method", choices=METHODS, default=d.method, help="simsiam (stop-gradient) or byol (EMA target)")
    p.add_argument("--epochs", type=number("epochs", positive=True, integer=True,
                                           maximum=MAX_EPOCHS),
                   default=d.epochs, help="training epochs (default %(default)s)")
    p.add_argument("--batch-size", type=number("batch-size", positive=True, integer=True),
                   default=d.batch_size,
                   help="images per step; each gives two views (default %(default)s)")
    p.add_argument("--width", type=number("width", positive=True), default=d.width,
                   help="width multiplier: stages 64-512 x W, projector/predictor 2048 x W, bottleneck 512 x W "
                        "(default %(default)s; 1 = the paper's network)")
    p.add_argument("--lr", type=number("lr", positive=True), default=d.lr,
                   help="base learning rate, scaled by batch/256, cosine-decayed (default %(default)s)")
    p.add_argument("--momentum", type=_unit("momentum"),
                   default=d.momentum, help="SGD momentum (default %(default)s)")
    p.add_argument("--wd", type=number("wd", nonneg=True), default=d.wd,
                   help="weight decay, coupled (added to the gradient) for every parameter (default %(default)s)")
    p.add_argument("--predictor", choices=PREDICTORS, default=None,
                   help="mlp: bottleneck 2048-512-2048 (x W); linear: one d x d matrix (the toy Wp); random: a "
                        "fixed, untrained d x d matrix with entries N(0, 1/d); none: "
                        "no predictor; directpred: Wp set from the eigendecomposition of F = E[z z^T] "
                        f"(default {d.predictor})")
    p.add_argument("--no-predictor", action="store_true", help="same as --predictor none")
    p.add_argument("--no-stop-grad", action="store_true",
                   help="simsiam only: differentiate through the target branch too (expected to collapse)")
    p.add_argument("--predictor-lr-ratio", type=number("predictor-lr-ratio", positive=True),
                   default=d.predictor_lr_ratio,
                   help="predictor lr / encoder lr, the toy models' 1/eps (default %(default)s)")
    p.add_argument("--fixed-predictor-lr", action="store_true",
                   help="do not decay the predictor's learning rate (SimSiam's fix_pred_lr)")
    p.add_argument("--ema", type=_unit("ema"), default=d.ema,
                   help="byol: base target momentum m0, raised to 1 on a cosine (default %(default)s)")
    p.add_argument("--dp-rho", type=_unit("dp-rho"), default=d.dp_rho,
                   help="directpred: EMA factor of the F estimate (default %(default)s)")
    p.add_argument("--dp-eps", type=number("dp-eps", nonneg=True), default=d.dp_eps,
                   help="directpred: eigenvalue offset, p_j = sqrt(s_j / s_max) + eps (default %(default)s)")
    p.add_argument("--subset", type=number("subset", positive=True, integer=True), default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--test-subset", type=number("test-subset", positive=True, integer=True), default=None,
                   help="evaluate kNN / probe on the first M test images only")
    p.add_argument("--knn-k", type=number("knn-k", positive=True, integer=True),
                   default=d.knn_k, help="kNN neighbours (default %(default)s)")
    p.add_argument("--knn-t", type=number("knn-t", positive=True),
                   default=d.knn_t, help="kNN temperature (default %(default)s)")
    p.add_argument("--knn-every", type=number("knn-every", positive=True, integer=True), default=d.knn_every,
                   help="kNN every N epochs (always at epoch 0 and the last) (default %(default)s)")
    p.add_argument("--no-probe", action="store_true", help="skip the final linear probe")
    p.add_argument("--blocks", type=number("blocks", positive=True, integer=True),
                   nargs=4, default=list(d.blocks), metavar="N",
                   help="basic blocks per stage (default 2 2 2 2: ResNet-18; fewer for quick checks)")
    p.add_argument("--seed", type=number("seed", nonneg=True, integer=True, maximum=MAX_SEED),
                   default=d.seed, help="PRNG seed (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out if there is one")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (else a folder holding one is refused)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--compare", type=Path, nargs="+", metavar="RUN_DIR",
                   help="instead of training: plot loss, std and kNN of finished runs to --out "
                        "(a .png file, or a folder for compare.png; default compare.png)")
    return p


def estimate_memory(cfg: Config) -> float:
    """Bytes a training run needs, roughly: float32 parameters with their gradients, momenta,
    target and checkpoint copy, plus the activations of both views of a batch kept for the
    backward pass (about 34 feature maps of 32 x 32 x 64 x width floats an image)."""
    w = cfg.width
    params = 18.5e6 * w * w * sum(cfg.blocks) / 8
    activations = cfg.batch_size * 2 * 34 * 32 * 32 * 64 * max(w, 1 / 64) * 4
    return params * 4 * 6 + activations


def _compare_target(out: str | None) -> Path:
    """The figure file of ``--compare``: ``out``, or ``out/compare.png`` for a folder."""
    if out is None:
        return Path("compare.png")
    out = Path(out)
    if out.is_dir() or out.suffix == "":
        return out / "compare.png"
    if out.suffix.lstrip(".").lower() not in FIGURE_FORMATS:
        raise ValueError(f"--out {out}: unknown figure format {out.suffix!r} "
                         f"(use {', '.join('.' + f for f in FIGURE_FORMATS)})")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    return guarded(parser.prog, lambda guard: _main(parser, a, guard))


def _main(parser, a, guard) -> int:
    if a.out is not None and a.out.strip() == "":
        parser.error(f"--out is an empty name {a.out!r}")
    if a.no_predictor and a.predictor not in (None, "none"):
        parser.error(f"--no-predictor conflicts with --predictor {a.predictor}")
    predictor = "none" if a.no_predictor else (a.predictor or Config().predictor)
    if importlib.util.find_spec("flax") is None or importlib.util.find_spec("optax") is None:
        parser.error(f"training and --compare need {EXTRA}")
    if a.compare:
        from dynamics.cifar.figure import compare_runs

        try:
            out = _compare_target(a.out)
        except ValueError as e:
            parser.error(str(e))
        try:
            compare_runs(a.compare, out)
        except (OSError, ValueError, KeyError) as e:
            parser.error(f"cannot plot {' '.join(map(str, a.compare))} to {out}: {e}")
        print(f"wrote {out}")
        return 0
    if a.data_dir is None:
        parser.error("--data-dir is required (a cifar-10-batches-py folder or its parent)")
    cfg = Config(method=a.method, epochs=a.epochs, batch_size=a.batch_size, width=a.width, lr=a.lr,
                 momentum=a.momentum, wd=a.wd, predictor=predictor, stop_grad=not a.no_stop_grad,
                 predictor_lr_ratio=a.predictor_lr_ratio, fixed_predictor_lr=a.fixed_predictor_lr, ema=a.ema,
                 dp_rho=a.dp_rho, dp_eps=a.dp_eps, subset=a.subset, test_subset=a.test_subset, knn_k=a.knn_k,
                 knn_t=a.knn_t, knn_every=a.knn_every, probe=not a.no_probe, seed=a.seed,
                 blocks=tuple(a.blocks))
    try:
        cfg.validate()
        check_memory(estimate_memory(cfg), f"--width {cfg.width:g} with --batch-size {cfg.batch_size}")
    except ValueError as e:
        parser.error(str(e))
    if not Path(a.data_dir).is_dir():
        parser.error(f"--data-dir {a.data_dir} does not exist or is not a folder")
    if a.resume and a.overwrite:
        parser.error("--resume continues the run in --out; --overwrite replaces it: give one")
    out = Path(a.out) if a.out is not None else Path("runs") / cfg.method
    # Checked, locked and cleared before the data is read or anything compiles.
    # An earlier run is one that finished an epoch (its checkpoint): a run killed before that
    # leaves nothing a plain rerun has to be told to replace.
    rs = open_results(guard, out, "cifar-run", RUN_PATTERNS, overwrite=a.resume or a.overwrite,
                      marker="checkpoint.json")
    earlier = list(rs.previous)
    if a.resume and earlier:  # a damaged checkpoint fails now, not after the data is read
        from dynamics.cifar.train import check_checkpoint

        try:
            check_checkpoint(out)
        except ValueError as e:
            raise CliExit(1, f"error: {e}") from None

    from dynamics.cifar.data import CifarDataError, load_cifar10

    try:
        data = load_cifar10(a.data_dir)
    except CifarDataError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if cfg.subset is not None and cfg.subset > len(data.train_x):
        parser.error(f"--subset {cfg.subset} exceeds the {len(data.train_x)} training images")

    from dynamics.cifar.figure import plot_run
    from dynamics.cifar.train import train

    try:
        if a.overwrite:
            for name in earlier:
                with contextlib.suppress(FileNotFoundError):
                    (rs.folder / name).unlink()
        result = train(cfg, data, out, resume=a.resume, progress=not a.no_progress,
                       log=lambda s: print(s, flush=True))
        plot_run(out)
    except ValueError as e:
        parser.exit(1, f"{parser.prog}: error: {str(e).splitlines()[0]}\n")
    except OSError as e:
        kept = "the files of the earlier epochs are kept (--resume continues)" if a.resume and earlier \
            else _remove_run(out)
        raise CliExit(1, f"error: could not write to {out}: {e.strerror or e}; {kept}") from None
    except KeyboardInterrupt:
        done = (out / "checkpoint.json").is_file()
        raise CliExit(130, "interrupted; " + (
            f"{out} holds the checkpoint of the last finished epoch (--resume continues)"
            if done else _remove_run(out))) from None
    fin = result["final"]
    print(f"final kNN {fin.get('knn')}, linear probe {fin.get('linear_probe')}; wrote {out}")
    return 0


def _remove_run(out: Path) -> str:
    """Remove a failed new run's files from ``out``; say so."""
    for name in RUN_PATTERNS:
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    return f"removed this run's files from {out}"


if __name__ == "__main__":
    exit_process(main())
