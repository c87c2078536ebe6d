"""The scratch Residual block: gradient check (float64), equal to a Keras model
built with ``keras.layers.Add`` (float32, the course's rule for "equal"),
save/load, the optimiser sees the inner weights, and what the skip does to the
gradient reaching the first layer of a deep stack at initialisation."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.backend import import_tensorflow
from mnist_cnn.notebook import numerical_gradient
from mnist_cnn.numerics import assert_close, assert_gradient_close, tolerance
from mnist_cnn.scratch import (
    Conv2D,
    Dense,
    Flatten,
    ReLU,
    Residual,
    Sequential,
)
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.optim import SGD
from mnist_cnn.scratch.train import prepare_images

pytestmark = pytest.mark.numerics


def _resnet(seed=0, input_shape=(6, 6, 3)):
    """An identity block, then a block that halves the size and changes the
    channels (so its shortcut is a strided 1x1 projection), then a dense head."""
    c = input_shape[-1]
    return Sequential([
        Residual([Conv2D(c, 3, padding="same", name="a1"), ReLU(name="a_relu"),
                  Conv2D(c, 3, padding="same", name="a2")], name="res_a"),
        ReLU(name="r1"),
        Residual([Conv2D(5, 3, strides=2, padding="same", name="b1"),
                  ReLU(name="b_relu"), Conv2D(5, 3, padding="same", name="b2")],
                 shortcut=Conv2D(5, 1, strides=2, name="proj"), name="res_b"),
        ReLU(name="r2"), Flatten(name="f"), Dense(10, name="d"),
    ], input_shape=input_shape, seed=seed)


def _input_gradient(net, x, dout):
    """Forward, then backward from ``dout``; returns (out, dL/dx)."""
    net.layers[0].need_dx = True      # training skips dL/d(image); here we want it
    out = net.forward(x)
    return out, net.backward(dout)


# --------------------------------------------------------------------------- gradients
def test_gradient_check_of_a_network_with_residual_blocks():
    rng = np.random.default_rng(0)
    net = _resnet().astype(np.float64)
    x = rng.standard_normal((2, 6, 6, 3))
    y = np.array([3, 8])
    logits = net.forward(x)
    _, dx = _input_gradient(net, x, F.softmax_cross_entropy_backward(logits, y))
    analytic = {name: g.copy() for (name, _), g in
                zip(net.named_parameters(), net.gradients(), strict=True)}

    def loss():
        return F.cross_entropy(net.forward(x), y, from_logits=True)

    errors = {"x": assert_gradient_close(dx, numerical_gradient(loss, x),
                                         "residual, x")}
    for name, p in net.named_parameters():
        errors[name] = assert_gradient_close(
            analytic[name], numerical_gradient(loss, p), f"residual, {name}")
    assert len(errors) == 1 + 12        # the input and every W and b, inner ones too
    print({k: f"{v:.1e}" for k, v in errors.items()})


def test_the_first_block_skips_the_input_gradient_and_still_fills_its_grads():
    net = _resnet()
    x = np.random.default_rng(1).random((2, 6, 6, 3)).astype(np.float32)
    assert net.layers[0].need_dx is False and net.layers[0].layers[0].need_dx is False
    assert net.layers[2].shortcut.need_dx is True
    logits = net.forward(x)
    assert net.backward(np.ones_like(logits)) is None
    assert set(net.layers[0].grads) == {"a1/W", "a1/b", "a2/W", "a2/b"}


# --------------------------------------------------------------------------- Keras
def test_residual_network_equals_a_keras_add_model():
    from mnist_cnn.bridge import to_keras

    tf = import_tensorflow()
    rng = np.random.default_rng(2)
    net = _resnet(seed=2, input_shape=(8, 8, 4))
    model = to_keras(net)
    x = rng.random((4, 8, 8, 4)).astype(np.float32)
    dout = (rng.standard_normal((4, 10)) / 4).astype(np.float32)   # as a mean loss

    out, dx = _input_gradient(net, x, dout)
    tx = tf.Variable(x)
    with tf.GradientTape() as tape:
        t_out = model(tx)
        scalar = tf.reduce_sum(t_out * dout)
    weights = {f"{w.path.split('/')[0]}/{'W' if 'kernel' in w.path else 'b'}": w
               for w in model.trainable_weights}
    grads = dict(zip(["x", *weights], tape.gradient(scalar, [tx, *weights.values()]),
                     strict=True))

    errors = {"output": assert_close(out, t_out, "residual vs Keras Add, output"),
              "dx": assert_close(dx, grads["x"], "residual vs Keras Add, dx")}
    for (name, _), g in zip(net.named_parameters(), net.gradients(), strict=True):
        key = "/".join(name.split("/")[-2:])          # "res_b/proj/W" -> "proj/W"
        errors[key] = assert_close(g, grads[key], f"residual vs Keras Add, d{key}")
    assert len(errors) == 2 + 12
    print({k: f"{v:.1e}" for k, v in errors.items()})


# --------------------------------------------------------------------------- the rest
def test_save_load_round_trip(tmp_path):
    net = _resnet(seed=3)
    x = np.random.default_rng(3).random((3, 6, 6, 3)).astype(np.float32)
    loaded = Sequential.load(net.save(tmp_path / "resnet.npz"))
    assert loaded.get_config() == net.get_config()
    assert [type(layer) for layer in loaded.layers[2].layers] == [Conv2D, ReLU, Conv2D]
    for a, b in zip(loaded.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.forward(x), net.forward(x))


def test_the_optimiser_updates_the_inner_layers_arrays():
    net = _resnet()
    inner = net.layers[2].layers[0]
    assert any(p is inner.params["W"] for p in net.parameters())     # the same array
    x = np.random.default_rng(4).random((2, 6, 6, 3)).astype(np.float32)
    before = inner.params["W"].copy()
    net.loss_and_backward(x, np.array([0, 1]))
    SGD(0.1).step(net.parameters(), net.gradients())
    np.testing.assert_allclose(inner.params["W"], before - 0.1 * inner.grads["W"],
                               rtol=1e-6, atol=1e-8)
    net.astype(np.float64)
    assert inner.params["W"].dtype == np.float64 and net.forward(x).dtype == np.float64


@pytest.mark.parametrize("processes", [False, True])
def test_the_speed_layer_gives_the_plain_chains_gradients(processes):
    """FastEngine splits the batch in two shards, run on twins of the layers
    (``copy.copy``) or in worker processes that receive the weights through
    ``params``: a Residual block must support both."""
    from mnist_cnn.scratch.fast import FastEngine

    x = np.random.default_rng(5).random((8, 6, 6, 3)).astype(np.float32)
    y = np.arange(8)
    plain, fast = _resnet(seed=5), _resnet(seed=5)
    loss, _ = plain.loss_and_backward(x, y)
    fast_loss, _ = FastEngine(fast, shards=2, workers=2, processes=processes) \
        .loss_and_backward(x, y)
    # The losses are Python floats, but computed in float32 (shards' means, weighted):
    # the tolerance is float32's, as for the gradients below.
    assert_close(fast_loss, loss, "residual, FastEngine loss", rtol=tolerance(x))
    for (name, _), g, h in zip(plain.named_parameters(), plain.gradients(),
                               fast.gradients(), strict=True):
        assert_close(h, g, f"residual, FastEngine d{name}")


def test_a_shape_change_without_a_projection_is_refused():
    with pytest.raises(ValueError, match="shortcut=Conv2D"):
        Sequential([Residual([Conv2D(4, 3, padding="same")])], input_shape=(6, 6, 3))
    with pytest.raises(ValueError, match="unique names"):
        Residual([Conv2D(3, 3, name="c"), Conv2D(3, 3, name="c")])


# --------------------------------------------------------------------------- the skip
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_skips_carry_a_larger_gradient_to_the_first_layer(mnist, seed):
    x = prepare_images(mnist[0][0][:16])
    from mnist_cnn.architectures import deep_stack, first_layer_gradient_norm

    assert np.array_equal(deep_stack(skips=False, seed=seed).layers[0].params["W"],
                          deep_stack(skips=True, seed=seed).layers[0].params["W"])
    plain = first_layer_gradient_norm(deep_stack(skips=False, seed=seed), x, 100 + seed)
    skips = first_layer_gradient_norm(deep_stack(skips=True, seed=seed), x, 100 + seed)
    print(f"seed {seed}: first-layer |dW| plain {plain:.3g}, with skips {skips:.3g}, "
          f"ratio {skips / plain:.3g}")
    # Measured 25x to 100x (seeds 0-4, 8 and 16 channels): each block's backward is
    # (I + df/dx)^T, and the identity passes the gradient on whole.
    assert skips > 10 * plain


def test_the_speed_layer_sees_the_layers_inside_a_block():
    """Shards split the batch: BN inside a block is refused as at the top level, and
    a Dropout inside a block gets its own seed on each shard's replica."""
    from mnist_cnn.scratch import BatchNormalization, Dropout
    from mnist_cnn.scratch.fast import FastEngine
    from mnist_cnn.scratch.fast.path import FusedPath, dropout_seeds
    from mnist_cnn.scratch.layers import walk

    with_bn = Sequential([Residual([Conv2D(3, 3, padding="same", name="c"),
                                    BatchNormalization(name="bn")], name="res"),
                          Flatten(name="f"), Dense(10, name="d")],
                         input_shape=(6, 6, 3), seed=0)
    with pytest.raises(ValueError, match="BatchNormalization"):
        FastEngine(with_bn, shards=2)

    net = Sequential([Residual([Conv2D(3, 3, padding="same", name="c"),
                                Dropout(0.5, name="drop")], name="res"),
                      Flatten(name="f"), Dense(10, name="d")],
                     input_shape=(6, 6, 3), seed=0)
    seeds = dropout_seeds(net)
    assert len(seeds) == 1                       # the Dropout inside the block
    x = np.ones((2, 6, 6, 3), np.float32)
    outs = []
    for seed in (seeds[0], seeds[0], seeds[0] + 1):
        replica = FusedPath(net, seeds=[seed], fuse=False)
        inner = [layer for layer in walk(replica.source) if isinstance(layer, Dropout)]
        assert inner[0] is not net.layers[0].layers[1]     # the replica's own copy
        outs.append(replica.source[0].forward(x, training=True))
    assert np.array_equal(outs[0], outs[1])      # the same seed, the same mask
    assert not np.array_equal(outs[0], outs[2])  # another seed, another mask
