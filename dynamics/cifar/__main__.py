"""``python -m dynamics.cifar``: SimSiam / BYOL on CIFAR-10 with the toy models' switches.

Example (a CPU-sized run)::

    python -m dynamics.cifar --data-dir data/ --method simsiam --epochs 5 --width 0.125 \\
        --subset 5000 --out runs/simsiam

Writes ``OUT/metrics.csv`` (one row per epoch), ``OUT/metrics.json`` (epochs, per-step loss and
std, final kNN and linear probe), ``OUT/config.json``, ``OUT/checkpoint.*`` (after every epoch;
``--resume`` continues from it) and ``OUT/curves.png``. ``--compare RUN_DIR ...`` draws the
SimSiam-Fig.-2 figure (loss, std of z/||z||, kNN) of finished runs instead of training.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dynamics._cli import OneLineParser, number
from dynamics.cifar.train import METHODS, PREDICTORS, Config


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
    p = OneLineParser(prog="python -m dynamics.cifar", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path,
                   help="folder 'cifar-10-batches-py' (or its parent) with data_batch_1..5 and test_batch")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder for metrics, checkpoint and figure (default: runs/<method>)")
    p.add_argument("--method", choices=METHODS, default=d.method, help="simsiam (stop-gradient) or byol (EMA target)")
    p.add_argument("--epochs", type=number("epochs", positive=True, integer=True),
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
    p.add_argument("--predictor", choices=PREDICTORS, default=d.predictor,
                   help="mlp: bottleneck 2048-512-2048 (x W); linear: one d x d matrix (the toy Wp); none: "
                        "no predictor; directpred: Wp set from the eigendecomposition of F = E[z z^T] "
                        "(default %(default)s)")
    p.add_argument("--no-predictor", action="store_const", const="none", dest="predictor",
                   help="same as --predictor none")
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
    p.add_argument("--seed", type=int, default=d.seed, help="PRNG seed (default %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out if there is one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--compare", type=Path, nargs="+", metavar="RUN_DIR",
                   help="instead of training: plot loss, std and kNN of finished runs to --out (a .png)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.compare:
        from dynamics.cifar.figure import compare_runs

        out = a.out or Path("compare.png")
        try:
            compare_runs(a.compare, out)
        except (OSError, ValueError, KeyError) as e:
            parser.error(f"cannot plot {' '.join(map(str, a.compare))}: {e}")
        print(f"wrote {out}")
        return 0
    if a.data_dir is None:
        parser.error("--data-dir is required (a cifar-10-batches-py folder or its parent)")
    cfg = Config(method=a.method, epochs=a.epochs, batch_size=a.batch_size, width=a.width, lr=a.lr,
                 momentum=a.momentum, wd=a.wd, predictor=a.predictor, stop_grad=not a.no_stop_grad,
                 predictor_lr_ratio=a.predictor_lr_ratio, fixed_predictor_lr=a.fixed_predictor_lr, ema=a.ema,
                 dp_rho=a.dp_rho, dp_eps=a.dp_eps, subset=a.subset, test_subset=a.test_subset, knn_k=a.knn_k,
                 knn_t=a.knn_t, knn_every=a.knn_every, probe=not a.no_probe, seed=a.seed,
                 blocks=tuple(a.blocks))
    try:
        cfg.validate()
    except ValueError as e:
        parser.error(str(e))

    from dynamics.cifar.data import CifarDataError, load_cifar10

    try:
        data = load_cifar10(a.data_dir)
    except CifarDataError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if cfg.subset is not None and cfg.subset > len(data.train_x):
        parser.error(f"--subset {cfg.subset} exceeds the {len(data.train_x)} training images")
    out = a.out or Path("runs") / cfg.method

    from dynamics.cifar.figure import plot_run
    from dynamics.cifar.train import train

    try:
        result = train(cfg, data, out, resume=a.resume, progress=not a.no_progress,
                       log=lambda s: print(s, flush=True))
    except ValueError as e:
        parser.exit(1, f"{parser.prog}: error: {str(e).splitlines()[0]}\n")
    plot_run(out)
    fin = result["final"]
    print(f"final kNN {fin.get('knn')}, linear probe {fin.get('linear_probe')}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
