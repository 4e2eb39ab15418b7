"""SimSiam / BYOL training on CIFAR-10: config, loss, one jitted step, epoch loop, checkpoints.

The switches mirror the toy models (docs/theory.md sections 1-4):

- ``stop_grad=False``: SimSiam's target branch is differentiated too (the toy "without
  stop-gradient" flow; expected to collapse at once).
- ``predictor``: ``"mlp"`` (SimSiam's bottleneck), ``"linear"`` (the toy ``Wp``), ``"none"``,
  ``"directpred"`` (``Wp`` set from the running estimate of ``F = E[z z^T]``, no gradient).
- ``predictor_lr_ratio`` = ``1/eps``: the predictor's learning rate is the encoder's times this.
  Weight decay ``wd`` is applied inside each group's step, ``phi -= lr * ratio * (g + wd * phi)``,
  i.e. docs/theory.md's "weight decay in the loss" convention ``eta_phi = eta``.
- ``fixed_predictor_lr``: the predictor's learning rate is not decayed by the cosine schedule.
- ``ema``: BYOL's base target momentum ``m0``; ``m(k) = 1 - (1 - m0)(cos(pi k / K) + 1) / 2``.

Randomness: one root key from ``seed``; the initial parameters use ``fold_in(root, 0)``, epoch
``e`` (1-based) uses ``fold_in(root, e)`` for its permutation and per-step augmentation keys.
So a run resumed from the checkpoint after epoch ``e`` repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import flax
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dynamics._io import atomic_write_bytes, atomic_write_text
from dynamics.cifar.augment import eval_view, two_views
from dynamics.cifar.config import METHODS, PREDICTORS, Config  # noqa: F401  (re-exported)
from dynamics.cifar.model import TRAINED_OR_RANDOM, SiameseNet, widths
from dynamics.cifar.monitors import (
    directpred_matrix,
    eigen_alignment,
    knn_accuracy,
    linear_probe,
    neg_cosine,
    normalized_std,
    top_direction_share,
)

F32 = jnp.float32


@flax.struct.dataclass
class TrainState:
    """Everything a step reads and writes (a pytree; checkpointed whole).

    ``fhat``: ``[d, d]`` running estimate of ``F = E[z z^T]`` over the predictor's inputs
    (DirectPred's ``rho`` EMA; also the ``F`` of the alignment monitor).
    """

    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any
    target_params: Any
    target_batch_stats: Any
    fhat: jax.Array


def cosine_lr(step, base: float, total: int):
    """Cosine decay from ``base`` to 0 over ``total`` steps (pure function of the step)."""
    t = jnp.minimum(jnp.asarray(step, F32) / max(total, 1), 1.0)
    return (base * 0.5 * (1.0 + jnp.cos(jnp.pi * t))).astype(F32)


def ema_momentum(step, base: float, total: int):
    """BYOL's target momentum ``1 - (1 - base)(cos(pi k / K) + 1) / 2`` (pure function of the step)."""
    t = jnp.minimum(jnp.asarray(step, F32) / max(total, 1), 1.0)
    return (1.0 - (1.0 - base) * (jnp.cos(jnp.pi * t) + 1.0) / 2.0).astype(F32)


def make_model(cfg: Config, groups: int = 2) -> SiameseNet:
    pred = cfg.predictor if cfg.predictor in TRAINED_OR_RANDOM else "none"
    return SiameseNet(width=cfg.width, predictor=pred, groups=groups, blocks=tuple(cfg.blocks),
                      dtype=jnp.dtype(cfg.compute_dtype))


def _labels(params):
    return {k: jax.tree_util.tree_map(lambda _: "predictor" if k == "pred" else "encoder", v)
            for k, v in params.items()}


def make_optimizer(cfg: Config, total_steps: int) -> optax.GradientTransformation:
    """SGD with momentum and coupled weight decay; the predictor group scaled by ``predictor_lr_ratio``."""
    base = cfg.lr * cfg.batch_size / 256.0
    enc = partial(cosine_lr, base=base, total=total_steps)
    r = cfg.predictor_lr_ratio
    if cfg.fixed_predictor_lr:
        pred = lambda step: jnp.asarray(base * r, F32)  # noqa: E731
    else:
        pred = lambda step: enc(step) * r  # noqa: E731

    def group(schedule):
        return optax.chain(optax.add_decayed_weights(cfg.wd), optax.sgd(schedule, momentum=cfg.momentum))

    # a fixed random predictor is never updated (no step, no decay)
    fixed = optax.set_to_zero() if cfg.predictor == "random" else group(pred)
    return optax.multi_transform({"encoder": group(enc), "predictor": fixed}, _labels)


def init_state(cfg: Config, key: jax.Array, total_steps: int) -> TrainState:
    """Initial parameters (``fold_in(key, 0)``), optimizer state, BYOL target (= online copy)."""
    model = make_model(cfg, groups=1)
    x = jnp.zeros((2, 32, 32, 3), F32)
    variables = model.init(jax.random.fold_in(key, 0), x, True)
    params = variables["params"]
    stats = variables["batch_stats"]
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, F32), params)
    tx = make_optimizer(cfg, total_steps)
    d = widths(cfg.width)["proj"]
    byol = cfg.method == "byol"
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=stats,
        opt_state=tx.init(params),
        target_params=jax.tree_util.tree_map(jnp.copy, params) if byol else None,
        target_batch_stats=jax.tree_util.tree_map(jnp.copy, stats) if byol else None,
        fhat=jnp.zeros((d, d), F32),
    )


def siamese_loss(p1, p2, t1, t2) -> jax.Array:
    """Symmetric negative cosine ``(D(p1, t2) + D(p2, t1)) / 2``; targets are used as given."""
    return 0.5 * (neg_cosine(p1, t2) + neg_cosine(p2, t1))


def graph_config(cfg: Config) -> Config:
    """``cfg`` with the fields that do not change the compiled step reset (a cache key)."""
    d = Config()
    return dataclasses.replace(cfg, epochs=d.epochs, subset=None, test_subset=None, knn_k=d.knn_k, knn_t=d.knn_t,
                               knn_every=d.knn_every, probe=d.probe, seed=d.seed)


def make_train_step(cfg: Config, total_steps: int, augment: bool = True) -> Callable:
    """Cached by the fields that shape the compiled step; see :func:`_make_train_step`."""
    return _make_train_step(graph_config(cfg), total_steps, augment)


@functools.lru_cache(maxsize=16)
def _make_train_step(cfg: Config, total_steps: int, augment: bool = True) -> Callable:
    """Build ``step(state, data, idx, key) -> (state, metrics)``, jitted, state donated.

    With ``augment=False`` the function is ``step(state, x) -> (state, metrics)`` on ready views
    ``x`` ``[2B, 32, 32, 3]`` float32 (view 1 stacked on view 2), as the benchmark uses.

    Args of the returned function:
        state: :class:`TrainState`.
        data: ``[N, 32, 32, 3]`` uint8, the training images on device.
        idx: ``[B]`` int32 indices of this batch.
        key: PRNG key for the augmentation of this step.

    Metrics (scalars, from view 1's projections ``z``): ``loss``; ``z_std``, the per-channel std of
    ``z/||z||`` (channel mean); ``z_top``, the top-eigenvalue share of ``E[u u^T]``, ``u = z/||z||``.
    """
    model = make_model(cfg, groups=2)
    tx = make_optimizer(cfg, total_steps)
    directpred = cfg.predictor == "directpred"
    byol = cfg.method == "byol"

    def loss_fn(params, state, x):
        (z, p), new_vars = model.apply({"params": params, "batch_stats": state.batch_stats}, x, True,
                                       mutable=["batch_stats"])
        if directpred:
            wp = jax.lax.stop_gradient(directpred_matrix(state.fhat, cfg.dp_eps))
            p = z @ wp.T
        z1, z2 = jnp.split(z, 2)
        p1, p2 = jnp.split(p, 2)
        if byol:
            tz, new_tvars = model.apply({"params": state.target_params, "batch_stats": state.target_batch_stats},
                                        x, True, method=SiameseNet.project, mutable=["batch_stats"])
            t1, t2 = jnp.split(jax.lax.stop_gradient(tz), 2)
            tstats = new_tvars["batch_stats"]
        else:
            t1, t2 = (jax.lax.stop_gradient(z1), jax.lax.stop_gradient(z2)) if cfg.stop_grad else (z1, z2)
            tstats = None
        loss = siamese_loss(p1, p2, t1, t2)
        return loss, (z, new_vars["batch_stats"], tstats)

    def update(state: TrainState, x):
        (loss, (z, stats, tstats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state, x)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        zs = jax.lax.stop_gradient(z).astype(F32)
        fhat = cfg.dp_rho * state.fhat + (1.0 - cfg.dp_rho) * (zs.T @ zs) / zs.shape[0]
        if byol:
            m = ema_momentum(state.step, cfg.ema, total_steps)
            target = jax.tree_util.tree_map(lambda t, o: m * t + (1.0 - m) * o, state.target_params, params)
        else:
            target = None
        new = TrainState(step=state.step + 1, params=params, batch_stats=stats, opt_state=opt_state,
                         target_params=target, target_batch_stats=tstats, fhat=fhat.astype(F32))
        z1 = z[: z.shape[0] // 2]
        metrics = {"loss": loss, "z_std": normalized_std(z1), "z_top": top_direction_share(z1)}
        return new, metrics

    if not augment:
        return jax.jit(update, donate_argnums=(0,))

    def step(state: TrainState, data, idx, key):
        x1, x2 = two_views(key, data[idx])
        return update(state, jnp.concatenate([x1, x2], axis=0))

    return jax.jit(step, donate_argnums=(0,))


def make_feature_fn(cfg: Config) -> Callable:
    """``features(params, batch_stats, images_uint8 [n, 32, 32, 3]) -> [n, feat]`` (eval-mode BN)."""
    return _make_feature_fn(cfg.width, cfg.predictor, tuple(cfg.blocks))


@functools.lru_cache(maxsize=16)
def _make_feature_fn(width: float, predictor: str, blocks: tuple[int, ...]) -> Callable:
    pred = predictor if predictor in TRAINED_OR_RANDOM else "none"
    model = SiameseNet(width=width, predictor=pred, groups=1, blocks=blocks)

    @jax.jit
    def feats(params, stats, images):
        return model.apply({"params": params, "batch_stats": stats}, eval_view(images), method=SiameseNet.features)

    return feats


def extract_features(feature_fn, state: TrainState, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """Backbone features of ``images`` (``[N, 32, 32, 3]`` uint8), fixed-size batches (one compile)."""
    n = len(images)
    batch = min(batch, n)
    out = []
    for s in range(0, n, batch):
        chunk = images[s : s + batch]
        m = len(chunk)
        if m < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - m,) + chunk.shape[1:], np.uint8)])
        out.append(np.asarray(feature_fn(state.params, state.batch_stats, jnp.asarray(chunk)))[:m])
    return np.concatenate(out).astype(np.float32)


# ---------------------------------------------------------------- files (atomic writes, dynamics._io)

CSV_FIELDS = ("epoch", "step", "loss", "z_std", "z_std_ref", "z_top", "knn", "lr", "diag_fraction", "commutator", "seconds")


def write_metrics(out_dir: Path, history: list[dict], steps: list[dict], final: dict | None) -> None:
    """``metrics.json`` (epochs, per-step loss/std, final numbers) and ``metrics.csv`` (epochs)."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "metrics.json",
                      json.dumps({"epochs": history, "steps": steps, "final": final}, indent=1))
    lines = [",".join(CSV_FIELDS)]
    for row in history:
        lines.append(",".join("" if row.get(k) is None else f"{row[k]:.6g}" if isinstance(row[k], float)
                              else str(row[k]) for k in CSV_FIELDS))
    atomic_write_text(out_dir / "metrics.csv", "\n".join(lines) + "\n")


def save_checkpoint(out_dir: Path, state: TrainState, cfg: Config, epoch: int) -> None:
    """``checkpoint.msgpack`` (the whole state) and ``checkpoint.json`` (epoch, config), atomically."""
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / "checkpoint.msgpack", flax.serialization.to_bytes(jax.device_get(state)))
    atomic_write_text(out_dir / "checkpoint.json", json.dumps({"epoch": epoch, "config": dataclasses.asdict(cfg)}))


def check_checkpoint(out_dir: Path) -> dict:
    """Read ``out_dir``'s checkpoint without a model: ``checkpoint.json`` must be its JSON
    (``epoch``, ``config``) and ``checkpoint.msgpack`` a complete msgpack state. Returns the
    JSON; ``ValueError`` naming the file that is missing or damaged (so that ``--resume``
    fails before the data is read)."""
    out_dir = Path(out_dir)
    meta_path, state_path = out_dir / "checkpoint.json", out_dir / "checkpoint.msgpack"
    try:
        meta = json.loads(meta_path.read_text())
        if not (isinstance(meta, dict) and isinstance(meta.get("epoch"), int)
                and isinstance(meta.get("config"), dict)):
            raise ValueError("not a checkpoint description (epoch, config)")
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot resume: {meta_path} is missing or damaged "
                         f"({str(e).splitlines()[0]})") from None
    try:
        restored = flax.serialization.msgpack_restore(state_path.read_bytes())
        if not isinstance(restored, dict) or not restored:
            raise ValueError("not a saved training state")
    except Exception as e:  # msgpack raises its own exception types for damaged data
        raise ValueError(f"cannot resume: {state_path} is missing or damaged "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    return meta


def load_checkpoint(out_dir: Path, template: TrainState, cfg: Config) -> tuple[TrainState, int]:
    """Restore the state saved in ``out_dir``; the saved config must equal ``cfg``
    (``ValueError`` naming the file when it is damaged or does not fit)."""
    out_dir = Path(out_dir)
    meta = check_checkpoint(out_dir)
    saved = meta["config"]
    now = json.loads(json.dumps(dataclasses.asdict(cfg)))
    diff = [k for k in now if saved.get(k) != now[k]]
    if diff:
        k = diff[0]
        raise ValueError(f"checkpoint in {out_dir} was made with {k}={saved.get(k)!r}, not {now[k]!r}")
    try:
        state = flax.serialization.from_bytes(template, (out_dir / "checkpoint.msgpack").read_bytes())
    except Exception as e:  # a state of another shape
        raise ValueError(f"cannot resume: {out_dir / 'checkpoint.msgpack'} does not fit this run "
                         f"({type(e).__name__})") from None
    return jax.tree_util.tree_map(jnp.asarray, state), int(meta["epoch"])


# ---------------------------------------------------------------- run

def train(cfg: Config, data, out_dir: str | Path | None = None, resume: bool = False, progress: bool = False,
          log: Callable[[str], None] | None = None, stop_after: int | None = None) -> dict:
    """Train, monitor each epoch, probe at the end.

    Args:
        cfg: the run's :class:`Config` (validated here).
        data: a :class:`dynamics.cifar.data.Cifar10`.
        out_dir: where metrics, checkpoint and figure go (``None``: nothing written).
        resume: continue from ``out_dir``'s checkpoint if there is one.
        progress: show a tqdm bar per epoch.
        stop_after: return after this epoch (checkpoint written; no probe), to resume later.

    Returns:
        ``{"epochs": [...], "steps": [...], "final": {...}, "state": TrainState}``.
    """
    cfg.validate()
    log = log or (lambda s: None)
    train_x = data.train_x[: cfg.subset] if cfg.subset else data.train_x
    train_y = data.train_y[: cfg.subset] if cfg.subset else data.train_y
    test_x = data.test_x[: cfg.test_subset] if cfg.test_subset else data.test_x
    test_y = data.test_y[: cfg.test_subset] if cfg.test_subset else data.test_y
    n = len(train_x)
    if n < cfg.batch_size:
        raise ValueError(f"only {n} training images, fewer than batch_size {cfg.batch_size}")
    spe = n // cfg.batch_size
    total = spe * cfg.epochs
    root = jax.random.PRNGKey(cfg.seed)
    state = init_state(cfg, root, total)
    out = Path(out_dir) if out_dir is not None else None
    history: list[dict] = []
    steps: list[dict] = []
    start_epoch = 0
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / "checkpoint.msgpack").is_file():
            state, start_epoch = load_checkpoint(out, state, cfg)
            prev = json.loads((out / "metrics.json").read_text())
            history = [r for r in prev["epochs"] if r["epoch"] <= start_epoch]
            steps = [r for r in prev["steps"] if r["step"] <= start_epoch * spe]
            log(f"resumed from epoch {start_epoch} in {out}")
        atomic_write_text(out / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1))

    step_fn = make_train_step(cfg, total)
    feat_fn = make_feature_fn(cfg)
    data_dev = jnp.asarray(train_x, jnp.uint8)
    d = widths(cfg.width)["proj"]
    base_lr = cfg.lr * cfg.batch_size / 256.0

    def monitor(epoch: int, state: TrainState, row: dict) -> dict:
        if epoch % cfg.knn_every == 0 or epoch == cfg.epochs or epoch == 0:
            bank = extract_features(feat_fn, state, train_x)
            query = extract_features(feat_fn, state, test_x)
            row["knn"] = knn_accuracy(bank, train_y, query, test_y, k=cfg.knn_k, temperature=cfg.knn_t)
        if cfg.predictor in ("linear", "random", "directpred") and epoch > 0:
            wp = (state.params["pred"]["wp"] if cfg.predictor in ("linear", "random")
                  else directpred_matrix(state.fhat, cfg.dp_eps))
            row.update(eigen_alignment(wp, state.fhat))
        return row

    if start_epoch == 0:
        history.append(monitor(0, state, {"epoch": 0, "step": 0, "z_std_ref": 1.0 / math.sqrt(d)}))
        log(_fmt(history[-1]))
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()
        ekey = jax.random.fold_in(root, epoch)
        perm = jax.random.permutation(jax.random.fold_in(ekey, 0), n).astype(jnp.int32)
        it = range(spe)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(it, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, dynamic_ncols=True)
            it = bar
        losses, stds, tops = [], [], []
        for s in it:
            idx = jax.lax.dynamic_slice_in_dim(perm, s * cfg.batch_size, cfg.batch_size)
            state, m = step_fn(state, data_dev, idx, jax.random.fold_in(ekey, s + 1))
            loss, zstd, ztop = float(m["loss"]), float(m["z_std"]), float(m["z_top"])
            losses.append(loss)
            stds.append(zstd)
            tops.append(ztop)
            steps.append({"step": (epoch - 1) * spe + s + 1, "loss": loss, "z_std": zstd, "z_top": ztop})
            if bar is not None:
                bar.set_postfix(loss=f"{loss:.3f}", std=f"{zstd:.4f}")
        if bar is not None:
            bar.close()
        row = {"epoch": epoch, "step": epoch * spe, "loss": float(np.mean(losses)), "z_std": float(np.mean(stds)),
               "z_top": float(np.mean(tops)),
               "z_std_ref": 1.0 / math.sqrt(d), "lr": float(cosine_lr(epoch * spe, base_lr, total))}
        row = monitor(epoch, state, row)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        log(_fmt(row))
        if out is not None:
            save_checkpoint(out, state, cfg, epoch)
            write_metrics(out, history, steps, None)
        if stop_after is not None and epoch >= stop_after and epoch < cfg.epochs:
            return {"epochs": history, "steps": steps, "final": None, "state": state}

    final: dict = {"knn": history[-1].get("knn")}
    if cfg.probe:
        bank = extract_features(feat_fn, state, train_x)
        query = extract_features(feat_fn, state, test_x)
        final["linear_probe"] = linear_probe(bank, train_y, query, test_y, seed=cfg.seed)
        log(f"linear probe: {final['linear_probe']:.4f}")
    if out is not None:
        write_metrics(out, history, steps, final)
    return {"epochs": history, "steps": steps, "final": final, "state": state}


def _fmt(row: dict) -> str:
    parts = [f"epoch {row['epoch']}"]
    for k in ("loss", "z_std", "z_top", "knn", "diag_fraction", "seconds"):
        if row.get(k) is not None:
            parts.append(f"{k} {row[k]:.4f}" if k != "seconds" else f"{row[k]:.1f}s")
    return "  ".join(parts)
