"""Evaluating any MNIST classifier: a Keras file (``.keras``/``.h5``) or a
from-scratch NumPy network (``.npz``).

- :func:`as_probabilities`: the one answer to "are these probabilities or logits?";
- :func:`evaluate_probs`: accuracy, loss, per-class accuracy and the confusion matrix;
- :func:`predict_file_proba` / :func:`evaluate_file`: the same for a model file on
  the 10,000 MNIST test images; ``python -m mnist_cnn evaluate`` prints it.

This module imports neither TensorFlow nor the scratch engine until a file of
that kind is evaluated.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mnist_cnn.scratch.functional import cross_entropy, softmax

NUM_CLASSES = 10


def as_probabilities(out) -> tuple[np.ndarray, bool]:
    """Model outputs (N, K) as probabilities (float64), and whether a softmax was applied.

    Rows that are already probability vectors (all in [0, 1], each summing to 1
    within 1e-3) are kept; otherwise the outputs are logits and get a softmax.
    """
    out = np.asarray(out, np.float64)
    probs = bool(out.size) and out.min() >= -1e-6 and out.max() <= 1 + 1e-6 \
        and np.allclose(out.sum(axis=-1), 1.0, atol=1e-3)
    return (out, False) if probs else (softmax(out), True)


def confusion_matrix(y_true, y_pred, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """(K, K) int counts: row = true digit, column = predicted digit."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def evaluate_probs(probs, y) -> dict:
    """Test figures for probabilities (N, 10) against labels (N,).

    Returns a dict: test_accuracy, test_loss (mean cross-entropy), test_errors,
    per_class_accuracy {"0": ..., ...}, confusion_matrix (rows = true digit).
    """
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y, int)
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(y, pred)
    per_class = (np.diag(cm) / np.maximum(cm.sum(axis=1), 1)).tolist()
    return {
        "test_accuracy": float(np.mean(pred == y)),
        "test_loss": cross_entropy(probs, y),
        "test_errors": int(np.sum(pred != y)),
        "per_class_accuracy": {str(d): round(a, 6) for d, a in enumerate(per_class)},
        "confusion_matrix": cm.tolist(),
    }


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
