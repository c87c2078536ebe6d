"""Model files: load any of them safely and check it is an MNIST classifier.

The app, the CLI, the bridge and :mod:`mnist_cnn.evaluate` serve *any* Keras
MNIST classifier (input 28x28 or 28x28x1, 10 outputs), not only the course's
production model, so loading lives here rather than in :mod:`mnist_cnn.keras_model`
(which builds and trains that model).

The from-scratch NumPy network's own file (``.npz``, written by
:meth:`mnist_cnn.scratch.network.Sequential.save`) is the other format: the
commands that take a model take both (:func:`is_numpy_model` tells them apart by
the suffix), and :func:`load_numpy_mnist_model` loads one without importing
TensorFlow.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from mnist_cnn.shapes import IMAGE_SHAPE, INPUT_SHAPE, NUM_CLASSES

KERAS_HINT = (
    "Train one with `python -m mnist_cnn train-keras`, or use the committed "
    "models/cnn_model.keras from the repository."
)
NUMPY_HINT = (
    "Train one with `python -m mnist_cnn train-numpy`, or use the committed "
    "models/numpy_cnn.npz from the repository."
)


def is_numpy_model(path) -> bool:
    """Whether ``path`` names a from-scratch NumPy model (``.npz``) rather than a Keras file."""
    return Path(path).suffix.lower() == ".npz"


def resolve_model_path(path=None) -> Path:
    """``path`` (``~`` expanded), or the served model: ``$MNIST_CNN_MODEL`` if set,
    else ``models/cnn_model.keras`` (see :func:`mnist_cnn.paths.default_keras_model`)."""
    from mnist_cnn import paths

    return Path(path).expanduser() if path else paths.default_keras_model()


def load_model(path=None):
    """Load a Keras model file safely (``safe_mode=True``, ``compile=False``).

    Inputs:
    - path: a ``.keras`` (or legacy ``.h5``) file; default ``models/cnn_model.keras``
      (or ``$MNIST_CNN_MODEL``).

    Returns: the ``keras.Model``.
    Raises: FileNotFoundError if the file is missing (the message says how to get one);
    ValueError if it is corrupt, not a Keras file, or needs unsafe deserialisation
    (e.g. a ``Lambda`` layer holding arbitrary Python code).
    """
    path = resolve_model_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No Keras model at {path}. {KERAS_HINT}")
    if is_numpy_model(path):
        # Keras' own message for this one ("File format not supported") names no way out.
        raise ValueError(f"{path} is a from-scratch NumPy model (.npz), not a Keras model; "
                         "this needs a Keras model (.keras or .h5).")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        # Keras' own message for this case ("File not found") is misleading.
        raise ValueError(f"{path} is not a valid .keras file (those are zip archives); it is "
                         f"corrupt or truncated. {KERAS_HINT}")
    from mnist_cnn.backend import import_keras

    keras = import_keras()
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for bad files; one clear message
        text = str(exc)
        if "Lambda" in text or "unsafe" in text.lower() or "safe_mode" in text:
            raise ValueError(
                f"Refusing to load {path}: it contains a Lambda layer (arbitrary Python code), "
                "which Keras' safe mode does not deserialise. Use a model built from standard "
                "layers only.") from exc
        raise ValueError(
            f"Could not load {path} as a Keras model ({type(exc).__name__}: {text[:300]}). "
            f"The file may be corrupt or not a Keras file. {KERAS_HINT}") from exc


def check_mnist_model(model) -> int:
    """Check a Keras model looks like an MNIST classifier; return its input rank (3 or 4).

    Accepts inputs (None, 28, 28) or (None, 28, 28, 1) and outputs (None, 10).
    Raises ValueError explaining what is wrong otherwise.
    """
    in_shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    out_shape = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if in_shape is None or out_shape is None:
        raise ValueError("The model has several inputs or outputs; an MNIST classifier takes "
                         f"one image batch and returns one {(None, NUM_CLASSES)} array.")
    if in_shape[1:] not in (IMAGE_SHAPE, INPUT_SHAPE):
        raise ValueError(f"The model's input shape is {in_shape}; an MNIST classifier takes "
                         f"{(None, *IMAGE_SHAPE)} or {(None, *INPUT_SHAPE)} images (float, "
                         "pixels in [0, 1]).")
    if out_shape[1:] != (NUM_CLASSES,):
        raise ValueError(f"The model's output shape is {out_shape}; an MNIST classifier "
                         f"returns {(None, NUM_CLASSES)} scores, one per digit.")
    return len(in_shape)


def load_mnist_model(path=None):
    """:func:`load_model` plus :func:`check_mnist_model`. Returns (model, path)."""
    path = resolve_model_path(path)
    model = load_model(path)
    check_mnist_model(model)
    return model, path


def load_numpy_mnist_model(path):
    """Load a from-scratch NumPy network (``.npz``) and check it is an MNIST classifier.

    Never imports TensorFlow: :meth:`Sequential.load` reads the arrays with
    ``allow_pickle=False`` and rebuilds the layers from their JSON record.

    Inputs: path to a file written by :meth:`mnist_cnn.scratch.network.Sequential.save`.
    Returns: (``Sequential``, path).
    Raises: FileNotFoundError (the message says how to get one); ValueError if the file
    is not such a network, or its input is not a 28x28(x1) image or its output not 10 scores.
    """
    from mnist_cnn.scratch.network import Sequential

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"No NumPy model at {path}. {NUMPY_HINT}")
    net = Sequential.load(path)
    if tuple(net.input_shape) not in (IMAGE_SHAPE, INPUT_SHAPE):
        raise ValueError(f"{path}: the network's input shape is {tuple(net.input_shape)}; an "
                         f"MNIST classifier takes {IMAGE_SHAPE} or {INPUT_SHAPE} images.")
    if tuple(net.output_shape) != (NUM_CLASSES,):
        raise ValueError(f"{path}: the network's output shape is {tuple(net.output_shape)}; "
                         f"an MNIST classifier returns {NUM_CLASSES} scores, one per digit.")
    return net, path


def predict_outputs(model, x, batch_size: int = 1000) -> np.ndarray:
    """The raw outputs (N, 10) of a Keras MNIST classifier, as float64
    (probabilities or logits, whatever the model returns).

    Inputs: x float32 (N, 28, 28, 1) in [0, 1] (see :func:`mnist_cnn.data.prepare_images`),
    reshaped to the model's input rank.
    """
    rank = check_mnist_model(model)
    xs = np.asarray(x, np.float32).reshape((-1, *(IMAGE_SHAPE if rank == 3 else INPUT_SHAPE)))
    return np.asarray(model.predict(xs, batch_size=batch_size, verbose=0), np.float64)
