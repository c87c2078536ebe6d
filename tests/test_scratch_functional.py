"""mnist_cnn.scratch.functional: hand-computed examples, centred-difference gradient
checks (float64), naive vs vectorised agreement, and argument errors."""

from __future__ import annotations

import numpy as np
import pytest
from mnist_cnn.notebook import check_gradient, numerical_gradient
from mnist_cnn.numerics import GRADIENT_RTOL, assert_close, assert_gradient_close
from mnist_cnn.scratch import functional as F

pytestmark = pytest.mark.numerics


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --------------------------------------------------------------------------- by hand

X33 = np.arange(1, 10, dtype=np.float64).reshape(1, 3, 3, 1)   # [[1,2,3],[4,5,6],[7,8,9]]
W22 = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)


@pytest.mark.parametrize("conv", [F.conv2d_naive, F.conv2d])
def test_conv_3x3_input_2x2_kernel_valid_by_hand(conv):
    out, _ = conv(X33, W22, np.array([1.0]))
    # top-left: 1*1 + 2*2 + 4*3 + 5*4 = 37, plus the bias 1
    expected = np.array([[37, 47], [67, 77]]) + 1.0
    np.testing.assert_array_equal(out[0, :, :, 0], expected)


@pytest.mark.parametrize("conv", [F.conv2d_naive, F.conv2d])
def test_conv_same_padding_is_asymmetric_like_tensorflow(conv):
    # n=3, k=2, s=1: pad_total = 1 -> 0 rows/cols before, 1 after (bottom/right).
    assert F.same_padding(3, 2, 1) == (0, 1)
    out, _ = conv(X33, W22, np.array([0.0]), padding="same")
    expected = np.array([
        [37, 47, 3 * 1 + 6 * 3],
        [67, 77, 6 * 1 + 9 * 3],
        [7 * 1 + 8 * 2, 8 * 1 + 9 * 2, 9 * 1],
    ], dtype=np.float64)
    np.testing.assert_array_equal(out[0, :, :, 0], expected)


def test_conv_stride_2_by_hand():
    x = np.arange(16, dtype=np.float64).reshape(1, 4, 4, 1)
    w = np.ones((2, 2, 1, 1))
    out, _ = F.conv2d(x, w, np.zeros(1), stride=2)
    # sums of the four 2x2 blocks
    np.testing.assert_array_equal(out[0, :, :, 0], [[0 + 1 + 4 + 5, 2 + 3 + 6 + 7],
                                                    [8 + 9 + 12 + 13, 10 + 11 + 14 + 15]])


def test_conv_multichannel_multifilter_by_hand():
    # 2 channels, 2 filters, 1x1 kernels: each filter is a weighted sum of channels.
    x = np.stack([np.ones((2, 2)), 2 * np.ones((2, 2))], axis=-1)[None]
    w = np.array([[1.0, 0.0], [10.0, -1.0]]).reshape(1, 1, 2, 2)   # w[c_in, c_out]
    out, _ = F.conv2d(x, w, np.array([0.5, 0.0]))
    np.testing.assert_array_equal(out[0, 0, 0], [1 * 1 + 2 * 10 + 0.5, 1 * 0 + 2 * -1])


@pytest.mark.parametrize(("n", "k", "s", "padding", "expected"), [
    (28, 3, 1, "valid", 26), (26, 2, 2, "valid", 13), (13, 2, 2, "valid", 6),
    (28, 3, 1, "same", 28), (28, 3, 2, "same", 14), (7, 2, 2, "same", 4), (5, 3, 3, "valid", 1),
])
def test_conv_output_size(n, k, s, padding, expected):
    assert F.conv_output_size(n, k, s, padding) == expected


def test_same_padding_matches_formula():
    for n in range(1, 12):
        for k in range(1, 5):
            for s in range(1, 4):
                before, after = F.same_padding(n, k, s)
                total = max((-(-n // s) - 1) * s + k - n, 0)
                assert (before, after) == (total // 2, total - total // 2)


@pytest.mark.parametrize(("pool", "pool_backward"), [
    (F.max_pool2d_naive, F.max_pool2d_backward_naive), (F.max_pool2d, F.max_pool2d_backward)])
def test_max_pool_by_hand_with_ties(pool, pool_backward):
    x = np.array([[1, 3, 0, 0],
                  [3, 2, 0, 0],
                  [5, 1, 7, 7],
                  [0, 5, 7, 7]], dtype=np.float64).reshape(1, 4, 4, 1)
    out, cache = pool(x)
    np.testing.assert_array_equal(out[0, :, :, 0], [[3, 0], [5, 7]])
    dx = pool_backward(np.array([[10.0, 20.0], [30.0, 40.0]]).reshape(1, 2, 2, 1), cache)
    # Ties: the whole gradient goes to the first maximum in row-major order.
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 10, 20, 0],
                                                   [0, 0, 0, 0],
                                                   [30, 0, 40, 0],
                                                   [0, 0, 0, 0]])


def test_relu_flatten_dense_by_hand():
    out, cache = F.relu(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(out, [0, 0, 2])
    np.testing.assert_array_equal(F.relu_backward(np.array([5.0, 5.0, 5.0]), cache), [0, 0, 5])
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    flat, shape = F.flatten(x)
    np.testing.assert_array_equal(flat, [[0, 1, 2, 3, 4, 5, 6, 7]])   # H, W, C order
    assert F.flatten_backward(flat, shape).shape == x.shape
    out, _ = F.dense(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]),
                     np.array([0.0, 0.0, 10.0]))
    np.testing.assert_array_equal(out, [[1, 2, 13]])


def test_softmax_stable_at_large_logits():
    z = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4 + np.log(2)]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = F.softmax(z)
        logp = F.log_softmax(z)
    np.testing.assert_allclose(p[0], [1, 0, 0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)
    np.testing.assert_allclose(p[2], [0.25, 0.25, 0.5])
    np.testing.assert_allclose(logp[0], [0, -2e4, -1e4])
    assert np.all(np.isfinite(logp))
    assert F.cross_entropy(z, [1, 0, 2], from_logits=True) == pytest.approx(
        (2e4 + np.log(3) + np.log(2)) / 3)


def test_cross_entropy_probs_and_logits_agree(rng):
    z = rng.standard_normal((6, 10))
    y = rng.integers(0, 10, 6)
    expected = -np.mean(np.log(np.exp(z[np.arange(6), y]) / np.exp(z).sum(axis=1)))
    assert F.cross_entropy(z, y, from_logits=True) == pytest.approx(expected, rel=1e-12)
    assert F.cross_entropy(F.softmax(z), y) == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------- gradient checks

CONV_CASES = [
    # (N, H, W, C_in), (KH, KW, C_out), stride, padding
    ((2, 5, 5, 1), (3, 3, 2), 1, "valid"),
    ((2, 5, 6, 2), (3, 2, 3), 1, "same"),
    ((1, 7, 7, 2), (3, 3, 2), 2, "valid"),
    ((2, 6, 6, 2), (2, 2, 2), 2, "same"),     # even size, stride 2
    ((1, 6, 7, 3), (3, 3, 2), 2, "same"),     # asymmetric padding
    ((1, 8, 8, 1), (4, 4, 2), 3, "same"),
    ((1, 6, 7, 2), (3, 3, 2), 2, 1),          # explicit padding: one zero on every side
]


@pytest.mark.parametrize(("xshape", "wshape", "stride", "padding"), CONV_CASES)
@pytest.mark.parametrize(("conv", "conv_backward"), [
    (F.conv2d, F.conv2d_backward), (F.conv2d_naive, F.conv2d_backward_naive)])
def test_conv_backward_gradcheck(rng, conv, conv_backward, xshape, wshape, stride, padding):
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((wshape[0], wshape[1], xshape[3], wshape[2]))
    b = rng.standard_normal(wshape[2])
    state = {}

    def forward(x, w, b):
        out, state["cache"] = conv(x, w, b, stride, padding)
        return out

    def grads(dout):
        dx, dw, db = conv_backward(dout, state["cache"])
        return {"x": dx, "w": dw, "b": db}

    errors = check_gradient(forward, grads, {"x": x, "w": w, "b": b}, rng)
    assert max(errors.values()) < GRADIENT_RTOL, errors


@pytest.mark.parametrize(("xshape", "pool", "stride"), [
    ((2, 4, 4, 2), 2, None), ((1, 5, 7, 2), 2, None), ((1, 7, 7, 1), 3, 2), ((1, 5, 5, 2), 2, 1),
])
@pytest.mark.parametrize(("pool_fn", "pool_backward"), [
    (F.max_pool2d, F.max_pool2d_backward), (F.max_pool2d_naive, F.max_pool2d_backward_naive)])
def test_max_pool_backward_gradcheck(rng, pool_fn, pool_backward, xshape, pool, stride):
    # A permutation of well-separated values: no ties, no max changes under +-h.
    x = rng.permutation(np.prod(xshape)).reshape(xshape).astype(np.float64) * 0.1
    state = {}

    def forward(x):
        out, state["cache"] = pool_fn(x, pool, stride)
        return out

    errors = check_gradient(forward, lambda d: {"x": pool_backward(d, state["cache"])},
                            {"x": x}, rng)
    assert errors["x"] < GRADIENT_RTOL, errors


def test_relu_backward_gradcheck(rng):
    x = rng.standard_normal((3, 4, 5))
    x[np.abs(x) < 1e-3] = 0.5       # stay away from the kink
    state = {}

    def forward(x):
        out, state["cache"] = F.relu(x)
        return out

    errors = check_gradient(forward, lambda d: {"x": F.relu_backward(d, state["cache"])},
                            {"x": x}, rng)
    assert errors["x"] < GRADIENT_RTOL


def test_flatten_backward_gradcheck(rng):
    x = rng.standard_normal((2, 3, 2, 2))
    errors = check_gradient(lambda x: F.flatten(x)[0],
                            lambda d: {"x": F.flatten_backward(d, x.shape)}, {"x": x}, rng)
    assert errors["x"] < GRADIENT_RTOL


@pytest.mark.parametrize(("n", "d_in", "d_out"), [(1, 3, 2), (4, 7, 5)])
def test_dense_backward_gradcheck(rng, n, d_in, d_out):
    inputs = {"x": rng.standard_normal((n, d_in)), "w": rng.standard_normal((d_in, d_out)),
              "b": rng.standard_normal(d_out)}
    state = {}

    def forward(x, w, b):
        out, state["cache"] = F.dense(x, w, b)
        return out

    def grads(dout):
        dx, dw, db = F.dense_backward(dout, state["cache"])
        return {"x": dx, "w": dw, "b": db}

    errors = check_gradient(forward, grads, inputs, rng)
    assert max(errors.values()) < GRADIENT_RTOL, errors


@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_softmax_cross_entropy_backward_gradcheck(rng, scale):
    z = rng.standard_normal((5, 10)) * scale
    y = rng.integers(0, 10, 5)
    # h = 1e-5: at scale 30 the loss is large next to its gradient, and round-off in
    # f(z + h) - f(z - h), about eps * |f| / h, dominates the default h = 1e-6
    num = numerical_gradient(lambda: F.cross_entropy(z, y, from_logits=True), z, h=1e-5)
    assert_gradient_close(F.softmax_cross_entropy_backward(z, y), num, "softmax cross-entropy")
    # the closed form (p - onehot(y)) / N
    expected = (F.softmax(z) - F.one_hot(y, 10, np.float64)) / 5
    assert_close(F.softmax_cross_entropy_backward(z, y), expected, "(p - onehot(y)) / N")


# --------------------------------------------------------------------------- naive vs fast


@pytest.mark.parametrize(("xshape", "wshape", "stride", "padding"), CONV_CASES + [
    ((3, 12, 12, 3), (3, 3, 4), 1, "same"), ((2, 11, 9, 2), (5, 5, 3), 2, "valid")])
def test_conv_naive_and_vectorised_agree(rng, xshape, wshape, stride, padding):
    x = rng.standard_normal(xshape)
    w = rng.standard_normal((wshape[0], wshape[1], xshape[3], wshape[2]))
    b = rng.standard_normal(wshape[2])
    out1, c1 = F.conv2d_naive(x, w, b, stride, padding)
    out2, c2 = F.conv2d(x, w, b, stride, padding)
    assert out1.shape == out2.shape
    assert_close(out1, out2, "conv2d_naive vs conv2d")
    dout = rng.standard_normal(out1.shape)
    for g1, g2 in zip(F.conv2d_backward_naive(dout, c1), F.conv2d_backward(dout, c2),
                      strict=True):
        assert_close(g1, g2, "conv2d_backward_naive vs conv2d_backward")


@pytest.mark.parametrize(("pool", "stride"), [(2, None), (3, 2), (2, 1), (3, 3), (2, 3)])
def test_max_pool_naive_and_vectorised_agree(rng, pool, stride):
    # Rounded values make ties common: both versions must apply the same tie rule.
    x = np.round(rng.standard_normal((2, 9, 8, 3)), 0)
    out1, c1 = F.max_pool2d_naive(x, pool, stride)
    out2, c2 = F.max_pool2d(x, pool, stride)
    np.testing.assert_array_equal(out1, out2)
    dout = rng.standard_normal(out1.shape)
    # (overlapping windows add up in another order: equal to rounding)
    assert_close(F.max_pool2d_backward_naive(dout, c1), F.max_pool2d_backward(dout, c2),
                 "max_pool2d_backward_naive vs max_pool2d_backward")


def test_float32_stays_float32(rng):
    x = rng.standard_normal((2, 6, 6, 1)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 2)).astype(np.float32)
    out, cache = F.conv2d(x, w, np.zeros(2, np.float32), padding="same")
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in F.conv2d_backward(out, cache))
    p, c = F.max_pool2d(out)
    assert p.dtype == np.float32 and F.max_pool2d_backward(p, c).dtype == np.float32


# --------------------------------------------------------------------------- bad arguments


def test_conv_wrong_rank_names_shape():
    with pytest.raises(ValueError, match=r"\(28, 28\)"):
        F.conv2d(np.zeros((28, 28)), np.zeros((3, 3, 1, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"\(3, 3, 2\)"):
        F.conv2d_naive(np.zeros((1, 5, 5, 1)), np.zeros((3, 3, 2)), np.zeros(2))


def test_conv_channel_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"channel mismatch.*\(1, 5, 5, 3\).*\(3, 3, 1, 2\)"):
        F.conv2d(np.zeros((1, 5, 5, 3)), np.zeros((3, 3, 1, 2)), np.zeros(2))


def test_conv_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"\(5, 5, 1, 1\).*larger than the padded input"):
        F.conv2d(np.zeros((1, 4, 4, 1)), np.zeros((5, 5, 1, 1)), np.zeros(1))
    # "same" pads enough for any kernel: this one is fine
    out, _ = F.conv2d(np.zeros((1, 4, 4, 1)), np.zeros((5, 5, 1, 1)), np.zeros(1), padding="same")
    assert out.shape == (1, 4, 4, 1)


def test_unknown_padding_and_bad_stride():
    with pytest.raises(ValueError, match="unknown padding 'full'"):
        F.conv2d(np.zeros((1, 4, 4, 1)), np.zeros((2, 2, 1, 1)), np.zeros(1), padding="full")
    with pytest.raises(ValueError, match="stride"):
        F.conv2d(np.zeros((1, 4, 4, 1)), np.zeros((2, 2, 1, 1)), np.zeros(1), stride=0)
    with pytest.raises(ValueError, match="unknown padding"):
        F.conv_output_size(28, 3, 1, "causal")


def test_pool_dense_loss_bad_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        F.max_pool2d(np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"larger than the input of shape \(1, 1, 4, 1\)"):
        F.max_pool2d(np.zeros((1, 1, 4, 1)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.dense(np.zeros((2, 3)), np.zeros((4, 5)), np.zeros(5))
    with pytest.raises(ValueError, match="labels"):
        F.cross_entropy(np.zeros((2, 10)), [0, 10])


def test_output_size_formula_with_padding_over_many_cases():
    """floor((n + 2p - k) / s) + 1, for every n, k, s, p in a grid, is the shape the
    convolution (vectorised and loops) and the layer actually produce."""
    rng = np.random.default_rng(11)
    checked = 0
    for n in range(1, 10):
        for k in range(1, 6):
            for s in range(1, 4):
                for p in range(0, 3):
                    if k > n + 2 * p:
                        with pytest.raises(ValueError, match="larger than the input"):
                            F.conv_output_size(n, k, s, p)
                        continue
                    expected = (n + 2 * p - k) // s + 1
                    assert F.conv_output_size(n, k, s, p) == expected
                    x = rng.standard_normal((1, n, n + 1, 2))
                    w = rng.standard_normal((k, k, 2, 3))
                    out, _ = F.conv2d(x, w, np.zeros(3), s, p)
                    assert out.shape == (1, expected, F.conv_output_size(n + 1, k, s, p), 3)
                    checked += 1
    assert checked > 300
    assert F.conv_output_size(28, 3, 1, "valid") == F.conv_output_size(28, 3, 1, 0) == 26


@pytest.mark.parametrize("padding", [1, 2, np.int64(1)])
def test_int_padding_is_zeros_on_every_side(rng, padding):
    x = rng.standard_normal((2, 7, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    p = int(padding)
    padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    out, cache = F.conv2d(x, w, b, 2, padding)
    assert_close(out, F.conv2d(padded, w, b, 2, "valid")[0], "padding p = zeros then valid")
    naive, naive_cache = F.conv2d_naive(x, w, b, 2, padding)
    assert_close(out, naive, "explicit padding: conv2d vs naive")
    dout = rng.standard_normal(out.shape)
    for a, c in zip(F.conv2d_backward(dout, cache), F.conv2d_backward_naive(dout, naive_cache),
                    strict=True):
        assert_close(a, c, "explicit padding: backward vs naive")
    with pytest.raises(ValueError, match="unknown padding"):
        F.conv2d(x, w, b, 1, -1)
    with pytest.raises(ValueError, match="unknown padding"):
        F.conv2d(x, w, b, 1, True)


def test_dropout_keeps_the_expected_value_and_is_gradient_checked(rng):
    x = rng.standard_normal((200, 300))
    out, mask = F.dropout(x, 0.3, np.random.default_rng(5))
    assert set(np.unique(mask)) == {0.0, 1 / 0.7}
    assert abs((mask == 0).mean() - 0.3) < 0.01              # the rate
    assert abs(mask.mean() - 1.0) < 0.01                      # E[out] = x
    np.testing.assert_array_equal(out, x * mask)

    small = rng.standard_normal((4, 6))

    def forward(x):                                           # the same mask every call
        return F.dropout(x, 0.5, np.random.default_rng(9))[0]

    def grads(dout):
        return {"x": F.dropout_backward(dout, F.dropout(small, 0.5, np.random.default_rng(9))[1])}

    assert check_gradient(forward, grads, {"x": small}, rng)["x"] < GRADIENT_RTOL
