"""Saliency, occlusion and FGSM on the scratch engine's backward pass to the pixels:
checked against centred differences and against TensorFlow's GradientTape."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn import paths
from mnist_cnn.data import prepare_images
from mnist_cnn.explain import fgsm, input_gradient, occlusion_map
from mnist_cnn.notebook import numerical_gradient
from mnist_cnn.numerics import assert_close, assert_gradient_close
from mnist_cnn.scratch import Sequential
from mnist_cnn.scratch import functional as F

from tests._helpers_scratch import ConvBlock, small_cnn

pytestmark = pytest.mark.numerics


def test_input_gradient_is_the_numerical_gradient():
    rng = np.random.default_rng(0)
    net = small_cnn(seed=1, input_shape=(8, 8, 1), blocks=(ConvBlock(3),), hidden=None,
                    classes=4).astype(np.float64)
    net.layers[0].params["b"] = rng.uniform(0.05, 0.1, 3)     # off the ReLU kink
    x, y = rng.random((2, 8, 8, 1)), np.array([1, 3])
    xc = x.copy()                                              # perturbed in place
    scores = {"class": lambda: float(net.forward(xc)[np.arange(2), y].sum()),
              "loss": lambda: 2 * F.cross_entropy(net.forward(xc), y, from_logits=True)}
    for score, f in scores.items():
        g = input_gradient(net, x, y, score)
        assert net.layers[0].need_dx is False                  # restored
        assert_gradient_close(g, numerical_gradient(f, xc), f"input gradient ({score})")
    with pytest.raises(ValueError, match="score"):
        input_gradient(net, x, y, "probability")


@pytest.fixture(scope="module")
def committed_pair(mnist):
    """The committed NumPy model, its Keras twin in float64 holding the same weights,
    TensorFlow, 64 test digits and their labels."""
    from mnist_cnn import keras_model as km
    from mnist_cnn.backend import import_tensorflow
    from mnist_cnn.scratch import train as numpy_train

    net = Sequential.load(paths.default_numpy_model())
    twin64 = km.build_twin(numpy_train.DROPOUT, numpy_train.LR, dtype="float64")
    twin64.set_weights([w.astype(np.float64) for w in net.get_weights()])
    (_, _), (x_test, y_test) = mnist
    return net, twin64, import_tensorflow(), prepare_images(x_test[:64]), \
        y_test[:64].astype(np.intp)


@pytest.mark.parametrize("score", ["class", "loss"])
def test_input_gradient_equals_gradient_tape(committed_pair, score):
    """In float64, on digits with a little noise added. The gradient of a max pool is
    the upstream gradient routed to the window's largest input; where two inputs are
    exactly equal (MNIST's saturated pixels under one kernel make such ties common)
    each library picks one, and in float32 its kernels' rounding decides which. So
    the two backward passes are compared where the maxima are unambiguous."""
    net, twin64, tf, x, y = committed_pair
    x64 = x.astype(np.float64) + 1e-3 * np.random.default_rng(0).random(x.shape)
    tx = tf.Variable(x64)
    with tf.GradientTape() as tape:
        logits = twin64(tx, training=False)
        if score == "class":
            total = tf.reduce_sum(tf.gather(logits, y, axis=1, batch_dims=1))
        else:
            total = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    expected = tape.gradient(total, tx).numpy()
    net64 = Sequential.load(paths.default_numpy_model()).astype(np.float64)  # a copy
    got = input_gradient(net64, x64, y, score)
    assert got.dtype == expected.dtype == np.float64
    assert_close(got, expected, f"input gradient ({score}) vs GradientTape, float64")
    assert np.abs(expected).max() > 1e-3                      # a real, non-zero gradient


def test_occlusion_marks_the_digit_not_the_border(committed_pair):
    net, _, _, x, y = committed_pair
    drops = occlusion_map(net.predict_proba, x[0], int(y[0]), patch=6, stride=2)
    assert drops.shape == ((28 - 6) // 2 + 1,) * 2
    assert abs(drops[0, 0]) < 1e-3 and abs(drops[-1, -1]) < 1e-3    # blank corners
    assert drops.max() > 0.05                                        # somewhere it matters


def test_fgsm_lowers_accuracy_and_stays_an_image(committed_pair):
    net, _, _, x, y = committed_pair
    adv = fgsm(x, input_gradient(net, x, y, "loss"), 0.2)
    assert adv.dtype == x.dtype and adv.min() >= 0 and adv.max() <= 1
    assert np.abs(adv - x).max() <= 0.2 + 1e-6
    clean = (net.predict(x) == y).mean()
    attacked = (net.predict(adv) == y).mean()
    assert attacked < clean - 0.3
    np.testing.assert_array_equal(fgsm(x, np.ones_like(x), 0.0), x)
