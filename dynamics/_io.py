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
  it was (a folder the run created is removed again).

The results of an earlier run are the files its manifest lists, and nothing else: a file of
the user's whose name looks like a result (``basins_for_paper.png``) is never removed or
replaced, and does not make the folder count as holding earlier results.
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

from dynamics._signals import STOP_SIGNALS

try:  # POSIX; on other systems the folder lock is skipped
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

LOCK_NAME = ".dynamics.lock"


def pid_lock(fd: int) -> str | None:
    """Take an exclusive, non-blocking ``flock`` on the open lock file ``fd`` and write this
    process's pid into it. Returns ``None`` once this process holds it, or the holder's pid as
    written (``"?"`` if unreadable) when another live process does; any other ``OSError``
    propagates. The kernel drops the lock when its process ends, however it ends, so a killed
    holder's lock is free at once. Without ``fcntl`` (non-POSIX) only the pid is written."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return None
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
    ds = _ascii_as_bytes(ds)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="scipy")


def _ascii_as_bytes(ds):
    """``ds`` with each text data variable whose values are all ASCII given as bytes, with the
    ``_Encoding: utf-8`` attribute xarray writes for text: the same file, byte for byte, read
    back as the same text. xarray encodes text value by value (half a second for a sweep's
    two million ``status`` labels); ASCII text is narrowed to bytes in one pass of numpy."""
    import numpy as np

    out = None
    for name, var in ds.data_vars.items():
        if var.dtype.kind != "U" or "_Encoding" in var.attrs or var.encoding.get("dtype"):
            continue
        width = max(var.dtype.itemsize // 4, 1)
        values = np.ascontiguousarray(var.values)
        codes = values.view(np.uint32).reshape(values.shape + (width,))  # UTF-32 code points
        if codes.size and codes.max() >= 128:  # not ASCII: xarray's own encoding
            continue
        # as wide as the longest value, as xarray's encoding makes it
        used = np.flatnonzero(np.any(codes.reshape(-1, width) != 0, axis=0))
        keep = int(used[-1]) + 1 if used.size else 1
        data = np.ascontiguousarray(codes[..., :keep], dtype=np.uint8).view(f"S{keep}")
        data = data.reshape(values.shape)
        if out is None:
            out = ds.copy()
        out[name] = var.copy(data=data)
        out[name].attrs["_Encoding"] = "utf-8"
    return ds if out is None else out


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
    """Hold SIGINT, SIGTERM and SIGHUP back while the body runs (a few file moves), then
    deliver them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got = []
    old = {s: signal.getsignal(s) for s in STOP_SIGNALS}
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
        patterns: glob patterns of the files a set of this kind consists of (their temporaries
            left by a killed run are removed).
        overwrite: replace an earlier set of this kind (its files that the new run does not
            write are removed at the commit); without it such a folder is refused.
        min_free: bytes the folder's file system must have free (the run's estimated output).
        update: add to an earlier set instead (no refusal; at the commit its files that the new
            run does not write stay, and the manifest lists both).
        manifest_name, read_manifest: the manifest's file name (default
            ``.dynamics-results-<kind>.json``) and ``read_manifest(text) -> file names`` (default:
            the ``files`` list of the JSON object).
        marker: for sets written outside :meth:`commit` (no manifest): the file whose presence
            makes the folder hold an earlier set, whose files are then those of ``patterns``.
        expected: the names the run will write, when known before any work: one that is a file
            of the user's (in the folder, not listed by the manifest) is refused at once.

    Use as a context manager; call :meth:`path` for each file to write and :meth:`commit` at
    the end. Leaving the context without a commit removes everything staged.
    """

    def __init__(self, folder, kind: str, patterns, *, overwrite: bool = False, min_free: int = 0,
                 update: bool = False, manifest_name: str | None = None, read_manifest=None,
                 marker: str | None = None, expected=()):
        self.name = str(folder)  # Path("") is ".": keep the text to refuse an empty name
        self.folder = Path(folder)
        self.kind = kind
        self.patterns = tuple(patterns)
        self.overwrite = overwrite
        self.min_free = int(min_free)
        self.update = update
        self.manifest_name = manifest_name or f"{MANIFEST_PREFIX}{kind}.json"
        self.read_manifest = read_manifest or (lambda text: json.loads(text)["files"])
        self.marker = marker
        self.expected = tuple(expected)
        self.created: list[Path] = []  # folders this run made (removed again unless committed)
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
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.created = missing  # deepest first
        except OSError as e:
            raise OutputError(f"cannot create output folder {folder}: {_reason(e)}") from None
        lock = folder / LOCK_NAME
        try:
            self._lock_fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise OutputError(f"output folder {folder} is not writable: {_reason(e)}") from None
        try:
            pid = pid_lock(self._lock_fd)
        except OSError as e:
            raise OutputError(f"cannot lock output folder {folder}: {_reason(e)}") from None
        if pid is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise OutputError(
                f"another run (pid {pid}) is writing to {folder}; wait for it to finish or "
                f"choose another output folder"
            ) from None
        # We hold the lock: any temporary in the folder belongs to a run that was killed.
        for entry in folder.iterdir():
            if _is_temporary(entry.name, self.patterns):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(OSError):
                        entry.unlink()
        self.previous = self._previous_files()
        self._refuse_user_files(self.expected)
        if self.previous and not (self.overwrite or self.update):
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
        return self.folder / self.manifest_name

    def _previous_files(self) -> list[str]:
        """The earlier set's files: those its manifest lists (with a ``marker``, and no
        manifest: the files of ``patterns`` when the marker is there)."""
        names = set()
        if self.manifest.is_file():
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                names |= {str(n) for n in self.read_manifest(self.manifest.read_text())}
        elif self.marker is not None and (self.folder / self.marker).is_file():
            names |= {e.name for e in self.folder.iterdir()
                      if any(fnmatch.fnmatchcase(e.name, p) for p in self.patterns)}
        return sorted(n for n in names if (self.folder / n).is_file() and "/" not in n)

    def _refuse_user_files(self, names) -> None:
        """:class:`OutputError` when one of ``names`` is in the folder but not a file of the
        earlier set: it is the user's, and the run would replace it."""
        theirs = [n for n in names if n not in self.previous and n != self.manifest_name
                  and os.path.lexists(self.folder / n)]
        if theirs:
            raise OutputError(
                f"{self.folder / theirs[0]} is not a result of an earlier run (no manifest there "
                f"lists it), and this run would replace it; move it away or choose another "
                f"output folder"
            )

    # -- writing
    def path(self, name: str) -> Path:
        """Where to write the file ``name`` of this set (inside the staging folder)."""
        if self.staging is None:
            raise RuntimeError("ResultSet is not open")
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"result file names are plain names, got {name!r}")
        return self.staging / name

    def commit(self, names, info: dict | None = None, manifest_text=None) -> list[Path]:
        """Move the staged files ``names`` into the folder and write the manifest last.

        An earlier set's files that are not in ``names`` are removed (``overwrite`` was
        given, or the folder would have been refused), unless ``update``. A name that is a
        file of the user's in the folder is refused (:class:`OutputError`; nothing moved).
        The manifest is ``{"files": [...], **info}``, or ``manifest_text(files)``. Interrupts
        wait until it is done. Returns the final paths.
        """
        names = list(names)
        for n in names:
            if not self.path(n).is_file():
                raise FileNotFoundError(f"{n} was not written before the commit")
        self._refuse_user_files(names)
        listed = sorted(set(self.previous) | set(names)) if self.update else names
        text = (manifest_text(listed) if manifest_text is not None
                else json.dumps({"files": listed, **(info or {})}, indent=1))
        with deferred_signals():
            self.committing = True
            if not self.update:
                with contextlib.suppress(FileNotFoundError):
                    self.manifest.unlink()  # from here until the new manifest the set is incomplete
                for old in self.previous:
                    if old not in names:
                        with contextlib.suppress(FileNotFoundError):
                            (self.folder / old).unlink()
            for n in names:
                os.replace(self.path(n), self.folder / n)
            atomic_write_text(self.manifest, text)
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
            self.committed = True
        return [self.folder / n for n in names]

    def close(self):
        """Remove whatever is still staged and release the lock (the lock file stays, unless
        this run created the folder and commits nothing: then the folder goes again)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if (self.created and not self.committed and self._lock_fd is not None
                and self.folder_untouched()):
            # still holding the lock: no other run can be inside the folder
            with contextlib.suppress(OSError):
                (self.folder / LOCK_NAME).unlink()
            for d in self.created:
                try:
                    d.rmdir()  # only while empty: never anything of anyone else's
                except OSError:
                    break
            self.created = []
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None


    def folder_untouched(self) -> bool:
        """Whether the folder holds nothing but the lock (and what is still staged)."""
        try:
            return all(e.name == LOCK_NAME or e.name.startswith(STAGING_PREFIX)
                       for e in os.scandir(self.folder))
        except OSError:
            return False


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
