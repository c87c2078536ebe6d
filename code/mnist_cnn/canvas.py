"""A drawing canvas, simulated: digits as a person would draw them on a 280x280 canvas.

The app, the book's in-page widget and the chapters all read digits drawn on a
280x280 canvas. To test and measure that reading without a person at the mouse,
this module makes such drawings two ways:

- :func:`simulate_canvas` pastes a real MNIST digit onto the canvas, scaled so its
  height is 30-90 % of the canvas, at a random place, its strokes thickened to a
  canvas-brush-like width (the canvas benchmark and the widget's preprocessing
  check use thousands of these);
- :data:`DIGIT_STROKES` holds hand-made stroke paths of a few digits;
  :func:`stroke_points` turns one into the pointer positions a mouse or finger
  would pass through (the browser tests draw with them), and
  :func:`render_digit` draws it with PIL (the deployment chapter).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["CANVAS", "BRUSH", "MAX_CANVAS", "surface_problem", "HEIGHT_RANGE", "THICKEN_RANGE",
           "DIGIT_STROKES", "stroke_points", "render_digit", "simulate_canvas"]

# The drawing surface of the app and of the book's pads: the digit widget reads it
# from the web export's manifest, the convolution step-through from its element.
CANVAS = 280     # its size, in canvas pixels
BRUSH = 18       # the brush width, in canvas pixels: the pads' brush, the app's default
MAX_CANVAS = 4096   # the largest surface a page accepts (a bigger one exhausts its memory)
HEIGHT_RANGE = (0.30, 0.90)   # digit height as a fraction of the canvas
THICKEN_RANGE = (0, 8)        # extra stroke width in canvas pixels (MaxFilter size - 1)

# Stroke paths of digits in a unit square (x right, y down), drawn like a person would.
DIGIT_STROKES = {
    0: [[(0.5, 0.0), (0.15, 0.2), (0.08, 0.5), (0.15, 0.8), (0.5, 1.0), (0.85, 0.8),
         (0.92, 0.5), (0.85, 0.2), (0.5, 0.0)]],
    1: [[(0.35, 0.15), (0.55, 0.0), (0.55, 1.0)]],
    2: [[(0.1, 0.25), (0.3, 0.03), (0.65, 0.0), (0.88, 0.2), (0.8, 0.45), (0.1, 1.0),
         (0.95, 1.0)]],
    3: [[(0.1, 0.1), (0.5, 0.0), (0.85, 0.15), (0.8, 0.38), (0.4, 0.5), (0.85, 0.62),
         (0.9, 0.85), (0.5, 1.0), (0.1, 0.9)]],
    4: [[(0.65, 1.0), (0.65, 0.0), (0.05, 0.7), (0.95, 0.7)]],
    7: [[(0.05, 0.0), (0.95, 0.0), (0.4, 1.0)]],
}


def surface_problem(size, brush) -> str | None:
    """What is wrong with a drawing surface of ``size`` canvas pixels and a brush
    ``brush`` pixels wide, or None if nothing: the size a whole number from 1 to
    :data:`MAX_CANVAS`, the brush a finite width above 0 and at most a quarter of the
    size (a wider pen leaves no room to draw a digit in). The book's scripts
    (widget.js, stepthrough.js) check a surface by this same rule."""
    def number(v):          # a real number (Python's or NumPy's, not a bool), finite
        return (isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)
                and (isinstance(v, numbers.Integral) or math.isfinite(v)))

    if not (number(size) and 1 <= size <= MAX_CANVAS and float(size).is_integer()):
        return f"the size must be a whole number of canvas pixels from 1 to {MAX_CANVAS}"
    if not (number(brush) and 0 < brush <= size / 4):
        return "the brush must be a width above 0 and at most a quarter of the size"
    return None


def stroke_points(digit: int, left: float, top: float, size: float, steps: int = 12):
    """Pixel points of each stroke of ``digit`` drawn in the square (left, top, size),
    with ``steps`` points per segment (a mouse moves in small steps).

    Returns a list of strokes, each a list of (x, y) floats.
    """
    out = []
    for stroke in DIGIT_STROKES[digit]:
        pts = []
        for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:], strict=True):
            for t in np.linspace(0, 1, steps, endpoint=False):
                pts.append((left + size * (x0 + t * (x1 - x0)),
                            top + size * (y0 + t * (y1 - y0))))
        x, y = stroke[-1]
        pts.append((left + size * x, top + size * y))
        out.append(pts)
    return out


def render_digit(digit: int, left: float, top: float, size: float, canvas: int = CANVAS,
                 width: int = BRUSH, rgba: bool = True) -> np.ndarray:
    """Draw ``digit`` from its stroke path with PIL, like the canvas does.

    Returns uint8 (canvas, canvas, 4) RGBA with a transparent background and
    opaque white strokes, or (canvas, canvas) white-on-black if ``rgba=False``.
    """
    from PIL import Image, ImageDraw

    mode, bg, ink = ("RGBA", (0, 0, 0, 0), (255, 255, 255, 255)) if rgba else ("L", 0, 255)
    img = Image.new(mode, (canvas, canvas), bg)
    d = ImageDraw.Draw(img)
    r = width / 2
    for pts in stroke_points(digit, left, top, size):
        d.line(pts, fill=ink, width=width)
        for x, y in pts:  # a round brush stamped along the path: round joins and caps
            d.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    return np.asarray(img)


def simulate_canvas(digit28: np.ndarray, rng: np.random.Generator,
                    canvas: int = CANVAS) -> np.ndarray:
    """Paste one MNIST digit onto a canvas as if drawn there.

    Inputs:
    - digit28: uint8 (28, 28) MNIST image, white on black.
    - rng: the random generator (scale, position and stroke width are drawn from it).

    Returns uint8 (canvas, canvas): white strokes on black.
    """
    from PIL import Image, ImageFilter

    rows = np.flatnonzero(digit28.any(axis=1))
    cols = np.flatnonzero(digit28.any(axis=0))
    crop = digit28[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h0, w0 = crop.shape
    height = rng.uniform(*HEIGHT_RANGE) * canvas
    scale = height / h0
    if w0 * scale > 0.95 * canvas:  # a very wide digit: keep it on the canvas
        scale = 0.95 * canvas / w0
    h, w = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    img = Image.fromarray(crop).resize((w, h), Image.Resampling.BILINEAR)
    grow = int(rng.integers(THICKEN_RANGE[0], THICKEN_RANGE[1] + 1))
    if grow:
        img = img.filter(ImageFilter.MaxFilter(2 * (grow // 2) + 1))
    top = int(rng.integers(0, canvas - h + 1))
    left = int(rng.integers(0, canvas - w + 1))
    out = np.zeros((canvas, canvas), np.uint8)
    out[top:top + h, left:left + w] = np.asarray(img)
    return out
