"""mnist_cnn.scratch agrees with TensorFlow in float32: forward values and the
gradients TF computes with tf.GradientTape, equal by the course's rule
(:func:`mnist_cnn.numerics.assert_close`: relative to the largest value, within
1000 units of float32 rounding)."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.backend import import_keras, import_tensorflow
from mnist_cnn.numerics import assert_close
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch import layers as L

pytestmark = pytest.mark.numerics
tf, keras = import_tensorflow(), import_keras()


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def _u(rng, shape):
    return rng.uniform(-1, 1, shape).astype(np.float32)


@pytest.mark.parametrize(("xshape", "kshape", "stride", "padding"), [
    ((4, 28, 28, 1), (3, 3, 1, 8), 1, "valid"),
    ((4, 13, 13, 4), (3, 3, 4, 6), 1, "same"),
    ((3, 10, 10, 2), (2, 2, 2, 3), 2, "same"),    # even input, stride 2
    ((3, 9, 12, 3), (3, 3, 3, 4), 2, "same"),     # asymmetric "same" padding
    ((2, 11, 11, 2), (5, 5, 2, 3), 3, "valid"),
    ((2, 8, 7, 3), (4, 3, 3, 2), 2, "same"),
    ((2, 9, 8, 3), (3, 3, 3, 4), 2, 1),           # explicit padding: p zeros on every side
    ((2, 7, 7, 2), (5, 5, 2, 3), 1, 2),
])
def test_conv2d_forward_and_gradients_match_tf(rng, xshape, kshape, stride, padding):
    x, w, b = _u(rng, xshape), _u(rng, kshape), _u(rng, kshape[3])
    out, cache = F.conv2d(x, w, b, stride, padding)
    # dW sums N*H_out*W_out products; scale the upstream gradient as a mean loss would.
    dout = _u(rng, out.shape) / np.float32(np.sqrt(np.prod(out.shape[:3])))

    tx, tw, tb = tf.Variable(x), tf.Variable(w), tf.Variable(b)
    with tf.GradientTape() as tape:
        tf_padding = padding.upper() if isinstance(padding, str) else \
            [[0, 0], [padding, padding], [padding, padding], [0, 0]]
        t_out = tf.nn.conv2d(tx, tw, strides=stride, padding=tf_padding) + tb
        scalar = tf.reduce_sum(t_out * dout)
    tdx, tdw, tdb = tape.gradient(scalar, [tx, tw, tb])

    assert out.shape == tuple(t_out.shape)
    assert_close(out, t_out)
    dx, dw, db = F.conv2d_backward(dout, cache)
    assert_close(dx, tdx)
    assert_close(dw, tdw)
    assert_close(db, tdb)


def test_conv2d_naive_matches_tf(rng):
    x, w, b = _u(rng, (2, 9, 8, 2)), _u(rng, (3, 3, 2, 3)), _u(rng, 3)
    out, _ = F.conv2d_naive(x, w, b, 2, "same")
    ref = tf.nn.conv2d(x, w, strides=2, padding="SAME") + b
    assert_close(out, ref)


def _tf_max_pool(x, dout, pool, stride):
    """TensorFlow's max pool of x and the gradient of sum(out * dout) w.r.t. x."""
    # Pinned to the CPU: the book (backprop.md) says this test checks the engine
    # against TensorFlow's CPU kernel. On a machine with a GPU, TF would otherwise
    # place the op on the GPU and the test would check a different kernel, one
    # the book does not claim to match (e.g. in where ties send the gradient).
    with tf.device("/CPU:0"):
        tx = tf.Variable(x)
        with tf.GradientTape() as tape:
            t_out = tf.nn.max_pool2d(tx, ksize=pool, strides=stride or pool, padding="VALID")
            scalar = tf.reduce_sum(t_out * dout)
        return t_out, tape.gradient(scalar, tx)


@pytest.mark.parametrize(("xshape", "pool", "stride"), [
    ((4, 26, 26, 8), 2, None), ((3, 11, 11, 4), 2, None), ((2, 9, 9, 3), 3, 2),
    ((2, 7, 8, 2), 3, 3),
])
def test_max_pool_forward_and_gradient_match_tf(rng, xshape, pool, stride):
    # distinct values here; ties have their own test below
    x = (rng.permutation(np.prod(xshape)).reshape(xshape) / np.prod(xshape)).astype(np.float32)
    out, cache = F.max_pool2d(x, pool, stride)
    dout = _u(rng, out.shape)
    t_out, tdx = _tf_max_pool(x, dout, pool, stride)
    assert out.shape == tuple(t_out.shape)
    assert_close(out, t_out)
    assert_close(F.max_pool2d_backward(dout, cache), tdx)


@pytest.mark.parametrize(("pool", "stride"), [(2, None), (3, 2), (2, 1), (3, 3)])
def test_max_pool_ties_go_where_tf_sends_them(rng, pool, stride):
    """Integer values make most windows hold a tie; TensorFlow, our loops and our
    vectorised pass all send the gradient to the first maximum in row-major order."""
    x = np.round(rng.standard_normal((2, 9, 8, 3))).astype(np.float32)
    out, cache = F.max_pool2d(x, pool, stride)
    _, naive_cache = F.max_pool2d_naive(x, pool, stride)
    dout = _u(rng, out.shape)
    _, tdx = _tf_max_pool(x, dout, pool, stride)
    ties = sum(int((x[sl] == out).sum()) for sl in F._pool_views(x, cache["pool"],
               cache["stride"], *out.shape[1:3])) - out.size
    assert ties > out.size // 4                   # the test is about ties: many of them
    assert_close(F.max_pool2d_backward(dout, cache), tdx)
    assert_close(F.max_pool2d_backward_naive(dout, naive_cache), tdx)


def test_dense_relu_softmax_layers_match_keras(rng):
    x = _u(rng, (16, 20))
    k_dense = keras.layers.Dense(7)
    k_dense.build((None, 20))
    w, b = _u(rng, (20, 7)), _u(rng, 7)
    k_dense.set_weights([w, b])

    dense = L.Dense(7)
    dense.build((20,))
    dense.set_weights(k_dense.get_weights())      # Keras order and layout, no transposes
    relu, softmax = L.ReLU(), L.Softmax()
    h = dense.forward(x)
    p = softmax.forward(relu.forward(h))

    tx = tf.Variable(x)
    dout = _u(rng, (16, 7))
    with tf.GradientTape() as tape:
        t_h = k_dense(tx)
        t_p = keras.layers.Softmax()(keras.layers.ReLU()(t_h))
        scalar = tf.reduce_sum(t_p * dout)
    grads = tape.gradient(scalar, [tx, *k_dense.trainable_variables])
    assert_close(h, t_h)
    assert_close(p, t_p)

    dx = dense.backward(relu.backward(softmax.backward(dout)))
    assert_close(dx, grads[0])
    assert_close(dense.grads["W"], grads[1])
    assert_close(dense.grads["b"], grads[2])


def test_cross_entropy_and_its_gradient_match_tf(rng):
    z = (_u(rng, (32, 10)) * 5).astype(np.float32)
    y = rng.integers(0, 10, 32)
    tz = tf.Variable(z)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, tz))
    g = tape.gradient(loss, tz)
    assert_close(F.cross_entropy(z, y, from_logits=True), loss.numpy())
    assert_close(F.softmax_cross_entropy_backward(z, y), g)
    assert_close(F.softmax(z), tf.nn.softmax(z))
    assert_close(F.log_softmax(z), tf.nn.log_softmax(z))
    k_loss = keras.losses.SparseCategoricalCrossentropy()(y, F.softmax(z))
    assert_close(F.cross_entropy(F.softmax(z), y), k_loss.numpy())


def test_conv_layer_matches_keras_conv2d(rng):
    x = _u(rng, (2, 12, 12, 3))
    k = keras.layers.Conv2D(5, 3, strides=2, padding="same")
    k.build((None, 12, 12, 3))
    k.set_weights([_u(rng, (3, 3, 3, 5)), _u(rng, 5)])
    ours = L.Conv2D(5, 3, strides=2, padding="same")
    ours.build((12, 12, 3))
    ours.set_weights(k.get_weights())
    out = ours.forward(x)
    keras_shape = tuple(k.compute_output_shape((None, 12, 12, 3)))[1:]
    assert out.shape[1:] == ours.output_shape == keras_shape
    assert_close(out, k(x))
