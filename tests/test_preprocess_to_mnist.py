"""MNIST-style preprocessing: centring, aspect, inversion, alpha, empty and bad input."""

import numpy as np
import pytest
from mnist_cnn.numerics import assert_close
from mnist_cnn.preprocess import BOX, CENTRE, SIZE, ink_map, naive_resize, to_mnist
from PIL import Image, ImageDraw


def _com(img):
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    m = img.sum()
    return (img * ys).sum() / m, (img * xs).sum() / m


def _extent(img):
    rows = np.flatnonzero(img.any(axis=1))
    cols = np.flatnonzero(img.any(axis=0))
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _drawn_seven(size=280, box=(40, 30, 140, 200), width=18, ink=255, paper=0):
    """A '7' stroked with PIL inside box=(left, top, right, bottom)."""
    img = Image.new("L", (size, size), paper)
    d = ImageDraw.Draw(img)
    left, top, right, bottom = box
    d.line([(left, top), (right, top), ((left + right) // 2, bottom)], fill=ink, width=width)
    return np.asarray(img)


def _check_valid(out):
    assert out.shape == (SIZE, SIZE)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("box", [(10, 10, 60, 90), (180, 150, 270, 270), (60, 40, 240, 250)])
def test_centre_of_mass_and_box_do_not_depend_on_position_or_size(box):
    out = to_mnist(_drawn_seven(box=box))
    _check_valid(out)
    cy, cx = _com(out)
    assert abs(cy - CENTRE) <= 0.5 and abs(cx - CENTRE) <= 0.5
    h, w = _extent(out)
    assert max(h, w) == BOX


def test_same_digit_anywhere_gives_nearly_the_same_image():
    a = to_mnist(_drawn_seven(box=(10, 10, 60, 90), width=6))
    b = to_mnist(_drawn_seven(box=(150, 120, 250, 280 - 1), width=12))
    assert np.abs(a - b).mean() < 0.08


def test_aspect_ratio_is_kept():
    # A tall thin bar, 200 x 40 -> 20 x 4 (the "1" case must not be stretched wide).
    img = np.zeros((280, 280), np.uint8)
    img[30:230, 100:140] = 255
    out = to_mnist(img)
    h, w = _extent(out > 0.5)
    assert h == BOX
    assert 3 <= w <= 5
    # A wide bar scales its width to 20.
    img = np.zeros((100, 300), np.uint8)
    img[40:60, 20:280] = 255
    h, w = _extent(to_mnist(img) > 0.5)
    assert w == BOX and h <= 3


def test_dark_on_light_equals_light_on_dark():
    light_on_dark = _drawn_seven()
    dark_on_light = 255 - light_on_dark
    a, b = to_mnist(light_on_dark), to_mnist(dark_on_light)
    assert_close(a, b, "to_mnist: dark on light = light on dark")
    # RGB paper with blue ink gives the same digit too.
    rgb = np.stack([dark_on_light, dark_on_light, np.full_like(dark_on_light, 255)], axis=-1)
    # not the same computation: blue ink on RGB paper has a different luminance, so the
    # strokes differ in brightness by a few percent of full ink
    np.testing.assert_allclose(to_mnist(rgb), a, atol=0.05)


def test_float_and_pil_inputs_match_uint8():
    u8 = _drawn_seven()
    ref = to_mnist(u8)
    assert_close(to_mnist(u8.astype(np.float32) / 255), ref)
    assert_close(to_mnist(u8.astype(np.float64)), ref)  # 0..255 floats
    assert_close(to_mnist(Image.fromarray(u8)), ref)
    assert_close(to_mnist(u8[..., None]), ref)
    assert_close(to_mnist(u8.astype(np.uint16) * 257), ref)


def test_alpha_transparent_is_background_whatever_the_stroke_colour():
    # The canvas: untouched pixels have alpha 0 (RGB 0), strokes are opaque.
    stroke = _drawn_seven()
    for colour in [(0, 0, 0), (255, 255, 255), (200, 30, 30)]:
        rgba = np.zeros((280, 280, 4), np.uint8)
        rgba[..., :3] = np.where(stroke[..., None] > 0, np.array(colour, np.uint8), 0)
        rgba[..., 3] = stroke
        out = to_mnist(rgba)
        assert_close(out, to_mnist(stroke))
    # PIL RGBA and LA work the same way.
    assert_close(to_mnist(Image.fromarray(rgba, "RGBA")), to_mnist(stroke))


def test_mnist_digit_is_nearly_unchanged():
    from mnist_cnn.data import load_mnist

    (_, _), (x_test, _) = load_mnist(progress=False)
    for d in x_test[:20]:
        out = to_mnist(d)
        _check_valid(out)
        # Same geometry up to resampling: most of the ink stays where it was.
        ref = d / 255.0
        overlap = (np.minimum(out, ref)).sum() / ref.sum()
        assert overlap > 0.75


@pytest.mark.parametrize("blank", [
    np.zeros((280, 280, 4), np.uint8),             # canvas before / after reset
    np.full((280, 280), 255, np.uint8),            # white paper
    np.full((50, 50, 3), 0.5),                     # constant gray float
    np.zeros((1, 1)),                              # single pixel
    np.full((10, 10), np.nan),                     # all NaN
])
def test_no_ink_returns_none(blank):
    assert to_mnist(blank) is None
    assert naive_resize(blank) is None


def test_nan_and_inf_are_background():
    img = _drawn_seven().astype(np.float64) / 255
    noisy = img.copy()
    noisy[0, :] = np.nan
    noisy[-1, :5] = np.inf
    noisy[5, 5] = -np.inf
    out = to_mnist(noisy)
    _check_valid(out)
    assert_close(out, to_mnist(img))


@pytest.mark.parametrize("bad, match", [
    ("digit.png", "load_image"),
    (None, "expects an image"),
    (np.zeros((2, 28, 28, 1)), "shape"),
    (np.zeros((28, 28, 5)), "shape"),
    (np.zeros(28), "shape"),
    (np.zeros((0, 10)), "zero-size"),
    (np.array([["a", "b"]]), "dtype"),
    (np.zeros((4, 4), dtype=complex), "complex"),
])
def test_not_an_image_raises_clear_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        to_mnist(bad)


def test_single_ink_pixel_and_tiny_images_are_valid():
    img = np.zeros((40, 40), np.uint8)
    img[3, 37] = 255
    _check_valid(to_mnist(img))
    _check_valid(to_mnist(np.array([[0, 255], [0, 0]], np.uint8)))


def test_ink_map_range_and_threshold():
    ink = ink_map(_drawn_seven())
    assert ink.min() == 0.0 and ink.max() == 1.0


def test_naive_resize_squashes_the_whole_canvas():
    img = _drawn_seven(box=(10, 10, 60, 90))
    out = naive_resize(img)
    _check_valid(out)
    # The digit stays in the top-left corner, small: exactly what to_mnist fixes.
    cy, cx = _com(out)
    assert cy < 8 and cx < 8


def test_huge_float_range_does_not_overflow():
    img = np.zeros((30, 30))
    img[5:25, 12:16] = 1e308
    img[0, 0] = -1e308
    with np.errstate(all="raise"):
        out = to_mnist(img)
    _check_valid(out)


def test_uniformly_translucent_image_is_blank():
    assert to_mnist(np.full((40, 40, 2), 64, np.uint8)) is None
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 3] = 60
    assert to_mnist(rgba) is None


def test_thick_brush_on_small_digit_is_thinned_towards_mnist_width():
    from mnist_cnn.preprocess import (
        THICK_FRACTION,
        _bbox,
        _fit_box,
        _stroke_width,
        ink_map,
        stroke_fraction,
    )

    img = _drawn_seven(box=(20, 20, 80, 100), width=40)  # stroke ~ 29 % of the digit's size
    ink = ink_map(img)
    assert stroke_fraction(ink) > THICK_FRACTION + 0.02       # bolder than _thin's threshold
    thick = to_mnist(img)
    _check_valid(thick)
    t, b, l, r = _bbox(ink)
    unthinned = _fit_box(ink[t:b, l:r])
    assert _stroke_width(thick) < _stroke_width(unthinned) - 1
    assert _stroke_width(thick) <= THICK_FRACTION * BOX + 1
    # A normal brush is left alone: same result as without the thinning step.
    img = _drawn_seven(box=(20, 20, 200, 250), width=18)
    ink = ink_map(img)
    t, b, l, r = _bbox(ink)
    from mnist_cnn.preprocess import _centre

    np.testing.assert_allclose(to_mnist(img), _centre(_fit_box(ink[t:b, l:r])))


def test_stroke_width_estimate():
    from mnist_cnn.preprocess import _stroke_width

    bar = np.zeros((100, 100))
    bar[10:90, 40:52] = 1.0  # 12 px wide, 80 long
    assert 10 < _stroke_width(bar) < 14
