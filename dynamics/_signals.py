"""How the command lines stop on a signal, from the first moment of the process.

``python -m dynamics.sweep`` (and ``dynamics.figures``, ``dynamics.cifar``) spends its first
seconds importing JAX: first in the package's ``__init__``, before the command line's own
``__main__`` runs. A signal then must neither be lost nor end in a traceback. So, when the
process was started as one of :data:`CLIS`, ``dynamics/__init__.py`` calls
:func:`install_for_cli` before it imports anything heavy: until the command line takes over
(:func:`dynamics._cli.guarded`, which turns a signal into ``KeyboardInterrupt`` so that a run
can clean up), SIGINT, SIGTERM and SIGHUP end the process at once with one line on stderr and
exit status ``128 + signal number`` (130, 143, 129). Nothing has been written at that point.

Standard library only: this module is imported before JAX.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

#: the modules that are command lines (``python -m NAME``)
CLIS = ("dynamics.sweep", "dynamics.figures", "dynamics.cifar", "dynamics.predict")
#: the signals that stop a command line (SIGHUP: the terminal was closed)
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, n))
#: interpreter options that take the next word as their value
_OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


def exit_code(signum: int) -> int:
    """The exit status after signal ``signum``: ``128 + signum`` (SIGINT 130, SIGTERM 143,
    SIGHUP 129), the shell's convention."""
    return 128 + int(signum)


#: what the process has written so far, for the one line after a signal; the command lines
#: replace it once they open an output folder
describe = lambda: "nothing was written"  # noqa: E731


def cli_module(argv=None) -> str | None:
    """The module this interpreter was started with as ``python -m MODULE`` (from its original
    command line), or ``None``."""
    argv = list(getattr(sys, "orig_argv", []) if argv is None else argv)
    i = 1
    while i < len(argv):
        word = argv[i]
        if word == "-m":
            return argv[i + 1] if i + 1 < len(argv) else None
        if word.startswith("-m") and not word.startswith("--"):
            return word[2:]
        if word in _OPTIONS_WITH_VALUE:
            i += 2
            continue
        if not word.startswith("-") or word == "-c" or word == "-":
            return None  # a script, -c code or stdin: not a module
        i += 1
    return None


def install(prog: str) -> None:
    """SIGINT, SIGTERM and SIGHUP end the process now: one line ``PROG: interrupted; ...``
    and exit status :func:`exit_code`. Only from the main thread (elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def leave(signum, frame):
        try:
            os.write(2, f"{prog}: interrupted; {describe()}\n".encode())
        finally:
            os._exit(exit_code(signum))

    for s in STOP_SIGNALS:
        signal.signal(s, leave)


def install_for_cli() -> None:
    """:func:`install` when this process runs one of :data:`CLIS`; called by the package's
    ``__init__`` before it imports JAX."""
    module = cli_module()
    if module in CLIS:
        install(f"python -m {module}")
