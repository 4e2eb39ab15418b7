"""Pieces shared by the package's command lines."""

from __future__ import annotations

import argparse
import math


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line, ``PROG: error: ...``, with exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0]}\n")


def number(kind, *, positive=False, nonneg=False, integer=False):
    """An argparse ``type`` for a finite number; the error names the flag and the bad text."""

    def parse(text):
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{kind} must be finite, got {text!r}")
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"{kind} must be > 0, got {text!r}")
        if nonneg and value < 0:
            raise argparse.ArgumentTypeError(f"{kind} must be >= 0, got {text!r}")
        return value

    parse.__name__ = kind
    return parse


METHODS = ("flow", "gd", "sgd")
SWEPT = ("eps", "eta", "sigma2", "beta", "variant", "method")


def variant(text):
    """An argparse ``type`` for a variant name of :data:`dynamics.flow.VARIANTS`."""
    from dynamics.flow import VARIANTS

    if text not in VARIANTS:
        raise argparse.ArgumentTypeError(
            f"unknown variant {text!r} (choose from {', '.join(VARIANTS)})"
        )
    return text


def method(text):
    """An argparse ``type`` for a dynamics: ``flow``, ``gd`` or ``sgd``."""
    if text not in METHODS:
        raise argparse.ArgumentTypeError(f"unknown method {text!r} (choose from {', '.join(METHODS)})")
    return text


def add_swept_arguments(parser, defaults, *, eps_help, sigma2_help, beta_help):
    """The flags both sweeps take as lists of values, with the model-specific help texts."""
    g = parser.add_argument_group("swept parameters (each takes one or more values)")
    g.add_argument("--eps", nargs="+", type=number("eps", positive=True), default=defaults["eps"],
                   help=eps_help)
    g.add_argument("--eta", nargs="+", type=number("eta", nonneg=True), default=defaults["eta"],
                   help="weight decay; see --convention for how it enters the predictor")
    g.add_argument("--sigma2", nargs="+", type=number("sigma2", nonneg=True),
                   default=defaults["sigma2"], help=sigma2_help)
    g.add_argument("--beta", nargs="+", type=number("beta", positive=True),
                   default=defaults["beta"], help=beta_help)
    g.add_argument("--variant", nargs="+", type=variant, default=defaults["variant"],
                   help="simsiam, simsiam-nosg (no stop-gradient), byol, byol-nosg")
    g.add_argument("--method", nargs="+", type=method, default=defaults["method"],
                   help="flow (gradient flow, adaptive ODE solver), gd (discrete GD on the "
                        "expected loss), sgd (minibatch SGD on sampled views)")
    return g


def add_integration_arguments(parser, defaults, *, convention_help):
    """The ``dynamics and integration`` flags both sweeps take; returns the group so that each
    sweep can add its own solver choices to it."""
    g = parser.add_argument_group("dynamics and integration")
    g.add_argument("--convention", choices=("loss", "tian"), default=defaults["convention"],
                   help=convention_help)
    g.add_argument("--t1", type=number("t1", positive=True), default=defaults["t1"],
                   help="integration time (ODE time units; gd/sgd take t1/lr steps)")
    g.add_argument("--lr", type=number("lr", positive=True), default=defaults["lr"],
                   help="step size of gd/sgd in ODE time (predictor step lr/eps)")
    g.add_argument("--batch", type=number("batch", positive=True, integer=True),
                   default=defaults["batch"], help="minibatch size of sgd")
    g.add_argument("--rtol", type=number("rtol", positive=True), default=defaults["rtol"],
                   help="relative tolerance of the adaptive solver")
    g.add_argument("--atol", type=number("atol", positive=True), default=defaults["atol"],
                   help="absolute tolerance of the adaptive solver")
    g.add_argument("--max-steps", type=number("max-steps", positive=True, integer=True),
                   default=defaults["max_steps"],
                   help="solver step cap per lane (then status max_steps)")
    return g


def check_sweep_lists(parser, args, names=SWEPT):
    """Reject a swept list that repeats a value, and a gd/sgd step too large for some eps."""
    for name in names:
        vals = getattr(args, name)
        if len(set(vals)) != len(vals):
            parser.error(f"--{name} lists a value twice: {' '.join(map(str, vals))}")
    if "sgd" in args.method or "gd" in args.method:
        bad = [e for e in args.eps if args.lr / e >= 1.0]
        if bad:
            parser.error(
                f"--lr {args.lr:g} is too large for eps {bad[0]:g}: the predictor step lr/eps "
                f"must be < 1 for gd/sgd to be stable"
            )


def write_results(ds, path, figures, *, quiet: bool, summary: str, n_lanes: int, elapsed: float,
                  kind: str):
    """Save ``ds`` to ``path`` and each ``(png_path, make_figure)`` of ``figures``, atomically,
    then print ``summary`` and a line saying what was written (unless ``quiet``)."""
    from dynamics._io import save_dataset, save_figure

    save_dataset(ds, path)
    pngs = []
    if figures:
        import matplotlib.pyplot as plt

        for png, make in figures:
            fig = make()
            save_figure(fig, png, dpi=110)
            plt.close(fig)
            pngs.append(png)
    if not quiet:
        print(summary)
        print(f"{n_lanes} lanes in {elapsed:.1f} s; wrote {path}"
              + (f" and {len(pngs)} {kind}(s) in {path.parent}/" if pngs else ""))
