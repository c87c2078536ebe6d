"""The other convolutions: conv2d_transpose is the backward pass of conv2d with
respect to its input (the adjoint identity, a numerical gradient, the loop
version's backward) and equals tf.nn.conv2d_transpose and Keras'
Conv2DTranspose; a dilated convolution, conv2d with dilate_kernel, equals
tf.nn.conv2d with dilations."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.backend import import_keras, import_tensorflow
from mnist_cnn.notebook import numerical_gradient
from mnist_cnn.numerics import assert_close, assert_gradient_close
from mnist_cnn.scratch import functional as F

pytestmark = pytest.mark.numerics

# (x of the transposed conv, w (KH, KW, C_out, C_in), stride, padding, output size)
CASES = [
    ((2, 5, 5, 3), (3, 3, 1, 3), 1, "valid", None),
    ((2, 6, 5, 2), (3, 3, 4, 2), 1, "same", None),
    ((3, 4, 4, 1), (3, 3, 2, 1), 2, "valid", None),
    ((2, 4, 5, 4), (3, 3, 3, 4), 2, "same", None),
    ((2, 4, 4, 2), (3, 3, 3, 2), 2, "same", (7, 8)),    # conv2d maps 7 and 8 to 4
    ((2, 5, 4, 3), (2, 2, 5, 3), 2, "valid", None),     # kernel = stride: no overlap
    ((2, 3, 3, 2), (1, 1, 2, 2), 2, "valid", None),     # kernel < stride: gaps
]


def _u(rng, shape, dtype=np.float32):
    return rng.uniform(-1, 1, shape).astype(dtype)


@pytest.mark.parametrize(("xshape", "wshape", "stride", "padding", "size"), CASES)
def test_conv2d_transpose_matches_tf(xshape, wshape, stride, padding, size):
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    x, w = _u(rng, xshape), _u(rng, wshape)
    out = F.conv2d_transpose(x, w, stride, padding, size)
    # TensorFlow takes the same filter array, (KH, KW, out_channels, in_channels),
    # and the output shape as an argument (several shapes map to x's under a stride).
    ref = tf.nn.conv2d_transpose(x, w, output_shape=out.shape, strides=stride,
                                 padding=padding.upper())
    err = assert_close(out, ref, f"conv2d_transpose vs TF, {xshape} {wshape} s{stride} "
                                 f"{padding}")
    print(f"{out.shape}: {err:.1e}")
    assert F.conv2d(out, w, None, stride, padding)[0].shape == x.shape


@pytest.mark.parametrize(("stride", "padding"),
                         [(1, "valid"), (2, "valid"), (2, "same")])
def test_the_default_output_size_is_keras_conv2d_transpose(stride, padding):
    keras = import_keras()
    rng = np.random.default_rng(1)
    x, w = _u(rng, (2, 5, 4, 3)), _u(rng, (3, 3, 2, 3))
    layer = keras.layers.Conv2DTranspose(2, 3, strides=stride, padding=padding,
                                         use_bias=False)
    layer.build(x.shape)
    layer.set_weights([w])     # Keras' kernel (KH, KW, filters, C_in): the same layout
    assert_close(F.conv2d_transpose(x, w, stride, padding), layer(x),
                 "conv2d_transpose vs Keras Conv2DTranspose")


@pytest.mark.parametrize(("xshape", "wshape", "stride", "padding", "size"), CASES)
def test_conv2d_transpose_is_the_adjoint_of_conv2d(xshape, wshape, stride, padding,
                                                   size):
    """<conv2d(z), y> = <z, conv2d_transpose(y)> for every z and y (float64)."""
    rng = np.random.default_rng(2)
    y, w = _u(rng, xshape, np.float64), _u(rng, wshape, np.float64)
    t = F.conv2d_transpose(y, w, stride, padding, size)
    z = _u(rng, t.shape, np.float64)
    lhs = np.sum(F.conv2d(z, w, None, stride, padding)[0] * y)
    assert_close(lhs, np.sum(z * t), "adjoint identity")


@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[6]])
def test_conv2d_transpose_is_the_gradient_of_conv2d_wrt_its_input(case):
    xshape, wshape, stride, padding, size = case
    rng = np.random.default_rng(3)
    y, w = _u(rng, xshape, np.float64), _u(rng, wshape, np.float64)
    t = F.conv2d_transpose(y, w, stride, padding, size)
    z = _u(rng, t.shape, np.float64)
    def scalar():
        return float(np.sum(F.conv2d(z, w, None, stride, padding)[0] * y))

    num = numerical_gradient(scalar, z)
    assert_gradient_close(t, num, "conv2d_transpose = d<conv2d(z), y>/dz")
    # ... and the loops' backward pass (an independent implementation) agrees.
    _, cache = F.conv2d_naive(z, w, None, stride, padding)
    assert_close(t, F.conv2d_backward_naive(y, cache)[0], "against the loops")


def test_conv2d_transpose_refuses_an_output_size_conv2d_does_not_map_to_x():
    x, w = np.zeros((1, 4, 4, 2)), np.zeros((3, 3, 1, 2))
    with pytest.raises(ValueError, match="not to x's shape"):
        F.conv2d_transpose(x, w, 2, "same", (10, 8))
    with pytest.raises(ValueError, match="not to x's shape"):     # C_in 5, x has 2
        F.conv2d_transpose(x, np.zeros((3, 3, 1, 5)), 1, "same")


# --------------------------------------------------------------------------- dilation
@pytest.mark.parametrize(("rate", "padding", "kshape"), [
    (2, "valid", (3, 3, 2, 4)), (2, "same", (3, 3, 3, 2)), (3, "same", (2, 3, 1, 3))])
def test_dilated_convolution_matches_tf(rate, padding, kshape):
    tf = import_tensorflow()
    rng = np.random.default_rng(4)
    x, w, b = _u(rng, (2, 11, 10, kshape[2])), _u(rng, kshape), _u(rng, kshape[3])
    wd = F.dilate_kernel(w, rate)
    assert wd.shape[:2] == (rate * (kshape[0] - 1) + 1, rate * (kshape[1] - 1) + 1)
    ref = tf.nn.conv2d(x, w, strides=1, padding=padding.upper(), dilations=rate) + b
    assert_close(F.conv2d(x, wd, b, 1, padding)[0], ref, f"dilated, {rate} {padding}")


def test_the_gradient_of_a_dilated_kernel_is_taken_at_its_taps():
    """dW = dW_dilated[::d, ::d], checked numerically (TensorFlow's CPU kernels
    have no gradient for dilated convolutions)."""
    rng = np.random.default_rng(5)
    x, w, rate = _u(rng, (2, 7, 7, 2), np.float64), _u(rng, (2, 3, 2, 3), np.float64), 2
    out, cache = F.conv2d(x, F.dilate_kernel(w, rate), None, 1, "same")
    dout = rng.standard_normal(out.shape)
    dx, dw_dilated, _ = F.conv2d_backward(dout, cache)

    def scalar():
        return float(np.sum(F.conv2d(x, F.dilate_kernel(w, rate), None, 1, "same")[0]
                            * dout))

    assert_gradient_close(dw_dilated[::rate, ::rate], numerical_gradient(scalar, w),
                          "dilated conv, dW")
    assert_gradient_close(dx, numerical_gradient(scalar, x), "dilated conv, dx")
