"""Figures for predicted probabilities, whatever model made them: the one answer to
"are these probabilities or logits?", the confusion matrix, and the test figures a
model card records.

Below both :mod:`mnist_cnn.evaluate` (model files) and :mod:`mnist_cnn.cards`
(model cards). NumPy only: the softmax and cross-entropy are the scratch engine's
(:mod:`mnist_cnn.scratch.functional`); nothing here imports TensorFlow.
"""

from __future__ import annotations

import numpy as np

from mnist_cnn.scratch.functional import cross_entropy, softmax
from mnist_cnn.shapes import NUM_CLASSES


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


def reliability(probs, y, bins: int = 10) -> dict:
    """A reliability diagram's numbers (Guo et al., 2017): the predictions grouped by
    their confidence (the top probability) into ``bins`` equal intervals of [0, 1].

    Returns a dict of arrays, one entry per bin: ``edges`` (bins + 1), ``count``,
    ``confidence`` (the bin's mean confidence), ``accuracy`` (the fraction of its
    predictions that are right), NaN for an empty bin; and ``ece``, the expected
    calibration error: sum over bins of count / N * |accuracy - confidence|. A
    calibrated model's 80 %-confident answers are right 80 % of the time.
    """
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y, int)
    confidence, right = probs.max(axis=1), probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin i holds (edges[i], edges[i + 1]]; a confidence of exactly 0 cannot occur
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, confidence, bins) / count
        accuracy = np.bincount(which, right, bins) / count
    gaps = np.where(count > 0, np.abs(accuracy - mean_conf), 0.0)
    return {"edges": edges, "count": count, "confidence": mean_conf, "accuracy": accuracy,
            "ece": float((count * gaps).sum() / len(y))}
