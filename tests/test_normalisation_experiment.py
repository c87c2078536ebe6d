"""The normalisation experiment (mnist_cnn.experiments.normalisation): the four
networks it compares, what a run and its probe record, that a seed repeats, the
committed record's checks, and the command on a stand-in run."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from mnist_cnn import experiments
from mnist_cnn.experiments import NORM_RUNS, NORMALISERS
from mnist_cnn.scratch import BatchNormalization, LayerNormalization, ReLU
from mnist_cnn.scratch.fast import FastEngine
from mnist_cnn.scratch.optim import SGD
from mnist_cnn.scratch.train import build_model, fit
from mnist_cnn.shapes import INPUT_SHAPE


@pytest.fixture(scope="module")
def small():
    (x, y), (xv, yv), probe = experiments.normalisation_data()
    assert len(probe) == experiments.PROBE_IMAGES and (probe == xv[:len(probe)]).all()
    return x[:100], y[:100], xv[:40], yv[:40], xv[:30]


def test_the_networks_differ_only_by_their_normalisers():
    plain = build_model(seed=5, dropout=0.0)
    nets = {variant: experiments.normalised_model(variant, 5) for variant in NORMALISERS}
    for variant, net in nets.items():
        spec, names = NORMALISERS[variant], [layer.name for layer in net.layers]
        assert [n for n in names if not n.startswith("norm_")] == [
            layer.name for layer in plain.layers]
        for name in ("conv2d", "conv2d_1", "dense"):       # layer - normaliser - ReLU
            i = names.index(name)
            if name in spec["after"]:
                norm = net.layers[i + 1]
                assert type(norm).__name__ == spec["layer"] and norm.name == f"norm_{name}"
                assert (norm.params["gamma"] == 1).all() and (norm.params["beta"] == 0).all()
                i += 1
            assert isinstance(net.layers[i + 1], ReLU)
        # every convolution and dense layer starts where build_model(seed) starts
        for layer in plain.layers:
            twin = net.layers[names.index(layer.name)]
            for a, b in zip(layer.get_weights(), twin.get_weights(), strict=True):
                np.testing.assert_array_equal(a, b)
    for variant in ("batch norm", "batch norm + dense"):
        bn = [layer for layer in nets[variant].layers if isinstance(layer, BatchNormalization)]
        assert {layer.momentum for layer in bn} == {experiments.NORM_BN_MOMENTUM}
    assert sum(isinstance(layer, LayerNormalization) for layer in nets["layer norm"].layers) == 2
    # gamma and beta per channel (and BN's two running averages): 32 + 64 channels,
    # and the dense layer's 128 units
    extra = {variant: net.count_params() - plain.count_params() for variant, net in nets.items()}
    assert extra == {"none": 0, "batch norm": 4 * 96, "layer norm": 2 * 96,
                     "batch norm + dense": 4 * (96 + 128)}


def _direct(net, x, name):
    """The output of layer ``name`` for ``x``, every layer in training mode, on a copy."""
    h = x
    for layer in copy.deepcopy(net).layers:
        h = layer.forward(h, training=True)
        if layer.name == name:
            return h
    raise LookupError(name)


def _statistics(values):
    v = np.asarray(values, dtype=np.float64).ravel()
    return {"mean": v.mean(), "sd": v.std(), "p15": np.percentile(v, 15),
            "p50": np.percentile(v, 50), "p85": np.percentile(v, 85)}


def _assert_look(look: dict, net, probe, variant):
    norm = "conv2d_1" if variant == "none" else "norm_conv2d_1"
    for site, name in (("conv", "conv2d_1"), ("relu", norm)):
        want = _statistics(_direct(net, probe, name))
        assert list(look[site]) == list(experiments.PROBE_STATS)
        for stat, value in want.items():
            # kept to PROBE_DIGITS significant digits
            assert look[site][stat] == pytest.approx(value, rel=1e-5, abs=1e-9), (site, stat)


def test_probe_inputs_are_the_layer_outputs_and_leave_bn_state_alone(small):
    probe = small[4]
    net = experiments.normalised_model("batch norm", 2)
    net.layers[1].state["moving_mean"] = np.full(32, 0.5, np.float32)    # not the default
    before = [copy.deepcopy(layer.state) for layer in net.layers]
    seen = experiments.probe_inputs(net, probe)
    np.testing.assert_array_equal(seen["conv"], _direct(net, probe, "conv2d_1"))
    np.testing.assert_array_equal(seen["relu"], _direct(net, probe, "norm_conv2d_1"))
    for layer, state in zip(net.layers, before, strict=True):
        assert layer.state.keys() == state.keys()
        for key in state:
            np.testing.assert_array_equal(layer.state[key], state[key])
    # in training mode batch norm normalises with the probe's own statistics: each
    # channel's mean is beta (0) and its variance var / (var + eps), just below 1
    relu_in = seen["relu"].astype(np.float64)
    assert np.abs(relu_in.mean(axis=(0, 1, 2))).max() < 1e-5
    assert (relu_in.var(axis=(0, 1, 2)) < 1).all() and relu_in.var() > 0.9
    plain = experiments.probe_inputs(experiments.normalised_model("none", 2), probe)
    np.testing.assert_array_equal(plain["conv"], plain["relu"])      # nothing between


def test_probe_statistics_are_mean_sd_and_percentiles():
    values = np.arange(101, dtype=np.float32).reshape(1, 101)
    stats = experiments.probe_statistics(values)
    assert stats == {"mean": 50.0, "sd": 29.1548, "p15": 15.0, "p50": 50.0, "p85": 85.0}
    assert np.sqrt(850.0) == pytest.approx(29.1548, abs=1e-4)      # to 6 digits
    assert experiments.probe_statistics(np.array([1.0, np.inf]))["mean"] is None


def test_a_run_repeats_with_its_seed_and_its_probe_is_the_direct_computation(small):
    x, y, xv, yv, probe = small
    label = experiments.norm_label("batch norm", experiments.NORM_PROBE_LR)
    a = experiments.normalisation_run(label, 3, x, y, xv, yv, epochs=1, probe=probe)
    b = experiments.normalisation_run(label, 3, x, y, xv, yv, epochs=1, probe=probe)
    c = experiments.normalisation_run(label, 4, x, y, xv, yv, epochs=1, probe=probe)
    assert len(a["loss"]) == len(a["val"]) == 1 and a["seconds"] > 0
    assert a["probe"]["steps"] == experiments.probe_steps(len(x), 1) == [0, 2]
    for key in ("loss", "val", "kernel_norm", "probe"):
        assert a[key] == b[key]
    assert a["loss"] != c["loss"] and a["probe"] != c["probe"]
    # the first look is the initial network ...
    _assert_look({site: {s: a["probe"][site][s][0] for s in experiments.PROBE_STATS}
                  for site in experiments.PROBE_SITES},
                 experiments.normalised_model("batch norm", 3), probe, "batch norm")
    # ... the last the network plain SGD trained, with no probe: looking changed nothing
    net = experiments.normalised_model("batch norm", 3)
    history = fit(net, x, y, epochs=1, batch_size=experiments.NORM_BATCH_SIZE,
                  optimizer=SGD(experiments.NORM_PROBE_LR, momentum=0.0), seed=3,
                  validation_data=(xv, yv), progress=False, engine=FastEngine(net, shards=1))
    assert a["loss"] == history["loss"] and a["val"] == history["val_accuracy"]
    _assert_look({site: {s: a["probe"][site][s][-1] for s in experiments.PROBE_STATS}
                  for site in experiments.PROBE_SITES}, net, probe, "batch norm")
    w = net.layers[[layer.name for layer in net.layers].index("conv2d_1")].params["W"]
    assert a["kernel_norm"] == a["probe"]["kernel_norm"][-1] == pytest.approx(
        float(np.linalg.norm(w.astype(np.float64))), rel=1e-5)
    # without a probe the run is the same run
    d = experiments.normalisation_run(label, 3, x, y, xv, yv, epochs=1)
    assert (d["loss"], d["val"]) == (a["loss"], a["val"]) and "probe" not in d


def test_a_run_without_normalisation_probes_one_array_twice(small):
    x, y, xv, yv, probe = small
    run = experiments.normalisation_run("none, lr 0.1", 1, x, y, xv, yv, epochs=1,
                                        probe=probe)
    assert run["probe"]["conv"] == run["probe"]["relu"]


def test_a_diverging_run_records_null_losses_and_no_warnings(small, recwarn):
    x, y, xv, yv, _ = small
    run = experiments.normalisation_run("none, lr 10", 0, x, y, xv, yv, epochs=2)
    assert run["loss"][-1] is None or run["val"][-1] < experiments.DIVERGED_BELOW
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


# ---------------------------------------------------------------- records
def _record(seeds=(0, 1, 2), val=0.9):
    epochs, steps = experiments.NORM_EPOCHS, experiments.probe_steps()
    looks = {site: {stat: [1.0] * len(steps) for stat in experiments.PROBE_STATS}
             for site in experiments.PROBE_SITES}
    runs = {}
    for label, (_, lr) in NORM_RUNS.items():
        run = {"loss": [0.5] * epochs, "val": [val] * epochs, "seconds": 1.0,
               "kernel_norm": 2.0}
        if lr == experiments.NORM_PROBE_LR:
            run["probe"] = {"steps": steps, **copy.deepcopy(looks),
                            "kernel_norm": [2.0] * len(steps)}
        runs[label] = [{"seed": s, **copy.deepcopy(run)} for s in seeds]
    return {"experiment": "normalisation",
            "settings": json.loads(json.dumps(experiments.NORM_SETTINGS)),
            "seeds": list(seeds), "wall_seconds": 1.0, "runs": runs}


def test_load_refuses_a_normalisation_record_it_cannot_trust(tmp_path):
    path = tmp_path / "normalisation.json"
    probed = experiments.norm_label("layer norm", experiments.NORM_PROBE_LR)
    other = _record()
    other["settings"]["bn_momentum"] = 0.99
    path.write_text(json.dumps(other))
    with pytest.raises(ValueError, match="other settings"):
        experiments.load("normalisation", path=path)
    for broken, match in ((lambda r: r["runs"][probed][1].pop("probe"), "probe"),
                          (lambda r: r["runs"][probed][0]["probe"]["relu"]["p50"].pop(),
                           "the probe is not"),
                          (lambda r: r["runs"][probed][2]["probe"].update(steps=[0]),
                           "the probe is not"),
                          (lambda r: r["runs"]["none, lr 3"][0].update(kernel_norm="big"),
                           "kernel_norm"),
                          (lambda r: r["runs"]["none, lr 3"][0].update(loss=[0.5]),
                           "losses")):
        record = _record()
        broken(record)
        path.write_text(json.dumps(record))
        with pytest.raises(ValueError, match=match):
            experiments.load("normalisation", path=path)
    # a blown-up run is a result: null losses, statistics and norms load
    blown = _record()
    for run in blown["runs"]["none, lr 10"]:
        run.update(loss=[None] * experiments.NORM_EPOCHS, kernel_norm=None)
    blown["runs"][probed][0]["probe"]["conv"]["sd"][-1] = None
    path.write_text(json.dumps(blown))
    record = experiments.load("normalisation", path=path)
    assert experiments.diverged(record, "none, lr 10").all()
    assert np.isnan(experiments.probe_curve(record, "layer norm", "conv", "sd")[0, -1])


def test_largest_stable_lr_is_the_largest_rate_every_seed_trained_at():
    record = _record()
    assert experiments.largest_stable_lr(record, "none") == max(experiments.NORM_LRS)
    record["runs"]["none, lr 10"][2]["val"][-1] = 0.1          # one seed of three
    record["runs"]["none, lr 3"][0]["loss"][0] = None
    assert experiments.largest_stable_lr(record, "none") == 1.0
    assert experiments.largest_stable_lr(record, "batch norm") == 10.0
    for lr in experiments.NORM_LRS:
        record["runs"][experiments.norm_label("layer norm", lr)][1]["val"][-1] = 0.1
    assert experiments.largest_stable_lr(record, "layer norm") is None
    curve = experiments.probe_curve(record, "batch norm", "kernel_norm", "")
    assert curve.shape == (3, len(experiments.probe_steps())) and (curve == 2.0).all()


def test_probe_drift_is_the_largest_move_of_a_percentile_in_initial_sds():
    record = _record()
    for seed, run in enumerate(record["runs"]["batch norm, lr 0.1"]):
        probe = run["probe"]["relu"]
        probe["sd"][0] = 2.0
        probe["p15"][3] = 1.0 - 0.5 * seed             # moved by 0.5 * seed
        probe["p85"][-1] = 1.0 + 0.2                   # moved by 0.2 on every seed
    drift = experiments.probe_drift(record, "batch norm", "relu")
    assert np.allclose(drift, [0.2 / 2, 0.5 / 2, 1.0 / 2])
    assert (experiments.probe_drift(record, "none", "relu") == 0).all()


def test_the_committed_normalisation_record_loads_with_every_run_and_its_probe():
    path = experiments.experiment_path("normalisation")
    record = experiments.load("normalisation")       # checks the settings are the code's
    assert record["command"].startswith("python -m mnist_cnn experiment normalisation")
    assert record["seeds"] == list(experiments.NORM_SEEDS) and record["wall_seconds"] > 0
    assert path.stat().st_size < 100_000                      # tens of KB
    for label, (variant, lr) in NORM_RUNS.items():
        assert [r["seed"] for r in record["runs"][label]] == record["seeds"]
        last = experiments.final(record, label, "val", last=1)
        # every run learned or ended near chance: where DIVERGED_BELOW sits between
        # them does not change which runs count as diverged
        assert ((last < 0.3) | (last > 0.75)).all(), (label, last)
        if lr == experiments.NORM_PROBE_LR:          # the probe's rate: all of them train
            assert not experiments.diverged(record, label).any(), label
            curve = experiments.probe_curve(record, variant, "relu", "sd")
            assert np.isfinite(curve).all()
    # the grid reaches where the network without normalisation diverges
    assert experiments.diverged(record, f"none, lr {max(experiments.NORM_LRS):g}").all()


def test_the_normalisation_command_writes_a_record_that_loads(tmp_path, monkeypatch, capsys):
    from mnist_cnn.cli import main

    tiny = np.zeros((4, *INPUT_SHAPE), np.float32), np.zeros(4, np.intp)
    monkeypatch.setattr(experiments, "normalisation_data",
                        lambda cache_dir=None: (tiny, tiny, tiny[0][:2]))
    template = _record()["runs"]

    def fake_run(label, seed, *data, probe=None):   # what the command does with a run
        assert (probe is not None) == (NORM_RUNS[label][1] == experiments.NORM_PROBE_LR)
        run = copy.deepcopy(template[label][0])
        del run["seed"]                                  # the command adds it
        if label == "none, lr 10":
            run["loss"] = [None] * experiments.NORM_EPOCHS
        return run

    monkeypatch.setattr(experiments, "normalisation_run", fake_run)
    out = tmp_path / "norm.json"
    assert main(["experiment", "normalisation", "--out", str(out)]) == 0
    record = experiments.load("normalisation", path=out)
    assert record["seeds"] == list(experiments.NORM_SEEDS)
    assert record["command"] == f"python -m mnist_cnn experiment normalisation --out {out}"
    assert experiments.largest_stable_lr(record, "none") == 3.0
    printed = capsys.readouterr().out
    assert "none, lr 10" in printed and "diverged 3/3" in printed
