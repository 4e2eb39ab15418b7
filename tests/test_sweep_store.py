"""The sweep's work units and its result store: a killed sweep, resumed, gives the same
variables bit for bit as one that ran through; a resume with another config, a store of another
kind and a damaged chunk are one-line errors that leave what was finished as it was; the same
config gives the same variables whatever the chunk size and device count."""

import itertools
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from dynamics.sweep import SweepConfig, plan, run
from dynamics.sweep import __main__ as sweep_cli
from dynamics.sweep.core import block_units, unit_region, unit_shape, work_units
from dynamics.sweep.scalar import ScalarOptions

#: a small sweep of 4 blocks (2 variants x 2 eps) of 8 x 8 lanes; --chunk 16 cuts each block
#: into 4 units of 2 x 8 lanes, 16 units in all
ARGS = ["--n", "8", "--eps", "0.01", "1", "--t1", "100", "--no-plot", "--quiet"]
CHUNKED = [*ARGS, "--chunk", "16"]
N_UNITS = 16


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return dict(os.environ, PYTHONPATH=os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def reference():
    """The sweep run through in one go, in this process (one device), one unit per block."""
    return run(SweepConfig(eps=(0.01, 1.0), t1=100.0, options=ScalarOptions(n=8)))


def same_variables(a, b):
    assert sorted(a.data_vars) == sorted(b.data_vars)
    for v in a.data_vars:
        x, y = a[v].values, b[v].values
        if x.dtype.kind in "UO":  # labels: netCDF reads them back as objects
            x, y = x.astype(object), y.astype(object)
        assert x.dtype == y.dtype and x.shape == y.shape, v
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{v} differs"
    for c in a.coords:
        assert np.array_equal(a[c].values, b[c].values), c


def records(out):
    """Finished units: the records ``units/<i>.json`` in the store."""
    folder = out / ".sweep.zarr" / "units"
    try:
        return sum(n.removesuffix(".json").isdigit() for n in os.listdir(folder))
    except FileNotFoundError:
        return 0


def data_chunks(out):
    """The chunk files of ``theta`` in the store (one per unit here)."""
    return sum(not f.endswith(".partial")
               for _, _, fs in os.walk(out / ".sweep.zarr" / "theta" / "c") for f in fs)


def start(argv, out, env, devices="2"):
    return subprocess.Popen([sys.executable, "-m", "dynamics.sweep", *argv, "--out", str(out)],
                            env=dict(env, DYNAMICS_CPU_DEVICES=devices),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(p, condition, what):
    """Poll ``condition`` until it holds (the process must still run); no fixed sleeps."""
    deadline = time.monotonic() + 300  # reached only when the sweep hangs
    while not condition():
        assert p.poll() is None, (f"the sweep ended before {what}", p.communicate())
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def kill(p):
    p.kill()
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL


# --- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 1, 1, 8), (3, 2, 1, 5, 7), (1, 1, 1, 100), (2, 3, 4)])
def test_units_are_boxes_that_tile_every_block_once(shape):
    """Every unit is a contiguous range of a block's flat lanes *and* a box of its axes (so it
    is one region of the store), and the units cover each lane exactly once."""
    flat = np.arange(int(np.prod(shape))).reshape(shape)  # each lane's flat index, C order
    for chunk in (1, 2, 3, 5, 16, 17, 64, 10**6):
        box = unit_shape(shape, chunk)
        assert int(np.prod(box)) <= chunk or all(b == 1 for b in box[:-1])
        seen = np.zeros(shape, int)
        for start, stop in block_units(shape, box):
            region = unit_region(shape, box, start)
            seen[region] += 1
            assert np.array_equal(flat[region].ravel(), np.arange(start, stop)), (chunk, start)
        assert (seen == 1).all(), (shape, chunk)


def test_work_units_cover_the_sweep_in_order():
    config = SweepConfig(eps=(0.01, 1.0), options=ScalarOptions(n=8), chunk=16)
    units = work_units(config, plan(config))
    assert len(units) == N_UNITS
    assert [u.index for u in units] == list(range(N_UNITS))
    assert sum(u.lanes for u in units) == plan(config)["lanes"]


# --- determinism across layouts ---------------------------------------------------------------


def test_same_sgd_variables_for_any_chunk_size():
    """An SGD lane's noise depends on its index only: units of 64 lanes and of 5 (the last
    one padded) give the same bits. (The flow, across unit sizes and device counts: below.)"""
    base = dict(eps=(0.01,), variant=("byol",), method=("sgd",), options=ScalarOptions(n=8),
                t1=1.0)
    same_variables(run(SweepConfig(**base)), run(SweepConfig(**base, chunk=5)))


# --- resume after SIGKILL, SIGINT, and what resume refuses ------------------------------------


def test_killed_at_several_moments_then_resumed_is_bit_identical(tmp_path, env, reference):
    """SIGKILL as the first unit goes in, between two units (a unit's data are in, its record
    not yet, when the poll catches that moment) and in the middle of a later unit's
    computation; then Ctrl-C, which stops after the unit and prints the command that resumes.
    The resumed sweep runs on two devices in units of 16 lanes, the reference in this process
    on one device in one unit per block; every variable is the same bit for bit."""
    out = tmp_path / "o"
    p = start(CHUNKED, out, env)
    wait_for(p, lambda: (out / ".sweep.zarr").is_dir(), "the store")
    kill(p)  # as the first unit goes in
    p = start([*CHUNKED, "--resume"], out, env)
    wait_for(p, lambda: data_chunks(out) > records(out) or records(out) >= 5, "a unit's data")
    kill(p)  # between a unit's data and its record, or just after
    p = start([*CHUNKED, "--resume"], out, env)
    done = records(out)
    wait_for(p, lambda: records(out) >= done + 2, "two more units")
    kill(p)  # the next unit is being computed
    assert records(out) < N_UNITS - 1
    # what a killed zarr write and a killed record write leave behind
    (out / ".sweep.zarr" / "theta" / "c" / "0" / "0" / "9.abc.partial").write_bytes(b"half")
    (out / ".sweep.zarr" / "units" / ".15.json.x1y2.tmp").write_text("{")
    p = start([*CHUNKED, "--resume"], out, env)
    done = records(out)
    wait_for(p, lambda: records(out) > done, "one more unit")
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip()]
    assert p.returncode == 130, err
    assert len(lines) == 1 and "interrupted;" in lines[0] and "resume with: " in lines[0], err
    assert not (out / "sweep.nc").exists() and records(out) < N_UNITS
    # what the store holds is readable while the sweep is unfinished
    theta = xr.open_zarr(out / ".sweep.zarr")["theta"].values
    assert np.isfinite(theta).sum() >= records(out) * 16
    cmd = shlex.split(lines[0].split("resume with: ", 1)[1])
    assert cmd[:3] == ["python", "-m", "dynamics.sweep"] and "--resume" in cmd
    p = subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    same_variables(reference, xr.load_dataset(out / "sweep.nc"))
    leftovers = [f for _, _, fs in os.walk(out) for f in fs if f.endswith((".partial", ".tmp"))]
    assert leftovers == []
    assert records(out) == N_UNITS


def cli(argv, capsys):
    try:
        code = sweep_cli.main(argv)
    except SystemExit as e:
        code = e.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def snapshot(folder):
    return {os.path.relpath(os.path.join(r, f), folder): open(os.path.join(r, f), "rb").read()
            for r, _, fs in os.walk(folder) for f in fs if f != ".dynamics.lock"}


def test_the_streamed_dataset_is_the_in_memory_one(tmp_path, capsys, reference):
    """--no-netcdf writes the Dataset from the store slab by slab (the family's finish per
    slab, never the whole grid): the same variables, coordinates, variable attributes and run
    attributes bit for bit as the Dataset assembled in memory, with the default slab (a block)
    and with slabs of 24 lanes (boxes of 3 x 8 that cut every block, the last one smaller)."""
    from dynamics.sweep.store import Store, read_header

    out = tmp_path / "o"
    code, err = cli([*CHUNKED, "--no-netcdf", "--out", str(out)], capsys)
    assert code == 0, err
    assert not (out / "sweep.nc").exists()
    path = out / ".sweep.zarr"
    config = SweepConfig(eps=(0.01, 1.0), t1=100.0, options=ScalarOptions(n=8), chunk=16)
    store = Store(path, config, plan(config), read_header(path))
    small = store.write_dataset(tmp_path / "small.zarr", slab=24)
    for ds in (xr.open_zarr(out / "sweep.zarr", chunks=None), small):
        same_variables(reference, ds)
        assert sorted(reference.coords) == sorted(ds.coords)
        for v in reference.data_vars:
            assert reference[v].dims == ds[v].dims, v
            assert reference[v].attrs.keys() == ds[v].attrs.keys(), v
        differ = {k for k in reference.attrs if reference.attrs[k] != ds.attrs.get(k)}
        assert differ <= {"created", "command"}, differ  # provenance: when, and how it ran
    # a second run does not replace the zarr result without --overwrite; with it, it does
    code, err = cli([*CHUNKED, "--no-netcdf", "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    code, err = cli([*CHUNKED, "--out", str(out), "--overwrite"], capsys)
    assert code == 0 and (out / "sweep.nc").exists() and not (out / "sweep.zarr").exists(), err


def test_no_netcdf_is_sized_by_what_it_holds_at_once(tmp_path, capsys, monkeypatch):
    """The up-front memory check sizes the whole grid when the Dataset is assembled in memory
    (the default netCDF output) and only what is held at once when it is streamed
    (--no-netcdf: a unit while the sweep runs, a slab of 2^20 lanes while the Dataset is
    written). Under a fake 1 GB machine, 2 variants x 3 eps x 1100^2 initial states (7.26M
    lanes) are refused by the first (the scalar family's estimate of 200 B a lane is 1.45 GB
    for the grid alone) and accepted by the second (2^20 lanes: 0.21 GB, plus 80 B a lane of
    one block, 0.1 GB). The run itself is not started: only the check is under test."""
    import dynamics._io as io

    monkeypatch.setattr(io, "memory_limit", lambda: 10**9)
    started = []
    monkeypatch.setattr(sweep_cli, "run", lambda *a, **k: started.append(k) or None)
    big = ["--n", "1100", "--eps", "0.01", "0.1", "1", "--no-plot", "--quiet"]
    code, err = cli([*big, "--out", str(tmp_path / "a")], capsys)
    assert code == 2 and len(err) == 1 and not started, err
    assert "1100 x 1100" in err[0] and "7.26e+06 lanes in all" in err[0], err
    assert "this machine has 1 GB" in err[0], err
    assert not (tmp_path / "a").exists()
    code, err = cli([*big, "--no-netcdf", "--out", str(tmp_path / "b")], capsys)
    assert len(started) == 1 and started[0]["load"] is False, err  # past the check: it ran
    # the API says the same, and the limit it applies is the slab's, not a smaller one
    config = SweepConfig(eps=(0.01, 0.1, 1.0), options=ScalarOptions(n=1100))
    with pytest.raises(ValueError, match="of memory"):
        plan(config)
    assert plan(config, streamed=True)["lanes"] == 2 * 3 * 1100**2
    monkeypatch.setattr(io, "memory_limit", lambda: 2**20 * 200)  # a slab's results alone
    with pytest.raises(ValueError, match="1.049e[+]06 in memory at once"):
        plan(config, streamed=True)


@pytest.fixture
def unfinished(tmp_path, monkeypatch):
    """An output folder holding a store with 3 of its 16 units finished (a stopped run)."""
    out = tmp_path / "o"
    calls = itertools.count()
    real = sweep_cli.run
    monkeypatch.setattr(sweep_cli, "run", lambda *a, **k: real(
        *a, **dict(k, should_stop=lambda: next(calls) >= 3)))
    try:
        sweep_cli.main([*CHUNKED, "--out", str(out)])
    except SystemExit:
        pass
    monkeypatch.setattr(sweep_cli, "run", real)
    assert records(out) == 3
    return out


def test_a_killed_final_zarr_write_leaves_nothing_behind(unfinished, capsys, reference):
    """A run killed while it writes the --no-netcdf Dataset leaves its half-written copy
    (``.sweep.zarr.<random>.tmp``, beside the store's own temporaries) in --out: the next run
    holding the folder's lock removes it (and nothing of the user's), then completes the
    sweep, whose Dataset is the in-memory one bit for bit."""
    half = unfinished / ".sweep.zarr.k1ll3d.tmp"  # what Store.write_dataset leaves when killed
    (half / "theta" / "c").mkdir(parents=True)
    (half / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    (half / "theta" / "c" / "0").write_bytes(b"half")
    theirs = unfinished / ".notes.tmp"  # not a temporary of this package's: left alone
    theirs.mkdir()
    code, err = cli([*CHUNKED, "--no-netcdf", "--out", str(unfinished), "--resume"], capsys)
    assert code == 0, err
    assert not half.exists() and theirs.is_dir()
    assert records(unfinished) == N_UNITS
    same_variables(reference, xr.open_zarr(unfinished / "sweep.zarr", chunks=None))


def test_resume_refuses_another_config_in_one_line_naming_it(unfinished, capsys):
    before = snapshot(unfinished)
    other = [*ARGS[:2], "--eps", "0.01", "2", *ARGS[5:], "--chunk", "16"]
    code, err = cli([*other, "--out", str(unfinished), "--resume"], capsys)
    assert code == 2 and len(err) == 1, err
    assert "--eps is 0.01 2 here, 0.01 1 in the store" in err[0], err
    # without --resume an unfinished sweep is not started over
    code, err = cli([*CHUNKED, "--out", str(unfinished)], capsys)
    assert code == 2 and len(err) == 1 and "--resume" in err[0], err
    assert snapshot(unfinished) == before


def test_a_damaged_chunk_is_named_and_nothing_finished_is_lost(unfinished, capsys):
    record = json.loads((unfinished / ".sweep.zarr" / "units" / "1.json").read_text())
    assert record["lanes"] == [16, 32]
    # unit 1 is rows 2-3 of phi0 in the first block: zarr chunk (0, ..., 0, 1, 0)
    chunk = unfinished / ".sweep.zarr" / "phi" / "c" / "0" / "0" / "0" / "0" / "0" / "0" / "1" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-7])  # truncated
    before = snapshot(unfinished)
    code, err = cli([*CHUNKED, "--out", str(unfinished), "--resume"], capsys)
    assert code == 2 and len(err) == 1, err
    assert "unit 1" in err[0] and "phi" in err[0] and ".sweep.zarr/units/1.json" in err[0], err
    assert snapshot(unfinished) == before


def test_a_store_of_another_kind_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "o"
    (out / ".sweep.zarr").mkdir(parents=True)
    (out / ".sweep.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    before = snapshot(out)
    for extra in ([], ["--resume"], ["--overwrite"]):
        code, err = cli([*CHUNKED, "--out", str(out), *extra], capsys)
        assert code == 2 and len(err) == 1 and "not a sweep store" in err[0], (extra, err)
        assert snapshot(out) == before
    code, err = cli([*CHUNKED, "--out", str(out / ".sweep.zarr")], capsys)
    assert code == 2 and len(err) == 1 and "is a zarr store" in err[0], err
    assert snapshot(out) == before
    shutil.rmtree(out)


# --- the Ray backend --------------------------------------------------------------------------


def ray_workers_running_a_unit():
    """Pids of Ray worker processes now running a unit (their title is ``ray::_run_unit``)."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if f.read().startswith(b"ray::_run_unit"):
                        pids.append(int(d))
            except OSError:
                pass
    return pids


def descendants(pid):
    """Pids of every process below ``pid`` (from /proc)."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, todo = [], [pid]
    while todo:
        above = todo.pop()
        kids = [c for c, p in parent.items() if p == above]
        found += kids
        todo += kids
    return found


def kill_tree(p):
    """SIGKILL the driver, then the local Ray cluster it started (which would outlive it)."""
    below = descendants(p.pid)
    kill(p)
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds Ray's workers in /proc")
def test_ray_backend_survives_a_killed_worker_and_the_driver_killed(tmp_path, env, reference):
    """--backend ray on a local cluster of two worker processes: one worker is killed while it
    runs a unit (Ray runs the unit again), then the driver itself is killed; the sweep resumed
    on Ray gives the same variables bit for bit as the local reference."""
    pytest.importorskip("ray")
    out = tmp_path / "o"
    ray_args = [*CHUNKED, "--backend", "ray", "--workers", "2"]
    p = start(ray_args, out, env)
    wait_for(p, lambda: records(out) >= 1 and ray_workers_running_a_unit(), "a busy worker")
    os.kill(ray_workers_running_a_unit()[0], signal.SIGKILL)
    done = records(out)
    wait_for(p, lambda: records(out) >= done + 2, "two more units")
    kill_tree(p)
    assert records(out) < N_UNITS
    p = start([*ray_args, "--resume"], out, env)
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    same_variables(reference, xr.load_dataset(out / "sweep.nc"))


def test_an_unreachable_ray_address_is_one_line_before_any_work(tmp_path, capsys):
    pytest.importorskip("ray")
    out = tmp_path / "o"
    code, err = cli([*CHUNKED, "--backend", "ray", "--address", "127.0.0.1:1", "--out", str(out)],
                    capsys)
    assert code == 2 and len(err) == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in err[0]
    assert not out.exists()


def test_a_store_that_holds_what_it_wrote_gives_the_values_read_back(tmp_path):
    """A new store with ``hold`` assembles from the values it kept: the same arrays, bit for
    bit, as the store read back from disk and checked against its records; with one unit
    finished by an earlier store it reads everything back."""
    from dynamics.sweep.core import LocalBackend
    from dynamics.sweep.store import Store, read_header

    config = SweepConfig(eps=(0.01, 1.0), t1=100.0, options=ScalarOptions(n=8), chunk=16)
    pl = plan(config)
    path = tmp_path / ".sweep.zarr"
    held = Store(path, config, pl, hold=True)
    units = work_units(config, pl)
    LocalBackend().run(config, pl, units[:1], held.put)
    later = Store(path, config, pl, read_header(path), hold=True)  # a resumed run
    LocalBackend().run(config, pl, units[1:], later.put)
    assert later.finished > later._held.finished  # unit 0 is the earlier store's
    read = Store(path, config, pl, read_header(path)).values()
    for got in (later.values(), _held_all(config, pl, tmp_path / "b.zarr")):
        assert sorted(got) == sorted(read)
        for k in read:
            assert got[k].dtype == read[k].dtype and np.array_equal(
                got[k], read[k], equal_nan=read[k].dtype.kind == "f"), k


def _held_all(config, pl, path):
    """Every unit through one new holding store; its values, checked to be the held ones."""
    from dynamics.sweep.core import LocalBackend
    from dynamics.sweep.store import Store

    store = Store(path, config, pl, hold=True)
    LocalBackend().run(config, pl, work_units(config, pl), store.put)
    assert store.finished == store._held.finished
    return store.values()
