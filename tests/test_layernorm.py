"""LayerNormalization by hand: gradient-checked, equal to Keras' layer (axis -1,
epsilon 1e-3) forward and backward, saved and loaded, and, unlike batch norm in
training, the same for an example alone as inside a batch."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.backend import import_keras
from mnist_cnn.notebook import check_gradient
from mnist_cnn.numerics import GRADIENT_RTOL, assert_close
from mnist_cnn.scratch import BatchNormalization, LayerNormalization, Sequential
from mnist_cnn.scratch import functional as F

from tests._helpers_norm import assert_matches_keras
from tests._helpers_scratch import ConvBlock, small_cnn

pytestmark = pytest.mark.numerics


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("shape", [(6, 5), (3, 4, 4, 2)])
def test_layernorm_backward_gradcheck(rng, shape):
    d = shape[-1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    state = {}

    def forward(x, gamma, beta):
        out, state["cache"] = F.layernorm_forward(x, gamma, beta, 1e-3)
        return out

    def grads(dout):
        dx, dgamma, dbeta = F.layernorm_backward(dout, state["cache"])
        return {"x": dx, "gamma": dgamma, "beta": dbeta}

    errors = check_gradient(forward, grads, {"x": x, "gamma": gamma, "beta": beta}, rng)
    for name, err in errors.items():
        assert err <= GRADIENT_RTOL, (name, err)


def test_layernorm_forward_normalises_each_row(rng):
    x = rng.standard_normal((4, 3, 3, 8)) * 5 + 3
    out, _ = F.layernorm_forward(x, np.ones(8), np.zeros(8), eps=0.0)
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.std(axis=-1), 1, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 16), (4, 5, 5, 6)])
def test_layernorm_layer_equals_keras(rng, shape):
    keras = import_keras()
    d = shape[-1]
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    theirs = keras.layers.LayerNormalization()
    theirs.build(x.shape)
    weights = [rng.random(d).astype(np.float32) + 0.5,
               rng.standard_normal(d).astype(np.float32)]
    theirs.set_weights(weights)
    ours = LayerNormalization()
    ours.build(x.shape[1:])
    ours.set_weights(weights)
    assert ours.epsilon == theirs.epsilon == 1e-3 and theirs.axis in (-1, [-1])
    assert ours.weight_names() == ["gamma", "beta"] and not ours.state
    rows = int(np.prod(shape[:-1]))
    # scaled as a mean loss would, so the summed gradients are O(1)
    dout = (rng.standard_normal(x.shape) / np.sqrt(rows)).astype(np.float32)
    for training in (True, False):           # the same computation in both modes
        out, dx = assert_matches_keras(ours, theirs, x, dout, training,
                                       f"LayerNormalization {shape}")
        assert out.dtype == dx.dtype == np.float32


def _net(norm):
    """Conv2D with 4 filters, then ``norm`` (layer 1), ReLU, Flatten, Dense."""
    return small_cnn(input_shape=(8, 8, 1), blocks=(ConvBlock(4, pool=False, norm=norm),),
                     hidden=None)


def test_a_layernorm_network_saves_and_loads(tmp_path, rng):
    net = _net(LayerNormalization(name="ln"))
    ln = net.layers[1]
    ln.set_weights([rng.random(4).astype(np.float32) + 0.5,
                    rng.standard_normal(4).astype(np.float32)])
    x = rng.random((5, 8, 8, 1)).astype(np.float32)
    loaded = Sequential.load(net.save(tmp_path / "ln.npz"))
    assert isinstance(loaded.layers[1], LayerNormalization)
    assert loaded.layers[1].get_config() == ln.get_config()
    for a, b in zip(loaded.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))
    assert net.count_params() == sum(w.size for w in net.get_weights())


def test_an_example_alone_gives_what_it_gives_in_a_batch(rng):
    x = rng.random((16, 8, 8, 1)).astype(np.float32)
    ln_net = _net(LayerNormalization(name="ln"))
    for training in (True, False):
        batch = ln_net.forward(x, training=training)
        alone = np.concatenate([ln_net.forward(x[i:i + 1], training=training)
                                for i in range(len(x))])
        assert_close(alone, batch)
    # Batch norm in training mode normalises with the batch's statistics: the same
    # example comes out differently alone.
    bn_net = _net(BatchNormalization(name="bn"))
    batch = bn_net.forward(x, training=True)
    alone = bn_net.forward(x[:1], training=True)
    assert np.abs(alone - batch[:1]).max() > 1e-2
