"""Inputs that used to reach a traceback or run silently: refused up front naming the value and
the limit; negative numbers in every notation; help texts; the CIFAR command line's extra,
flags and --compare target; the notebooks extra."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

import dynamics.figures as figures  # noqa: E402
import dynamics.sweep as sweep  # noqa: E402
import dynamics.sweep.__main__ as sweep_cli  # noqa: E402
from dynamics.types import MAX_DISCRETE_STEPS  # noqa: E402
from dynamics.cifar.__main__ import build_parser as cifar_parser  # noqa: E402
from dynamics.cifar.__main__ import main as cifar_main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def run(main, argv, capsys):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, [line for line in err.splitlines() if line.strip()]


@pytest.fixture
def no_work(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the run started although its input cannot run")

    monkeypatch.setattr(sweep_cli, "run", refuse)


@pytest.mark.parametrize(
    "main, args, needles",
    [
        (sweep.main, ["--n", "100000"], ["100000 x 100000", "of memory; this machine has"]),
        (sweep.main, ["--n", "3", "--n-phi", "1e12"], ["3 x 1000000000000", "this machine has"]),
        (sweep.main, ["--seed", str(2**63)], [f"seed must be <= {2**63 - 1}", str(2**63)]),
        (sweep.main, ["--t1", "1e300", "--method", "gd"], ["2e+302 steps", str(MAX_DISCRETE_STEPS)]),
        (sweep.main, ["--lr", "1e-9", "--method", "gd"], ["2e+11 steps", str(MAX_DISCRETE_STEPS)]),
        (sweep.main, ["--batch", "1e9", "--method", "sgd"],
         ["--batch 1000000000 (one lane's minibatch)", "this machine has"]),
        (sweep.main, ["--batch", "2.5"], ["batch must be an integer, got '2.5'"]),
        (sweep.main, ["--eta", "-1e-3"], ["eta must be >= 0, got '-1e-3'"]),
        (sweep.main, ["--eps", "-inf"], ["eps must be finite, got '-inf'"]),
        (sweep.main, ["--model", "linear", "--n1", "100000"], ["--n1 100000 (one lane)", "this machine has"]),
        (sweep.main, ["--model", "linear", "--method", "sgd", "--batch", "1e8", "--n1", "50"],
         ["with --batch 100000000", "this machine has"]),
        (sweep.main, ["--model", "linear", "--seed", str(2**64)], ["seed must be <="]),
        (sweep.main, ["--model", "linear", "--x-eig", "-1e-3", "1"], ["x-eig must be > 0, got '-1e-3'"]),
        (figures.main, ["--dpi", "100000"], [f"dpi must be <= {figures.MAX_DPI}, got '100000'"]),
    ],
)
def test_what_cannot_run_is_refused_naming_value_and_limit(main, args, needles, tmp_path, capsys, no_work):
    code, _, err = run(main, [*args, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and len(err) == 1, err
    assert "error:" in err[0] and all(n in err[0] for n in needles), err
    assert not (tmp_path / "o").exists()


def test_cifar_width_refused_naming_value_and_limit(tmp_path, capsys):
    code, _, err = run(cifar_main, ["--data-dir", str(tmp_path), "--width", "1e9",
                                    "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and len(err) == 1 and "--width 1e+09" in err[0] and "this machine has" in err[0], err
    assert not (tmp_path / "run").exists()


def test_negative_numbers_in_every_range_flag():
    a = sweep.build_parser().parse_args(["--theta-range", "-1e-3", "1e-3", "--phi-range", "-2.5E+0", "-.5"])
    assert a.theta_range == [-1e-3, 1e-3] and a.phi_range == [-2.5, -0.5]
    a = sweep.build_parser("linear").parse_args(["--x-eig", "1e-1", "2"])
    assert a.x_eig == [0.1, 2.0]


def test_gd_says_how_many_steps_it_takes(tmp_path, capsys):
    code, _, err = run(sweep.main, ["--method", "gd", "--t1", "0.5", "--lr", "1e-3", "--n", "2",
                                    "--variant", "simsiam", "--no-plot", "--no-compile-cache",
                                    "--out", str(tmp_path)], capsys)
    assert code == 0
    assert "gd: 500 steps a lane (t1 0.5 / lr 0.001)" in err[0]


def _help(parser):
    return " ".join(parser.format_help().split())


@pytest.mark.parametrize("parser", [sweep.build_parser, lambda: sweep.build_parser("linear"),
                                    lambda: sweep.build_parser("isoloss"), cifar_parser,
                                    figures.build_parser])
def test_help_prints_each_default_once_and_no_markup(parser):
    text = _help(parser())
    assert "``" not in text and "::" not in text
    assert "(default: None)" not in text
    assert not re.search(r"\(default[^)]*\) \(default", text), text
    assert not re.search(r"default \S+\) \(default", text)


def test_cifar_help_and_a_clear_line_without_the_extra():
    """``python -m dynamics.cifar --help`` without flax/optax installed: help works, a run says
    which extra to install in one line."""
    prelude = ("import runpy, sys; sys.modules['flax'] = None; sys.modules['optax'] = None; "
               "sys.argv = ['dynamics.cifar'] + sys.argv[1:]; "
               "runpy.run_module('dynamics.cifar', run_name='__main__', alter_sys=True)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + sys.path))
    r = subprocess.run([sys.executable, "-c", prelude, "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "--no-stop-grad" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-c", prelude, "--data-dir", "."], capture_output=True,
                       text=True, env=env, timeout=120)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and 'pip install -e ".[cifar]"' in lines[0], r.stderr


def test_cifar_no_predictor_conflicts_with_a_predictor(tmp_path, capsys):
    for pred in ("directpred", "mlp"):
        code, _, err = run(cifar_main, ["--data-dir", str(tmp_path), "--predictor", pred,
                                        "--no-predictor"], capsys)
        assert code == 2 and len(err) == 1 and f"conflicts with --predictor {pred}" in err[0], err


def _fake_run(folder):
    """A finished run's metrics.json, config.json and checkpoint.json, as train() writes them
    (two epochs; the checkpoint's state itself is left out)."""
    folder.mkdir()
    steps = [{"step": s, "loss": -0.1 * s, "z_std": 0.05, "z_top": 0.2} for s in range(1, 5)]
    epochs = [{"epoch": 0, "step": 0, "knn": 0.1, "z_std_ref": 0.0625},
              {"epoch": 1, "step": 2, "knn": 0.2}, {"epoch": 2, "step": 4, "knn": 0.3}]
    (folder / "metrics.json").write_text(json.dumps({"epochs": epochs, "steps": steps, "final": {}}))
    (folder / "config.json").write_text(json.dumps({"method": "simsiam", "lr": 0.03, "wd": 5e-4}))
    (folder / "checkpoint.json").write_text(json.dumps({"epoch": 2, "config": {}}))


def test_cifar_compare_into_a_folder_writes_compare_png(tmp_path, capsys):
    pytest.importorskip("flax")
    _fake_run(tmp_path / "run")
    code, out, _ = run(cifar_main, ["--compare", str(tmp_path / "run"), "--out", str(tmp_path / "cmp")], capsys)
    assert code == 0
    png = tmp_path / "cmp" / "compare.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in out
    code, _, err = run(cifar_main, ["--compare", str(tmp_path / "run"), "--out", str(tmp_path / "c.pdf")], capsys)
    assert code == 2 and len(err) == 1 and "'.pdf'" in err[0]
    code, _, err = run(cifar_main, ["--compare", str(tmp_path / "run"), "--out", ""], capsys)
    assert code == 2 and len(err) == 1 and "empty name" in err[0]


def test_cifar_out_checked_before_the_data_is_read(tmp_path, capsys, monkeypatch):
    import dynamics.cifar.data as data

    def refuse(*a, **k):
        raise AssertionError("the data was read before the output folder was checked")

    monkeypatch.setattr(data, "load_cifar10", refuse)
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run(cifar_main, ["--data-dir", str(tmp_path), "--out", str(f)], capsys)
    assert code == 2 and len(err) == 1 and "is a file, not a folder" in err[0], err
    run_dir = tmp_path / "earlier"
    _fake_run(run_dir)
    code, _, err = run(cifar_main, ["--data-dir", str(tmp_path), "--out", str(run_dir)], capsys)
    assert code == 2 and len(err) == 1 and "already holds results" in err[0], err
    code, _, err = run(cifar_main, ["--data-dir", str(tmp_path), "--out", str(run_dir),
                                    "--resume", "--overwrite"], capsys)
    assert code == 2 and "give one" in err[0]


def test_notebooks_extra_and_readme_say_how_to_open_them():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("jupyterlab") for d in extras["notebooks"])
    assert any(d.startswith("jupytext") for d in extras["notebooks"])
    assert any(d.startswith("hypothesis") for d in extras["test"])
    readme = (ROOT / "README.md").read_text()
    assert 'pip install -e ".[notebooks]"' in readme and "jupyter lab notebooks/" in readme


def test_linear_sweep_shows_progress():
    from dynamics.sweep.matrix import PROGRESS_CHUNKS, MatrixOptions

    config = sweep.SweepConfig(model="permode", eta=(0.1,), eps=(1.0,), t1=5.0,
                               options=MatrixOptions(n1=2, n_init=8))
    seen = []

    class Recorder:
        def update(self, n):
            seen.append(n)

    ds = sweep.run(config, progress=Recorder())
    assert len(seen) >= PROGRESS_CHUNKS and sum(seen) == ds["status"].size


def test_largest_seed_and_step_cap_run_and_are_recorded(tmp_path, capsys):
    """NetCDF3 has no 64-bit integers: the largest seed used to fail at the very end, after the
    work, with a traceback from the writer."""
    import xarray as xr

    big = str(2**63 - 1)
    code, _, err = run(sweep.main, ["--n", "2", "--method", "sgd", "--t1", "0.5", "--variant", "simsiam",
                                    "--seed", big, "--max-steps", str(2**31 - 1), "--no-plot",
                                    "--quiet", "--no-compile-cache", "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    assert xr.open_dataset(tmp_path / "a" / "sweep.nc").attrs["seed"] == big
    code, _, err = run(sweep.main, ["--model", "permode", "--n1", "2", "--n-init", "1", "--t1", "0.5",
                                    "--seed", big, "--no-plot", "--quiet", "--out", str(tmp_path / "b")],
                       capsys)
    assert code == 0, err
    code, _, err = run(sweep.main, ["--max-steps", "1e18", "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and "max-steps must be <= 2147483647" in err[0]
