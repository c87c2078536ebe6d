"""Predicting digits: one code path for the app, the CLI and the chapters.

:class:`Predictor` loads an MNIST classifier once (a Keras file in safe mode, or a
from-scratch NumPy network's ``.npz``), checks it is one, and answers single
images fast:

- engine ``"keras"``: the model called directly through a ``tf.function`` with a
  fixed input signature (traced once). ``model.predict`` builds a data pipeline
  on every call and costs tens of milliseconds for one image; the direct call
  costs about a millisecond.
- engine ``"numpy"``: the same weights run in the from-scratch NumPy network,
  built by :func:`mnist_cnn.bridge.from_keras` the first time it is asked for.

A ``.npz`` model *is* a NumPy network: its predictor has the NumPy engine only
(:attr:`Predictor.default_engine` is ``"numpy"``; asking it for ``"keras"`` gives
the reason), and loading and running it never imports TensorFlow.

It also returns the feature maps of each conv layer (after its BatchNorm/ReLU),
which the app shows (the book's appendix "Building the app").

Example::

    >>> from mnist_cnn.predict import Predictor
    >>> from mnist_cnn.preprocess import to_mnist
    >>> p = Predictor.from_file()                        # doctest: +SKIP
    >>> probs = p.predict_proba(to_mnist(drawing))       # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path

import numpy as np

from mnist_cnn.data import prepare_images
from mnist_cnn.metrics import as_probabilities
from mnist_cnn.model_files import (
    check_mnist_model,
    is_numpy_model,
    load_mnist_model,
    load_numpy_mnist_model,
    resolve_model_path,
)
from mnist_cnn.shapes import IMAGE_SHAPE, INPUT_SHAPE

# Element-wise layers that belong to a conv "block": the feature map we show is
# the output after them (what the next layer actually sees).
_ELEMENTWISE = {"BatchNormalization", "ReLU", "Activation", "LeakyReLU", "ELU", "PReLU"}


class KerasEngine:
    """The Keras model, called directly through a ``tf.function`` traced once for
    a (None, 28, 28, 1) float32 batch."""

    name = "keras"

    def __init__(self, model):
        from mnist_cnn.backend import import_tensorflow

        tf = import_tensorflow()

        self.model = model
        self.input_rank = check_mnist_model(model)
        rank = self.input_rank

        def call(x):
            if rank == 3:
                x = tf.reshape(x, (-1, *IMAGE_SHAPE))
            return model(x, training=False)

        self._call = tf.function(
            call, input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32)],
            reduce_retracing=True)
        self._lock = threading.Lock()
        self._feature_model = None
        self.conv_blocks = self._find_conv_blocks()

    def problem(self) -> str | None:
        """None: the model was checked to be an MNIST classifier when it was loaded."""
        return None

    def outputs(self, xb) -> np.ndarray:
        """The model's raw outputs (N, 10) for a float32 batch (N, 28, 28, 1)."""
        return np.asarray(self._call(xb), dtype=np.float64)

    def _find_conv_blocks(self) -> list[tuple[str, str]]:
        """[(conv layer name, name of the last element-wise layer after it)]."""
        layers = list(self.model.layers)
        blocks = []
        for i, layer in enumerate(layers):
            if type(layer).__name__ not in ("Conv2D", "SeparableConv2D", "DepthwiseConv2D"):
                continue
            last = layer
            for nxt in layers[i + 1:]:
                if type(nxt).__name__ not in _ELEMENTWISE:
                    break
                last = nxt
            blocks.append((layer.name, last.name))
        return blocks

    def feature_maps(self, xb) -> list[tuple[str, np.ndarray]]:
        """[(conv layer name, (H, W, C) float32)] for the first image of ``xb``,
        each taken after the block's BatchNorm / ReLU (a sub-model of the model)."""
        if not self.conv_blocks:
            return []
        if self._feature_model is None:
            from mnist_cnn.backend import import_keras

            keras = import_keras()

            with self._lock:
                if self._feature_model is None:
                    outs = [self.model.get_layer(last).output for _, last in self.conv_blocks]
                    inputs = self.model.inputs
                    self._feature_model = keras.Model(
                        inputs[0] if len(inputs) == 1 else inputs, outs)
        feed = xb.reshape(-1, *IMAGE_SHAPE) if self.input_rank == 3 else xb
        outs = self._feature_model(feed, training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return [(conv, np.asarray(o)[0].astype(np.float32))
                for (conv, _), o in zip(self.conv_blocks, outs, strict=True)]


class NumpyEngine:
    """The from-scratch NumPy network: either ``net`` itself (a ``.npz`` model), or a
    Keras model's weights, built by :func:`mnist_cnn.bridge.from_keras` the first
    time it is needed."""

    name = "numpy"

    def __init__(self, model=None, *, net=None):
        if (model is None) == (net is None):
            raise TypeError("NumpyEngine takes a Keras model or a scratch network (net=...)")
        self.model = model
        self._net = net
        self.error: str | None = None      # why this engine cannot run the model
        self._lock = threading.Lock()

    def problem(self) -> str | None:
        """Why the bridge cannot convert the model, or None; the first call builds
        the network (once, also when several threads ask at the same time)."""
        if self._net is None and self.error is None:
            with self._lock:
                if self._net is None and self.error is None:
                    try:
                        from mnist_cnn.bridge import from_keras

                        self._net = from_keras(self.model)
                    except ImportError as exc:
                        self.error = f"the NumPy engine is not available ({exc})"
                    except (ValueError, NotImplementedError, TypeError, AttributeError) as exc:
                        self.error = f"the NumPy engine cannot run this model: {exc}"
        return self.error

    @property
    def net(self):
        """The scratch network; raises ValueError with the reason if the bridge
        cannot convert the model (or the scratch engine is not installed)."""
        if self.problem() is not None:
            raise ValueError(self.error)
        return self._net

    @property
    def conv_blocks(self) -> list[tuple[str, str]]:
        """[(Conv2D layer name, name of the ReLU after it, or the conv's own name)]."""
        layers = self.net.layers
        return [(layer.name, layers[i + 1].name
                 if i + 1 < len(layers) and type(layers[i + 1]).__name__ == "ReLU"
                 else layer.name)
                for i, layer in enumerate(layers) if type(layer).__name__ == "Conv2D"]

    def _feed(self, xb):
        # a network saved with (28, 28) inputs takes the batch without the channel axis
        return np.reshape(xb, (-1, *self.net.input_shape))

    def outputs(self, xb) -> np.ndarray:
        """The scratch network's outputs (N, 10) for a float32 batch (N, 28, 28, 1)."""
        return np.asarray(self.net.forward(self._feed(xb)), dtype=np.float64)

    def feature_maps(self, xb) -> list[tuple[str, np.ndarray]]:
        """As :meth:`KerasEngine.feature_maps`: each Conv2D's output after the
        ReLU that follows it (BatchNorm is folded into the convolution)."""
        acts = dict(self.net.activations(self._feed(xb)))      # layer names are unique
        return [(conv, np.asarray(acts[last])[0].astype(np.float32))
                for conv, last in self.conv_blocks]


class UnavailableEngine:
    """An engine that cannot run this model at all (the Keras engine of a ``.npz``
    model): :meth:`problem` says why, and every call raises ValueError with the reason."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason

    def problem(self) -> str:
        return self.reason

    def outputs(self, xb):
        raise ValueError(self.reason)

    def feature_maps(self, xb):
        raise ValueError(self.reason)


# What runs a model for a prediction (not what trained it: cards.TRAINED_WITH).
INFERENCE_ENGINES = ("keras", "numpy")


def _is_scratch_network(model) -> bool:
    from mnist_cnn.scratch.network import Sequential  # NumPy only: no TensorFlow

    return isinstance(model, Sequential)


class Predictor:
    """A loaded MNIST classifier with fast single-image inference on either
    engine, each an object with the same small interface (``problem``, ``outputs``,
    ``feature_maps``). Thread-safe for concurrent predictions (the app shares
    one per process).

    ``model`` is a Keras MNIST classifier (both engines; default ``"keras"``) or a
    from-scratch ``Sequential`` (the NumPy engine only; default ``"numpy"``, and
    TensorFlow is never imported). :attr:`default_engine` is the engine used when
    none is named.
    """

    def __init__(self, model, path: str | os.PathLike | None = None):
        self.model = model
        self.path = Path(path) if path is not None else None
        if _is_scratch_network(model):
            what = self.path.name if self.path is not None else "this model"
            self.engines = {
                "keras": UnavailableEngine(
                    "keras", f"{what} is a from-scratch NumPy model (.npz): it runs on the "
                             "numpy engine only (the keras engine needs a Keras model, "
                             ".keras or .h5)"),
                "numpy": NumpyEngine(net=model)}
            self.default_engine = "numpy"
        else:
            self.engines = {"keras": KerasEngine(model), "numpy": NumpyEngine(model)}
            self.default_engine = "keras"
        self.conv_blocks = self.engines[self.default_engine].conv_blocks
        # Trace once now so the first user doesn't pay for it.
        self.predict_proba(np.zeros(IMAGE_SHAPE, np.float32))

    @classmethod
    def from_file(cls, path=None) -> Predictor:
        """Load, validate and warm up a model file: a Keras file (safe mode; see
        :func:`load_mnist_model`) or a from-scratch NumPy network ``.npz`` (see
        :func:`load_numpy_mnist_model`; no TensorFlow import). Default: the served
        model (``$MNIST_CNN_MODEL``, else ``models/cnn_model.keras``)."""
        path = resolve_model_path(path)
        if is_numpy_model(path):
            return cls(*load_numpy_mnist_model(path))
        return cls(*load_mnist_model(path))

    def engine(self, name: str | None = None):
        """The engine object called ``name`` ("keras" or "numpy"; default:
        :attr:`default_engine`)."""
        try:
            return self.engines[name or self.default_engine]
        except KeyError:
            raise ValueError(f"unknown engine {name!r}; "
                             f"choose one of {INFERENCE_ENGINES}") from None

    # ------------------------------------------------------------------ inference
    def predict_proba(self, x, engine: str | None = None) -> np.ndarray:
        """Class probabilities.

        Inputs:
        - x: (28, 28) image or a batch (N, 28, 28[, 1]), float in [0, 1] (or
          uint8 0..255), white on black.
        - engine: "keras" or "numpy" (default: :attr:`default_engine`).

        Returns: (10,) float64 for one image, (N, 10) for a batch. If the model
        outputs logits rather than probabilities, a softmax is applied.
        Raises ValueError if the engine cannot run this model (the message says why).
        """
        probs, _ = as_probabilities(self.engine(engine).outputs(prepare_images(x)))
        return probs[0] if np.ndim(x) == 2 else probs

    def predict(self, x, engine: str | None = None):
        """Digit(s): int for one (28, 28) image, (N,) ints for a batch."""
        p = self.predict_proba(x, engine)
        return int(p.argmax()) if p.ndim == 1 else p.argmax(axis=1)

    def feature_maps(self, x, engine: str | None = None) -> list[tuple[str, np.ndarray]]:
        """Activations of each conv layer (after its BatchNorm / ReLU) for one image
        x (28, 28) float in [0, 1]: [(conv layer name, (H, W, C) float32)]."""
        return self.engine(engine).feature_maps(prepare_images(x))

    def problem(self, engine: str | None = None) -> str | None:
        """Why ``engine`` cannot run this model, or None if it can (nothing is predicted:
        this is cheap enough for every rerun of the app)."""
        try:
            return self.engine(engine).problem()
        except ValueError as exc:
            return str(exc)


def top_k(probs, k: int = 3) -> list[tuple[int, float]]:
    """[(digit, probability)] of the k most likely digits, most likely first."""
    probs = np.asarray(probs)
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(d), float(probs[d])) for d in order]


def predict_file(predictor: Predictor, path, engine: str | None = None) -> np.ndarray:
    """Open an image file safely, preprocess it MNIST-style and return (10,) probabilities.

    Raises ValueError if the file is unreadable or shows no digit, FileNotFoundError if missing.
    """
    from mnist_cnn.preprocess import load_image, to_mnist

    x = to_mnist(load_image(path))
    if x is None:
        raise ValueError("no digit found: the image is blank (no ink)")
    return predictor.predict_proba(x, engine)


def cli_predict(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn predict IMAGE... [--json] [--model PATH] [--engine keras|numpy]``.

    ``--model`` is a Keras file or a from-scratch NumPy ``.npz``; ``--engine``
    defaults to the model's own engine (keras for a Keras file, numpy for a
    ``.npz``). An engine that cannot run the model is one clear error (ValueError),
    raised before any file is read.

    One line per image: ``file: digit  (top-3 probabilities)`` or a JSON object
    ``{"file", "digit", "probabilities"}``. Unreadable files get an error line
    (``{"file", "error"}`` in JSON mode) and make the exit status 1; the other
    files are still predicted.
    """
    predictor = Predictor.from_file(args.model)
    engine = getattr(args, "engine", None) or predictor.default_engine
    # an engine that cannot run this model fails once, clearly, not once per file
    problem = predictor.problem(engine)
    if problem:
        if engine != predictor.default_engine:
            problem += f"; leave out --engine to use the {predictor.default_engine} engine"
        raise ValueError(f"--engine {engine}: {problem}")
    failures = 0
    for name in args.images:
        try:
            probs = predict_file(predictor, name, engine)
        except (ValueError, FileNotFoundError, OSError) as exc:
            failures += 1
            if args.json:
                print(json.dumps({"file": name, "error": str(exc)}), flush=True)
            else:
                print(f"{name}: error: {exc}", file=sys.stderr, flush=True)
            continue
        digit = int(np.argmax(probs))
        if args.json:
            print(json.dumps({"file": name, "digit": digit,
                              "probabilities": [round(float(p), 6) for p in probs]}), flush=True)
        else:
            top = ", ".join(f"{d}: {p:.3f}" for d, p in top_k(probs, 3))
            print(f"{name}: {digit}  (top-3 {top})", flush=True)
    if failures:
        print(f"{failures} of {len(args.images)} file(s) could not be predicted", file=sys.stderr)
        return 1
    return 0
