"""Session-wide set-up: float64, and one persistent JAX compilation cache for the whole run.

Every process of a test run (the pytest workers themselves, and the CLI subprocesses and
notebook kernels they start) reads and writes one cache directory, made fresh for the run and
removed after it: a program compiled by one of them is loaded by the others, the suite's time
does not depend on what earlier runs left behind, and no test writes into the user's own cache
(``DYNAMICS_COMPILE_CACHE`` points the CLIs there). A test that sets the variable itself (the
cache switch's tests) still wins. A caller that runs the suite many times (``tests/mutation.py``)
hands over a directory of its own in ``DYNAMICS_TEST_JAX_CACHE``; it is used and kept.
"""

import os
import shutil
import tempfile

import jax

jax.config.update("jax_enable_x64", True)

#: where the run's cache directory is handed from the first process to the workers it starts
_CACHE_ENV = "DYNAMICS_TEST_JAX_CACHE"


def pytest_configure(config):
    path = os.environ.get(_CACHE_ENV)
    if not path:  # the first process: it makes and owns it
        path = tempfile.mkdtemp(prefix="dynamics-test-jax-cache-")
        os.environ[_CACHE_ENV] = path
        config._dynamics_jax_cache = path
    os.makedirs(path, exist_ok=True)
    os.environ["DYNAMICS_COMPILE_CACHE"] = path  # the CLIs
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path  # notebook kernels, other subprocesses
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    jax.config.update("jax_compilation_cache_dir", path)  # this process
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def pytest_unconfigure(config):
    path = getattr(config, "_dynamics_jax_cache", None)
    if path is not None:
        os.environ.pop(_CACHE_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
