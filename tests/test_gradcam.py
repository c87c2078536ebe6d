"""Grad-CAM on the scratch engine's backward pass: equal to the same computation
with TensorFlow's GradientTape on the Keras twin, non-negative, indifferent to a
final Softmax, and on a synthetic image it marks the only region that counts."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn import paths
from mnist_cnn.data import prepare_images
from mnist_cnn.explain import grad_cam, upsample
from mnist_cnn.numerics import assert_close
from mnist_cnn.scratch import Conv2D, Dense, Flatten, ReLU, Sequential, Softmax
from mnist_cnn.shapes import IMAGE_SHAPE, NUM_CLASSES

pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def committed(mnist):
    """The committed NumPy model, its float32 Keras twin with the same weights,
    TensorFlow, 16 test digits and their labels."""
    from mnist_cnn import keras_model as km
    from mnist_cnn.backend import import_tensorflow
    from mnist_cnn.scratch import train as numpy_train

    net = Sequential.load(paths.default_numpy_model())
    twin = km.build_twin(numpy_train.DROPOUT, numpy_train.LR)
    twin.set_weights(net.get_weights())
    (_, _), (x_test, y_test) = mnist
    return net, twin, import_tensorflow(), prepare_images(x_test[:16]), \
        y_test[:16].astype(np.intp)


def _tape_grad_cam(tf, twin, x, target, k):
    """Grad-CAM with GradientTape: run the twin layer by layer, watch layer k's
    output A, and differentiate the target logits with respect to it."""
    with tf.GradientTape() as tape:
        out = tf.constant(x)
        for i, layer in enumerate(twin.layers):
            out = layer(out, training=False)
            if i == k:
                feature_maps = out
                tape.watch(feature_maps)
        score = tf.reduce_sum(tf.gather(out, target, axis=1, batch_dims=1))
    alpha = tf.reduce_mean(tape.gradient(score, feature_maps), axis=(1, 2))
    cam = tf.einsum("nhwc,nc->nhw", feature_maps, alpha)
    return tf.nn.relu(cam).numpy()


@pytest.mark.parametrize("layer_name", ["conv2d_1", "relu_1", "relu"])
def test_grad_cam_equals_gradient_tape(committed, layer_name):
    """In float32. Through max pooling, ties (common among a ReLU's zeros) send a
    window's gradient to different inputs in the two libraries; alpha, a mean
    over positions, does not depend on which one, so the maps still agree."""
    net, twin, tf, x, y = committed
    k = [layer.name for layer in net.layers].index(layer_name)
    got = grad_cam(net, x, y, layer_name)
    expected = _tape_grad_cam(tf, twin, x, y, k)
    assert got.shape == expected.shape == (len(x), *net.layers[k].output_shape[:2])
    assert got.dtype == np.float32
    assert_close(got, expected, f"Grad-CAM at {layer_name} vs GradientTape, float32")
    assert got.max() > 0


def test_grad_cam_shapes_sign_and_default_layer(committed):
    net, _, _, x, y = committed
    default = grad_cam(net, x, y)       # the last (H, W, C) layer: max_pooling2d_1
    np.testing.assert_array_equal(default, grad_cam(net, x, y, "max_pooling2d_1"))
    assert default.shape == (len(x), 5, 5)
    for cls in range(NUM_CLASSES):                          # a map for any class is >= 0
        assert grad_cam(net, x, cls, "relu_1").min() >= 0
    big = upsample(grad_cam(net, x, y, "relu_1"))
    assert big.shape == (len(x), *IMAGE_SHAPE) and big.min() >= 0
    with pytest.raises(ValueError, match="not feature maps"):
        grad_cam(net, x, y, "dense")
    with pytest.raises(ValueError, match="no layer named"):
        grad_cam(net, x, y, "nope")


def test_a_final_softmax_is_skipped_for_the_logit(committed):
    net, _, _, x, y = committed
    with_softmax = Sequential([*net.layers, Softmax(name="softmax")])
    np.testing.assert_array_equal(grad_cam(with_softmax, x, y, "relu_1"),
                                  grad_cam(net, x, y, "relu_1"))


def test_upsample_equals_tf_bilinear(committed):
    _, _, tf, _, _ = committed
    maps = np.random.default_rng(0).random((3, 11, 7)).astype(np.float32)
    resized = tf.image.resize(maps[..., None], IMAGE_SHAPE, method="bilinear")
    expected = resized.numpy()[..., 0]
    assert_close(upsample(maps), expected, "upsample vs tf.image.resize bilinear")


def test_grad_cam_marks_the_only_region_that_counts():
    """An 8x8 image with a bright square in the left half and a dark one in the
    right. Two 1x1 filters split it into A0 = relu(x) (the bright square) and
    A1 = relu(-x) (the dark one). Class 0 reads only the left half: A0 for it, A1
    against it. Its map must put all its mass on the bright square: the dark
    square has features too, but the class counts them against itself.

    (Grad-CAM weighs whole feature maps, alpha being a mean over positions: had
    the right half held a bright square as well, it would light up although
    class 0 never reads it. The map says where the class's features are.)"""
    net = Sequential([Conv2D(2, 1, name="c"), ReLU(name="r"), Flatten(name="f"),
                      Dense(2, name="d")], input_shape=(8, 8, 1), seed=0)
    net.layers[0].set_weights([np.array([1.0, -1.0], np.float32).reshape(1, 1, 1, 2),
                               np.zeros(2, np.float32)])
    w = np.zeros((8, 8, 2, 2), np.float32)
    w[:, :4, 0, 0], w[:, :4, 1, 0] = 1.0, -1.0    # class 0: left half only
    w[:, :, 1, 1] = 1.0                            # class 1: dark everywhere
    net.layers[3].set_weights([w.reshape(128, 2), np.zeros(2, np.float32)])
    x = np.zeros((1, 8, 8, 1), np.float32)
    x[0, 2:5, 1:3], x[0, 3:6, 5:7] = 1.0, -1.0
    features = net.layers[1].forward(net.layers[0].forward(x))
    assert features[0, :, 4:, 1].sum() > 0         # the right half is not empty

    cam = grad_cam(net, x, 0, "r")[0]
    assert cam.shape == (8, 8)
    assert cam[:, 4:].sum() == 0 and cam[:, :4].sum() > 0
    np.testing.assert_array_equal(cam > 0, x[0, ..., 0] > 0)
    # Class 1 reads the dark square, wherever it is: its map is that square.
    np.testing.assert_array_equal(grad_cam(net, x, 1, "r")[0] > 0, x[0, ..., 0] < 0)
