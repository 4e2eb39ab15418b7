"""Pieces shared by the package's command lines: one-line argument errors, number parsing,
resource estimates checked before any work, interrupts, and writing a run's result set."""

from __future__ import annotations

import argparse
import datetime
import math
import re
import signal
import sys
import threading

from dynamics._io import OutputError, ResultSet, format_bytes, memory_limit, save_dataset, save_figure

# A command-line word that is a number, also in exponent notation or a signed inf/nan, so that
# ``--theta-range -1e-3 1e-3`` reads two values instead of an unknown option ``-1e-3``.
NEGATIVE_NUMBER = re.compile(
    r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE
)


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to a flag's help once: not when the help already speaks of its
    default or there is none; lists print as space-separated values."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if ("default" in text or d is None or d is argparse.SUPPRESS or d is False
                or action.nargs == 0):
            return text
        shown = " ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in d) \
            if isinstance(d, (list, tuple)) else (f"{d:g}" if isinstance(d, float) else str(d))
        return f"{text} (default: {shown.replace('%', '%%')})"


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line, ``PROG: error: ...``, with exit status 2, that
    reads negative numbers in any notation as values, and prints each default once."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message.splitlines()[0]}\n")


def number(kind, *, positive=False, nonneg=False, integer=False, maximum=None):
    """An argparse ``type`` for a finite number; the error names the flag and the bad text.

    Integers may be written as ``1e3``; ``maximum`` bounds the value from above."""

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{kind} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{kind} must be finite, got {text!r}")
        if integer:
            try:
                value = int(text)
            except ValueError:
                if value != int(value):
                    raise argparse.ArgumentTypeError(
                        f"{kind} must be an integer, got {text!r}") from None
                value = int(value)
        if positive and value <= 0:
            raise argparse.ArgumentTypeError(f"{kind} must be > 0, got {text!r}")
        if nonneg and value < 0:
            raise argparse.ArgumentTypeError(f"{kind} must be >= 0, got {text!r}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"{kind} must be <= {maximum}, got {text!r}")
        return value

    parse.__name__ = kind
    return parse


# --- resource estimates, checked before any work ----------------------------------------------

#: the largest step count of a gd/sgd lane (the step index is a 32-bit integer in the samplers)
MAX_DISCRETE_STEPS = 2**31 - 1
#: seeds are 64-bit signed integers
MAX_SEED = 2**63 - 1


def discrete_steps(t1: float, lr: float) -> int:
    """Steps of a gd/sgd lane, ``round(t1 / lr)`` (at least 1); ``ValueError`` past the limit."""
    n = t1 / lr
    if not math.isfinite(n) or n > MAX_DISCRETE_STEPS:
        raise ValueError(f"--t1 {t1:g} / --lr {lr:g} is {n:.3g} steps a lane; gd/sgd take at most "
                         f"{MAX_DISCRETE_STEPS} (raise --lr or lower --t1)")
    return max(1, int(round(n)))


def check_memory(need: float, what: str, limit: int | None = None) -> None:
    """``ValueError`` naming ``what`` when ``need`` bytes exceed ``limit`` (default: this
    machine's physical memory)."""
    limit = memory_limit() if limit is None else int(limit)
    if not need <= limit:
        raise ValueError(f"{what} needs about {format_bytes(need)} of memory; this machine has "
                         f"{format_bytes(limit)}")


# --- interrupts and one-line failures ---------------------------------------------------------


class CliExit(Exception):
    """Stop a command line with ``code`` after printing ``PROG: message`` (one line)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class Guard:
    """What :func:`guarded` knows about a running command: its result set (for the message
    after an interrupt) and the signals received (an interrupt swallowed inside a library
    still stops the run before anything is committed)."""

    def __init__(self, prog: str):
        self.prog = prog
        self.result_set: ResultSet | None = None
        self.signals: list[int] = []

    def check(self) -> None:
        if self.signals:
            raise KeyboardInterrupt

    def folder_state(self) -> str:
        rs = self.result_set
        if rs is None:
            return "nothing was written"
        if rs.committed:
            return f"the results in {rs.folder} are complete"
        return f"nothing was written; {rs.folder} is as it was before the run"


def guarded(prog: str, body) -> int:
    """Run ``body(guard) -> int``. Ctrl-C (SIGINT) ends it with one line and exit 130, SIGTERM
    with 143; an unusable output folder (:class:`OutputError`) is a one-line error with exit 2;
    :class:`CliExit` prints its line and exits with its code."""
    guard = Guard(prog)
    main_thread = threading.current_thread() is threading.main_thread()
    old = {}

    def on_signal(signum, frame):
        guard.signals.append(signum)
        raise KeyboardInterrupt

    if main_thread:
        for s in (signal.SIGINT, signal.SIGTERM):
            old[s] = signal.getsignal(s)
            signal.signal(s, on_signal)
    try:
        return body(guard)
    except KeyboardInterrupt:
        code = 143 if guard.signals and guard.signals[-1] == signal.SIGTERM else 130
        sys.stderr.write(f"{prog}: interrupted; {guard.folder_state()}\n")
        return code
    except OutputError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    except CliExit as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return e.code
    finally:
        if guard.result_set is not None:
            guard.result_set.close()
        for s, h in old.items():
            signal.signal(s, h)


def open_results(guard: Guard, folder, kind: str, patterns, *, overwrite: bool,
                 min_free: int = 0) -> ResultSet:
    """Open (check, lock, stage) the result set of a run before any work; see :class:`ResultSet`."""
    rs = ResultSet(folder, kind, patterns, overwrite=overwrite, min_free=min_free)
    rs.__enter__()
    guard.result_set = rs
    return rs


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


def add_integration_arguments(parser, defaults, *, convention_help, t1_help=None):
    """The ``dynamics and integration`` flags both sweeps take; returns the group so that each
    sweep can add its own solver choices to it."""
    g = parser.add_argument_group("dynamics and integration")
    g.add_argument("--convention", choices=("loss", "tian"), default=defaults["convention"],
                   help=convention_help)
    g.add_argument("--t1", type=number("t1", positive=True), default=defaults["t1"],
                   help=t1_help or "integration time (ODE time units; gd/sgd take t1/lr steps)")
    g.add_argument("--lr", type=number("lr", positive=True), default=defaults["lr"],
                   help="step size of gd/sgd in ODE time (predictor step lr/eps)")
    g.add_argument("--batch", type=number("batch", positive=True, integer=True),
                   default=defaults["batch"], help="minibatch size of sgd")
    g.add_argument("--rtol", type=number("rtol", positive=True), default=defaults["rtol"],
                   help="relative tolerance of the adaptive solver")
    g.add_argument("--atol", type=number("atol", positive=True), default=defaults["atol"],
                   help="absolute tolerance of the adaptive solver")
    g.add_argument("--max-steps", type=number("max-steps", positive=True, integer=True,
                                              maximum=MAX_DISCRETE_STEPS),
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


def write_results(guard: Guard, ds, name: str, figures, *, quiet: bool, summary: str,
                  n_lanes: int, elapsed: float, kind: str, dpi: int = 110):
    """Write ``ds`` as ``name`` and each ``(png_name, make_figure)`` of ``figures`` into the
    guard's result set, commit the set, then print ``summary`` and what was written (unless
    ``quiet``). A write failure removes everything staged and stops with one line, exit 1."""
    rs = guard.result_set
    pngs = []
    try:
        save_dataset(ds, rs.path(name))
        if figures:
            import matplotlib.pyplot as plt

            for png, make in figures:
                fig = make()
                try:
                    save_figure(fig, rs.path(png), dpi=dpi)
                finally:
                    plt.close(fig)
                pngs.append(png)
        guard.check()  # an interrupt a library swallowed may have cut a file short
        rs.commit([name, *pngs], info=dict(
            command=ds.attrs.get("command", ""),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))
    except OSError as e:
        reason = e.strerror or str(e)
        where = ("the set there may be incomplete (its manifest is missing)" if rs.committing
                 else f"nothing was written; {rs.folder} is as it was before the run")
        rs.close()
        raise CliExit(1, f"error: could not write the results to {rs.folder}: {reason}; {where}") from None
    if not quiet:
        print(summary)
        print(f"{n_lanes} lanes in {elapsed:.1f} s; wrote {rs.folder / name}"
              + (f" and {len(pngs)} {kind}(s) in {rs.folder}/" if pngs else ""))
