"""Small Keras models and drawn digits for the preprocess / predict / app tests."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def small_model(input_shape=(28, 28, 1), logits=False, seed=0, filters=(8, 16)):
    """An untrained small CNN MNIST classifier (conv-relu-pool x2, dense 10)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    stack = [keras.Input(input_shape)]
    if len(input_shape) == 2:
        stack.append(layers.Reshape((28, 28, 1), name="add_channel"))
    for i, f in enumerate(filters):
        stack += [layers.Conv2D(f, 3, activation="relu", name=f"conv{i + 1}"),
                  layers.MaxPooling2D(name=f"pool{i + 1}")]
    stack += [layers.Flatten(), layers.Dense(10, name="logits")]
    if not logits:
        stack.append(layers.Softmax(name="softmax"))
    return keras.Sequential(stack)


def trained_small_model(path, n=12000, epochs=2, seed=0, **kw):
    """Train :func:`small_model` briefly on the first n MNIST training images (a few
    seconds; ~96 % test accuracy) and save it to ``path``. Returns the path."""
    import keras
    from mnist_cnn.data import load_mnist

    (x, y), _ = load_mnist(progress=False)
    model = small_model(seed=seed, **kw)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(x[:n, ..., None].astype("float32") / 255, y[:n], epochs=epochs,
              batch_size=128, verbose=0, shuffle=False)
    model.save(path)
    return path


def committed_or_small_model(tmp_dir):
    """The committed production model if present, else a briefly trained small one."""
    from mnist_cnn import paths

    committed = paths.models_dir() / "cnn_model.keras"
    if committed.is_file():
        return committed
    path = tmp_dir / "small.keras"
    if not path.is_file():
        trained_small_model(path)
    return path


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


def stroke_points(digit, left, top, size, steps=12):
    """Pixel points of each stroke of ``digit`` drawn in the square (left, top, size),
    densified to ``steps`` points per segment (a mouse moves in small steps)."""
    out = []
    for stroke in DIGIT_STROKES[digit]:
        pts = []
        for (x0, y0), (x1, y1) in zip(stroke[:-1], stroke[1:], strict=True):
            for t in np.linspace(0, 1, steps, endpoint=False):
                pts.append((left + size * (x0 + t * (x1 - x0)), top + size * (y0 + t * (y1 - y0))))
        x, y = stroke[-1]
        pts.append((left + size * x, top + size * y))
        out.append(pts)
    return out


def render_digit(digit, left, top, size, canvas=280, width=18, rgba=True):
    """Render ``digit`` like the canvas does: RGBA, transparent background,
    opaque strokes (alpha 255) - or a white-on-black L image if rgba=False."""
    from PIL import Image, ImageDraw

    mode, bg, ink = ("RGBA", (0, 0, 0, 0), (255, 255, 255, 255)) if rgba else ("L", 0, 255)
    img = Image.new(mode, (canvas, canvas), bg)
    d = ImageDraw.Draw(img)
    for pts in stroke_points(digit, left, top, size):
        d.line(pts, fill=ink, width=width, joint="curve")
        r = width / 2
        for x, y in (pts[0], pts[-1]):
            d.ellipse([x - r, y - r, x + r, y + r], fill=ink)
    return np.asarray(img)
