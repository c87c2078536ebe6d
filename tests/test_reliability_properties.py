"""Property-based tests (hypothesis): preprocessing and the scratch ops on inputs
nobody planned for.

``to_mnist`` gets images of any size (1x1 .. 4000x4000), dtype, channel count,
value range, constant content, single pixels and NaN/inf. The contract (see
its docstring) allows exactly three outcomes: a (28, 28) float32 image in
[0, 1] whose strongest ink is 1, ``None`` (no ink), or ``ValueError`` with a
message. Anything else - another exception, NaN, RuntimeWarnings on the way
(overflow, invalid value: the sign of silent garbage) - fails.

The scratch ops' forward shapes must follow the output-size formula
(``conv_output_size``) for random valid arguments, and every backward pass
returns gradients shaped like what the forward pass received.

The profile is bounded (examples, no deadline, derandomised) so the file runs
in well under a minute and the same examples run on every machine.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from mnist_cnn.numerics import assert_close
from mnist_cnn.preprocess import to_mnist
from mnist_cnn.scratch import functional as F
from mnist_cnn.shapes import IMAGE_SHAPE

settings.register_profile(
    "reliability", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])
PROFILE = settings.get_profile("reliability")
# "Never hangs": a property test that takes minutes is a failure, not a slow pass.
pytestmark = pytest.mark.timeout(180)

DTYPES = [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float16, np.float32,
          np.float64, np.bool_]
CHANNELS = [None, 1, 2, 3, 4]  # None: a 2-D (H, W) array
# A few big sizes only, with constant or sparse content (cheap to build and to check).
BIG_SIZES = [(4000, 4000), (1, 4000), (4000, 1), (2999, 17), (1500, 2500)]


# --------------------------------------------------------------------------- helpers


def _shape(h, w, c):
    return (h, w) if c is None else (h, w, c)


def _check_outcome(image):
    """Run to_mnist and check the result is one of the three allowed outcomes.

    Returns the result (array or None), or the ValueError raised.
    """
    with warnings.catch_warnings():
        # Overflow / invalid-value warnings mean NaN or inf got into the arithmetic.
        warnings.simplefilter("error", RuntimeWarning)
        try:
            out = to_mnist(image)
        except ValueError as exc:
            msg = str(exc)
            assert msg.strip(), "ValueError without a message"
            # NumPy / Python internals leaking out are not "a clear message".
            assert "NaN" not in msg and "cannot convert" not in msg, msg
            return exc
    if out is None:
        return None
    assert isinstance(out, np.ndarray)
    assert out.shape == IMAGE_SHAPE and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    # Not garbage: there is ink and the strongest ink is full intensity (MNIST-like).
    assert out.max() == pytest.approx(1.0, abs=1e-6)
    return out


def _cast(values01: np.ndarray, dtype) -> np.ndarray:
    """Values in [0, 1] -> the dtype's natural pixel range."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return values01 > 0.5
    if dtype == np.uint16:
        return np.round(values01 * 65535).astype(dtype)
    if np.issubdtype(dtype, np.integer):
        return np.round(values01 * 255).astype(dtype)
    return values01.astype(dtype)


@st.composite
def small_images(draw):
    """Arbitrary arrays: any small size, dtype, channels, full value range, NaN/inf."""
    h = draw(st.integers(1, 48))
    w = draw(st.integers(1, 48))
    c = draw(st.sampled_from(CHANNELS))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
    else:
        elements = None  # hypothesis' default: the dtype's whole range
    return draw(hnp.arrays(dtype, _shape(h, w, c), elements=elements))


@st.composite
def sparse_images(draw):
    """Constant background plus a few ink pixels, at any size up to 4000x4000."""
    if draw(st.integers(0, 9)) == 0:  # keep big sizes rare, and cheap: one channel
        h, w = draw(st.sampled_from(BIG_SIZES))
        dtype = np.dtype(draw(st.sampled_from([np.uint8, np.bool_, np.float32])))
        c = draw(st.sampled_from([None, 1]))
    else:
        h, w = draw(st.integers(1, 300)), draw(st.integers(1, 300))
        dtype = np.dtype(draw(st.sampled_from(DTYPES)))
        c = draw(st.sampled_from(CHANNELS))
    bg = draw(st.floats(0, 1))
    img = np.full(_shape(h, w, c), bg, dtype=np.float64)
    n_ink = draw(st.integers(0, 5))
    for _ in range(n_ink):
        y, x = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        img[y, x] = draw(st.floats(0, 1))
    if c in (2, 4) and draw(st.booleans()):
        img[..., -1] = 1.0  # opaque alpha
    return _cast(img, dtype)


# --------------------------------------------------------------------------- to_mnist


@PROFILE
@given(small_images())
def test_to_mnist_any_small_array_has_an_allowed_outcome(image):
    _check_outcome(image)


@PROFILE
@given(sparse_images())
def test_to_mnist_sparse_and_constant_images_any_size(image):
    result = _check_outcome(image)
    assert not isinstance(result, ValueError), f"a valid image was refused: {result}"


@PROFILE
@given(st.integers(1, 200), st.integers(1, 200), st.sampled_from(CHANNELS),
       st.sampled_from(DTYPES), st.floats(0, 1))
def test_constant_image_has_no_ink(h, w, c, dtype, level):
    """Constant pixels - including a constant, semi-transparent alpha - are blank."""
    image = _cast(np.full(_shape(h, w, c), level), dtype)
    assert _check_outcome(image) is None


@pytest.mark.parametrize("size, c", [((4000, 4000), None), ((1, 4000), 3), ((4000, 1), 4),
                                     ((2000, 2000), 2)])
def test_big_constant_image_has_no_ink(size, c):
    assert _check_outcome(np.full(_shape(*size, c), 200, np.uint8)) is None


@PROFILE
@given(st.integers(3, 400), st.integers(3, 400), st.data())
def test_single_pixel_becomes_a_centred_dot(h, w, data):
    """One ink pixel anywhere: a digit-sized blob whose centre of mass is the MNIST centre."""
    y, x = data.draw(st.integers(0, h - 1)), data.draw(st.integers(0, w - 1))
    img = np.zeros((h, w), np.uint8)
    img[y, x] = 255
    out = _check_outcome(img)
    assert isinstance(out, np.ndarray)
    ys, xs = np.indices(out.shape)
    total = out.sum()
    assert abs((out * ys).sum() / total - 14.0) <= 1.0
    assert abs((out * xs).sum() / total - 14.0) <= 1.0


@PROFILE
@given(st.integers(4, 60), st.integers(4, 60), st.data())
def test_dtype_and_scale_do_not_change_the_result(h, w, data):
    """The same picture as uint8, uint16, float32 [0, 1] and float64 [0, 255] reads the same."""
    u8 = data.draw(hnp.arrays(np.uint8, (h, w), elements=st.sampled_from([0, 0, 0, 60, 255])))
    assume(u8.max() == 255 and (u8 == 0).mean() > 0.5)
    ref = _check_outcome(u8)
    for variant in (u8.astype(np.uint16) * 257, u8.astype(np.float32) / 255,
                    u8.astype(np.float64)):
        out = _check_outcome(variant)
        assert isinstance(out, np.ndarray) and isinstance(ref, np.ndarray)
        assert_close(out, ref, "to_mnist: uint8, uint16, float inputs")


@pytest.mark.parametrize("bad", [
    np.float64(1.0), np.zeros(5), np.zeros((0, 5)), np.zeros((5, 0, 3)), np.zeros((4, 4, 5)),
    np.zeros((2, 4, 4, 1)), np.array([["a", "b"]]), np.zeros((3, 3), complex), None, "x.png",
    [[1, 2], [3]],
])
def test_non_images_raise_value_error_with_message(bad):
    with pytest.raises(ValueError, match=r"\w+"):
        to_mnist(bad)


@pytest.mark.parametrize("image", [
    np.array([[1e308, 0, 0], [0, -1e308, 0], [0, 0, 0]]),  # hi - lo overflows
    np.array([[np.finfo(np.float64).max, 0], [np.finfo(np.float64).min, 0]]),
    np.array([[3e38, 0, 0], [0, -3e38, 0], [0, 0, 0]], np.float32),
    np.array([[np.nan, np.inf], [-np.inf, 0.5]]),
    np.full((6, 6, 4), np.nan, np.float32),
])
def test_extreme_finite_and_nonfinite_floats(image):
    _check_outcome(image)


# --------------------------------------------------------------------------- scratch ops


@st.composite
def conv_args(draw):
    n = draw(st.integers(1, 3))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    c_in, c_out = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    padding = draw(st.sampled_from(["valid", "same"]))
    stride = draw(st.integers(1, 3))
    kh = draw(st.integers(1, h if padding == "valid" else 5))
    kw = draw(st.integers(1, w if padding == "valid" else 5))
    if padding == "same":
        # The kernel must fit the padded input.
        assume(kh <= h + sum(F.same_padding(h, kh, stride))
               and kw <= w + sum(F.same_padding(w, kw, stride)))
    seed = draw(st.integers(0, 2**32 - 1))
    return n, h, w, c_in, c_out, kh, kw, stride, padding, seed


@PROFILE
@given(conv_args())
def test_conv2d_shapes_follow_the_formula(args):
    n, h, w, c_in, c_out, kh, kw, stride, padding, seed = args
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c_in))
    wt = rng.standard_normal((kh, kw, c_in, c_out))
    b = rng.standard_normal(c_out)
    expected = (n, F.conv_output_size(h, kh, stride, padding),
                F.conv_output_size(w, kw, stride, padding), c_out)
    for op, backward in ((F.conv2d, F.conv2d_backward),
                         (F.conv2d_naive, F.conv2d_backward_naive)):
        out, cache = op(x, wt, b, stride=stride, padding=padding)
        assert out.shape == expected
        assert np.isfinite(out).all()
        dx, dw, db = backward(rng.standard_normal(out.shape), cache)
        assert dx.shape == x.shape and dw.shape == wt.shape and db.shape == b.shape
    # The two implementations compute the same numbers.
    assert_close(F.conv2d(x, wt, b, stride, padding)[0],
                 F.conv2d_naive(x, wt, b, stride, padding)[0], "conv2d vs conv2d_naive")


@PROFILE
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 4), st.data())
def test_conv2d_kernel_larger_than_input_is_a_clear_error(h, w, c, data):
    kh = data.draw(st.integers(h + 1, h + 4))
    x = np.zeros((1, h, w, c))
    wt = np.zeros((kh, 1, c, 2))
    with pytest.raises(ValueError, match="larger"):
        F.conv2d(x, wt, np.zeros(2))
    with pytest.raises(ValueError, match="larger"):
        F.conv_output_size(h, kh, 1, "valid")


@PROFILE
@given(st.integers(1, 3), st.integers(1, 14), st.integers(1, 14), st.integers(1, 3),
       st.data())
def test_max_pool_shapes_follow_the_formula(n, h, w, c, data):
    p = data.draw(st.integers(1, min(h, w, 4)))
    stride = data.draw(st.one_of(st.none(), st.integers(1, 3)))
    s = p if stride is None else stride
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    expected = (n, F.conv_output_size(h, p, s, "valid"), F.conv_output_size(w, p, s, "valid"), c)
    for op, backward in ((F.max_pool2d, F.max_pool2d_backward),
                         (F.max_pool2d_naive, F.max_pool2d_backward_naive)):
        out, cache = op(x, p, stride)
        assert out.shape == expected
        dx = backward(np.ones_like(out), cache)
        assert dx.shape == x.shape
        # Each window sends its whole gradient somewhere: the total is kept.
        assert dx.sum() == pytest.approx(out.size, rel=1e-6)


@PROFILE
@given(st.integers(1, 5), st.integers(1, 40), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_dense_shapes(n, d_in, d_out, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, d_in)), rng.standard_normal((d_in, d_out)), \
        rng.standard_normal(d_out)
    out, cache = F.dense(x, w, b)
    assert out.shape == (n, d_out)
    dx, dw, db = F.dense_backward(rng.standard_normal(out.shape), cache)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    with pytest.raises(ValueError):
        F.dense(x, rng.standard_normal((d_in + 1, d_out)), b)


@PROFILE
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=5, max_side=6),
                  elements=st.floats(-1e6, 1e6)))
def test_relu_and_flatten_shapes(x):
    out, cache = F.relu(x)
    assert out.shape == x.shape and (out >= 0).all()
    dx = F.relu_backward(np.ones_like(out), cache)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dx, (x > 0).astype(dx.dtype))
    flat, fcache = F.flatten(x)
    assert flat.shape == (x.shape[0], int(np.prod(x.shape[1:])))
    assert F.flatten_backward(flat, fcache).shape == x.shape
