"""A persistent JAX compilation cache for the subprocesses and notebook kernels of one test
session (the figure CLI and the notebooks compile many of the same programs)."""

import os


def cache_env(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "jax-compilation-cache"
    path.mkdir(exist_ok=True)
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(path))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    return path
