"""CIFAR validation path on tiny synthetic data (no real data, no network, seconds not minutes).

The network is the real pipeline at a tiny size: width 1/16 (stages 4-32 channels, d = 128)
and one basic block per stage, batch 16, a few dozen steps. Compiled steps are shared through
module-scope fixtures and the step cache in :mod:`dynamics.cifar.train`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

import jax  # noqa: E402

# The toy package turns float64 on at import; the CIFAR path must stay float32 regardless.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from dynamics.cifar import augment as aug  # noqa: E402
from dynamics.cifar.__main__ import main as cli_main  # noqa: E402
from dynamics.cifar.data import CifarDataError, load_batch, load_cifar10, write_batch  # noqa: E402
from dynamics.cifar.train import Config, init_state, make_train_step, train  # noqa: E402

TINY = dict(width=0.0625, blocks=(1, 1, 1, 1), batch_size=16, knn_k=10, lr=2.0)
# Every training test runs 60 steps in total (the tiny set: 80 images = 5 steps x 12 epochs) at
# this learning rate, so they all share one compiled step per variant.
TOTAL = 60


def synthetic_images(n: int, seed: int = 0, classes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 32x32 RGB uint8 images of ``classes`` distinct stripe patterns plus pixel noise."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    imgs, labels = [], []
    for i in range(n):
        c = i % classes
        fx, fy = (c % 4) + 1, (c // 4) + 1
        base = np.stack([np.sin(2 * np.pi * (fx * xx + ph)) for ph in (0.0, 0.33, 0.66)], -1)
        base = base * np.cos(2 * np.pi * fy * yy)[..., None]
        imgs.append(np.clip(127 + 100 * base + 20 * r.normal(size=(32, 32, 3)), 0, 255).astype(np.uint8))
        labels.append(c)
    return np.stack(imgs), np.asarray(labels)


def write_tiny_cifar(root, n_per_batch: int = 16, n_test: int = 32, str_keys: bool = False):
    """A ``cifar-10-batches-py`` folder with 5 x ``n_per_batch`` training and ``n_test`` test images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x, y = synthetic_images(5 * n_per_batch + n_test, seed=1)
    for i in range(5):
        s = slice(i * n_per_batch, (i + 1) * n_per_batch)
        write_batch(folder / f"data_batch_{i + 1}", x[s], y[s], str_keys=str_keys)
    write_batch(folder / "test_batch", x[5 * n_per_batch:], y[5 * n_per_batch:], str_keys=str_keys)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f, protocol=2)
    return folder, x, y


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    folder, _, _ = write_tiny_cifar(tmp_path_factory.mktemp("cifar"))
    return load_cifar10(folder.parent)


# ------------------------------------------------------------------ loader


@pytest.mark.parametrize("str_keys", [False, True])
def test_loader_reads_real_format(tmp_path, str_keys):
    folder, x, y = write_tiny_cifar(tmp_path, n_per_batch=4, n_test=6, str_keys=str_keys)
    d = load_cifar10(tmp_path)  # the parent folder works as well as the folder itself
    assert d.train_x.shape == (20, 32, 32, 3) and d.train_x.dtype == np.uint8
    assert d.test_x.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(d.train_x, x[:20])
    np.testing.assert_array_equal(d.test_x, x[20:])
    np.testing.assert_array_equal(d.train_y, y[:20])
    assert d.label_names[0] == "c0"
    # channel-major rows: the first 1024 values of a row are the red plane
    with open(folder / "data_batch_1", "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    rows = raw["data" if str_keys else b"data"]
    np.testing.assert_array_equal(rows[0, :1024].reshape(32, 32), x[0, :, :, 0])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_loader_rejects_code_executing_pickle(tmp_path):
    folder, _, _ = write_tiny_cifar(tmp_path, n_per_batch=4, n_test=4)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": _Evil(marker), b"labels": [0]}, f, protocol=2)
    with pytest.raises(CifarDataError) as e:
        load_cifar10(folder)
    msg = str(e.value)
    assert "\n" not in msg and "data_batch_3" in msg and "system" in msg
    assert not marker.exists(), "the pickle's payload ran"


def test_loader_errors_are_one_line(tmp_path):
    with pytest.raises(CifarDataError, match="does not exist.*data_batch_1"):
        load_cifar10(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CifarDataError, match="lacks data_batch_1"):
        load_cifar10(empty)
    folder, _, _ = write_tiny_cifar(tmp_path / "t", n_per_batch=4, n_test=4)
    good = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(good[: len(good) // 2])
    with pytest.raises(CifarDataError) as e:
        load_cifar10(folder)
    assert "data_batch_2" in str(e.value) and "\n" not in str(e.value)
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, f, protocol=2)
    with pytest.raises(CifarDataError, match="N x 3072 uint8"):
        load_batch(folder / "data_batch_2")


def test_cli_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["--data-dir", str(tmp_path), "--width", "wide"])
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and "'wide'" in err and "\n" not in err
    with pytest.raises(SystemExit) as e:
        cli_main(["--data-dir", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and "does not exist" in err and "\n" not in err
    with pytest.raises(SystemExit) as e:
        cli_main(["--data-dir", str(tmp_path), "--method", "byol", "--no-stop-grad"])
    err = capsys.readouterr().err.strip()
    assert e.value.code != 0 and "simsiam only" in err and "\n" not in err


def test_cli_help_documents_every_flag():
    from dynamics.cifar.__main__ import build_parser

    p = build_parser()
    for action in p._actions:
        assert action.help, f"{action.option_strings} has no help"


# ------------------------------------------------------------------ augmentation

N_AUG = 2000


def test_crop_statistics():
    keys = jax.random.split(jax.random.PRNGKey(0), N_AUG)
    c = jax.jit(jax.vmap(aug.sample_crop))(keys)
    h, w = np.asarray(c.height), np.asarray(c.width)
    top, left = np.asarray(c.top), np.asarray(c.left)
    frac = h * w / 1024.0
    # sizes are rounded to whole pixels: at most half a pixel on each side of the sampled box
    slack = (0.5 * (h + w) + 0.25) / 1024.0
    assert np.all(frac >= 0.2 - slack) and np.all(frac <= 1.0)
    assert np.all(top >= 0) and np.all(left >= 0) and np.all(top + h <= 32) and np.all(left + w <= 32)
    aspect = w / h
    assert np.all(aspect > 0.6) and np.all(aspect < 1.7)
    # Boxes that do not fit are redrawn, which tilts the area below U(0.2, 1)'s mean 0.6; compare
    # with an independent numpy transcription of torchvision's sampler (20000 draws).
    ref = _torchvision_crop_areas(20000)
    se = np.sqrt(frac.var() / N_AUG + ref.var() / len(ref))
    assert abs(frac.mean() - ref.mean()) < 4 * se
    assert frac.min() < 0.25 and frac.max() > 0.9


def _torchvision_crop_areas(n, size=32, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), seed=0):
    r = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        for _ in range(10):
            area = size * size * r.uniform(*scale)
            ar = np.exp(r.uniform(np.log(ratio[0]), np.log(ratio[1])))
            w, h = int(round(np.sqrt(area * ar))), int(round(np.sqrt(area / ar)))
            if 0 < w <= size and 0 < h <= size:
                out.append(w * h / size**2)
                break
        else:
            out.append(1.0)
    return np.asarray(out)


def test_flip_and_grayscale_rates():
    ramp = np.broadcast_to(np.linspace(0, 255, 32)[None, :, None], (32, 32, 3)).astype(np.uint8)
    keys = jax.random.split(jax.random.PRNGKey(1), N_AUG)
    # full-image crop (scale 1 falls back to the whole square), no jitter: only the flip acts
    out = jax.jit(jax.vmap(lambda k: aug.augment_one(k, jnp.asarray(ramp), p_jitter=0.0, p_gray=0.0,
                                                     scale=(1.0, 1.0))))(keys)
    out = np.asarray(out)
    flipped = out[:, 16, 0, 0] > out[:, 16, -1, 0]
    # binomial: std of the rate sqrt(0.25 / N) = 0.011; 4 std
    assert abs(flipped.mean() - 0.5) < 4 * np.sqrt(0.25 / N_AUG)
    colour = np.zeros((32, 32, 3), np.uint8)
    colour[..., 0] = 200
    colour[..., 2] = 50
    out = np.asarray(jax.jit(jax.vmap(lambda k: aug.augment_one(k, jnp.asarray(colour), p_jitter=0.0)))(keys))
    raw = out * np.asarray(aug.CIFAR_STD) + np.asarray(aug.CIFAR_MEAN)
    gray = np.all(np.abs(raw[..., 0] - raw[..., 1]) < 1e-4, axis=(1, 2))
    assert abs(gray.mean() - 0.2) < 4 * np.sqrt(0.16 / N_AUG)


def test_views_shape_dtype_and_keys():
    imgs, _ = synthetic_images(8)
    views = jax.jit(aug.two_views)
    x1, x2 = views(jax.random.PRNGKey(0), jnp.asarray(imgs))
    assert x1.shape == (8, 32, 32, 3) and x1.dtype == jnp.float32
    assert not np.allclose(np.asarray(x1), np.asarray(x2))
    y1, _ = views(jax.random.PRNGKey(0), jnp.asarray(imgs))
    np.testing.assert_array_equal(np.asarray(x1), np.asarray(y1))
    jit_out = jax.jit(aug.color_jitter)(jax.random.PRNGKey(3), jnp.asarray(imgs[0], jnp.float32) / 255)
    assert jit_out.dtype == jnp.float32 and float(jit_out.min()) >= 0 and float(jit_out.max()) <= 1 + 1e-6


# ------------------------------------------------------------------ training


def _run_steps(cfg: Config, data: jax.Array, steps: int, seed: int):
    step = make_train_step(cfg, TOTAL)
    state = init_state(cfg, jax.random.PRNGKey(seed), TOTAL)
    out = []
    n = data.shape[0]
    for s in range(steps):
        idx = jnp.asarray(np.random.default_rng(seed * 1000 + s).permutation(n)[: cfg.batch_size].astype(np.int32))
        state, m = step(state, data, idx, jax.random.PRNGKey(seed * 1000 + s))
        out.append({k: float(v) for k, v in m.items()})
    return state, out


@pytest.fixture(scope="module")
def images64():
    return jnp.asarray(synthetic_images(64)[0])


@pytest.mark.parametrize("method", ["simsiam", "byol"])
def test_steps_run_in_float32(images64, method):
    cfg = Config(method=method, **TINY)
    state0 = init_state(cfg, jax.random.PRNGKey(0), TOTAL)
    p0 = jax.tree_util.tree_map(np.asarray, state0.params)
    state, ms = _run_steps(cfg, images64, 3, seed=0)
    assert all(np.isfinite(m["loss"]) and -1.0 <= m["loss"] <= 1.0 for m in ms)
    leaves = jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state, state.fhat))
    assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in leaves if hasattr(leaf, "dtype"))
    moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), state.params, p0)
    assert max(jax.tree_util.tree_leaves(moved)) > 0
    if method == "byol":
        # the EMA target moved towards the online net but not onto it
        t = jax.tree_util.tree_leaves(state.target_params)
        o = jax.tree_util.tree_leaves(state.params)
        assert any(np.max(np.abs(np.asarray(a) - np.asarray(b))) > 0 for a, b in zip(t, o))


def test_random_predictor_is_fixed_and_scaled(images64):
    # The toy's fixed random predictor: entries N(0, 1/d), never updated (no step, no decay).
    cfg = Config(predictor="random", **TINY)
    state0 = init_state(cfg, jax.random.PRNGKey(0), TOTAL)
    wp0 = np.asarray(state0.params["pred"]["wp"])
    d = wp0.shape[0]
    # d*d = 16384 entries: the sample std's relative standard error is 1/sqrt(2 d^2) = 0.0055, so
    # 5 % is 9 standard errors; the mean's standard error is 1/(d sqrt(d)) relative to 1/sqrt(d)
    assert abs(wp0.std() * np.sqrt(d) - 1) < 0.05 and abs(wp0.mean()) * np.sqrt(d) < 5 / d
    state, ms = _run_steps(cfg, images64, 2, seed=0)
    assert all(np.isfinite(m["loss"]) for m in ms)
    np.testing.assert_array_equal(np.asarray(state.params["pred"]["wp"]), wp0)
    moved = jax.tree_util.tree_map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                                   state.params["backbone"], state0.params["backbone"])
    assert max(jax.tree_util.tree_leaves(moved)) > 0


# The collapse signature. With a final BatchNorm in the projector (SimSiam's), every channel of z
# keeps unit batch variance, so z cannot shrink to one point; it collapses onto a line instead
# (z_i = a_i v). The measure is the top-eigenvalue share of E[u u^T], u = z/||z||: 1 on a line,
# and its residual r = 1 - top is the share of every other direction. References, not fitted:
# the line (r = 0) and the untrained network of the same seed on the same first batch (r0, the
# first step's value). "Collapsed" is then "more than 3/4 of the way from the start to a line",
# r < r0/4; the two runs of a seed start from the same network and see the same batches, so
# they can also be compared with each other. The loss (negative cosine) starts near 0 and its
# collapsed minimum is -1; collapse takes it past the midpoint -1/2.
# The per-channel std of u is no collapse measure under that BatchNorm: on an exact line every
# channel of u is +-v_c with |v_c| = 1/sqrt(d), so its batch std is sqrt(1 - m^2)/sqrt(d) with
# m the mean sign of a_i, anywhere from 0 to 1/sqrt(d) as for a spread representation.
# Observed over seeds 0-11 (60 steps, lr 2.0 x 16/256, means over the last 10 steps): the start
# r0 = 0.63-0.83; without stop-gradient r/r0 = 0.013-0.125 and loss -0.62 to -0.80; with it
# r/r0 = 0.34-0.94 and loss -0.06 to -0.49; the ratio r(with)/r(without) is 5.3-69.
# (The isotropic reference, 16 random directions in d = 128, has top share 0.10; the untrained
# network is already less spread, top share 0.17-0.37, which is why the start, not the sphere,
# is the reference.)
COLLAPSE_STEPS = 60


@pytest.mark.parametrize("seed", [0, 4])
def test_collapse_only_without_stop_gradient(images64, seed):
    runs = {}
    for sg in (True, False):
        cfg = Config(stop_grad=sg, **TINY)
        _, ms = _run_steps(cfg, images64, COLLAPSE_STEPS, seed=seed)
        runs[sg] = dict(r0=1.0 - ms[0]["z_top"],
                        r=1.0 - float(np.mean([m["z_top"] for m in ms[-10:]])),
                        loss=float(np.mean([m["loss"] for m in ms[-10:]])))
    nosg, sg = runs[False], runs[True]
    assert nosg["r0"] == sg["r0"] and nosg["r0"] > 0.5, runs  # same start, not yet one direction
    assert nosg["r"] < nosg["r0"] / 4 and nosg["loss"] < -0.5, runs
    assert sg["r"] > sg["r0"] / 4 and sg["loss"] > nosg["loss"], runs
    assert sg["r"] > 2 * nosg["r"], runs


# ------------------------------------------------------------------ determinism and resume

RUN = dict(TINY, epochs=12, knn_every=100, probe=False)


def _strip(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def test_same_seed_same_metrics_and_resume(tiny_data, tmp_path):
    cfg = Config(**RUN)
    a = train(cfg, tiny_data, tmp_path / "a")
    b = train(cfg, tiny_data, tmp_path / "b")
    assert _strip(a["epochs"]) == _strip(b["epochs"]) and a["steps"] == b["steps"]
    # interrupted after epoch 1, resumed: the same as the uninterrupted run
    train(cfg, tiny_data, tmp_path / "c", stop_after=5)
    saved = json.loads((tmp_path / "c" / "checkpoint.json").read_text())
    assert saved["epoch"] == 5
    c = train(cfg, tiny_data, tmp_path / "c", resume=True)
    assert _strip(c["epochs"]) == _strip(a["epochs"]) and c["steps"] == a["steps"]
    la = jax.tree_util.tree_leaves(a["state"].params)
    lc = jax.tree_util.tree_leaves(c["state"].params)
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lc))
    # a different seed gives different numbers; the files are complete JSON / CSV
    d = train(dataclasses.replace(cfg, seed=1), tiny_data, None, stop_after=1)
    assert d["steps"][0]["loss"] != a["steps"][0]["loss"]
    m = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert [r["epoch"] for r in m["epochs"]] == list(range(13))
    assert m["epochs"][0]["knn"] is not None and m["epochs"][-1]["knn"] is not None
    assert (tmp_path / "a" / "metrics.csv").read_text().count("\n") == 14
    assert not [p for p in os.listdir(tmp_path / "a") if ".tmp" in p]


def test_resume_refuses_other_config(tiny_data, tmp_path):
    cfg = Config(**RUN)
    train(cfg, tiny_data, tmp_path / "r", stop_after=1)
    with pytest.raises(ValueError, match="wd"):
        train(dataclasses.replace(cfg, wd=0.1), tiny_data, tmp_path / "r", resume=True)


def test_cli_end_to_end(tmp_path, capsys):
    """The CLI on a generated folder (in-process, sharing the compiled step): metrics and figure."""
    folder, _, _ = write_tiny_cifar(tmp_path / "data")
    out = tmp_path / "run"
    rc = cli_main(["--data-dir", str(folder), "--epochs", "12", "--width", "0.0625", "--batch-size", "16",
                   "--lr", "2.0", "--knn-k", "10", "--knn-every", "100", "--blocks", "1", "1", "1", "1",
                   "--no-progress", "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert 0 <= m["final"]["linear_probe"] <= 1 and 0 <= m["final"]["knn"] <= 1
    assert (out / "curves.png").stat().st_size > 1000
    assert "linear probe" in capsys.readouterr().out


def test_module_entry_point_help():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    r = subprocess.run([sys.executable, "-m", "dynamics.cifar", "--help"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and "--no-stop-grad" in r.stdout and "--predictor-lr-ratio" in r.stdout


def test_alignment_and_directpred_closed_forms():
    from dynamics.cifar.monitors import directpred_matrix, eigen_alignment

    r = np.random.default_rng(0)
    u, _ = np.linalg.qr(r.normal(size=(16, 16)))
    f = (u * np.linspace(0.1, 2.0, 16)) @ u.T
    commuting = (u * r.normal(size=16)) @ u.T
    a = eigen_alignment(commuting, f)
    assert a["diag_fraction"] > 0.999 and a["commutator"] < 1e-5
    b = eigen_alignment(r.normal(size=(16, 16)), f)
    assert b["diag_fraction"] < 0.5 and b["commutator"] > 0.1
    # an identity-dominated predictor is judged by its traceless part: not aligned here ...
    c = eigen_alignment(np.eye(16) + 0.01 * r.normal(size=(16, 16)), f)
    assert c["diag_fraction"] < 0.5 and c["commutator"] > 0.1
    # ... and aligned here, however large the identity
    e = eigen_alignment(5.0 * np.eye(16) + 0.01 * commuting, f)
    assert e["diag_fraction"] > 0.999 and e["commutator"] < 1e-4
    wp = np.asarray(directpred_matrix(jnp.asarray(f, jnp.float32), 0.1))
    expect = (u * (np.sqrt(np.linspace(0.1, 2.0, 16) / 2.0) + 0.1)) @ u.T
    np.testing.assert_allclose(wp, expect, atol=1e-5)


def test_cli_full_disk_removes_the_new_run(tmp_path, capsys, monkeypatch):
    """The disk fills up while the first checkpoint is written: one line, exit 1, and neither
    the run's files nor a temporary are left in the folder."""
    import errno

    import dynamics._io as io
    import dynamics.cifar.train as train_mod

    def full(path, data):
        with io.atomic_path(path) as tmp:
            tmp.write_bytes(data[:10])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(train_mod, "atomic_write_bytes", full)
    folder, _, _ = write_tiny_cifar(tmp_path / "data")
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:  # not reached: the CLI returns
        raise SystemExit(cli_main(["--data-dir", str(folder), "--epochs", "12", "--width", "0.0625",
                                   "--batch-size", "16", "--lr", "2.0", "--knn-k", "10", "--knn-every",
                                   "100", "--blocks", "1", "1", "1", "1", "--no-progress",
                                   "--out", str(out)]))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 1 and len(err) == 1, err
    assert "No space left on device" in err[0] and "removed this run's files" in err[0]
    assert not out.exists()  # the run created the folder: nothing of it is left


def test_cli_run_killed_before_its_first_epoch_does_not_block_a_plain_rerun(tmp_path, capsys):
    """What a run killed before its first checkpoint leaves (its config.json, the lock) is no
    earlier run: a plain rerun goes on (here to the data, which is missing) instead of asking
    for --overwrite."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / ".dynamics.lock").write_text("12345\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli_main(["--data-dir", str(tmp_path / "empty"), "--out", str(out),
                                   "--no-progress"]))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 1 and len(err) == 1, err
    assert "--overwrite" not in err[0] and "lacks data_batch_1" in err[0], err


def test_cli_resume_on_a_damaged_checkpoint_fails_at_once_naming_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.json").write_text(json.dumps({"epoch": 1, "config": {}}))
    (out / "checkpoint.msgpack").write_bytes(b"\x85\xa6params\x81")  # cut short
    (tmp_path / "empty").mkdir()  # no data: a check after the data is read would name it
    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli_main(["--data-dir", str(tmp_path / "empty"), "--out", str(out),
                                   "--resume", "--no-progress"]))
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 1 and len(err) == 1, err
    assert str(out / "checkpoint.msgpack") in err[0] and "damaged" in err[0], err


def test_cli_refuses_an_absurd_number_of_epochs(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["--data-dir", str(tmp_path), "--epochs", "1e9"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert e.value.code == 2 and len(err) == 1 and "10000" in err[0] and "1e9" in err[0], err
