"""Run the settings grid on CIFAR-10 resumably and tabulate the toy's prediction beside the outcome.

Each (setting, seed) run lives in ``OUT/runs/SETTING/seedN/``: the training files of
:func:`dynamics.cifar.train.train` (its checkpoint lets a stopped run continue) and, once the run
is finished and measured, ``result.json`` (measures, outcome, config and provenance). A run whose
``result.json`` is complete is skipped on a rerun. The toy column is computed from the run's
config alone (:func:`dynamics.predict.mapping.to_toy`), never from an outcome.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import platform
from pathlib import Path

from dynamics import _io
from dynamics._io import atomic_write_text
from dynamics.predict.mapping import cifar_outcome, to_toy, toy_prediction
from dynamics.predict.settings import DEFAULT_PLAN, SEEDS, Setting, plan

#: the keys a finished run's ``result.json`` holds
RESULT_KEYS = ("setting", "seed", "config", "measures", "outcome", "provenance")
#: the measures of a finished run, in table order
MEASURES = ("effective_rank", "std_ratio", "top_share", "knn", "knn_random_init")
#: the quick grid: two settings, one seed, a tiny network (a smoke test of the pipeline, not a result)
QUICK_SETTINGS = ("baseline", "no-stop-grad")
QUICK = {"width": 0.0625, "blocks": (1, 1, 1, 1), "batch_size": 16, "epochs": 2, "knn_k": 10,
         "subset": 512, "test_subset": 256, "probe": False}
QUICK_SEEDS = (0,)
#: the table's columns
COLUMNS = ("setting", "group", "toy", "toy_modes", "cifar", "effective_rank", "std_ratio", "top_share",
           "knn", "knn_random_init", "agree")


def run_config(s: Setting, quick: bool, seed: int, n_train: int, n_test: int, epochs: int | None = None,
               plan_name: str = DEFAULT_PLAN) -> dict:
    """The :class:`dynamics.cifar.config.Config` fields of one run of setting ``s`` in a plan."""
    cfg = dict(s.config_in(plan_name))
    if quick:
        cfg.update(QUICK)
        cfg["subset"] = min(cfg["subset"], n_train)
        cfg["test_subset"] = min(cfg["test_subset"], n_test)
    if epochs is not None:
        cfg["epochs"] = epochs
    cfg["seed"] = seed
    return cfg


def run_dir(out: Path, name: str, seed: int) -> Path:
    return Path(out) / "runs" / name / f"seed{seed}"


#: the lock file of a run folder: held (``flock``) while a runner trains that run; holds its pid
LOCK_NAME = ".run.lock"


class RunLock:
    """An exclusive lock on one run folder, so that two runners on the same ``--out`` never
    train the same run.

    ``flock`` on ``FOLDER/.run.lock``: the kernel drops it when its process ends, however it
    ends, so the lock of a killed runner is stale at once and the next runner takes it over; the
    file keeps the holder's pid for the message. :meth:`acquire` returns ``True`` if this
    process now holds the lock, ``False`` if another live process does (:attr:`holder` is its
    pid as written, ``"?"`` if unreadable). On systems without ``fcntl`` there is no lock.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self._fd: int | None = None
        self.holder = ""

    def acquire(self) -> bool:
        import os

        if _io.fcntl is None:  # pragma: no cover - non-POSIX: no lock
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            holder = _io.pid_lock(fd)
        except OSError:
            os.close(fd)
            raise
        if holder is not None:
            self.holder = holder
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        import os

        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (removing it would race)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def read_result(folder: Path) -> dict | None:
    """A finished run's ``result.json``, or ``None`` if there is none or it is incomplete."""
    try:
        r = json.loads((Path(folder) / "result.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(r, dict) or any(k not in r for k in RESULT_KEYS):
        return None
    if not isinstance(r["measures"], dict) or any(
            not isinstance(r["measures"].get(k), (int, float)) for k in MEASURES):
        return None
    return r


def _jsonable(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _provenance(data_dir, command: str) -> dict:
    import jax

    prov = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": command,
            "data_dir": str(data_dir), "python": platform.python_version(), "jax": jax.__version__,
            "platform": platform.platform(), "backend": jax.default_backend()}
    try:
        import flax
        import optax

        prov.update(flax=flax.__version__, optax=optax.__version__)
    except ImportError:  # pragma: no cover - training needs them anyway
        pass
    return prov


def embedding(cfg, state, images):
    """Projector outputs ``z`` ``[N, d]`` (eval-mode BatchNorm) of ``images`` for a trained state."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from dynamics.cifar.augment import eval_view
    from dynamics.cifar.model import TRAINED_OR_RANDOM, SiameseNet

    pred = cfg.predictor if cfg.predictor in TRAINED_OR_RANDOM else "none"
    model = SiameseNet(width=cfg.width, predictor=pred, groups=1, blocks=tuple(cfg.blocks))
    fn = jax.jit(lambda p, s, x: model.apply({"params": p, "batch_stats": s}, eval_view(x), False,
                                             method=SiameseNet.project))
    return np.asarray(fn(state.params, state.batch_stats, jnp.asarray(images)), np.float32)


def run_one(s: Setting, cfg_fields: dict, data, folder: Path, data_dir, command: str = "", log=print) -> dict:
    """Train (resuming from the folder's checkpoint), measure the final embedding, write
    ``result.json`` atomically; return its content."""
    from dynamics.analysis.collapse_metrics import embedding_collapse
    from dynamics.cifar.config import Config
    from dynamics.cifar.train import train

    cfg = Config(**cfg_fields)
    cfg.validate()
    folder.mkdir(parents=True, exist_ok=True)
    res = train(cfg, data, folder, resume=True, progress=False, log=log)
    test_x = data.test_x[: cfg.test_subset] if cfg.test_subset else data.test_x
    m = embedding_collapse(embedding(cfg, res["state"], test_x))
    knn0 = res["epochs"][0].get("knn")
    measures = {"effective_rank": m["effective_rank"], "std_ratio": m["std_ratio"], "top_share": m["top_share"],
                "knn": float(res["final"]["knn"]), "knn_random_init": float(knn0)}
    if not all(math.isfinite(v) for v in measures.values()):
        outcome = "collapsed"  # a diverged run (NaN embedding) has no representation left
    else:
        outcome = cifar_outcome(**measures)
    result = {"setting": s.name, "seed": cfg.seed, "config": _jsonable(cfg), "measures": measures,
              "outcome": outcome, "provenance": _provenance(data_dir, command)}
    atomic_write_text(folder / "result.json", json.dumps(result, indent=1, allow_nan=True))
    return result


def table_rows(settings, results: dict, quick: bool, n_train: int, n_test: int, epochs=None, seeds=SEEDS,
               plan_name: str = DEFAULT_PLAN, mapping: str | None = None) -> list[dict]:
    """One row per setting: the toy's call (from the config alone, under ``mapping``, default the
    plan's declared one) beside the runs' outcomes.

    ``results[(name, seed)]``: a finished run's ``result.json``. A setting agrees when every one
    of its seeds' outcomes equals the toy's; settings the CIFAR path cannot run, or not yet run,
    are listed and left out of the agreement rate.
    """
    rows = []
    for s in settings:
        toy = toy_prediction(to_toy(**run_config(s, quick, seeds[0], n_train, n_test, epochs, plan_name),
                                    mapping=mapping or plan(plan_name).mapping))
        row = {"setting": s.name, "group": s.group, "toy": toy["outcome"], "toy_modes": toy["modes"]}
        rs = [results[(s.name, k)] for k in seeds if (s.name, k) in results]
        if not s.runnable:
            row.update(cifar="not runnable", agree="")
        elif len(rs) < len(seeds):
            row.update(cifar="not run", agree="")
        else:
            outs = [r["outcome"] for r in rs]
            row["cifar"] = outs[0] if len(set(outs)) == 1 else "/".join(outs)
            for k in MEASURES:
                row[k] = sum(r["measures"][k] for r in rs) / len(rs)
            row["agree"] = "yes" if all(o == toy["outcome"] for o in outs) else "no"
        rows.append(row)
    return rows


def agreement(rows) -> tuple[int, int]:
    """(agreeing settings, settings with a CIFAR outcome)."""
    called = [r for r in rows if r["agree"] in ("yes", "no")]
    return sum(r["agree"] == "yes" for r in called), len(called)


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(rows) -> str:
    """A Markdown table of ``rows`` and the agreement rate."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in COLUMNS) + " |" for r in rows]
    a, n = agreement(rows)
    rate = f"{a}/{n} = {100 * a / n:.0f} %" if n else "no settings run"
    return "\n".join(lines) + f"\n\nagreement: {rate}\n"


def format_csv(rows) -> str:
    return "\n".join([",".join(COLUMNS)] + [",".join(_cell(r.get(c)) for c in COLUMNS) for r in rows]) + "\n"


# ------------------------------------------------------------------ the compact record of the runs

#: settings whose per-step monitors go into the record (the CIFAR counterparts of Tian et al.'s
#: Figs. 2 and 6 draw them); the other runs keep their per-epoch monitors only
STEP_SETTINGS = ("baseline", "no-stop-grad", "pred-lr-0.1", "pred-lr-10")
#: per-epoch monitors kept in the record
EPOCH_KEYS = ("epoch", "step", "loss", "z_std", "z_std_ref", "z_top", "knn")
#: per-step monitors kept for STEP_SETTINGS
STEP_KEYS = ("step", "loss", "z_std", "z_top")


def _round(v, digits: int = 5):
    return float(f"{v:.{digits}g}") if isinstance(v, float) and math.isfinite(v) else v


def compact_record(out: Path, settings, seeds, command: str, plan_name: str = DEFAULT_PLAN,
                   mapping: str | None = None) -> dict:
    """The finished runs of a grid in ``out`` as one small JSON-able dict (figures are drawn
    from it without the run folders): per setting its toy call and, per finished seed, the
    result's measures and outcome, the per-epoch monitors (and per-step ones for
    :data:`STEP_SETTINGS`). ``command``: the command that made the runs."""
    mapping = mapping or plan(plan_name).mapping
    rec = {"command": command, "grid": plan_name, "mapping": mapping, "seeds": list(seeds),
           "epoch_keys": list(EPOCH_KEYS), "step_keys": list(STEP_KEYS), "settings": {}}
    for s in settings:
        entry = {"group": s.group, "config": s.config_in(plan_name),
                 "toy": toy_prediction(s.toy(plan_name, mapping)), "runs": {}}
        for seed in seeds:
            folder = run_dir(out, s.name, seed)
            r = read_result(folder)
            if r is None:
                continue
            try:
                m = json.loads((folder / "metrics.json").read_text())
            except (OSError, ValueError):
                continue
            run = {"measures": {k: _round(v) for k, v in r["measures"].items()}, "outcome": r["outcome"],
                   "epochs": [[_round(e.get(k)) for k in EPOCH_KEYS] for e in m["epochs"]]}
            if s.name in STEP_SETTINGS:
                run["steps"] = [[_round(e.get(k), 4) for k in STEP_KEYS] for e in m["steps"]]
            entry["runs"][str(seed)] = run
        rec["settings"][s.name] = entry
    return rec
