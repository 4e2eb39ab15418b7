"""Run a sweep's work units as Ray tasks (``pip install -e ".[ray]"``, ``--backend ray``).

Each unit is one task: a worker builds its own :class:`~dynamics.sweep.core.Runner` from the
config and the plan (once per worker process, kept for the next unit) and returns the unit's
values; the driver writes each one into the store as it arrives, from whichever worker, and
moves the progress bar. A task whose worker dies is retried by Ray (``max_retries``); its
result is the same bits wherever it runs (a lane depends only on its index). Where JAX sees a
GPU on the cluster the tasks ask for one (``num_gpus=1``).

Without ``address`` a local cluster is started (``workers`` processes) and stopped again; with
it the driver joins a running cluster (``ray start --head`` on a machine, the Ray cluster
launcher, KubeRay, or a Slurm allocation; see the README).
"""

from __future__ import annotations

import os

#: how often Ray runs a unit again whose worker died
MAX_RETRIES = 5

_RUNNERS: dict = {}


def _run_unit(config, pl, unit):
    """A Ray task body: the unit's values, with this worker's runner for the sweep."""
    from dynamics.sweep.core import Runner

    key = config, tuple(sorted(pl["chunk"].items()))
    runner = _RUNNERS.get(key)
    if runner is None:
        _RUNNERS.clear()
        runner = _RUNNERS[key] = Runner(config, pl)
    return unit.index, runner(unit)


#: seconds to wait for a cluster's address to answer
CONNECT_TIMEOUT = 5.0


def _probe(address: str) -> None:
    """``ValueError`` (one line) unless ``HOST:PORT`` (or ``ray://HOST:PORT``) accepts a
    connection within :data:`CONNECT_TIMEOUT` (Ray itself would retry for minutes); ``auto``
    and other forms are left to Ray."""
    import socket

    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), CONNECT_TIMEOUT).close()
    except OSError as e:
        raise ValueError(f"cannot reach the Ray cluster at {address}: "
                         f"{e.strerror or type(e).__name__}") from None


class RayBackend:
    """Runs the units as Ray tasks (see the module docstring).

    Raises:
        ValueError: ray is not installed, or the cluster at ``address`` cannot be reached (one
            line, naming the address).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 gpus: int | None = None):
        try:
            import ray
        except ImportError:
            raise ValueError("--backend ray needs Ray: pip install -e '.[ray]'") from None
        self.ray = ray
        self.started = False
        if address is not None:
            _probe(address)
        try:
            if address is None:
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         configure_logging=False,
                         runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}})
                self.started = True
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except Exception as e:  # noqa: BLE001 - Ray's own errors, as one line
            text = (str(e).strip().splitlines() or [type(e).__name__])[0]
            where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
            raise ValueError(f"cannot reach {where}: {text}") from None
        self.gpus = gpus if gpus is not None else int(ray.cluster_resources().get("GPU", 0) > 0)

    def run(self, config, pl, units, on_done, progress=None, should_stop=None) -> None:
        ray = self.ray
        task = ray.remote(num_cpus=1, num_gpus=self.gpus, max_retries=MAX_RETRIES,
                          retry_exceptions=False)(_run_unit)
        config_ref, plan_ref = ray.put(config), ray.put(pl)
        by_index = {u.index: u for u in units}
        pending = [task.remote(config_ref, plan_ref, u) for u in units]
        try:
            while pending:
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in ready:
                    index, got = ray.get(ref)
                    unit = by_index[index]
                    on_done(unit, got)
                    if progress is not None:
                        progress.update(unit.lanes)
                if should_stop is not None and should_stop():
                    return
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
            self.started = False
