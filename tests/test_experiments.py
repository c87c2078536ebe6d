"""Experiments over seeds (mnist_cnn.experiments): what a run records, that a seed
repeats, the committed record's checks, and the command on a small subset."""

from __future__ import annotations

import json

import numpy as np
import pytest
from mnist_cnn import experiments
from mnist_cnn.experiments import RECIPES
from mnist_cnn.scratch.fast import FastEngine
from mnist_cnn.scratch.train import build_model, fit, loss_and_accuracy
from mnist_cnn.shapes import INPUT_SHAPE


@pytest.fixture(scope="module")
def small():
    (x, y), (xv, yv) = experiments.overfitting_data()
    return x[:200], y[:200], xv[:40], yv[:40]


def test_on_epoch_end_appends_what_it_returns_to_the_history(small):
    x, y, xv, yv = (a[:60] for a in small)
    seen = []

    def after(epoch, net):
        seen.append(epoch)
        return {"clean": loss_and_accuracy(net, x, y)["accuracy"]}

    net = build_model(seed=1)
    history = fit(net, x, y, epochs=2, batch_size=20, seed=1, progress=False, on_epoch_end=after)
    assert seen == [0, 1] and len(history["clean"]) == 2
    # inference mode on the clean images, after the epoch's last step
    assert history["clean"][-1] == loss_and_accuracy(net, x, y)["accuracy"]
    with pytest.raises(ValueError, match="accuracy"):      # fit's own keys are not overwritten
        fit(build_model(seed=1), x, y, epochs=1, batch_size=20, progress=False,
            on_epoch_end=lambda epoch, net: {"accuracy": 1.0})


def test_a_run_records_three_accuracies_per_epoch_and_repeats_with_its_seed(small):
    recipe = RECIPES["dropout 0.3 + shifts"]
    data = [a[:60] for a in small]
    a = experiments.overfitting_run(recipe, 3, *data, epochs=2)
    b = experiments.overfitting_run(recipe, 3, *data, epochs=2)
    c = experiments.overfitting_run(recipe, 4, *data, epochs=2)
    for key in experiments.ACCURACIES:
        assert len(a[key]) == 2 and all(0 <= v <= 1 for v in a[key])
        assert a[key] == b[key]
    assert a["weight_norm"] == b["weight_norm"] != c["weight_norm"]
    # with dropout and shifts the running mean is not the accuracy on the clean images
    assert a["running"] != a["train"]


def _record(seeds=(0, 1, 2)):
    run = {key: [0.5] * experiments.EPOCHS for key in experiments.ACCURACIES}
    return {"experiment": "overfitting", "settings": json.loads(json.dumps(experiments.SETTINGS)),
            "seeds": list(seeds), "wall_seconds": 1.0,
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
    path.write_text(json.dumps(_record(seeds=(0, 0, 1, 2))))    # a seed counted twice
    with pytest.raises(ValueError, match="at least 3 different"):
        experiments.load(path=path)
    listed = _record()
    listed["seeds"] = [0, 1, 5]                                # the runs are 0, 1, 2
    path.write_text(json.dumps(listed))
    with pytest.raises(ValueError, match="once from each"):
        experiments.load(path=path)
    for broken in ({"runs": []}, {"wall_seconds": None}):
        path.write_text(json.dumps({**_record(), **broken}))
        with pytest.raises(ValueError):
            experiments.load(path=path)
    nulls = _record()
    nulls["runs"]["dropout 0.3"][1]["val"] = [None] * experiments.EPOCHS
    path.write_text(json.dumps(nulls))
    with pytest.raises(ValueError, match="accuracies"):
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


def test_mean_sd_uses_the_sample_standard_deviation():
    assert experiments.mean_sd([1.0, 2.0, 3.0]) == (2.0, 1.0)      # n - 1


def test_final_is_each_seeds_mean_over_the_last_epochs():
    record = _record()
    for i, run in enumerate(record["runs"]["dropout 0.3"]):
        run["val"] = [0.0] * (experiments.EPOCHS - 3) + [0.90, 0.91, 0.95 + i / 100]
    val = experiments.final(record, "dropout 0.3", "val")
    assert np.allclose(val, [(0.90 + 0.91 + 0.95 + i / 100) / 3 for i in range(3)])
    assert np.allclose(experiments.final(record, "dropout 0.3", "gap"), 0.5 - val)
    assert experiments.final(record, "dropout 0.3", "val", last=1).tolist() == [0.95, 0.96, 0.97]


def test_compare_calls_a_difference_inside_the_spread_noise():
    diff, se, verdict = experiments.compare([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])
    assert diff == 1.0 and np.isclose(se, np.sqrt(2 / 3)) and verdict == "within seed noise"
    assert experiments.compare([5.0, 5.1, 4.9], [1.0, 1.1, 0.9])[2] == "higher"
    assert experiments.compare([1.0, 1.1, 0.9], [5.0, 5.1, 4.9])[2] == "lower"
    for few in ([0.96], [0.96, 0.95], [np.nan, 1.0, 1.0]):    # no finding from 1 seed or NaN
        with pytest.raises(ValueError, match="at least 3 finite"):
            experiments.compare(few, [0.95, 0.95, 0.96])


def test_compare_graded_calls_a_difference_between_two_and_three_errors_marginal():
    a, b = [1.0, 2.0, 3.0], [0.0, 1.0, 2.0]                # se = sqrt(2/3) = 0.816
    for shift, verdict in ((0.0, "within seed noise"), (0.7, "higher (marginal)"),
                           (1.5, "higher")):             # z = 1.2, 2.1, 3.1
        moved = [v + shift for v in a]
        assert experiments.compare(moved, b, graded=True)[2] == verdict
        assert experiments.compare(b, moved, graded=True)[2] == verdict.replace(
            "higher", "lower")
    # without graded, the verdicts other pages assert are unchanged
    assert experiments.compare([v + 0.7 for v in a], b)[2] == "higher"


def test_the_noise_rules_let_pure_noise_through_as_often_as_the_comments_say():
    rng = np.random.default_rng(0)

    def passes(n, ratio, k):
        a, b = rng.standard_normal((2, 100_000, n))
        b = b * ratio
        se = np.sqrt(a.var(axis=1, ddof=1) / n + b.var(axis=1, ddof=1) / n)
        return np.mean(np.abs(a.mean(axis=1) - b.mean(axis=1)) > k * se)

    assert 1 / 13 < passes(5, 1, experiments.NOISE_SE) < 1 / 11       # about 1 in 12
    assert 1 / 11 < passes(5, 3, experiments.NOISE_SE) < 1 / 9        # about 1 in 10
    assert 1 / 10 < passes(3, 1, experiments.NOISE_SE) < 1 / 8        # about 1 in 9
    assert 1 / 8 < passes(3, 3, experiments.NOISE_SE) < 1 / 6         # about 1 in 7
    assert 1 / 30 < passes(3, 1, experiments.FINDING_SE) < 1 / 20     # about 1 in 25
    assert 1 / 19 < passes(3, 3, experiments.FINDING_SE) < 1 / 14     # about 1 in 16


def test_the_command_writes_a_record_that_loads(tmp_path, monkeypatch, capsys, small):
    from mnist_cnn.cli import main

    x, y, xv, yv = (a[:60] for a in small)
    monkeypatch.setattr(experiments, "overfitting_data", lambda cache_dir=None: ((x, y), (xv, yv)))
    real_run = experiments.overfitting_run
    # a run is tested above; here each one is 1 real epoch, padded to the stated 12
    monkeypatch.setattr(experiments, "overfitting_run", lambda recipe, seed, *data: {
        key: value * experiments.EPOCHS if isinstance(value, list) else value
        for key, value in real_run(recipe, seed, *data, epochs=1).items()})
    out = tmp_path / "o.json"
    for seeds in (["0", "1"], ["0", "0", "1"], ["-1", "0", "1"]):
        assert main(["experiment", "overfitting", "--seeds", *seeds]) == 1
        assert "--seeds takes at least 3 different non-negative" in capsys.readouterr().err
    for bad in (tmp_path, tmp_path / "o.txt"):                 # refused before any training
        assert main(["experiment", "overfitting", "--out", str(bad)]) == 1
        assert "--out must be a .json file" in capsys.readouterr().err
    assert main(["experiment", "overfitting", "--seeds", "5", "6", "7", "--out", str(out)]) == 0
    record = experiments.load(path=out)
    assert record["seeds"] == [5, 6, 7] and record["wall_seconds"] > 0
    assert record["command"] == ("python -m mnist_cnn experiment overfitting --seeds 5 6 7 "
                                 f"--out {out}")
    printed = capsys.readouterr().out
    assert f"-> {out}" in printed and all(label in printed for label in RECIPES)


def test_reestimated_bn_layers_hold_the_statistics_of_their_inputs(small):
    from mnist_cnn import keras_model as km
    from mnist_cnn.backend import import_keras
    from mnist_cnn.numerics import assert_close

    keras = import_keras()
    x = small[0]
    model = km.build_model(conv_filters=(4, 4), dense_units=8)
    copy = experiments.reestimated(model, x)
    assert model.get_layer("bn_conv1").moving_variance.numpy().tolist() == [1.0] * 4  # untouched
    for name in ("bn_conv1", "bn_conv2", "bn_dense1"):
        layer = copy.get_layer(name)
        inputs = np.asarray(keras.Model(copy.inputs, layer.input)(x, training=False),
                            dtype=np.float64)
        axes = tuple(range(inputs.ndim - 1))
        assert_close(layer.moving_mean.numpy(), inputs.mean(axis=axes), f"{name} mean")
        assert_close(layer.moving_variance.numpy(), inputs.var(axis=axes), f"{name} variance")
    # the copy predicts like the model wherever the statistics agree: same weights
    assert [w.shape for w in copy.get_weights()] == [w.shape for w in model.get_weights()]


@pytest.mark.slow
def test_a_batchnorm_run_records_validation_per_epoch_both_ways(small):
    x, y = small[0][:200], small[1][:200]
    run = experiments.batchnorm_run(True, 0, x, y)
    plain = experiments.batchnorm_run(False, 0, x, y)
    assert len(run["val"]) == len(run["val_reestimated"]) == experiments.BN_EPOCHS
    assert set(plain) == {"val"} and len(plain["val"]) == experiments.BN_EPOCHS
    # the seed fixes the initial weights too, whatever ran before
    assert experiments.batchnorm_run(False, 0, x, y) == plain
    assert all(0 <= v <= 1 for v in run["val"] + run["val_reestimated"])


# ---------------------------------------------------------------- the optimiser lab
OPTIMISERS = experiments.OPTIMISERS


def _opt_record(seeds=(0, 1, 2)):
    run = {"loss": [1.0] * experiments.OPT_EPOCHS, "val": [0.9] * experiments.OPT_EPOCHS,
           "holdout": [0.9] * experiments.OPT_EPOCHS, "seconds": 1.0}
    return {"experiment": "optimisers",
            "settings": json.loads(json.dumps(experiments.OPT_SETTINGS)),
            "seeds": list(seeds), "wall_seconds": 1.0,
            "runs": {label: [{"seed": s, **run} for s in seeds] for label in OPTIMISERS}}


def test_the_committed_optimisers_record_loads_with_every_optimiser_from_every_seed():
    record = experiments.load("optimisers")           # checks the settings are the code's
    assert record["settings"] == json.loads(json.dumps(experiments.OPT_SETTINGS))
    assert record["command"].startswith("python -m mnist_cnn experiment optimisers")
    assert record["seeds"] == list(experiments.OPT_SEEDS) and record["wall_seconds"] > 0
    for label in OPTIMISERS:
        assert [r["seed"] for r in record["runs"][label]] == record["seeds"]
        # every run either learned or ended near chance: where DIVERGED_BELOW sits
        # between them does not change which runs count as diverged
        last = experiments.final(record, label, "val", last=1)
        assert ((last < 0.2) | (last > 0.8)).all(), (label, last)
        assert (experiments.diverged(record, label) == (last < 0.2)).all()
        # the held-out digits: the validation digits the lab never chooses on
        assert all(len(r["holdout"]) == experiments.OPT_EPOCHS for r in record["runs"][label])
    settings = record["settings"]
    assert settings["n_val"] + settings["n_holdout"] == settings["validation_split"]


def test_load_refuses_an_optimisers_record_it_cannot_trust(tmp_path):
    path = tmp_path / "optimisers.json"
    other = _opt_record()
    other["settings"]["optimizers"]["momentum, step 0.3"]["lr"] = 0.3     # not 0.3 * (1 - mu)
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other settings"):
        experiments.load("optimisers", path=path)
    fewer = _opt_record()
    fewer["runs"]["Adam, lr 0.001"][0]["loss"] = [1.0]                   # one epoch of four
    path.write_text(json.dumps(fewer))
    with pytest.raises(ValueError, match="losses"):
        experiments.load("optimisers", path=path)
    unscored = _opt_record()
    del unscored["runs"]["Adam, lr 0.001"][2]["holdout"]                  # no held-out score
    path.write_text(json.dumps(unscored))
    with pytest.raises(ValueError, match="holdout"):
        experiments.load("optimisers", path=path)
    path.write_text(json.dumps(_opt_record(seeds=(0, 1))))
    with pytest.raises(ValueError, match="at least 3"):
        experiments.load("optimisers", path=path)
    # a loss that was not finite is stored as null: a result, which loads
    blown = _opt_record()
    blown["runs"]["SGD, step 3"][1]["loss"] = [None] * experiments.OPT_EPOCHS
    blown["runs"]["SGD, step 3"][2]["val"] = [0.1] * experiments.OPT_EPOCHS
    path.write_text(json.dumps(blown))
    record = experiments.load("optimisers", path=path)
    assert experiments.diverged(record, "SGD, step 3").tolist() == [False, True, True]
    assert not experiments.diverged(record, "SGD, step 1").any()
    loss = experiments.final(record, "SGD, step 3", "loss", last=1)
    assert loss[0] == 1.0 and np.isnan(loss[1])


def test_momentum_steps_at_the_same_effective_step_as_plain_sgd():
    mu = experiments.MOMENTUM
    g = np.array([0.5, -2.0])
    for eta in experiments.EFFECTIVE_STEPS:
        plain, heavy = OPTIMISERS[f"SGD, step {eta:g}"], OPTIMISERS[f"momentum, step {eta:g}"]
        assert plain["lr"] == eta and plain["momentum"] == 0.0
        assert np.isclose(heavy["lr"], eta * (1 - mu), rtol=1e-12) and heavy["momentum"] == mu
        moves = []
        for spec in (plain, heavy):
            opt, p = experiments.make_optimiser(spec), np.zeros(2)
            assert (opt.lr, opt.momentum) == (spec["lr"], spec["momentum"])
            for _ in range(300):                      # a constant gradient, step after step
                before = p.copy()
                opt.step([p], [g])
            moves.append(p - before)
        # under a constant gradient both move a weight by eta * g per step
        assert np.allclose(moves[0], -eta * g) and np.allclose(moves[1], -eta * g, rtol=1e-6)
    adam = experiments.make_optimiser(OPTIMISERS["Adam, lr 0.001"])
    assert type(adam).__name__ == "Adam" and adam.lr == 1e-3


def test_an_optimisers_run_uses_its_optimiser_and_repeats_with_its_seed(small):
    from mnist_cnn.scratch.optim import SGD

    x, y, xv, yv = small[0][:100], small[1][:100], small[2], small[3]
    label = "momentum, step 0.3"
    a = experiments.optimisers_run(label, 3, x, y, xv, yv, epochs=1)
    b = experiments.optimisers_run(label, 3, x, y, xv, yv, epochs=1)
    c = experiments.optimisers_run(label, 4, x, y, xv, yv, epochs=1)
    assert len(a["loss"]) == len(a["val"]) == 1 and a["seconds"] > 0
    assert (a["loss"], a["val"]) == (b["loss"], b["val"])
    assert a["loss"] != c["loss"]
    # the run is the course network trained with SGD(0.3 * (1 - 0.9), momentum 0.9)
    net = build_model(seed=3)
    history = fit(net, x, y, epochs=1, batch_size=experiments.OPT_BATCH_SIZE,
                  optimizer=SGD(0.03, momentum=0.9), seed=3, validation_data=(xv, yv),
                  progress=False, engine=FastEngine(net))
    assert a["loss"] == history["loss"] and a["val"] == history["val_accuracy"]
    # scoring held-out digits after each epoch changes nothing else in the run
    d = experiments.optimisers_run(label, 3, x, y, xv, yv, epochs=1,
                                   holdout=(xv[:50], yv[:50]))
    assert (d["loss"], d["val"]) == (a["loss"], a["val"]) and "holdout" not in a
    model = build_model(seed=3)
    fit(model, x, y, epochs=1, batch_size=experiments.OPT_BATCH_SIZE,
        optimizer=SGD(0.03, momentum=0.9), seed=3, progress=False, engine=FastEngine(model))
    assert d["holdout"] == [loss_and_accuracy(model, xv[:50], yv[:50])["accuracy"]]


def test_the_optimisers_command_writes_a_record_that_loads(tmp_path, monkeypatch, capsys):
    from mnist_cnn.cli import main

    tiny = np.zeros((4, *INPUT_SHAPE), np.float32), np.zeros(4, np.intp)
    monkeypatch.setattr(experiments, "experiment_data",
                        lambda n_train, n_val=0, cache_dir=None: (tiny, tiny))

    def fake_run(label, seed, *data, holdout):   # what the command does with a run
        assert len(holdout[0]) == len(holdout[1])
        blown = OPTIMISERS[label].get("effective_step") == 3.0
        epochs = experiments.OPT_EPOCHS
        return {"loss": [None if blown else 0.5] * epochs,
                "val": [0.1 if blown else 0.9 + seed / 100] * epochs,
                "holdout": [0.1 if blown else 0.9] * epochs, "seconds": 0.5}

    monkeypatch.setattr(experiments, "optimisers_run", fake_run)
    out = tmp_path / "opt.json"
    assert main(["experiment", "optimisers", "--out", str(out)]) == 0
    record = experiments.load("optimisers", path=out)
    assert record["seeds"] == [0, 1, 2]                  # this experiment's default seeds
    assert record["command"] == f"python -m mnist_cnn experiment optimisers --out {out}"
    assert experiments.diverged(record, "SGD, step 3").all()
    printed = capsys.readouterr().out
    assert "SGD, step 3" in printed and "diverged 3/3" in printed and "diverged 0/3" in printed


def test_the_command_lists_the_experiments_and_names_them_on_a_typo(capsys):
    """The experiments and their seeds are named in one place, the registry; the
    command lists them, and a wrong name gets the list, not a traceback."""
    from mnist_cnn.cli import main

    assert main(["experiment", "list"]) == 0
    listing = capsys.readouterr().out
    for name, spec in experiments.EXPERIMENTS.items():
        seeds = " ".join(map(str, spec["seeds"]))
        assert f"{name}" in listing and f"(seeds {seeds})" in listing
    assert main(["experiment", "overfiting"]) == 1
    err = capsys.readouterr().err
    assert "no experiment 'overfiting'" in err and "optimisers" in err


# ---------------------------------------------------------------- the architectures
def test_an_architectures_run_repeats_with_its_seed_and_scores_moved_digits(small):
    from mnist_cnn.architectures import build
    from mnist_cnn.data import shift_images
    from mnist_cnn.scratch.optim import Adam

    x, y, xv, yv = small[0][:100], small[1][:100], small[2], small[3]
    label = "LeNet-5 (1998)"
    a = experiments.architectures_run(label, 3, x, y, xv, yv, epochs=1)
    b = experiments.architectures_run(label, 3, x, y, xv, yv, epochs=1)
    assert (a["val"], a["shifted"]) == (b["val"], b["shifted"]) and a["seconds"] > 0
    assert len(a["shifted"]) == len(experiments.SHIFTS)
    # the run is the network trained with the shared recipe, then scored on moved digits
    net = build(label, 3)
    history = fit(net, x, y, epochs=1, batch_size=experiments.ARCH_BATCH_SIZE,
                  optimizer=Adam(experiments.ARCH_LR), seed=3, validation_data=(xv, yv),
                  progress=False, engine=FastEngine(net))
    assert a["val"] == history["val_accuracy"] == [a["shifted"][0]]
    by_two = [loss_and_accuracy(net, shift_images(xv, dy, dx), yv)["accuracy"]
              for dy, dx in ((-2, 0), (2, 0), (0, -2), (0, 2))]
    assert a["shifted"][2] == pytest.approx(np.mean(by_two), abs=1e-12)


def test_the_committed_architectures_record_loads_with_every_network_from_every_seed():
    from mnist_cnn.architectures import ARCHITECTURES

    record = experiments.load("architectures")          # checks the settings are the code's
    assert record["command"].startswith("python -m mnist_cnn experiment architectures")
    assert record["seeds"] == list(experiments.ARCH_SEEDS)
    assert list(record["runs"]) == list(ARCHITECTURES)
    for label, runs in record["runs"].items():
        for run in runs:
            # unmoved digits are the last epoch's validation digits
            assert run["shifted"][0] == run["val"][-1], label
            assert run["seconds"] > 0


def test_load_refuses_an_architectures_record_without_its_shift_curve(tmp_path):
    record = json.loads(experiments.experiment_path("architectures").read_text())
    del record["runs"]["MLP"][1]["shifted"][-1]
    path = tmp_path / "architectures.json"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="'shifted' is not 5 accuracies"):
        experiments.load("architectures", path=path)
