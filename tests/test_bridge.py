"""The bridge: Keras weights in the scratch NumPy network give the same answers."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn import bridge, paths
from mnist_cnn import keras_model as km
from mnist_cnn.backend import import_keras
from mnist_cnn.data import load_mnist, prepare_images
from mnist_cnn.evaluate import evaluate_file
from mnist_cnn.model_files import load_model
from mnist_cnn.numerics import assert_close
from mnist_cnn.shapes import IMAGE_SHAPE, INPUT_SHAPE, NUM_CLASSES

pytestmark = pytest.mark.numerics
keras = import_keras()

L = keras.layers


def _randomise_batchnorm(model, seed=1):
    # Fresh BN layers are the identity (gamma 1, beta 0, mean 0, var 1); give them
    # realistic statistics so the folding formula is really exercised.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.5, n),
                               rng.normal(0, 0.3, n), rng.uniform(0.2, 3, n)])


def _images(n=64, seed=0):
    return np.random.default_rng(seed).random((n, *INPUT_SHAPE)).astype(np.float32)


def _assert_same(model, net, x):
    pk = np.asarray(model(x, training=False))
    ps = net.predict_proba(x)
    assert ps.shape == pk.shape
    assert_close(ps, pk, "bridge: NumPy network vs Keras probabilities")
    np.testing.assert_array_equal(ps.argmax(1), pk.argmax(1))


def test_production_architecture_with_folded_batchnorm():
    keras.utils.set_random_seed(0)
    model = km.build_model(conv_filters=(4, 8), dense_units=16)
    _randomise_batchnorm(model)
    net = bridge.from_keras(model)
    kinds = [type(layer).__name__ for layer in net.layers]
    # BN folded away, Dropout dropped, activations as separate layers.
    assert "BatchNormalization" not in kinds and "Dropout" not in kinds
    assert kinds == ["Conv2D", "ReLU", "Conv2D", "ReLU", "MaxPooling2D", "Flatten", "Dense",
                     "ReLU", "Dense", "Softmax"]
    # Folding removes BN's 4 numbers per channel but adds a bias per channel.
    bn = sum(layer.count_params() for layer in model.layers
             if isinstance(layer, L.BatchNormalization))
    assert net.count_params() == model.count_params() - bn + (4 + 8 + 16)
    _assert_same(model, net, _images())


def test_fused_activations_2d_input_and_inference_noops():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input(IMAGE_SHAPE),
        L.Reshape(INPUT_SHAPE),
        L.RandomRotation(0.1),  # identity at inference: dropped
        L.Conv2D(6, 5, strides=2, padding="same", activation="relu"),
        L.Conv2D(6, 3, padding="same"),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dropout(0.5),
        L.Dense(NUM_CLASSES, activation="softmax"),
    ])
    _randomise_batchnorm(model, seed=2)
    net = bridge.from_keras(model)
    assert net.input_shape == INPUT_SHAPE
    x = _images(32, seed=3)
    pk = np.asarray(model(x[..., 0], training=False))
    assert_close(net.predict_proba(x), pk)   # (N, 28, 28, 1) in


def test_logits_model_without_softmax():
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input(INPUT_SHAPE), L.Conv2D(3, 3, activation="relu"),
                              L.Flatten(), L.Dense(NUM_CLASSES)])
    net = bridge.from_keras(model)
    logits = np.asarray(model(_images(8), training=False))
    assert_close(net.forward(_images(8)), logits)


def test_from_path(tmp_path):
    keras.utils.set_random_seed(3)
    model = km.build_model(conv_filters=(4,), dense_units=8)
    _randomise_batchnorm(model, seed=4)
    path = tmp_path / "m.keras"
    model.save(path)
    _assert_same(model, bridge.from_keras(path), _images(16))
    _assert_same(model, bridge.from_keras(str(path)), _images(16))


@pytest.mark.parametrize("layer, cls", [
    (L.AveragePooling2D(2, name="avg"), "AveragePooling2D"),
    (L.LeakyReLU(name="leaky"), "LeakyReLU"),
    (L.Conv2D(2, 3, activation="tanh", name="tanh_conv"), "Conv2D"),
    (L.Rescaling(1 / 255, name="scale"), "Rescaling"),
])
def test_unsupported_layer_is_named(layer, cls):
    model = keras.Sequential([keras.Input(INPUT_SHAPE), L.Conv2D(2, 3), layer, L.Flatten(),
                              L.Dense(NUM_CLASSES)])
    with pytest.raises(ValueError, match=rf"'{layer.name}' \({cls}\)"):
        bridge.from_keras(model)


def test_batchnorm_that_cannot_be_folded():
    model = keras.Sequential([keras.Input(INPUT_SHAPE), L.Conv2D(2, 3, activation="relu"),
                              L.BatchNormalization(name="bn_after_relu"), L.Flatten(),
                              L.Dense(NUM_CLASSES)])
    with pytest.raises(ValueError, match="bn_after_relu"):
        bridge.from_keras(model)


@pytest.mark.slow
def test_committed_model_agrees_with_its_bridged_twin_on_test_images():
    """2,000 test images here; the Keras chapter checks all 10,000 in the book build."""
    path = paths.models_dir() / "cnn_model.keras"
    if not path.is_file():
        pytest.skip("models/cnn_model.keras not committed yet")
    model = load_model(path)
    net = bridge.from_keras(model)
    _, (x_test, y_test) = load_mnist(progress=False)
    x, y = prepare_images(x_test[:2000]), y_test[:2000]
    pk = np.concatenate([np.asarray(model(x[i:i + 1000], training=False))
                         for i in range(0, len(x), 1000)])
    ps = net.predict_proba(x)
    assert ps.dtype == np.float32
    # Same digit for every image, probabilities within 1e-4.
    np.testing.assert_array_equal(ps.argmax(1), pk.argmax(1))
    assert np.abs(ps - pk).max() <= 1e-4
    assert np.mean(ps.argmax(1) == y) >= 0.99


def test_evaluate_accepts_a_scratch_npz(tmp_path):
    keras.utils.set_random_seed(5)
    model = km.build_model(conv_filters=(4,), dense_units=8)
    _randomise_batchnorm(model, seed=6)
    keras_path, npz_path = tmp_path / "m.keras", tmp_path / "m.npz"
    model.save(keras_path)
    bridge.from_keras(model).save(npz_path)
    res_keras, res_npz = evaluate_file(keras_path), evaluate_file(npz_path)
    assert res_npz["confusion_matrix"] == res_keras["confusion_matrix"]
    assert res_npz["outputs"].startswith("probabilities")
