"""The command lines' promises about signals, output folders and what their outputs hold:
a signal at any moment (also while JAX is imported) is one line and ``128 + signal``; only
the files an earlier run's manifest lists are results; the figures CLI's output is checked,
locked and complete or absent; a refused or failed run leaves no folder it created; a basin
map draws every panel, a summary pools nothing, a repeated flag is refused."""

import errno
import itertools
import os
import signal
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import xarray as xr  # noqa: E402

import dynamics.figures.__main__ as figures_cli  # noqa: E402
import dynamics.sweep as sweep  # noqa: E402
from dynamics.plot import basin_map, collapse_phase_figure  # noqa: E402
from dynamics.sweep.scalar import summarize  # noqa: E402
from dynamics.types import Outcome  # noqa: E402

TINY = ["--n", "2", "--t1", "1", "--variant", "simsiam", "--no-compile-cache", "--quiet"]
MANIFEST = ".dynamics-results-sweep-scalar.json"


def snapshot(folder):
    """Every entry of ``folder`` (hidden ones too) with its bytes; ``None`` when it is absent."""
    if not folder.exists():
        return None
    return {n: (folder / n).read_bytes() if (folder / n).is_file() else "dir"
            for n in sorted(os.listdir(folder))}


def run_sweep(argv, capsys):
    try:
        code = sweep.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, [line for line in err.splitlines() if line.strip()]


# --- item 2: a signal while the command line is still importing JAX -------------------------

def _caught(pid) -> set[int]:
    """The signals process ``pid`` has handlers for (``SigCgt`` of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("SigCgt:"))
    mask = int(line.split()[1], 16)
    return {s for s in range(1, 64) if mask >> (s - 1) & 1}


def _earlier_set(out):
    """An earlier sweep's results (by its manifest) and a file of the user's."""
    out.mkdir()
    (out / "sweep.nc").write_bytes(b"earlier results")
    (out / "basins_simsiam.png").write_bytes(b"earlier map")
    (out / MANIFEST).write_text('{"files": ["sweep.nc", "basins_simsiam.png"]}')
    (out / "notes.txt").write_text("mine")


CASES = [("dynamics.sweep", signal.SIGINT), ("dynamics.sweep", signal.SIGTERM),
         ("dynamics.sweep", signal.SIGHUP), ("dynamics.figures", signal.SIGINT),
         ("dynamics.cifar", signal.SIGINT)]


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/status"), reason="needs /proc")
@pytest.mark.parametrize("module,sig", CASES, ids=[f"{m}-{s.name}" for m, s in CASES])
def test_signal_during_the_import_one_line_exit_code_folder_as_it_was(tmp_path, module, sig):
    """Sent as soon as the process handles SIGINT, SIGTERM and SIGHUP (which it must do before
    it imports JAX: the signal then arrives during the import, before any output work), with
    ``--overwrite`` on a folder holding an earlier set: one line, 128 + signal, nothing touched."""
    out = tmp_path / "o"
    _earlier_set(out)
    before = snapshot(out)
    args = {"dynamics.sweep": [*TINY, "--overwrite"],
            "dynamics.figures": ["tian4", "--quick"],
            "dynamics.cifar": ["--data-dir", str(tmp_path), "--epochs", "1", "--overwrite"]}[module]
    p = subprocess.Popen([sys.executable, "-m", module, *args, "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        deadline = time.monotonic() + 120  # only reached when the handlers never come
        while True:
            try:
                if wanted <= _caught(p.pid):
                    break
            except (FileNotFoundError, StopIteration, ProcessLookupError):
                pass
            assert p.poll() is None, ("the process ended without installing its handlers",
                                      p.communicate())
            assert time.monotonic() < deadline, "no handlers for SIGINT, SIGTERM, SIGHUP"
            time.sleep(0.002)
        p.send_signal(sig)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    lines = [line for line in err.splitlines() if line.strip()]
    assert p.returncode == 128 + sig, (p.returncode, err)
    assert len(lines) == 1 and "interrupted" in lines[0], err
    assert snapshot(out) == before


# --- item 3: only the files a manifest lists are results ------------------------------------

def test_a_users_file_survives_overwrite_and_is_no_earlier_result(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "basins_for_paper.png").write_bytes(b"my own figure")
    (out / "phase_linear_draft.png").write_bytes(b"another of mine")
    # the user's files alone do not make the folder hold earlier results
    code, err = run_sweep([*TINY, "--out", str(out)], capsys)
    assert code == 0, err
    byol = [("byol" if w == "simsiam" else w) for w in TINY]
    code, err = run_sweep([*byol, "--out", str(out), "--overwrite"], capsys)
    assert code == 0, err
    assert (out / "basins_for_paper.png").read_bytes() == b"my own figure"
    assert (out / "phase_linear_draft.png").read_bytes() == b"another of mine"
    assert not (out / "basins_simsiam.png").exists()  # the earlier run's own map is replaced
    assert (out / "basins_byol.png").is_file()


def test_a_users_file_of_a_result_name_is_never_replaced(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "sweep.nc").write_bytes(b"my own data")
    for extra in ([], ["--overwrite"]):
        code, err = run_sweep([*TINY, "--out", str(out), *extra], capsys)
        assert code == 2 and len(err) == 1 and "sweep.nc" in err[0], err
        assert (out / "sweep.nc").read_bytes() == b"my own data"


# --- item 4: the figures command line -------------------------------------------------------

def run_figures(argv, capsys):
    try:
        code = figures_cli.main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def fake_figures(monkeypatch):
    """Figures that cost nothing: the CLI's machinery, not the drawing, is under test. The list
    ``made`` records what was built (empty when a refusal came before any work)."""
    made = []

    def write(name, out, quick=False, dpi=130):
        made.append(name)
        for ext in ("png", "pdf"):
            (out / f"{name}.{ext}").write_bytes(f"{name} quick={quick}".encode())
        return dict(files=[f"{name}.png", f"{name}.pdf"], quick=quick, params={}, caption="",
                    command=f"python -m dynamics.figures {name}", seconds=0.0)

    monkeypatch.setattr(figures_cli, "write_figure", write)
    return made


@pytest.mark.parametrize("kind", ["file", "empty", "readonly"])
def test_figures_cli_refuses_an_unusable_out_in_one_line_before_any_work(
        tmp_path, capsys, monkeypatch, fake_figures, kind):
    monkeypatch.chdir(tmp_path)
    if kind == "file":
        out = tmp_path / "f"
        out.write_text("x")
        needle = "is a file, not a folder"
    elif kind == "empty":
        out, needle = "", "empty name ''"
    else:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o555)
        needle = "not writable"
    try:
        code, err = run_figures(["tian4", "--out", str(out)], capsys)
    finally:
        if kind == "readonly":
            out.chmod(0o755)
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert fake_figures == []
    assert sorted(os.listdir(tmp_path)) == (["f"] if kind == "file" else
                                            ["ro"] if kind == "readonly" else [])


def test_figures_cli_full_disk_refused_before_any_work(tmp_path, capsys, monkeypatch,
                                                       fake_figures):
    import dynamics._io as io

    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: type("U", (), {"free": 1000})())
    code, err = run_figures(["tian4", "--out", str(tmp_path / "new")], capsys)
    assert code == 2 and len(err) == 1 and "free" in err[0], err
    assert fake_figures == [] and not (tmp_path / "new").exists()


def test_figures_quick_never_replaces_full_quality_figures(tmp_path, capsys, fake_figures):
    out = tmp_path / "figs"
    assert run_figures(["tian4", "post_toy", "--out", str(out)], capsys)[0] == 0
    before = snapshot(out)
    code, err = run_figures(["tian4", "--quick", "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1 and "full-quality" in err[0] and "tian4" in err[0], err
    assert snapshot(out) == before and fake_figures == ["tian4", "post_toy"]
    # asked for: replaced, and only that figure
    assert run_figures(["tian4", "--quick", "--out", str(out), "--overwrite"], capsys)[0] == 0
    assert (out / "tian4.png").read_bytes() == b"tian4 quick=True"
    assert (out / "post_toy.png").read_bytes() == b"post_toy quick=False"


def test_figures_quick_goes_to_its_own_folder_by_default(tmp_path, capsys, monkeypatch,
                                                         fake_figures):
    monkeypatch.chdir(tmp_path)
    assert run_figures(["tian4", "--quick"], capsys)[0] == 0
    assert sorted(os.listdir(tmp_path)) == [figures_cli.QUICK_OUT_DEFAULT]


def test_figures_write_failure_leaves_the_folder_as_it_was(tmp_path, capsys, monkeypatch,
                                                           fake_figures):
    out = tmp_path / "figs"
    assert run_figures(["tian4", "--out", str(out)], capsys)[0] == 0
    before = snapshot(out)
    real = figures_cli.write_figure

    def full(name, out_dir, **kw):
        if name == "post_toy":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(name, out_dir, **kw)

    monkeypatch.setattr(figures_cli, "write_figure", full)
    code, err = run_figures(["tian4", "post_toy", "--out", str(out)], capsys)
    err = [line for line in err if line.startswith(figures_cli.PROG)]  # not the progress lines
    assert code == 1 and len(err) == 1 and "No space left on device" in err[0], err
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k != ".dynamics.lock"} == \
        {k: v for k, v in before.items() if k != ".dynamics.lock"}


def test_figures_users_file_of_a_figure_name_is_refused(tmp_path, capsys, fake_figures):
    out = tmp_path / "figs"
    out.mkdir()
    (out / "tian4.png").write_bytes(b"mine")
    code, err = run_figures(["tian4", "--out", str(out)], capsys)
    assert code == 2 and len(err) == 1 and "tian4.png" in err[0], err
    assert (out / "tian4.png").read_bytes() == b"mine" and fake_figures == []


# --- item 6: no folder left holding only its lock -------------------------------------------

def test_refused_or_failed_run_leaves_no_new_folder(tmp_path, capsys, monkeypatch):
    import dynamics._cli as cli
    import dynamics._io as io

    new = tmp_path / "a" / "b"
    monkeypatch.setattr(io.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    code, err = run_sweep([*TINY, "--out", str(new)], capsys)
    assert code == 2 and len(err) == 1 and "free" in err[0], err
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()

    def full(ds, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(cli, "save_dataset", full)
    code, err = run_sweep([*TINY, "--out", str(new)], capsys)
    assert code == 1 and len(err) == 1, err
    # the finished lanes stay in the sweep's store (nothing finished is lost), the message says
    # where and how to resume, and nothing else is left in the new folder
    assert "--resume" in err[0] and ".sweep.zarr" in err[0], err
    assert sorted(os.listdir(new)) == [".dynamics.lock", ".sweep.zarr"]


# --- item 5: nothing truncated, nothing pooled ----------------------------------------------

def _basin_dataset(eps=(1.0, 0.1, 0.01), eta=(0.05, 0.1, 0.15), sigma2=(0.25, 0.5, 1.0), n=4):
    """A synthetic scalar-sweep Dataset whose every setting has its own collapsed share: in
    setting k (in coordinate order) the first k + 1 of the n x n lanes are collapsed."""
    shape = (1, 1, len(eps), len(eta), len(sigma2), 1, n, n)
    outcome = np.full(shape, int(Outcome.NON_COLLAPSED), dtype=np.int8)
    for k, (i, j, m) in enumerate(itertools.product(*map(range, shape[2:5]))):
        outcome[0, 0, i, j, m, 0].flat[: k % (n * n) + 1] = int(Outcome.COLLAPSED)
    coords = dict(variant=["simsiam"], method=["flow"], eps=list(eps), eta=list(eta),
                  sigma2=list(sigma2), beta=[1.0], phi0=np.linspace(-1, 2, n),
                  theta0=np.linspace(-1, 1, n))
    return xr.Dataset({"outcome": (tuple(coords), outcome)}, coords=coords)


def test_basin_map_draws_every_panel_of_27_settings():
    ds = _basin_dataset()
    fig = basin_map(ds, "simsiam")
    try:
        panels = [ax for ax in fig.axes if ax.images]
        assert len(panels) == 27
        # each panel shows its own setting: the collapsed share in its title is k + 1 of 16
        shares = sorted(int(ax.get_title().split("collapsed ")[1].rstrip("%")) for ax in panels)
        expect = sorted(round(100 * (k % 16 + 1) / 16) for k in range(27))
        assert shares == expect
    finally:
        plt.close(fig)


def test_scalar_summary_has_one_row_per_setting():
    ds = _basin_dataset(eps=(0.01,), sigma2=(0.5, 1.0))
    lines = summarize(ds).splitlines()
    rows = [line for line in lines[1:] if line.startswith("simsiam")]
    assert len(rows) == 3 * 2
    assert "eta" in lines[0] and "sigma2" in lines[0]
    for k, (row, (e, s)) in enumerate(zip(rows, itertools.product((0.05, 0.1, 0.15), (0.5, 1.0)))):
        words = row.split()
        assert float(words[3]) == e and float(words[4]) == s
        assert words[5] == f"{(k + 1) / 16:.1%}"  # the setting's own share, not a pooled one


def test_phase_diagram_draws_each_sigma2s_own_eta_crit_on_its_row():
    eta, sigma2, d = np.linspace(0.0, 0.4, 9), np.array([0.2, 0.5, 1.0]), np.array([1.5, 1.0])
    crit = d ** 2 / (4 * (d + sigma2[:, None]))  # the per-mode saddle-nodes, (sigma2, mode)
    dims = ("variant", "method", "eps", "eta", "sigma2", "beta", "init")
    zeros = np.zeros((1, 1, 1, len(eta), len(sigma2), 1, 2))
    ds = xr.Dataset({"collapsed_fraction": (dims, zeros), "effective_rank": (dims, zeros + 2)},
                    coords=dict(variant=["simsiam"], method=["flow"], eps=[1.0], eta=eta,
                                sigma2=sigma2, beta=[1.0], init=[0, 1],
                                eta_crit=(("sigma2", "mode_x"), crit)),
                    attrs=dict(model="permode", n1=2, convention="loss", t1=10.0))
    fig = collapse_phase_figure(ds, "simsiam", "flow", "sigma2", "eta")
    try:
        ax = fig.axes[0]
        for row, c in enumerate(crit):
            # lines inside this row (index axes: row r spans r - 0.5 ... r + 0.5)
            xs = sorted(line.get_xdata()[0] for line in ax.lines
                        if min(line.get_ydata()) <= row <= max(line.get_ydata())
                        and max(line.get_ydata()) - min(line.get_ydata()) <= 1.0)
            expect = sorted(np.interp(c, eta, np.arange(len(eta))))
            np.testing.assert_allclose(xs, expect, atol=1e-12)
    finally:
        plt.close(fig)


def test_a_repeated_flag_is_a_one_line_error(capsys):
    for argv in (["--eps", "0.01", "--eps", "1"], ["--t1", "1", "--t1", "2"]):
        code, err = run_sweep(argv, capsys)
        assert code == 2 and len(err) == 1 and "given more than once" in err[0], err
