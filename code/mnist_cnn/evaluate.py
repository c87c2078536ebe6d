"""Evaluating any MNIST classifier: a Keras file (``.keras``/``.h5``) or a
from-scratch NumPy network (``.npz``).

- :func:`predict_file_proba`: the probabilities of a model file for given images;
- :func:`evaluate_file`: its test figures on the 10,000 MNIST test images
  (:func:`mnist_cnn.metrics.evaluate_probs`); ``python -m mnist_cnn evaluate``
  prints them.

TensorFlow is imported only when a Keras file is evaluated. The figures come from
:mod:`mnist_cnn.metrics`, which uses the scratch engine's softmax and
cross-entropy (NumPy only), so importing this module loads the NumPy engine but
not TensorFlow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mnist_cnn.metrics import as_probabilities, evaluate_probs
from mnist_cnn.shapes import NUM_CLASSES


def predict_file_proba(path, x) -> tuple[np.ndarray, str]:
    """Probabilities (N, 10) of the model in file ``path`` for images ``x``
    (uint8 or float, see :func:`mnist_cnn.data.prepare_images`), and what the
    model returned ("probabilities" or "logits (softmax applied)").

    Raises FileNotFoundError for a missing file and ValueError for one that is
    not an MNIST classifier (the message says why).
    """
    from mnist_cnn.data import prepare_images

    path = Path(path)
    xs = prepare_images(x)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"No NumPy model at {path}. Train one with "
                                    "`python -m mnist_cnn train-numpy`.")
        from mnist_cnn.scratch.network import Sequential

        raw = Sequential.load(path).forward(xs)
    else:
        from mnist_cnn.model_files import load_mnist_model, predict_outputs

        model, _ = load_mnist_model(path)
        raw = predict_outputs(model, xs)
    probs, softmaxed = as_probabilities(raw)
    return probs, "logits (softmax applied)" if softmaxed else "probabilities"


def evaluate_file(path=None, cache_dir=None) -> dict:
    """Evaluate any MNIST classifier file on the 10,000 test images.

    Inputs: path (default: the served Keras model, see :mod:`mnist_cnn.paths`).
    Returns the dict of :func:`evaluate_probs` plus ``model``, ``n_test``, ``outputs``.
    """
    from mnist_cnn import paths
    from mnist_cnn.data import load_mnist

    path = Path(path) if path is not None else paths.default_keras_model()
    (_, _), (x_test, y_test) = load_mnist(cache_dir, progress=False)
    probs, outputs = predict_file_proba(path, x_test)
    res = evaluate_probs(probs, y_test)
    res.update(model=str(path), n_test=int(len(y_test)), outputs=outputs)
    return res


def format_report(res: dict) -> str:
    """The text ``python -m mnist_cnn evaluate`` prints for :func:`evaluate_file`'s result."""
    lines = [f"Model: {res['model']}",
             f"Test accuracy: {res['test_accuracy'] * 100:.2f} %  "
             f"({res['test_errors']} errors of {res['n_test']})   loss {res['test_loss']:.4f}   "
             f"outputs: {res['outputs']}",
             "Per-class accuracy:",
             "  " + "  ".join(f"{d}: {a * 100:.2f}%" for d, a in res["per_class_accuracy"].items()),
             "Confusion matrix (rows = true digit, columns = predicted):",
             "       " + "".join(f"{d:>6d}" for d in range(NUM_CLASSES))]
    for d, row in enumerate(res["confusion_matrix"]):
        lines.append(f"  {d:>3d}  " + "".join(f"{v:>6d}" for v in row))
    return "\n".join(lines)


def cli_evaluate(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn evaluate [--model PATH] [--json]``."""
    res = evaluate_file(args.model, getattr(args, "cache_dir", None))
    print(json.dumps(res) if args.json else format_report(res))
    return 0
