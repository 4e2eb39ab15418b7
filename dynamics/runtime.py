"""Process set-up the command lines call first: CPU devices and the persistent compile cache.

Library code never calls these: they change process-wide JAX settings. Each CLI calls
:func:`split_cpu_cores` before any JAX computation and :func:`enable_compilation_cache` unless
told not to.
"""

from __future__ import annotations

import os
import sys
import tempfile

import jax

try:  # optional: the per-user cache directory of the platform
    import platformdirs
except ImportError:  # pragma: no cover - depends on the environment
    platformdirs = None

#: environment variable that overrides the number of CPU devices
CPU_DEVICES_ENV = "DYNAMICS_CPU_DEVICES"
#: environment variable that overrides the cache directory (``0``/``off`` disables the cache)
COMPILE_CACHE_ENV = "DYNAMICS_COMPILE_CACHE"

_OFF = ("", "0", "off", "false", "no")
_warned_cache: set[str] = set()


def split_cpu_cores(n: int | None = None) -> int:
    """Expose the CPU's cores as ``n`` JAX devices (default: all), so the engine's per-device
    loops run in parallel. Must run before JAX creates its CPU backend (first computation);
    the CLIs call it first thing. A no-op when a GPU/TPU build of JAX is in use, and when the
    count was already set (``XLA_FLAGS=--xla_force_host_platform_device_count=...`` or
    ``jax_num_cpu_devices``). Environment variable ``DYNAMICS_CPU_DEVICES`` overrides ``n``.

    Returns:
        The number of CPU devices requested (1 when left alone).
    """
    env = os.environ.get(CPU_DEVICES_ENV)
    if env is not None:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"{CPU_DEVICES_ENV} must be an integer, got {env!r}") from None
    if n is None:
        n = os.cpu_count() or 1
    if int(n) != n or n < 1:
        raise ValueError(f"number of CPU devices must be a positive integer, got {n!r}")
    n = int(n)
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 1
    if jax.config.jax_num_cpu_devices != -1 or n == 1:
        return 1
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backend already initialised: leave it
        return 1
    return n


#: what :func:`prefer_wide_vectors` adds to ``XLA_FLAGS``
WIDE_VECTORS_FLAG = "--xla_cpu_prefer_vector_width=512"


def _cpu_has_avx512() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def prefer_wide_vectors() -> bool:
    """Let XLA's CPU code use 512-bit vectors (8 float64 lanes) where the CPU has AVX-512.

    XLA prefers 256-bit vectors by default; the engine's batched steps are elementwise over
    lanes, and on an AVX-512 CPU the wider vectors take about a fifth off a Rosenbrock step of
    the scalar model (bench/main_job.py) with results identical to the bit. Must run before JAX
    creates its CPU backend; the sweep CLI calls it first thing. A no-op when ``XLA_FLAGS``
    already sets the width, or the CPU has no AVX-512 (read from ``/proc/cpuinfo``).

    Returns:
        Whether the flag was added.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_prefer_vector_width" in flags or not _cpu_has_avx512():
        return False
    os.environ["XLA_FLAGS"] = (flags + " " + WIDE_VECTORS_FLAG).strip()
    return True


def default_cache_dir() -> str:
    """Per-user cache directory of compiled programs (``platformdirs``, else ``~/.cache``)."""
    if platformdirs is not None:
        base = platformdirs.user_cache_dir("dynamics")
    else:
        base = os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "dynamics"
        )
    return os.path.join(base, "jax")


def _writable_dir(path: str) -> str | None:
    """``None`` when ``path`` is (made) a directory a file can be written into, else why not."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
        try:
            os.write(fd, b"\0" * 4096)  # a full disk fails here, not at creation
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        return e.strerror or type(e).__name__
    return None


def enable_compilation_cache(path: str | None = None) -> str | None:
    """Turn on JAX's persistent compilation cache, so a second run does not compile again.

    Library code never calls this; the CLIs do (``--no-compile-cache`` turns it off). The
    environment variable ``DYNAMICS_COMPILE_CACHE`` overrides ``path``: ``0``/``off`` disables
    the cache, any other value is the directory. A directory that cannot be created or written
    (no permission, a path under a regular file, a full disk) does not stop the run: one line
    on stderr says so, and the run goes on without the cache.

    Returns:
        The cache directory in use, or ``None`` when disabled.
    """
    env = os.environ.get(COMPILE_CACHE_ENV)
    if env is not None:
        if env.strip().lower() in _OFF:
            return None
        path = env
    path = path or default_cache_dir()
    why = _writable_dir(path)
    if why is not None:
        if path not in _warned_cache:
            _warned_cache.add(path)
            print(f"warning: compile cache off: cannot write to {path} ({why})", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
