"""BatchNormalization by hand: gradient-checked in both modes, equal to Keras' layer
(momentum 0.99, epsilon 1e-3) in training and inference, saved and loaded with its
running statistics, and able to train the production architecture."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.backend import import_keras
from mnist_cnn.notebook import check_gradient
from mnist_cnn.numerics import GRADIENT_RTOL, assert_close
from mnist_cnn.scratch import (
    BatchNormalization,
    Conv2D,
    Dense,
    Flatten,
    MaxPooling2D,
    ReLU,
    Sequential,
)
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.fast import FastEngine
from mnist_cnn.scratch.train import fit
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES

from tests._helpers_norm import assert_matches_keras

pytestmark = pytest.mark.numerics


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 4, 2)])
@pytest.mark.parametrize("batch_stats", [True, False])
def test_batchnorm_backward_gradcheck(rng, shape, batch_stats):
    c = shape[-1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    running = (rng.standard_normal(c), rng.random(c) + 0.5)
    state = {}

    def forward(x, gamma, beta):
        mean, var = F.batch_moments(x) if batch_stats else running
        out, state["cache"] = F.batchnorm(x, gamma, beta, mean, var)
        return out

    def grads(dout):
        dx, dgamma, dbeta = F.batchnorm_backward(dout, state["cache"], batch_stats)
        return {"x": dx, "gamma": dgamma, "beta": dbeta}

    errors = check_gradient(forward, grads, {"x": x, "gamma": gamma, "beta": beta}, rng)
    for name, err in errors.items():
        assert err <= GRADIENT_RTOL, (name, err)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_batchnorm_layer_equals_keras_in_both_modes(rng):
    keras = import_keras()
    x = (rng.standard_normal((8, 5, 5, 3)) * 3 + 2).astype(np.float32)
    theirs = keras.layers.BatchNormalization()
    theirs.build(x.shape)
    weights = [rng.random(3).astype(np.float32) + 0.5, rng.standard_normal(3).astype(np.float32),
               rng.standard_normal(3).astype(np.float32), rng.random(3).astype(np.float32) + 0.5]
    theirs.set_weights(weights)
    ours = BatchNormalization()
    ours.build(x.shape[1:])
    ours.set_weights(weights)
    assert (ours.momentum, ours.epsilon) == (theirs.momentum, theirs.epsilon) == (0.99, 1e-3)
    # scaled as a mean loss would, so the summed gradients are O(1)
    dout = (rng.standard_normal(x.shape) / np.sqrt(8 * 5 * 5)).astype(np.float32)
    for training in (True, False):
        assert_matches_keras(ours, theirs, x, dout, training, "BatchNormalization")
        # the running statistics moved (training) or stayed (inference) alike
        for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            assert_close(a, b)
    assert not np.allclose(ours.state["moving_mean"], weights[2])   # training moved them


def _production_like(seed=0, momentum=0.9):
    """The production architecture's building blocks in the scratch engine. (A short
    run takes few steps, so its running averages move faster than Keras' 0.99.)"""
    return Sequential([
        Conv2D(8, 3, use_bias=False, name="c1"), BatchNormalization(momentum, name="bn1"),
        ReLU(name="r1"), MaxPooling2D(2, name="p1"), Conv2D(16, 3, use_bias=False, name="c2"),
        BatchNormalization(momentum, name="bn2"), ReLU(name="r2"), MaxPooling2D(2, name="p2"),
        Flatten(name="f"), Dense(32, name="d"), BatchNormalization(momentum, name="bn3"),
        ReLU(name="r3"), Dense(NUM_CLASSES, name="out")], input_shape=INPUT_SHAPE, seed=seed)


def test_a_batchnorm_network_trains_saves_and_loads(tmp_path, mnist):
    from mnist_cnn.data import prepare_images

    (x_train, y_train), _ = mnist
    x, y = prepare_images(x_train[:1024]), y_train[:1024].astype(np.intp)
    net = _production_like()
    assert net.count_params() == sum(w.size for w in net.get_weights())
    before = net.loss_and_backward(x[:256], y[:256], training=False)[0]
    history = fit(net, x, y, epochs=3, batch_size=64, seed=0, progress=False)
    after = net.loss_and_backward(x[:256], y[:256], training=False)[0]
    assert after < before / 3 and history["loss"][-1] < history["loss"][0]
    assert not np.allclose(net.layers[1].state["moving_variance"], 1.0)
    path = net.save(tmp_path / "bn.npz")
    loaded = Sequential.load(path)
    for a, b in zip(loaded.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x[:64]), net.predict(x[:64]))


def test_the_fast_engine_does_not_shard_batchnorm():
    net = _production_like()
    with pytest.raises(ValueError, match="whole batch"):
        FastEngine(net, shards=2)
    FastEngine(net, shards=1)          # one shard sees the whole batch: allowed
