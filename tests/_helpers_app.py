"""Small Keras models and drawn digits for the preprocess / predict / app tests."""

from __future__ import annotations

from pathlib import Path

from mnist_cnn.data import load_mnist, prepare_images
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES

APP = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")
TIMEOUT = 120  # seconds per AppTest run: the first one loads TensorFlow and the model


def small_model(input_shape=INPUT_SHAPE, logits=False, seed=0, filters=(8, 16)):
    """An untrained small CNN MNIST classifier (conv-relu-pool x2, dense 10)."""
    from mnist_cnn.backend import import_keras

    keras = import_keras()
    layers = keras.layers

    keras.utils.set_random_seed(seed)
    stack = [keras.Input(input_shape)]
    if len(input_shape) == 2:
        stack.append(layers.Reshape(INPUT_SHAPE, name="add_channel"))
    for i, f in enumerate(filters):
        stack += [layers.Conv2D(f, 3, activation="relu", name=f"conv{i + 1}"),
                  layers.MaxPooling2D(name=f"pool{i + 1}")]
    stack += [layers.Flatten(), layers.Dense(NUM_CLASSES, name="logits")]
    if not logits:
        stack.append(layers.Softmax(name="softmax"))
    return keras.Sequential(stack)


def trained_small_model(path, n=12000, epochs=2, seed=0, **kw):
    """Train :func:`small_model` briefly on the first n MNIST training images (a few
    seconds: a working classifier, well short of the committed model) and save it to
    ``path``. Returns the path."""
    from mnist_cnn.backend import import_keras

    keras = import_keras()
    (x, y), _ = load_mnist(progress=False)
    model = small_model(seed=seed, **kw)
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(prepare_images(x[:n]), y[:n], epochs=epochs, batch_size=128, verbose=0,
              shuffle=False)
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


# The digit stroke paths and their PIL rendering live in the package (the chapter
# and the browser tests use them too).
from mnist_cnn.canvas import DIGIT_STROKES, render_digit, stroke_points  # noqa: E402,F401
