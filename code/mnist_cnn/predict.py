"""Predicting digits: one code path for the app, the CLI and the chapters.

:class:`Predictor` loads a Keras MNIST classifier once (safe mode), checks it is
one, and answers single images fast:

- engine ``"keras"``: the model called directly through a ``tf.function`` with a
  fixed input signature (traced once). ``model.predict`` builds a data pipeline
  on every call and costs tens of milliseconds for one image; the direct call
  costs about a millisecond.
- engine ``"numpy"``: the same weights run in the from-scratch NumPy network,
  built by :func:`mnist_cnn.bridge.from_keras` the first time it is asked for.

It also returns the feature maps of each conv layer (after its BatchNorm/ReLU),
which the app and the deployment chapter show.

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

ENGINES = ("keras", "numpy")
# Element-wise layers that belong to a conv "block": the feature map we show is
# the output after them (what the next layer actually sees).
_ELEMENTWISE = {"BatchNormalization", "ReLU", "Activation", "LeakyReLU", "ELU", "PReLU"}


def load_keras_model(path=None):
    """Load a Keras model file in safe mode and check it is an MNIST classifier.

    Inputs:
    - path: model file; default :func:`mnist_cnn.paths.default_keras_model`
      (``$MNIST_CNN_MODEL`` or ``models/cnn_model.keras``).

    Returns (model, path). Raises FileNotFoundError (missing file; the message
    says how to get one) or ValueError (corrupt file, unsafe content, or not a
    28x28 -> 10 classifier).
    """
    from mnist_cnn import keras_model, paths

    path = Path(path).expanduser() if path else paths.default_keras_model()
    model = keras_model.load_model(path)
    keras_model.check_mnist_model(model)
    return model, path


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _as_batch(x) -> np.ndarray:
    """(28, 28) / (N, 28, 28) / (N, 28, 28, 1) in [0, 1] -> float32 (N, 28, 28, 1)."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape == (28, 28):
        x = x[None]
    if x.ndim == 3 and x.shape[1:] == (28, 28):
        x = x[..., None]
    if x.ndim != 4 or x.shape[1:] != (28, 28, 1):
        raise ValueError(f"expected 28x28 image(s) in [0, 1], got shape {x.shape}; "
                         "use mnist_cnn.preprocess.to_mnist first")
    return x


class Predictor:
    """A loaded MNIST classifier with fast single-image inference.

    Thread-safe for concurrent predictions (the app shares one per process).
    """

    def __init__(self, model, path: str | os.PathLike | None = None):
        import tensorflow as tf

        from mnist_cnn import keras_model

        self.model = model
        self.path = Path(path) if path is not None else None
        self.input_rank = keras_model.check_mnist_model(model)
        rank = self.input_rank

        def call(x):
            if rank == 3:
                x = tf.reshape(x, (-1, 28, 28))
            return model(x, training=False)

        self._call = tf.function(
            call, input_signature=[tf.TensorSpec((None, 28, 28, 1), tf.float32)],
            reduce_retracing=True)
        self._lock = threading.Lock()
        self._numpy_net = None
        self._numpy_error: str | None = None
        self._feature_model = None
        self.conv_blocks = self._find_conv_blocks()
        # Trace once now so the first user doesn't pay for it.
        self.predict_proba(np.zeros((28, 28), np.float32))

    @classmethod
    def from_file(cls, path=None) -> Predictor:
        """Load (safe mode), validate and warm up; see :func:`load_keras_model`."""
        model, path = load_keras_model(path)
        return cls(model, path)

    # ------------------------------------------------------------------ inference
    def predict_proba(self, x, engine: str = "keras") -> np.ndarray:
        """Class probabilities.

        Inputs:
        - x: (28, 28) image or a batch (N, 28, 28[, 1]), float in [0, 1], white on black.
        - engine: "keras" or "numpy".

        Returns: (10,) float64 for one image, (N, 10) for a batch. If the model
        outputs logits rather than probabilities, a softmax is applied.
        """
        single = np.ndim(x) == 2
        xb = _as_batch(x)
        if engine == "keras":
            out = np.asarray(self._call(xb), dtype=np.float64)
        elif engine == "numpy":
            out = np.asarray(self.numpy_net().forward(xb), dtype=np.float64)
        else:
            raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
        from mnist_cnn.keras_model import outputs_are_probabilities

        if not outputs_are_probabilities(out):
            out = _softmax(out)
        return out[0] if single else out

    def predict(self, x, engine: str = "keras"):
        """Digit(s): int for one (28, 28) image, (N,) ints for a batch."""
        p = self.predict_proba(x, engine)
        return int(p.argmax()) if p.ndim == 1 else p.argmax(axis=1)

    # ------------------------------------------------------------------ NumPy engine
    @property
    def numpy_error(self) -> str | None:
        """Why the NumPy engine is unavailable (None if it works or was not tried yet)."""
        return self._numpy_error

    def numpy_available(self) -> bool:
        try:
            self.numpy_net()
            return True
        except ValueError:
            return False

    def numpy_net(self):
        """The from-scratch NumPy network holding this model's weights (built once).

        Raises ValueError with the reason if the bridge cannot convert this model
        (or the scratch network is not available in this installation).
        """
        if self._numpy_net is None and self._numpy_error is None:
            with self._lock:
                if self._numpy_net is None and self._numpy_error is None:
                    try:
                        from mnist_cnn.bridge import from_keras

                        self._numpy_net = from_keras(self.model)
                    except ImportError as exc:
                        self._numpy_error = f"the NumPy engine is not available ({exc})"
                    except (ValueError, NotImplementedError, TypeError, AttributeError) as exc:
                        self._numpy_error = f"the NumPy engine cannot run this model: {exc}"
        if self._numpy_error is not None:
            raise ValueError(self._numpy_error)
        return self._numpy_net

    # ------------------------------------------------------------------ feature maps
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

    def feature_maps(self, x, engine: str = "keras") -> list[tuple[str, np.ndarray]]:
        """Activations of each conv layer (after its BatchNorm / ReLU) for one image.

        Inputs:
        - x: (28, 28) float image in [0, 1].
        - engine: "keras" (a sub-model of the Keras model) or "numpy" (the
          scratch network's ``activations``).

        Returns: [(conv layer name, (H, W, C) float32 array)], in network order.
        """
        xb = _as_batch(x)
        if engine == "numpy":
            return self._numpy_feature_maps(xb)
        if engine != "keras":
            raise ValueError(f"unknown engine {engine!r}; choose one of {ENGINES}")
        if not self.conv_blocks:
            return []
        if self._feature_model is None:
            import keras

            with self._lock:
                if self._feature_model is None:
                    outs = [self.model.get_layer(last).output for _, last in self.conv_blocks]
                    inputs = self.model.inputs
                    self._feature_model = keras.Model(
                        inputs[0] if len(inputs) == 1 else inputs, outs)
        feed = xb.reshape(-1, 28, 28) if self.input_rank == 3 else xb
        outs = self._feature_model(feed, training=False)
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return [(conv, np.asarray(o)[0].astype(np.float32))
                for (conv, _), o in zip(self.conv_blocks, outs, strict=True)]

    def _numpy_feature_maps(self, xb):
        net = self.numpy_net()
        acts = net.activations(xb)
        result = []
        for i, (name, out) in enumerate(acts):
            layer = net.layers[i]
            if type(layer).__name__ != "Conv2D":
                continue
            # Take the output after a following ReLU, as for Keras (BN is folded).
            if i + 1 < len(acts) and type(net.layers[i + 1]).__name__ == "ReLU":
                out = acts[i + 1][1]
            result.append((name, np.asarray(out)[0].astype(np.float32)))
        return result


def top_k(probs, k: int = 3) -> list[tuple[int, float]]:
    """[(digit, probability)] of the k most likely digits, most likely first."""
    probs = np.asarray(probs)
    order = np.argsort(-probs, kind="stable")[:k]
    return [(int(d), float(probs[d])) for d in order]


def predict_file(predictor: Predictor, path, engine: str = "keras") -> np.ndarray:
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

    One line per image: ``file: digit  (top-3 probabilities)`` or a JSON object
    ``{"file", "digit", "probabilities"}``. Unreadable files get an error line
    (``{"file", "error"}`` in JSON mode) and make the exit status 1; the other
    files are still predicted.
    """
    predictor = Predictor.from_file(args.model)
    engine = getattr(args, "engine", "keras") or "keras"
    if engine == "numpy":
        predictor.numpy_net()  # fail once, clearly, rather than once per file
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
