"""Experiments over seeds (mnist_cnn.experiments): what a run records, that a seed
repeats, the committed record's checks, and the command on a small subset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mnist_cnn import experiments
from mnist_cnn.experiments import RECIPES
from mnist_cnn.scratch.train import build_model, evaluate, fit


@pytest.fixture(scope="module")
def small():
    (x, y), (xv, yv) = experiments.overfitting_data()
    return x[:60], y[:60], xv[:40], yv[:40]


def test_on_epoch_end_appends_what_it_returns_to_the_history(small):
    x, y, xv, yv = small
    seen = []

    def after(epoch, net):
        seen.append(epoch)
        return {"clean": evaluate(net, x, y)["accuracy"]}

    net = build_model(seed=1)
    history = fit(net, x, y, epochs=2, batch_size=20, seed=1, progress=False, on_epoch_end=after)
    assert seen == [0, 1] and len(history["clean"]) == 2
    # inference mode on the clean images, after the epoch's last step
    assert history["clean"][-1] == evaluate(net, x, y)["accuracy"]


def test_a_run_records_three_accuracies_per_epoch_and_repeats_with_its_seed(small):
    recipe = RECIPES["dropout 0.3 + shifts"]
    a = experiments.overfitting_run(recipe, 3, *small, epochs=2)
    b = experiments.overfitting_run(recipe, 3, *small, epochs=2)
    c = experiments.overfitting_run(recipe, 4, *small, epochs=2)
    for key in experiments.ACCURACIES:
        assert len(a[key]) == 2 and all(0 <= v <= 1 for v in a[key])
        assert a[key] == b[key]
    assert a["weight_norm"] == b["weight_norm"] != c["weight_norm"]
    # with dropout and shifts the running mean is not the accuracy on the clean images
    assert a["running"] != a["train"]


def _record(seeds=(0, 1, 2)):
    run = {key: [0.5] * experiments.EPOCHS for key in experiments.ACCURACIES}
    return {"experiment": "overfitting", "settings": json.loads(json.dumps(experiments.SETTINGS)),
            "seeds": list(seeds),
            "runs": {label: [{"seed": s, **run, "weight_norm": 1.0} for s in seeds]
                     for label in RECIPES}}


def test_load_refuses_what_it_cannot_trust(tmp_path):
    path = tmp_path / "overfitting.json"
    with pytest.raises(FileNotFoundError, match="python -m mnist_cnn experiment overfitting"):
        experiments.load(path=path)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        experiments.load(path=path)
    other = _record()
    other["settings"]["epochs"] = 3
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other settings"):
        experiments.load(path=path)
    path.write_text(json.dumps(_record(seeds=(0, 1))))
    with pytest.raises(ValueError, match="at least 3"):
        experiments.load(path=path)
    path.write_text(json.dumps(_record()))
    record = experiments.load(path=path)
    assert experiments.final(record, "dropout 0.3", "gap").tolist() == [0.0, 0.0, 0.0]


def test_the_committed_record_has_every_recipe_from_every_seed():
    record = experiments.load()
    assert record["command"].startswith("python -m mnist_cnn experiment overfitting")
    for label in RECIPES:
        assert [r["seed"] for r in record["runs"][label]] == record["seeds"]
        gap = experiments.final(record, label, "gap")
        assert np.allclose(gap, experiments.final(record, label, "train")
                           - experiments.final(record, label, "val"))
    mean, sd = experiments.mean_sd([1.0, 2.0, 3.0])
    assert (mean, sd) == (2.0, 1.0)                      # sample sd, n - 1


def test_compare_calls_a_difference_inside_the_spread_noise():
    diff, se, verdict = experiments.compare([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert diff == 1.0 and np.isclose(se, np.sqrt(2 / 3)) and verdict == "within seed noise"
    assert experiments.compare([5.0, 5.1, 4.9], [1.0, 1.1, 0.9])[2] == "higher"
    assert experiments.compare([1.0, 1.1, 0.9], [5.0, 5.1, 4.9])[2] == "lower"


def test_the_command_writes_a_record_that_loads(tmp_path, monkeypatch, capsys, small):
    from mnist_cnn.cli import main

    x, y, xv, yv = small
    monkeypatch.setattr(experiments, "overfitting_data", lambda cache_dir=None: ((x, y), (xv, yv)))
    real_run = experiments.overfitting_run
    # a run is tested above; here each one is 1 real epoch, padded to the stated 12
    monkeypatch.setattr(experiments, "overfitting_run", lambda recipe, seed, *data: {
        key: value * experiments.EPOCHS if isinstance(value, list) else value
        for key, value in real_run(recipe, seed, *data, epochs=1).items()})
    out = tmp_path / "o.json"
    assert main(["experiment", "overfitting", "--seeds", "0", "1"]) == 1
    assert "at least 3" in capsys.readouterr().err
    assert main(["experiment", "overfitting", "--seeds", "5", "6", "7", "--out", str(out)]) == 0
    record = experiments.load(path=out)
    assert record["seeds"] == [5, 6, 7]
    assert record["command"] == ("python -m mnist_cnn experiment overfitting --seeds 5 6 7 "
                                 f"--out {out}")
    printed = capsys.readouterr().out
    assert f"-> {out}" in printed and all(label in printed for label in RECIPES)
