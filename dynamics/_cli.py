"""Pieces shared by the package's command lines: one-line argument errors, number parsing,
interrupts, and writing a run's result set."""

from __future__ import annotations

import argparse
import atexit
import datetime
import math
import os
import re
import signal
import sys
import threading

from dynamics import _signals
from dynamics._io import OutputError, ResultSet, check_memory, save_dataset, save_figure
from dynamics._signals import STOP_SIGNALS, exit_code
from dynamics.solve.batch import SOLVE_METHODS
from dynamics.types import MAX_DISCRETE_STEPS, MAX_SEED, VARIANTS

#: the exit statuses of a command line stopped by a signal
SIGNAL_EXITS = frozenset(exit_code(s) for s in STOP_SIGNALS)

__all__ = ["MAX_DISCRETE_STEPS", "MAX_SEED", "CliExit", "Guard", "OneLineParser", "check_memory",
           "exit_process", "guarded", "method", "number", "open_results", "variant", "write_results"]

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


class StoreOnce(argparse._StoreAction):
    """``store``, but a flag given twice (``--eps 0.01 --eps 1``) is an error instead of the
    last one silently winning: every value of a flag goes after one mention of it."""

    SEEN = "_flags_given"

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string is not None:
            seen = namespace.__dict__.setdefault(self.SEEN, set())
            if self.dest in seen:
                how = (f"give all its values after one {option_string}"
                       if self.nargs in ("+", "*") else "give it once")
                raise argparse.ArgumentError(self, f"given more than once; {how}")
            seen.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` whose errors are one line, ``PROG: error: ...``, with exit status 2, that
    reads negative numbers in any notation as values, prints each default once, and refuses a
    value flag given twice (:class:`StoreOnce`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER
        self.register("action", None, StoreOnce)
        self.register("action", "store", StoreOnce)

    def parse_known_args(self, args=None, namespace=None):
        ns, rest = super().parse_known_args(args, namespace)
        ns.__dict__.pop(StoreOnce.SEEN, None)
        return ns, rest

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
        self.running = True
        #: when set, a first SIGINT only asks the run to stop at its next safe point (a
        #: sweep: after the current work unit), which it learns from :meth:`stop_requested`
        self.soft_interrupt = False
        #: ``() -> str`` describing work saved outside the result set (a sweep's store)
        self.saved = None

    def check(self) -> None:
        if self.signals:
            raise KeyboardInterrupt

    def stop_requested(self) -> bool:
        return bool(self.signals)

    def folder_state(self) -> str:
        if self.saved is not None and not (self.result_set and self.result_set.committed):
            return self.saved()
        rs = self.result_set
        if rs is None:
            return "nothing was written"
        if rs.committed:
            return f"the results in {rs.folder} are complete"
        return f"nothing was written; {rs.folder} is as it was before the run"


def guarded(prog: str, body) -> int:
    """Run ``body(guard) -> int``. SIGINT (Ctrl-C), SIGTERM and SIGHUP (a closed terminal) end
    it with one line and exit status ``128 + signal`` (130, 143, 129; see
    :mod:`dynamics._signals`); an unusable output folder (:class:`OutputError`) is a one-line
    error with exit 2; :class:`CliExit` prints its line and exits with its code. The result set
    is closed (staged files and a folder the run created removed) before the line is printed."""
    guard = Guard(prog)
    main_thread = threading.current_thread() is threading.main_thread()
    old = {}

    def on_signal(signum, frame):
        first = not guard.signals
        guard.signals.append(signum)
        if guard.running and guard.soft_interrupt and first and signum == signal.SIGINT:
            if sys.stderr.isatty():
                sys.stderr.write(f"\n{prog}: stopping after the current work unit "
                                 f"(Ctrl-C again stops at once)\n")
            return
        if guard.running:  # once the body has ended, a signal is only recorded
            raise KeyboardInterrupt

    if main_thread:
        for s in STOP_SIGNALS:
            old[s] = signal.getsignal(s)
            signal.signal(s, on_signal)
    previous_describe = _signals.describe
    _signals.describe = guard.folder_state
    try:
        try:
            return body(guard)
        finally:
            guard.running = False
            if guard.result_set is not None:
                guard.result_set.close()
    except KeyboardInterrupt:
        code = exit_code(guard.signals[-1]) if guard.signals else exit_code(signal.SIGINT)
        sys.stderr.write(f"{prog}: interrupted; {guard.folder_state()}\n")
        return code
    except OutputError as e:
        sys.stderr.write(f"{prog}: error: {e}\n")
        return 2
    except CliExit as e:
        sys.stderr.write(f"{prog}: {e}\n")
        return e.code
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _signals.describe = previous_describe


def exit_process(code: int) -> None:
    """End a command-line process with ``code``.

    The result set is closed (committed, or left as it was) before this is called, and every
    file this package writes is closed where it is written. So the process runs the exit
    handlers (libraries' clean-up: JAX's backends, Ray, zarr), flushes its streams and leaves,
    without tearing the interpreter down module by module: that teardown writes nothing and,
    after a large sweep, took half a second of the main job. After a signal (exit 129, 130,
    143) JAX's runtime threads may still be inside the computation the signal cut short, and
    the exit handlers could wait on them or crash the process (SIGSEGV) after its one-line
    message: a stopped run skips them."""
    if code not in SIGNAL_EXITS:
        atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def open_results(guard: Guard, folder, kind: str, patterns, *, overwrite: bool,
                 min_free: int = 0, **options) -> ResultSet:
    """Open (check, lock, stage) the result set of a run before any work; see :class:`ResultSet`
    (``options``: its keyword arguments)."""
    rs = ResultSet(folder, kind, patterns, overwrite=overwrite, min_free=min_free, **options)
    rs.__enter__()
    guard.result_set = rs
    return rs


def variant(text):
    """An argparse ``type`` for a variant name of :data:`dynamics.types.VARIANTS`."""
    if text not in VARIANTS:
        raise argparse.ArgumentTypeError(
            f"unknown variant {text!r} (choose from {', '.join(VARIANTS)})"
        )
    return text


def method(text):
    """An argparse ``type`` for a dynamics: ``flow``, ``gd`` or ``sgd``."""
    if text not in SOLVE_METHODS:
        raise argparse.ArgumentTypeError(
            f"unknown method {text!r} (choose from {', '.join(SOLVE_METHODS)})")
    return text


def write_results(guard: Guard, ds, name: str, figures, *, quiet: bool, summary: str,
                  n_lanes: int, elapsed: float, kind: str, dpi: int = 110,
                  info: dict | None = None):
    """Write ``ds`` as ``name`` and each ``(png_name, make_figure)`` of ``figures`` into the
    guard's result set, commit the set, then print ``summary`` and what was written (unless
    ``quiet``). A write failure removes everything staged and stops with one line, exit 1."""
    rs = guard.result_set
    pngs = []
    try:
        if name is not None:  # None: the Dataset is already written (a sweep's zarr result)
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
        rs.commit([name, *pngs] if name is not None else pngs, info=dict(
            **(info or {}), command=ds.attrs.get("command", ""),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")))
    except OSError as e:
        reason = e.strerror or str(e)
        where = ("the set there may be incomplete (its manifest is missing)" if rs.committing
                 else f"nothing was written; {rs.folder} is as it was before the run")
        saved = guard.saved() if guard.saved is not None and not rs.committing else None
        if saved and not saved.startswith("nothing was written"):
            # work saved outside the result set (a sweep's store) is kept and named
            where = f"the results in {rs.folder} are as they were before the run; {saved}"
        rs.close()
        raise CliExit(1, f"error: could not write the results to {rs.folder}: {reason}; {where}") from None
    if not quiet:
        print(summary)
        where = rs.folder / (name if name is not None else (info or {}).get("dataset", ""))
        print(f"{n_lanes} lanes in {elapsed:.1f} s; wrote {where}"
              + (f" and {len(pngs)} {kind}(s) in {rs.folder}/" if pngs else ""))
