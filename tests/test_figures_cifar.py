"""The CIFAR figures (toy_vs_cifar, cifar_tian2, cifar_tian6) drawn from tiny synthetic records:
no training, no real data. The record's layout is the one dynamics.predict.grid.compact_record
writes; the expected values are the synthetic inputs themselves."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from dynamics.figures import cifar_record, cifar_tian2, cifar_tian6, toy_vs_cifar  # noqa: E402
from dynamics.predict import grid  # noqa: E402
from dynamics.predict.settings import setting  # noqa: E402

EK, SK = list(grid.EPOCH_KEYS), list(grid.STEP_KEYS)


def _run(top_end, knn_end, outcome, spe=4, epochs=2, steps=True):
    ep = [[0, 0, None, None, 0.0625, None, 0.25]]
    for e in range(1, epochs + 1):
        ep.append([e, e * spe, -0.5 * e, 0.05, 0.0625, top_end * e / epochs, 0.25 + (knn_end - 0.25) * e / epochs])
    run = {"measures": {"effective_rank": 30.0 if outcome == "healthy" else 1.2, "std_ratio": 0.8,
                        "top_share": top_end, "knn": knn_end, "knn_random_init": 0.25},
           "outcome": outcome, "epochs": ep}
    if steps:
        run["steps"] = [[s, -s / (spe * epochs), 0.05, top_end * s / (spe * epochs)]
                        for s in range(1, spe * epochs + 1)]
    return run


def _record():
    rec = {"command": "python -m dynamics.predict --data-dir PATH --out OUT", "seeds": [0, 1],
           "epoch_keys": EK, "step_keys": SK, "settings": {}}
    spec = {"baseline": ("healthy", 0.5, 0.30), "no-stop-grad": ("collapsed", 0.99, 0.22),
            "pred-lr-0.1": ("collapsed", 0.95, 0.20), "pred-lr-10": ("healthy", 0.3, 0.33)}
    for name, (out, top, knn) in spec.items():
        s = setting(name)
        rec["settings"][name] = {"group": s.group, "config": s.config,
                                 "toy": {"outcome": "collapsed" if name == "no-stop-grad" else "healthy",
                                         "modes": 0 if name == "no-stop-grad" else 41},
                                 "runs": {str(k): _run(top, knn, out) for k in (0, 1)}}
    # one setting with a single seed finished: not counted
    rec["settings"]["wd-0"] = {"group": "weight decay", "config": {}, "toy": {"outcome": "healthy", "modes": 256},
                               "runs": {"0": _run(0.4, 0.3, "healthy", steps=False)}}
    return rec


def test_toy_vs_cifar_counts_agreement_and_marks_each_row():
    d = toy_vs_cifar.data(_record())
    agree = {r["name"]: r["agree"] for r in d["rows"]}
    # baseline, no-stop-grad, pred-lr-10 agree; pred-lr-0.1 (toy healthy, runs collapsed) does not;
    # wd-0 has one seed of two: not called
    assert agree == {"baseline": "yes", "no-stop-grad": "yes", "pred-lr-0.1": "no", "pred-lr-10": "yes", "wd-0": ""}
    assert (d["n_agree"], d["n_called"]) == (3, 4) and d["params"]["agreement"] == "3/4"
    fig = toy_vs_cifar.draw(d)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("pred-lr-0.1" in t and "DISAGREE" in t for t in labels)
    assert any("wd-0" in t and "not run" in t for t in labels)
    assert "3/4 = 75 %" in fig._suptitle.get_text()
    # each finished seed is one dot per measure panel (9 runs), plus one toy diamond per row
    assert len(fig.axes[1].lines) - 1 == 9 and len(fig.axes[0].lines) - 2 == 9 + 5
    plt.close(fig)


def test_cifar_tian2_curves_and_reference_lines():
    rec = _record()
    d = cifar_tian2.data(rec)
    assert set(d["runs"]) == {("baseline", 0), ("baseline", 1), ("no-stop-grad", 0), ("no-stop-grad", 1)}
    r = d["runs"][("baseline", 0)]
    # steps over steps per epoch: 8 steps of 4 per epoch end at epoch 2
    np.testing.assert_allclose(r["x"], np.arange(1, 9) / 4)
    assert r["knn0"] == 0.25 and r["z_std_ref"] == 0.0625
    fig = cifar_tian2.draw(d)
    std_ax, knn_ax = fig.axes[1], fig.axes[2]
    assert any(np.allclose(line.get_ydata(), 0.0625) and "1/sqrt(d)" in line.get_label() for line in std_ax.lines)
    assert any(np.allclose(line.get_ydata(), 25.0) and "random-init" in line.get_label() for line in knn_ax.lines)
    plt.close(fig)


def test_cifar_tian6_against_the_ratio():
    d = cifar_tian6.data(_record())
    by = {(p["ratio"], p["seed"]): p for p in d["points"]}
    assert set(by) == {(r, s) for r in (0.1, 1.0, 10.0) for s in (0, 1)}
    assert by[(10.0, 0)]["z_top"] == pytest.approx(0.3) and by[(0.1, 1)]["knn"] == pytest.approx(0.20)
    assert by[(1.0, 0)]["std_ratio"] == pytest.approx(0.05 / 0.0625)
    fig = cifar_tian6.draw(d)
    mean_line = [line for line in fig.axes[3].lines if line.get_label() == "seed mean"][0]
    np.testing.assert_allclose(mean_line.get_ydata(), [0.95, 0.5, 0.3])
    plt.close(fig)


def test_missing_record_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="no CIFAR run record at .*python -m dynamics.predict"):
        cifar_record.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text(json.dumps([1]))
    with pytest.raises(ValueError, match="not a record"):
        cifar_record.load(tmp_path / "bad.json")


def test_compact_record_holds_what_the_runs_wrote(tmp_path):
    # two fake finished runs of one setting, written as the runner writes them
    s = setting("baseline")
    for seed in (0, 1):
        folder = grid.run_dir(tmp_path, "baseline", seed)
        folder.mkdir(parents=True)
        meas = {"effective_rank": 20.0 + seed, "std_ratio": 0.7, "top_share": 0.5, "knn": 0.3, "knn_random_init": 0.25}
        (folder / "result.json").write_text(json.dumps({"setting": "baseline", "seed": seed, "config": {},
                                                        "measures": meas, "outcome": "healthy", "provenance": {}}))
        epochs = [{"epoch": 0, "step": 0, "z_std_ref": 0.0625, "knn": 0.25},
                  {"epoch": 1, "step": 2, "loss": -0.123456789, "z_std": 0.05, "z_std_ref": 0.0625, "z_top": 0.5,
                   "knn": 0.3, "seconds": 9.0}]
        steps = [{"step": 1, "loss": -0.1, "z_std": 0.05, "z_top": 0.4}, {"step": 2, "loss": -0.2, "z_std": 0.05,
                                                                           "z_top": 0.5}]
        (folder / "metrics.json").write_text(json.dumps({"epochs": epochs, "steps": steps, "final": {}}))
    rec = json.loads(json.dumps(grid.compact_record(tmp_path, [s, setting("wd-0")], (0, 1), "CMD")))
    assert rec["command"] == "CMD" and rec["settings"]["wd-0"]["runs"] == {}
    run = rec["settings"]["baseline"]["runs"]["1"]
    assert run["measures"]["effective_rank"] == 21.0 and run["outcome"] == "healthy"
    assert run["epochs"][1] == [1, 2, -0.12346, 0.05, 0.0625, 0.5, 0.3]  # 5 significant digits
    assert run["steps"][1] == [2, -0.2, 0.05, 0.5]
    assert cifar_record.epochs(rec, "baseline", 1)["loss"][0] != cifar_record.epochs(rec, "baseline", 1)["loss"][0]  # None -> NaN
