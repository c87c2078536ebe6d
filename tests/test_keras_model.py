"""The production Keras model: build, train, save/load, model card, evaluate, safe loading."""

from __future__ import annotations

import argparse
import json
import zipfile

import numpy as np
import pytest
from mnist_cnn import _io, paths
from mnist_cnn import evaluate as ev
from mnist_cnn import keras_model as km
from mnist_cnn.backend import import_keras
from mnist_cnn.cards import check_card
from mnist_cnn.data import load_mnist, prepare_images
from mnist_cnn.model_files import load_model
from mnist_cnn.numerics import assert_close
from mnist_cnn.shapes import IMAGE_SHAPE, INPUT_SHAPE, NUM_CLASSES
from mnist_cnn.train_commands import cli_train_keras

keras = import_keras()


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(progress=False)


def _tiny_model(**kw):
    # A tiny model (~44k parameters, mostly the dense layer): learns in seconds.
    # No BatchNorm: its running statistics need more steps than a unit test takes.
    return km.build_model(conv_filters=(8,), dense_units=32, dropout=0.1, block_dropout=0,
                          batch_norm=False, **kw)


def test_build_model_architecture():
    model = km.build_model()
    assert model.input_shape == (None, *INPUT_SHAPE)
    assert model.output_shape == (None, NUM_CLASSES)
    names = [type(layer).__name__ for layer in model.layers]
    # Only bridge-able layers in the shipped architecture (no augmentation inside).
    assert set(names) <= {"Conv2D", "BatchNormalization", "ReLU", "MaxPooling2D", "Flatten",
                          "Dense", "Dropout", "Softmax"}
    # Conv/Dense layers followed by BatchNormalization carry no bias.
    for layer, nxt in zip(model.layers, model.layers[1:], strict=False):
        if type(nxt).__name__ == "BatchNormalization":
            assert layer.use_bias is False
    # Output-size formula for valid 3x3 convs and 2x2 pools: 28-26-24-12-10-8-4.
    assert model.get_layer("pool2").output.shape[1:] == (4, 4, 64)
    # Parameter count from the shapes: conv kernels 3*3*Cin*Cout, BN 4 per channel.
    expected = (9 * 1 * 32 + 9 * 32 * 32 + 9 * 32 * 64 + 9 * 64 * 64 + 4 * (32 + 32 + 64 + 64)
                + 4 * 4 * 64 * 128 + 4 * 128 + 128 * 10 + 10)
    assert model.count_params() == expected
    probs = model(np.zeros((2, *INPUT_SHAPE), np.float32), training=False).numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_augmentation_keeps_shape_and_range():
    aug = km.augmentation(seed=1)
    x = np.random.default_rng(0).random((4, *INPUT_SHAPE)).astype(np.float32)
    out = np.asarray(aug(x, training=True))
    assert out.shape == x.shape
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6
    assert not np.allclose(out, x)  # it actually changes the images


def test_cosine_lr_schedule():
    lrs = [km.cosine_lr(e, 10, 1e-3, 0.1) for e in range(10)]
    assert lrs[0] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a > b for a, b in zip(lrs, lrs[1:], strict=False))


def test_train_save_load_same_predictions(mnist, tmp_path):
    (x_train, y_train), (x_test, _) = mnist
    keras.utils.set_random_seed(3)
    model = _tiny_model()
    history = km.train(model, x_train[:2000], y_train[:2000], epochs=3, batch_size=64, seed=3,
                       verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert "val_accuracy" in history.history
    x = prepare_images(x_test[:200])
    before = model(x, training=False).numpy()
    path = tmp_path / "tiny.keras"
    with _io.atomic_path(path) as tmp:
        model.save(tmp)
    loaded = load_model(path)
    assert_close(loaded(x, training=False).numpy(), before, "saved and loaded Keras model")
    # Far better than chance (10 %) after three short epochs on 1,800 images.
    assert np.mean(before.argmax(1) == mnist[1][1][:200]) > 0.6


def test_training_is_seeded(mnist):
    (x_train, y_train), _ = mnist
    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)  # initial weights
        model = _tiny_model()
        km.train(model, x_train[:300], y_train[:300], epochs=1, batch_size=64, seed=7,
                 verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        assert_close(a, b, "Keras training, the same seed twice")


@pytest.fixture(scope="module")
def cli_trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras_cli") / "m.keras"
    args = argparse.Namespace(epochs=1, limit=500, seed=0, batch_size=64, out=str(out),
                              cache_dir=None)
    assert cli_train_keras(args) == 0
    return out


def test_cli_card_matches_file(cli_trained, capsys):
    card = json.loads(paths.card_path(cli_trained).read_text())
    assert card["sha256"] == _io.sha256_file(cli_trained)
    assert card["file_size_bytes"] == cli_trained.stat().st_size
    check_card(card)
    assert card["engine"] == "keras"
    # --limit 500: the last tenth is the validation set, the rest is trained on
    assert card["seed"] == 0 and card["epochs"] == 1
    assert (card["train_images"], card["validation_images"]) == (450, 50)
    assert card["params"] == km.build_model().count_params()
    assert set(card["per_class_accuracy"]) == {str(d) for d in range(NUM_CLASSES)}
    assert np.asarray(card["confusion_matrix"]).sum() == 10000
    assert {"tensorflow", "keras", "numpy"} <= set(card["versions"])
    assert "conv1" in card["architecture"]
    # The shipped file has no optimizer state.
    with zipfile.ZipFile(cli_trained) as zf:
        config = json.loads(zf.read("config.json"))
        weight_files = zf.namelist()
    assert not config.get("compile_config")
    assert "model.weights.h5" in weight_files


def test_cli_evaluate_reproduces_card(cli_trained, capsys):
    card = json.loads(paths.card_path(cli_trained).read_text())
    capsys.readouterr()
    assert ev.cli_evaluate(argparse.Namespace(model=str(cli_trained), json=True,
                                              cache_dir=None)) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["test_accuracy"] == pytest.approx(card["test_accuracy"], abs=1e-4)
    assert res["test_errors"] == card["test_errors"]
    assert res["outputs"] == "probabilities"
    assert res["confusion_matrix"] == card["confusion_matrix"]


@pytest.mark.slow
def test_committed_model_matches_its_card():
    path = paths.models_dir() / "cnn_model.keras"
    if not path.is_file():
        pytest.skip("models/cnn_model.keras not committed yet")
    card = json.loads(paths.card_path(path).read_text())
    assert card["sha256"] == _io.sha256_file(path)
    assert card["file_size_bytes"] == path.stat().st_size <= 1_000_000
    res = ev.evaluate_file(path)
    assert res["test_accuracy"] == pytest.approx(card["test_accuracy"], abs=2e-4)
    assert res["test_accuracy"] >= 0.995


def test_evaluate_foreign_logits_model_with_2d_input(tmp_path, mnist, capsys):
    # A model this project did not make: (28, 28) input, logits output.
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(IMAGE_SHAPE), keras.layers.Flatten(),
                              keras.layers.Dense(NUM_CLASSES)])
    path = tmp_path / "foreign.keras"
    model.save(path)
    res = ev.evaluate_file(path)
    assert res["outputs"].startswith("logits")
    x = prepare_images(mnist[1][0])[..., 0]       # (N, 28, 28): the model has no channel axis
    expected = np.mean(model.predict(x, verbose=0).argmax(1) == mnist[1][1])
    assert res["test_accuracy"] == pytest.approx(expected)
    ev.cli_evaluate(argparse.Namespace(model=str(path), json=False, cache_dir=None))
    text = capsys.readouterr().out
    assert "Confusion matrix" in text and "Per-class accuracy" in text


@pytest.mark.parametrize(("input_shape", "outputs", "message"), [
    ((32, 32, 3), NUM_CLASSES, r"input shape .*28, 28"), (INPUT_SHAPE, 3, r"output shape")])
def test_evaluate_rejects_wrong_shapes(tmp_path, input_shape, outputs, message):
    model = keras.Sequential([keras.Input(input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(outputs)])
    path = tmp_path / "not_mnist.keras"
    model.save(path)
    with pytest.raises(ValueError, match=message):
        ev.evaluate_file(path)


def test_load_missing_file_says_how_to_get_one(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-keras"):
        load_model(tmp_path / "nope.keras")


def test_load_takes_a_home_relative_path_and_empty_means_the_served_model(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.keras")):
        load_model("~/nope.keras")                       # ~ is expanded, as everywhere else
    monkeypatch.setenv("MNIST_CNN_MODEL", str(tmp_path / "served.keras"))
    for empty in ("", None):                             # "" (an empty setting) is the default
        with pytest.raises(FileNotFoundError, match=str(tmp_path / "served.keras")):
            load_model(empty)


def test_load_corrupt_file_is_a_value_error(tmp_path):
    path = tmp_path / "corrupt.keras"
    path.write_bytes(b"this is not a zip archive" * 10)
    with pytest.raises(ValueError, match="corrupt"):
        load_model(path)


def test_safe_mode_refuses_lambda_layer(tmp_path):
    model = keras.Sequential([keras.Input(INPUT_SHAPE), keras.layers.Lambda(lambda t: t * 2.0),
                              keras.layers.Flatten(), keras.layers.Dense(NUM_CLASSES)])
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="Lambda"):
        load_model(path)


def test_cli_rejects_bad_arguments(tmp_path):
    args = argparse.Namespace(epochs=0, limit=None, seed=0, batch_size=None,
                              out=str(tmp_path / "m.keras"), cache_dir=None)
    with pytest.raises(ValueError, match="epochs"):
        cli_train_keras(args)


@pytest.mark.numerics
def test_twin_mirrors_the_numpy_network_layer_by_layer():
    from mnist_cnn.scratch import train as numpy_train

    twin = km.build_twin(numpy_train.DROPOUT, numpy_train.LR, seed=0)
    ours = numpy_train.build_model(seed=0)
    assert [type(layer).__name__ for layer in twin.layers] == \
        [type(layer).__name__ for layer in ours.layers]
    assert [tuple(layer.output.shape[1:]) for layer in twin.layers] == \
        [layer.output_shape for layer in ours.layers]
    assert [layer.count_params() for layer in twin.layers] == \
        [layer.count_params() for layer in ours.layers]
    # the same weights give the same logits: the layouts agree, no transposes
    twin.set_weights(ours.get_weights())
    x = np.random.default_rng(0).random((4, *INPUT_SHAPE), dtype=np.float32)
    assert_close(np.asarray(twin(x, training=False)), ours.forward(x),
                 "Keras twin vs NumPy network")
    assert float(twin.optimizer.learning_rate) == pytest.approx(numpy_train.LR)
