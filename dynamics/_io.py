"""Writing results safely: atomic files, and output folders that hold complete result sets.

Two layers:

- :func:`atomic_path` (and :func:`save_figure`, :func:`save_dataset`, :func:`atomic_write_bytes`,
  :func:`atomic_write_text`): one file appears complete or not at all.
- :class:`ResultSet`: a run's files in one output folder. Opening it checks, before any work,
  that the folder can be written, takes a lock on it (a second writer is refused), removes stale
  temporaries of killed runs, and refuses to mix a new run with an earlier run's results unless
  asked to replace them. Files are written into a staging folder inside the output folder and
  moved into place together at :meth:`ResultSet.commit`; a manifest written last names the
  files of the complete set. A failure or an interrupt before the commit leaves the folder as
  it was.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

try:  # POSIX; on other systems the folder lock is skipped
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_NAME = ".dynamics.lock"
STAGING_PREFIX = ".dynamics-staging-"
MANIFEST_PREFIX = ".dynamics-results-"


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path next to ``path``; on success move it over ``path`` atomically.

    If the body raises (or the process is interrupted) the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are ordinary files
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_path`, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode())


def save_figure(fig, path, **kwargs):
    """``fig.savefig`` to ``path`` atomically (format from the suffix)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), **kwargs)


INT32 = (-(2**31), 2**31 - 1)


def save_dataset(ds, path):
    """Write an xarray Dataset to netCDF atomically. NetCDF3 has no 64-bit integers: an integer
    attribute outside the int32 range (a large seed) is written as its decimal text."""
    big = {k: str(int(v)) for k, v in ds.attrs.items()
           if isinstance(v, int) and not isinstance(v, bool) and not INT32[0] <= v <= INT32[1]}
    if big:
        ds = ds.copy()
        ds.attrs.update(big)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="scipy")


# --- output folders -------------------------------------------------------------------------


class OutputError(Exception):
    """An output folder that cannot take a run's results; the message is one line."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _is_temporary(name: str, patterns) -> bool:
    """Whether ``name`` is a temporary of this package's writers for a file of ``patterns``:
    a staging folder, or ``.<file>.<random>.tmp`` of :func:`atomic_path`."""
    if name.startswith(STAGING_PREFIX):
        return True
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    base = name[1:-4].rpartition(".")[0]
    return base.startswith(MANIFEST_PREFIX) or any(fnmatch.fnmatchcase(base, p) for p in patterns)


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT and SIGTERM back while the body runs (a few file moves), then deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in got[:1]:
            os.kill(os.getpid(), s)


class ResultSet:
    """The files one run writes into ``folder`` (see the module docstring).

    Args:
        folder: the output folder (created with its parents if missing).
        kind: names this kind of result set (its manifest is ``.dynamics-results-<kind>.json``);
            result sets of different kinds can share a folder.
        patterns: glob patterns of the files a set of this kind consists of (an earlier run's
            files are recognised by them even without a manifest).
        overwrite: replace an earlier set of this kind (its files that the new run does not
            write are removed at the commit); without it such a folder is refused.
        min_free: bytes the folder's file system must have free (the run's estimated output).

    Use as a context manager; call :meth:`path` for each file to write and :meth:`commit` at
    the end. Leaving the context without a commit removes everything staged.
    """

    def __init__(self, folder, kind: str, patterns, *, overwrite: bool = False, min_free: int = 0):
        self.name = str(folder)  # Path("") is ".": keep the text to refuse an empty name
        self.folder = Path(folder)
        self.kind = kind
        self.patterns = tuple(patterns)
        self.overwrite = overwrite
        self.min_free = int(min_free)
        self.staging: Path | None = None
        self._lock_fd: int | None = None
        self.previous: list[str] = []
        self.committed = False
        self.committing = False

    # -- opening
    def __enter__(self):
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _open(self):
        folder = self.folder
        if self.name.strip() == "":
            raise OutputError(f"the output folder is an empty name {self.name!r}")
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"output folder {folder} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot create output folder {folder}: {_reason(e)}") from None
        lock = folder / LOCK_NAME
        try:
            self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"output folder {folder} is not writable: {_reason(e)}") from None
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise OutputError(f"cannot lock output folder {folder}: {_reason(e)}") from None
                pid = os.pread(self._lock_fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(self._lock_fd)
                self._lock_fd = None
                raise OutputError(
                    f"another run (pid {pid}) is writing to {folder}; wait for it to finish or "
                    f"choose another output folder"
                ) from None
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, f"{os.getpid()}\n".encode(), 0)
        # We hold the lock: any temporary in the folder belongs to a run that was killed.
        for entry in folder.iterdir():
            if _is_temporary(entry.name, self.patterns):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
        self.previous = self._previous_files()
        if self.previous and not self.overwrite:
            shown = ", ".join(self.previous[:3]) + (", ..." if len(self.previous) > 3 else "")
            raise OutputError(
                f"output folder {folder} already holds results of an earlier run ({shown}); "
                f"pass --overwrite to replace them, or choose another output folder"
            )
        if self.min_free:
            free = shutil.disk_usage(folder).free
            if free < self.min_free:
                raise OutputError(
                    f"output folder {folder} has {format_bytes(free)} free; this run writes "
                    f"about {format_bytes(self.min_free)}"
                )
        try:
            self.staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
        except OSError as e:
            raise OutputError(f"output folder {folder} is not writable: {_reason(e)}") from None

    @property
    def manifest(self) -> Path:
        return self.folder / f"{MANIFEST_PREFIX}{self.kind}.json"

    def _previous_files(self) -> list[str]:
        names = set()
        if self.manifest.is_file():
            with contextlib.suppress(OSError, ValueError, TypeError):
                names |= {str(n) for n in json.loads(self.manifest.read_text())["files"]}
        for entry in self.folder.iterdir():
            if any(fnmatch.fnmatchcase(entry.name, p) for p in self.patterns):
                names.add(entry.name)
        return sorted(n for n in names if (self.folder / n).is_file() and "/" not in n)

    # -- writing
    def path(self, name: str) -> Path:
        """Where to write the file ``name`` of this set (inside the staging folder)."""
        if self.staging is None:
            raise RuntimeError("ResultSet is not open")
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"result file names are plain names, got {name!r}")
        return self.staging / name

    def commit(self, names, info: dict | None = None) -> list[Path]:
        """Move the staged files ``names`` into the folder and write the manifest last.

        An earlier set's files that are not in ``names`` are removed (``overwrite`` was
        given, or the folder would have been refused). Interrupts wait until it is done.
        Returns the final paths.
        """
        names = list(names)
        for n in names:
            if not self.path(n).is_file():
                raise FileNotFoundError(f"{n} was not written before the commit")
        with deferred_signals():
            self.committing = True
            with contextlib.suppress(FileNotFoundError):
                self.manifest.unlink()  # from here until the new manifest the set is incomplete
            for old in self.previous:
                if old not in names:
                    with contextlib.suppress(FileNotFoundError):
                        (self.folder / old).unlink()
            for n in names:
                os.replace(self.path(n), self.folder / n)
            atomic_write_text(self.manifest, json.dumps({"files": names, **(info or {})}, indent=1))
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
            self.committed = True
        return [self.folder / n for n in names]

    def close(self):
        """Remove whatever is still staged and release the lock (the lock file stays)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None


def format_bytes(n: float) -> str:
    """``1.5 GB``-style size (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.3g} PB"  # pragma: no cover


def memory_limit() -> int:
    """Physical memory of this machine in bytes (what a run may plan to use at most)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover
        return 8 << 30


def check_memory(need: float, what: str, limit: int | None = None) -> None:
    """``ValueError`` naming ``what`` when ``need`` bytes exceed ``limit`` (default: this
    machine's physical memory)."""
    limit = memory_limit() if limit is None else int(limit)
    if not need <= limit:
        raise ValueError(f"{what} needs about {format_bytes(need)} of memory; this machine has "
                         f"{format_bytes(limit)}")
