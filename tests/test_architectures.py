"""The layers LeNet-5 and global average pooling need (Tanh, AveragePooling2D,
GlobalAveragePooling2D): gradient checks in float64 and agreement with TensorFlow
in float32 (the course's rule for "equal", :func:`mnist_cnn.numerics.assert_close`);
every network of :mod:`mnist_cnn.architectures` against its Keras twin
(:func:`mnist_cnn.bridge.to_keras`): parameters, outputs and gradients; the
multiply-add and receptive-field arithmetic; shifted digits."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn import architectures as A
from mnist_cnn.backend import import_tensorflow
from mnist_cnn.bridge import to_keras
from mnist_cnn.data import shift_images
from mnist_cnn.notebook import numerical_gradient
from mnist_cnn.numerics import assert_close, assert_gradient_close
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.layers import (
    AveragePooling2D,
    Conv2D,
    Dense,
    Flatten,
    GlobalAveragePooling2D,
    Tanh,
)
from mnist_cnn.scratch.network import Sequential
from mnist_cnn.shapes import IMAGE_SHAPE, INPUT_SHAPE, NUM_CLASSES

pytestmark = pytest.mark.numerics


# --------------------------------------------------------------------------- new layers
@pytest.mark.parametrize(("pool", "stride"), [(2, None), (3, 2), (2, 1)])
def test_average_pooling_tanh_and_gap_pass_the_gradient_check(pool, stride):
    """A network through every new layer, in float64: each analytic gradient (the
    input's and every weight's) within the course's gradient-check rule of the
    centred difference."""
    net = Sequential([Conv2D(3, 3, name="c"), Tanh(name="t"),
                      AveragePooling2D(pool, stride, name="ap"), Conv2D(4, 2, name="c2"),
                      GlobalAveragePooling2D(name="gap"), Dense(5, name="d")],
                     input_shape=(9, 9, 2), seed=1).astype(np.float64)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((3, 9, 9, 2)), np.array([0, 4, 2])
    net.layers[0].need_dx = True
    logits = net.forward(x)
    dx = net.backward(F.softmax_cross_entropy_backward(logits, y))

    def loss():
        return F.cross_entropy(net.forward(x), y, from_logits=True)

    # The centred difference's round-off is about eps * |L| / h per element (float64,
    # |L| about 1.6): 3.5e-10 at h = 1e-6, against elements of dL/dx of about 1e-3 (a
    # mean loss through two averaging layers), a relative error near GRADIENT_RTOL.
    # At h = 1e-4 the round-off is 100 times smaller and the truncation error,
    # O(h^2), smaller still: the measured error falls as 1/h from h = 1e-7 to 1e-4.
    assert_gradient_close(dx, numerical_gradient(loss, x, h=1e-4), "average pooling: x")
    for (name, p), g in zip(net.named_parameters(), net.gradients(), strict=True):
        assert_gradient_close(g.copy(), numerical_gradient(loss, p), name)


@pytest.mark.parametrize(("shape", "pool", "stride"), [
    ((2, 8, 8, 3), 2, None), ((2, 9, 7, 2), 3, 2), ((1, 6, 6, 4), 2, 1)])
def test_average_pooling_equals_tensorflow(shape, pool, stride):
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    out, cache = F.avg_pool2d(x, pool, stride)
    dout = rng.uniform(-1, 1, out.shape).astype(np.float32)
    tx = tf.Variable(x)
    with tf.GradientTape() as tape:
        t_out = tf.nn.avg_pool2d(tx, pool, stride or pool, "VALID")
        scalar = tf.reduce_sum(t_out * dout)
    assert out.shape == tuple(t_out.shape)
    assert_close(out, t_out, "avg_pool2d")
    assert_close(F.avg_pool2d_backward(dout, cache), tape.gradient(scalar, tx),
                 "avg_pool2d backward")


def test_tanh_and_global_average_pooling_equal_tensorflow():
    tf = import_tensorflow()
    rng = np.random.default_rng(1)
    x = rng.uniform(-3, 3, (3, 5, 4, 6)).astype(np.float32)
    tx = tf.Variable(x)
    t_out, cache_t = F.tanh(x)
    g, cache_g = F.global_avg_pool(t_out)
    dout = rng.uniform(-1, 1, g.shape).astype(np.float32)
    with tf.GradientTape() as tape:
        t_g = tf.reduce_mean(tf.tanh(tx), axis=(1, 2))
        scalar = tf.reduce_sum(t_g * dout)
    assert g.shape == (3, 6)
    assert_close(g, t_g, "tanh then global average pooling")
    dx = F.tanh_backward(F.global_avg_pool_backward(dout, cache_g), cache_t)
    assert_close(dx, tape.gradient(scalar, tx), "their backward passes")


def test_pooling_layers_say_what_they_expect():
    with pytest.raises(ValueError, match="GlobalAveragePooling2D .* expects inputs"):
        Sequential([Flatten(), GlobalAveragePooling2D()], input_shape=(4, 4, 1))
    with pytest.raises(ValueError, match="avg_pool2d expects"):
        F.avg_pool2d(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="larger than the input"):
        F.avg_pool2d(np.zeros((1, 2, 2, 1)), 3)


# --------------------------------------------------------------------------- networks
# the parameter counts are fixed by the designs (the builders' docstrings derive them)
PARAMS = {"MLP": 235_146, "course CNN": 225_034, "LeNet-5 (1998)": 61_706,
          "LeNet-5, ReLU + max pool": 61_706, "course CNN, GAP head": 19_466}


@pytest.mark.parametrize("name", list(A.ARCHITECTURES))
def test_every_architecture_equals_its_keras_twin(name):
    """Parameter count, logits and every gradient against the Keras model of the
    same layers and weights, by the course's float32 rule."""
    tf = import_tensorflow()
    net = A.build(name, seed=4)
    model = to_keras(net)
    assert model.count_params() == net.count_params()
    if name in PARAMS:
        assert net.count_params() == PARAMS[name]
    rng = np.random.default_rng(5)
    x = rng.random((6, *INPUT_SHAPE)).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, 6)
    loss, logits = net.loss_and_backward(x, y, training=False)
    with tf.GradientTape() as tape:
        t_logits = model(x, training=False)
        t_loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, t_logits))
    assert_close(logits, t_logits, f"{name}: logits")
    assert_close(loss, t_loss, f"{name}: loss")
    grads = tape.gradient(t_loss, model.trainable_weights)
    assert len(grads) == len(net.gradients())
    for (pname, _), g, t in zip(net.named_parameters(), net.gradients(), grads, strict=True):
        assert_close(g, t, f"{name}: d{pname}")


def test_multiply_adds_of_the_course_network_by_hand():
    macs = A.multiply_adds(A.build("course CNN"))
    assert macs["conv2d"] == 26 * 26 * 3 * 3 * 1 * 32
    assert macs["conv2d_1"] == 11 * 11 * 3 * 3 * 32 * 64
    assert macs["dense"] == 1600 * 128 and macs["dense_1"] == 128 * 10
    assert macs["max_pooling2d"] == macs["relu"] == 0
    res = A.build("small ResNet")
    block = next(layer for layer in res.layers if layer.name.startswith("residual")
                 and layer.shortcut is not None)
    # two 3x3 convolutions 16->32 and 32->32 at 14x14, the 1x1 projection 16->32
    assert A.multiply_adds(res)[block.name] == 14 * 14 * (9 * 16 * 32 + 9 * 32 * 32 + 16 * 32)


def test_receptive_fields_follow_the_recursion_and_are_what_moves_a_unit():
    rows = dict((name, (field, jump)) for name, field, jump in
                A.receptive_fields(A.build("course CNN")))
    assert rows["conv2d"] == (3, 1) and rows["max_pooling2d"] == (4, 2)
    assert rows["conv2d_1"] == (8, 2) and rows["max_pooling2d_1"] == (10, 4)
    assert rows["dense"] == (28, 4)                   # a dense unit sees the whole image
    # a stack of 3x3 "same" convolutions: each adds 2 pixels; the ResNet's block adds 4
    vgg = A.receptive_fields(A.vgg())
    assert [f for _, f, _ in vgg[:5]] == [3, 3, 5, 5, 6]
    res = A.receptive_fields(A.resnet())
    assert [f for _, f, _ in res[:3]] == [3, 3, 7]
    # probe: one pixel changed moves a unit of the LeNet-5's C3 only inside its field
    net = A.lenet5(seed=0)
    c3 = dict((name, f) for name, f, _ in A.receptive_fields(net))[net.layers[3].name]
    assert c3 == 6 + (5 - 1) * 2                # C1 5, S2 6 with a jump of 2, C3 14
    h, w = IMAGE_SHAPE
    base = np.zeros((1, *INPUT_SHAPE), np.float32)
    probes = np.repeat(base, h * w, axis=0)                 # one lit pixel each
    probes[np.arange(h * w), np.arange(h * w) // w, np.arange(h * w) % w, 0] = 1.0

    def unit(images):
        out = images
        for layer in net.layers[:4]:
            out = layer.forward(out)
        return out[:, 3, 3, 0]

    moved = (np.abs(unit(probes) - unit(base)) > 0).reshape(IMAGE_SHAPE)
    rows_hit, cols_hit = np.flatnonzero(moved.any(1)), np.flatnonzero(moved.any(0))
    assert rows_hit[-1] - rows_hit[0] + 1 == c3 and cols_hit[-1] - cols_hit[0] + 1 == c3
    # and exactly where receptive_box says ("same" padding in C1 shifts it by 2)
    top, left, bottom, right = A.receptive_box(net, net.layers[3].name, 3, 3)
    assert (top, left, bottom, right) == (4, 4, 18, 18)
    assert (rows_hit[0], cols_hit[0], rows_hit[-1] + 1, cols_hit[-1] + 1) == (top, left,
                                                                             bottom, right)
    # clipped at the border; the course network's unit of architecture.md; a dense unit
    assert A.receptive_box(net, net.layers[3].name, 0, 0) == (0, 0, 12, 12)   # -2 to 12
    assert A.receptive_box(A.build("course CNN"), "max_pooling2d_1", 2, 2) == (8, 8, 18, 18)
    assert A.receptive_box(net, net.layers[-1].name, 0, 0) == (0, 0, h, w)
    with pytest.raises(ValueError, match="no layer named"):
        A.receptive_box(net, "nope", 0, 0)


def test_shift_images_moves_and_fills_with_background():
    x = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6, 1) + 1
    np.testing.assert_array_equal(shift_images(x, 0, 0), x)
    down_left = shift_images(x, 2, -1)
    np.testing.assert_array_equal(down_left[:, 2:, :-1], x[:, :-2, 1:])
    assert not down_left[:, :2].any() and not down_left[:, :, -1].any()
    assert not shift_images(x, 5, 0).any()
    with pytest.raises(ValueError, match="shift_images expects"):
        shift_images(x[0], 1, 1)


def test_the_gap_head_replaces_the_dense_head_and_keeps_the_convolutions():
    course, gap = A.build("course CNN"), A.build("course CNN, GAP head")
    conv = [layer.count_params() for layer in course.layers if isinstance(layer, Conv2D)]
    assert conv == [layer.count_params() for layer in gap.layers if isinstance(layer, Conv2D)]
    head = course.count_params() - sum(conv)
    assert head == 1600 * 128 + 128 + 128 * 10 + 10
    assert gap.count_params() - sum(conv) == 64 * 10 + 10


def test_an_unknown_architecture_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match="known: MLP, course CNN"):
        A.build("AlexNet")


def test_with_input_shape_keeps_the_weights_and_only_a_gap_head_allows_it():
    """The GAP network rebuilt for 36 x 36 inputs has the same weights; on a digit
    padded by 4 zeros a side its last pooled maps hold the 28 x 28 network's maps
    (the padding is even, so every pooling window lines up) with a ring around them.
    The course network's Flatten - Dense head cannot take the larger maps."""
    net = A.build("course CNN, GAP head", seed=3)
    big = A.with_input_shape(net, (36, 36, 1))
    assert big.input_shape == (36, 36, 1) and big.count_params() == net.count_params()
    for a, b in zip(big.get_weights(), net.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a is not b
    x = np.random.default_rng(6).random((3, *INPUT_SHAPE)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
    small_maps = dict(net.activations(x))[net.layers[5].name]
    big_maps = dict(big.activations(padded))[big.layers[5].name]
    assert small_maps.shape[1:3] == (5, 5) and big_maps.shape[1:3] == (7, 7)
    # equal by the course's rule: BLAS may sum a larger matrix product in another order
    assert_close(big_maps[:, 1:6, 1:6], small_maps, "GAP network at 36 x 36, inner maps")
    assert big.forward(padded).shape == (3, NUM_CLASSES)
    np.testing.assert_array_equal(A.with_input_shape(net, INPUT_SHAPE).forward(x),
                                  net.forward(x))
    with pytest.raises(ValueError, match="must have shape"):
        A.with_input_shape(A.build("course CNN"), (36, 36, 1))
