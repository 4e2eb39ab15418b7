"""Output folders of the sweep command lines: checked before any work, locked, never mixed with
an earlier run, complete or absent after a write failure or an interrupt, stale temporaries
removed. Most runs are in-process (``main(argv)``); one real Ctrl-C goes to a subprocess."""

import errno
import os
import signal
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import dynamics._cli as cli  # noqa: E402
import dynamics.sweep as sweep  # noqa: E402
import dynamics.sweep.__main__ as sweep_cli  # noqa: E402
from dynamics._io import LOCK_NAME, STAGING_PREFIX, ResultSet  # noqa: E402

# the smallest real sweep: 2 x 2 lanes of SimSiam, flow to t1 = 1
TINY = ["--n", "2", "--t1", "1", "--variant", "simsiam", "--no-compile-cache", "--quiet"]


def run(argv, capsys):
    """``(exit code, stdout, stderr lines)`` of the scalar sweep CLI run in-process."""
    try:
        code = sweep.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


def results(folder):
    """What a reader sees in ``folder``: the visible files, and whether a staging folder is left."""
    names = sorted(os.listdir(folder)) if folder.exists() else []
    visible = [n for n in names if not n.startswith(".")]
    return visible, any(n.startswith(STAGING_PREFIX) for n in names)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the sweep starts computing."""
    def refuse(*a, **k):
        raise AssertionError("the sweep ran before the output folder was checked")

    monkeypatch.setattr(sweep_cli, "run", refuse)


def test_out_is_a_file_refused_before_any_work(tmp_path, capsys, no_work):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    code, _, err = run([*TINY, "--out", str(f)], capsys)
    assert code == 2 and len(err) == 1 and "is a file, not a folder" in err[0], err
    assert f.read_text() == "not a folder"


def test_empty_out_refused(tmp_path, capsys, monkeypatch, no_work):
    monkeypatch.chdir(tmp_path)
    code, _, err = run([*TINY, "--out", ""], capsys)
    assert code == 2 and len(err) == 1 and "empty name ''" in err[0], err
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_out_refused_before_any_work(tmp_path, capsys, no_work):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = run([*TINY, "--out", str(ro / "sub")], capsys)
        assert code == 2 and len(err) == 1 and "cannot create output folder" in err[0], err
        code, _, err = run([*TINY, "--out", str(ro)], capsys)
        assert code == 2 and len(err) == 1 and "not writable" in err[0], err
    finally:
        ro.chmod(0o755)


def test_too_little_free_space_refused_before_any_work(tmp_path, capsys, monkeypatch, no_work):
    import shutil

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    code, _, err = run([*TINY, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err) == 1 and "1 kB free" in err[0], err
    assert results(tmp_path / "o") == ([], False)


def test_second_writer_refused(tmp_path, capsys, no_work):
    out = tmp_path / "o"
    with ResultSet(out, "sweep", sweep.family("scalar").result_patterns):  # another run holds the folder
        code, _, err = run([*TINY, "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1, err
    assert f"another run (pid {os.getpid()}) is writing to {out}" in err[0]


def test_earlier_results_refused_then_replaced_with_overwrite(tmp_path, capsys):
    out = tmp_path / "o"
    byol = ["byol" if w == "simsiam" else w for w in TINY]  # a flag is given once
    assert run([*byol, "--out", str(out)], capsys)[0] == 0
    assert results(out) == (["basins_byol.png", "sweep.nc"], False)
    (out / "notes.txt").write_text("mine")  # not a result file: never touched
    code, _, err = run([*TINY, "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1 and "--overwrite" in err[0], err
    assert xr.open_dataset(out / "sweep.nc").variant.values.tolist() == ["byol"]
    assert run([*TINY, "--out", str(out), "--overwrite"], capsys)[0] == 0
    # the byol map of the earlier run is gone: no result of it is left beside the new one
    assert results(out) == (["basins_simsiam.png", "notes.txt", "sweep.nc"], False)
    assert xr.open_dataset(out / "sweep.nc").variant.values.tolist() == ["simsiam"]


def test_full_disk_leaves_no_partial_set(tmp_path, capsys, monkeypatch):
    """The dataset is written, then the disk fills up in the middle of the PNG: nothing of the new
    set may appear, and the earlier set stays as it was."""
    out = tmp_path / "o"
    assert run([*TINY, "--out", str(out)], capsys)[0] == 0
    before = {n: (out / n).read_bytes() for n in results(out)[0]}

    def full(fig, path, **kw):
        with open(path, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli, "save_figure", full)
    code, _, err = run([*TINY, "--eta", "0.05", "--out", str(out), "--overwrite"], capsys)
    assert code == 1 and len(err) == 1, err
    assert "No space left on device" in err[0] and "before the run" in err[0]
    assert results(out) == (sorted(before), False)
    assert {n: (out / n).read_bytes() for n in results(out)[0]} == before
    # and into an empty folder: nothing at all
    code, _, err = run([*TINY, "--out", str(tmp_path / "new")], capsys)
    assert code == 1 and results(tmp_path / "new") == ([], False)


def test_stale_temporaries_are_removed(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / ".sweep.nc.k2j4h5g6.tmp").write_bytes(b"half a netCDF file")  # a killed atomic write
    (out / f"{STAGING_PREFIX}abc").mkdir()  # a killed run's staging folder
    (out / f"{STAGING_PREFIX}abc" / "sweep.nc").write_bytes(b"x")
    (out / ".other.data.tmp").write_text("not ours")
    assert run([*TINY, "--out", str(out)], capsys)[0] == 0
    names = sorted(os.listdir(out))
    assert ".sweep.nc.k2j4h5g6.tmp" not in names and not results(out)[1]
    assert ".other.data.tmp" in names and LOCK_NAME in names


def test_interrupt_swallowed_during_the_write_still_stops(tmp_path, capsys, monkeypatch):
    """A library that catches the KeyboardInterrupt raised inside it (so the write seems to
    succeed) must not lead to a committed, possibly truncated, result set."""
    real = cli.save_dataset

    def swallowing(ds, path):
        real(ds, path)
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs here
        except KeyboardInterrupt:
            pass

    monkeypatch.setattr(cli, "save_dataset", swallowing)
    code, _, err = run([*TINY, "--out", str(tmp_path / "o")], capsys)
    # the sweep's one unit is kept in its store (to resume); no result is written
    assert code == 130 and len(err) == 1 and "interrupted; 1 of 1 units are saved in" in err[0], err
    assert results(tmp_path / "o") == ([], False)


def test_ctrl_c_one_line_exit_130_nothing_left(tmp_path):
    out = tmp_path / "o"
    p = subprocess.Popen(
        [sys.executable, "-m", "dynamics.sweep", "--method", "sgd", "--n", "24", "--variant",
         "simsiam", "--out", str(out), "--quiet", "--no-compile-cache"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not results(out)[1]:  # the staging folder exists once the folder is checked
            assert p.poll() is None, p.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert p.returncode == 130, err
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert results(out) == ([], False)


@pytest.mark.parametrize("labels", [("ok", "max_steps", "nonfinite"), ("é", "ok"), ("", "")],
                         ids=["ascii", "not-ascii", "empty"])
def test_save_dataset_writes_text_as_xarray_does(tmp_path, labels):
    """The netCDF file of a Dataset with a text variable (a sweep's ``status``) is the file
    xarray writes, byte for byte, whatever path the text takes (ASCII as bytes in one pass, the
    rest through xarray's own encoding), a dtype wider than its longest value included, and it
    reads back as the same text."""
    from dynamics._io import save_dataset

    rng = np.random.default_rng(0)
    text = np.asarray(labels, dtype="U12")[rng.integers(0, len(labels), (40, 3))]
    ds = xr.Dataset({"status": (("a", "b"), text, {"long_name": "labels"}),
                     "v": (("a",), np.arange(40.0))}, coords={"a": np.arange(40)})
    ds.to_netcdf(tmp_path / "xarray.nc", engine="scipy")
    save_dataset(ds, tmp_path / "ours.nc")
    assert (tmp_path / "xarray.nc").read_bytes() == (tmp_path / "ours.nc").read_bytes()
    with xr.open_dataset(tmp_path / "ours.nc") as back:
        assert back["status"].values.tolist() == text.tolist()
