"""``python -m dynamics.predict --quick`` end to end on a tiny synthetic CIFAR folder: the table's
columns, a rerun skipping finished runs, one-line errors."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

from dynamics.predict import grid  # noqa: E402
from dynamics.predict.__main__ import main  # noqa: E402
from dynamics.predict.mapping import to_toy, toy_prediction  # noqa: E402
from dynamics.predict.settings import setting  # noqa: E402
from tests.test_cifar import write_tiny_cifar  # noqa: E402


def test_quick_grid_table_and_rerun_skips(tmp_path, capsys):
    folder, _, _ = write_tiny_cifar(tmp_path / "data")
    out = tmp_path / "out"
    assert main(["--data-dir", str(folder), "--quick", "--out", str(out)]) == 0
    first = capsys.readouterr().out
    table = (out / "table.csv").read_text().splitlines()
    assert table[0].split(",") == list(grid.COLUMNS)
    rows = [dict(zip(grid.COLUMNS, line.split(","))) for line in table[1:]]
    assert [r["setting"] for r in rows] == list(grid.QUICK_SETTINGS)
    for r in rows:
        # the toy column is the mapping's call on the run's config alone, not the run's outcome
        fields = grid.run_config(setting(r["setting"]), True, 0, 80, 32)
        assert r["toy"] == toy_prediction(to_toy(**fields))["outcome"]
        assert r["cifar"] in ("collapsed", "partial", "healthy")
        assert r["agree"] == ("yes" if r["toy"] == r["cifar"] else "no")
        assert 0 <= float(r["knn"]) <= 1 and 0 <= float(r["top_share"]) <= 1
    res = json.loads((grid.run_dir(out, "baseline", 0) / "result.json").read_text())
    assert set(grid.RESULT_KEYS) <= set(res) and res["provenance"]["command"].startswith("python -m dynamics.predict")
    assert "agreement:" in (out / "table.md").read_text() and "training in" in first

    stamp = {n: (grid.run_dir(out, n, 0) / "result.json").stat().st_mtime_ns for n in grid.QUICK_SETTINGS}
    assert main(["--data-dir", str(folder), "--quick", "--out", str(out)]) == 0
    second = capsys.readouterr().out
    assert "training in" not in second and "0 run(s) trained, 2 skipped" in second
    assert stamp == {n: (grid.run_dir(out, n, 0) / "result.json").stat().st_mtime_ns for n in grid.QUICK_SETTINGS}
    assert (out / "table.csv").read_text().splitlines() == table


@pytest.mark.parametrize("args, needle", [
    (["--quick", "--out", "o"], "--data-dir is required"),
    (["--quick", "--data-dir", "nowhere", "--out", "o"], "--data-dir nowhere does not exist"),
    (["--settings", "nope", "--out", "o"], "no setting 'nope'"),
    (["--quick", "--data-dir", "."], "--out is required"),
    (["--epochs", "0", "--out", "o"], "epochs must be > 0"),
    (["--grid", "grid1", "--settings", "wd-1e-1", "--list"], "wd-1e-1 is not part of grid1"),
    (["--grid", "grid9", "--list"], "'grid9'"),
    (["--mapping", "v9", "--list"], "'v9'"),
])
def test_bad_input_is_one_line(args, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and needle in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------ one run, one runner

_HOLD = """
import sys
from dynamics.predict.grid import RunLock
lock = RunLock(sys.argv[1])
print("locked" if lock.acquire() else "busy", flush=True)
sys.stdin.readline()
"""


def _holder(folder):
    """A separate process holding ``folder``'s run lock until killed (waits on its stdin)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"  # waits for the condition, no fixed sleep
    return p


def test_run_lock_excludes_a_second_runner_and_a_killed_runners_lock_is_taken_over(tmp_path):
    import os
    import signal

    folder = tmp_path / "runs" / "baseline" / "seed0"
    p = _holder(folder)
    try:
        other = grid.RunLock(folder)
        assert other.acquire() is False and other.holder == str(p.pid)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    # the lock file still names the dead runner; its lock went with it
    assert (folder / grid.LOCK_NAME).read_text().strip() == str(p.pid)
    with grid.RunLock(folder) as mine:
        assert mine.acquire() is True
        assert (folder / grid.LOCK_NAME).read_text().strip() == str(os.getpid())
    with grid.RunLock(folder) as again:  # released on exit
        assert again.acquire() is True


def test_runner_skips_a_run_another_runner_holds(tmp_path, capsys, monkeypatch):
    import signal

    data, _, _ = write_tiny_cifar(tmp_path / "data")
    out = tmp_path / "out"
    trained = []
    monkeypatch.setattr(grid, "run_one", lambda s, f, *a, **k: trained.append(s.name))
    p = _holder(grid.run_dir(out, "baseline", 0))
    try:
        assert main(["--data-dir", str(data), "--quick", "--settings", "baseline", "--out", str(out)]) == 0
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    text = capsys.readouterr().out
    assert trained == [] and f"another runner (pid {p.pid}) is training it, skipped" in text
    assert "1 left to the runner training them" in text and "| baseline |" in text
