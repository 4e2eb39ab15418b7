"""Property-based: any value of any flag, and any argument of the run-planning functions, ends
in success or in a one-line error with exit status 2 (``ValueError`` for the functions), never a
traceback, and leaves no partial output.

Cheap by construction: the CLIs run in-process, the valid values of the flags that size a run
are tiny (2 x 2 grids, ``t1 <= 1``, few steps), and each property tries few examples."""

import math
import os
import uuid

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import dynamics.sweep as sweep  # noqa: E402
from dynamics._io import STAGING_PREFIX, OutputError, ResultSet  # noqa: E402

HOSTILE = ["0", "-1", "-1e-3", "nan", "-inf", "inf", "1e300", "-1e300", "abc", "", "1e9",
           str(2**63), "0x10", "1.5", "--", "-"]
POSITIVE_SMALL = ["0.5", "1", "2e-1"]


def values(*valid):
    return st.sampled_from(list(valid) + HOSTILE)


# flag -> strategy of its value(s); valid values keep the run tiny
SCALAR_FLAGS = {
    "--eps": st.lists(values("0.5", "1", "2"), min_size=1, max_size=2),
    "--eta": st.lists(values("0", "0.1", "0.15"), min_size=1, max_size=2),
    "--sigma2": st.lists(values("0", "0.5"), min_size=1, max_size=2),
    "--beta": st.lists(values("1", "0.5"), min_size=1, max_size=2),
    "--variant": st.lists(st.sampled_from(["simsiam", "byol", "simsiam-nosg", "simclr", ""]),
                          min_size=1, max_size=2),
    "--method": st.lists(st.sampled_from(["flow", "gd", "sgd", "adam"]), min_size=1, max_size=2),
    "--convention": st.sampled_from(["loss", "tian", "other"]),
    "--theta-range": st.lists(values("-1", "-1e-3", "1e-3", "1"), min_size=2, max_size=2),
    "--phi-range": st.lists(values("-1", "2", "-.5"), min_size=2, max_size=2),
    "--n": values("2", "3"),
    "--n-phi": values("2", "3"),
    "--t1": values(*POSITIVE_SMALL),
    "--lr": values("0.05", "0.1"),
    "--batch": values("2", "4"),
    "--rtol": values("1e-6", "1e-8"),
    "--atol": values("1e-8", "1e-10"),
    "--max-steps": values("100", "10000"),
    "--seed": values("0", "7", str(2**63 - 1)),
    "--engine": st.sampled_from(["batched", "diffrax", "gpu"]),
    "--solver": st.sampled_from(["auto", "rodas4", "tsit5", "dopri5", "kvaerno5", "euler"]),
    "--ftol": values("1e-6", "1e-3"),
    "--collapse-tol": values("1e-3", "0.1"),
    "--chunk": values("1", "3", "4096"),
}
LINEAR_FLAGS = {
    "--model": st.sampled_from(["linear", "permode", "tensor"]),
    "--eps": st.lists(values("1", "0.5"), min_size=1, max_size=2),
    "--eta": st.lists(values("0", "0.1"), min_size=1, max_size=2),
    "--sigma2": st.lists(values("0.5"), min_size=1, max_size=1),
    "--beta": st.lists(values("1"), min_size=1, max_size=1),
    "--variant": st.lists(st.sampled_from(["simsiam", "byol", "x"]), min_size=1, max_size=1),
    "--method": st.lists(st.sampled_from(["flow", "gd", "sgd"]), min_size=1, max_size=1),
    "--convention": st.sampled_from(["loss", "tian"]),
    "--n1": values("2"),
    "--n2": values("2", "3"),
    "--x-eig": st.lists(values("0.5", "1.5"), min_size=2, max_size=2),
    "--n-init": values("1", "2"),
    "--init-scale": values("1"),
    "--pred-scale": values("0", "0.5"),
    "--t1": values("0.5", "1"),
    "--lr": values("0.1"),
    "--batch": values("2"),
    "--seed": values("0"),
    "--solver": st.sampled_from(["auto", "tsit5", "rodas4"]),
    "--collapse-tol": values("1e-3"),
    "--chunk": values("1", "8"),
    "--phase": st.lists(st.sampled_from(["eps", "eta", "sigma2", "beta", "init"]), min_size=2, max_size=2),
}


def argv_from(draw, flags, base):
    chosen = draw(st.lists(st.sampled_from(sorted(flags)), min_size=1, max_size=3, unique=True))
    argv = list(base)
    for f in chosen:
        v = draw(flags[f])
        argv += [f, *(v if isinstance(v, list) else [v])]
    return argv


def check_run(main, argv, out, capsys, result_name):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code in (0, 2), (argv, code, err)
    names = os.listdir(out) if out.exists() else []
    assert not any(n.startswith(STAGING_PREFIX) or n.endswith(".tmp") for n in names), names
    if code == 2:
        assert len(lines) == 1 and "error:" in lines[0], (argv, err)
        assert "Traceback" not in err
        assert not [n for n in names if not n.startswith(".")], (argv, names)
    else:
        assert result_name in names, (argv, names)


PROPERTY = settings(max_examples=25, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@PROPERTY
@given(data=st.data())
def test_scalar_sweep_any_flag_value(data, tmp_path, capsys):
    out = tmp_path / uuid.uuid4().hex
    base = ["--n", "2", "--t1", "0.5", "--lr", "0.05", "--variant", "simsiam", "--no-plot",
            "--quiet", "--no-compile-cache"]
    argv = argv_from(data.draw, SCALAR_FLAGS, base) + ["--out", str(out)]
    check_run(sweep.main, argv, out, capsys, "sweep.nc")


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_linear_sweep_any_flag_value(data, tmp_path, capsys):
    out = tmp_path / uuid.uuid4().hex
    base = ["--model", "permode", "--n1", "2", "--eta", "0.1", "--eps", "1", "--n-init", "1",
            "--t1", "0.5", "--no-plot", "--quiet"]
    argv = argv_from(data.draw, LINEAR_FLAGS, base) + ["--out", str(out)]
    model = argv[argv.index("--model", 2) + 1] if argv.count("--model") > 1 else "permode"
    check_run(sweep.main, argv, out, capsys, f"sweep_{model}.nc")


CIFAR_FLAGS = ["--epochs", "--batch-size", "--width", "--lr", "--momentum", "--wd",
               "--predictor-lr-ratio", "--ema", "--dp-rho", "--dp-eps", "--subset", "--test-subset",
               "--knn-k", "--knn-t", "--knn-every", "--seed"]


@PROPERTY
@given(flag=st.sampled_from(CIFAR_FLAGS), value=st.sampled_from(HOSTILE + ["1", "0.5", "64"]),
       switch=st.sampled_from([[], ["--no-predictor"], ["--predictor", "linear"], ["--no-stop-grad"],
                               ["--method", "byol", "--no-stop-grad"], ["--resume", "--overwrite"]]))
def test_cifar_any_flag_value_fails_cleanly_without_data(flag, value, switch, tmp_path, capsys):
    """No data folder holds CIFAR-10 here, so every input must end in a one-line error (exit 2,
    or 1 for the unreadable data) before the output folder is touched or anything trains."""
    from dynamics.cifar.__main__ import main

    out = tmp_path / uuid.uuid4().hex
    try:
        code = main(["--data-dir", str(tmp_path), flag, value, *switch, "--out", str(out)])
    except SystemExit as e:
        code = e.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code in (1, 2) and len(err) == 1 and "error:" in err[0], (flag, value, switch, err)
    assert not out.exists() or not [n for n in os.listdir(out) if not n.startswith(".")]


ints = st.one_of(st.integers(-3, 10**7), st.sampled_from([2**31, 2**62, 10**15]))
floats = st.floats(allow_nan=True, allow_infinity=True)


def _config_or_error(**kw):
    """``SweepConfig(**kw)``, or ``None`` after checking that its error is one line."""
    try:
        return sweep.SweepConfig(**kw)
    except ValueError as e:
        assert "\n" not in str(e) and str(e), e
        return None


@settings(max_examples=200, deadline=None, derandomize=True)
@given(n_theta=ints, n_phi=ints, n_eps=st.integers(1, 4),
       methods=st.lists(st.sampled_from(["flow", "gd", "sgd"]), min_size=1, max_size=3,
                        unique=True),
       t1=st.one_of(st.none(), floats), lr=floats, batch=ints, chunk=st.one_of(st.none(), ints))
def test_scalar_config_and_plan_give_a_runnable_plan_or_one_line_error(n_theta, n_phi, n_eps,
                                                                      methods, t1, lr, batch, chunk):
    """``SweepConfig`` then ``plan`` (what ``run(config)`` checks before any work): a plan whose
    numbers can run, or a ``ValueError`` of one line, for any value of the sizing arguments."""
    from dynamics.sweep.scalar import SAMPLE_BYTES, SGD_CHUNK_BYTES, ScalarOptions

    try:
        options = ScalarOptions(n=n_theta, n_phi=n_phi)
    except ValueError:  # pragma: no cover - the options dataclass itself checks nothing
        return
    config = _config_or_error(eps=tuple(0.5 + i for i in range(n_eps)), method=tuple(methods),
                              t1=t1, lr=lr, batch=batch, chunk=chunk, options=options)
    if config is None:
        return
    try:
        plan = sweep.plan(config, memory=8 << 30)
    except ValueError as e:
        assert "\n" not in str(e) and ("needs about" in str(e) or "steps a lane" in str(e)), e
        return
    assert plan["result_bytes"] <= 8 << 30
    for n in plan["steps"].values():
        assert 1 <= n <= 2**31 - 1
    n_inner = n_theta * n_phi
    for m, c in plan["chunk"].items():
        assert c >= 1
    if "sgd" in methods:
        assert 1 <= plan["sgd_chunk"] <= n_inner
        assert plan["sgd_chunk"] * batch * SAMPLE_BYTES <= max(SGD_CHUNK_BYTES, batch * SAMPLE_BYTES)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(model=st.sampled_from(["linear", "permode", "isoloss"]), n1=ints, n2=ints, n_init=ints,
       methods=st.lists(st.sampled_from(["flow", "gd", "sgd"]), min_size=1, max_size=3,
                        unique=True),
       t1=floats, lr=floats, batch=ints, chunk=ints)
def test_matrix_config_and_plan_give_a_runnable_plan_or_one_line_error(model, n1, n2, n_init,
                                                                      methods, t1, lr, batch, chunk):
    fam = sweep.family(model)
    fields = {f for f in fam.Options.__dataclass_fields__}
    opts = dict(n1=n1, n_init=n_init, **({"n2": n2} if "n2" in fields and model == "linear" else {}))
    config = _config_or_error(model=model, method=tuple(methods), t1=t1, lr=lr, batch=batch,
                              chunk=chunk, eps=(1.0,), options=fam.Options(**opts))
    if config is None:
        return
    try:
        plan = sweep.plan(config, memory=8 << 30)
    except ValueError as e:
        assert "\n" not in str(e) and ("needs about" in str(e) or "steps a lane" in str(e)), e
        return
    for c in plan["chunk"].values():
        assert 1 <= c <= max(1, plan["n_inner"]) and c <= chunk


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(codec="utf-8", exclude_characters="\x00/\\"), max_size=12)
       .filter(lambda s: s != ".."), overwrite=st.booleans())
def test_result_set_on_any_folder_name(name, overwrite, tmp_path, monkeypatch):
    """Any folder name: the set opens, stages and commits, or refuses in one line, and leaves no
    temporary behind."""
    monkeypatch.chdir(tmp_path)
    try:
        with ResultSet(name, "t", ("r.txt",), overwrite=overwrite) as rs:
            rs.path("r.txt").write_text("ok")
            rs.commit(["r.txt"])
        folder = rs.folder
    except OutputError as e:
        assert "\n" not in str(e)
        return
    assert (folder / "r.txt").read_text() == "ok"
    assert not [n for n in os.listdir(folder) if n.startswith(STAGING_PREFIX)]


def test_same_seed_same_sgd_result(tmp_path, capsys):
    """Same seed, same result, whatever the chunking; another seed differs."""
    base = ["--n", "3", "--method", "sgd", "--t1", "1", "--variant", "simsiam", "--no-plot",
            "--quiet", "--no-compile-cache"]
    for name, extra in (("a", []), ("b", ["--chunk", "4"]), ("c", ["--seed", "1"])):
        assert sweep.main([*base, *extra, "--out", str(tmp_path / name)]) == 0
    import xarray as xr

    a, b, c = (xr.open_dataset(tmp_path / n / "sweep.nc")["theta"].values for n in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    capsys.readouterr()


pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
