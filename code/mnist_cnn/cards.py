"""Model cards: a JSON file beside each trained model, one schema for both engines.

``models/cnn_model.keras`` has ``models/cnn_model.json``; ``models/numpy_cnn.npz``
has ``models/numpy_cnn.json``. Both trainers write theirs with :func:`write_card`,
which computes the figures every card holds (file hash and size, the test
evaluation, data hashes, library versions, time of writing) and refuses a card
that does not follow :data:`SCHEMA`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# What trained the model a card describes (not what runs it: predict.INFERENCE_ENGINES).
TRAINED_WITH = ("numpy", "keras")

# key -> type; every card has all of them (more keys are allowed).
SCHEMA: dict[str, type] = {
    "model": str,                 # the model's file name
    "engine": str,                # one of TRAINED_WITH
    "sha256": str,                # of the model file
    "file_size_bytes": int,
    "params": int,
    "test_accuracy": float,       # on the 10,000 MNIST test images, measured once at the end
    "test_loss": float,
    "test_errors": int,
    "per_class_accuracy": dict,
    "confusion_matrix": list,     # rows = true digit, columns = predicted
    "train_images": int,
    "validation_images": int,
    "epochs": int,
    "batch_size": int,
    "seed": int,
    "recipe": dict,               # the hyperparameters, by their constant names
    "history": dict,              # per-epoch figures
    "seconds_per_epoch": float,
    "train_minutes": float,
    "training_path": str,         # what computed the training (engine, speed layer)
    "architecture": str,          # the summary table
    "data_sha256": dict,
    "versions": dict,
    "command": str,               # the command that wrote model and card
    "created_utc": str,
}


def _has_type(value, kind) -> bool:
    if isinstance(value, bool):            # a bool is an int to Python, not to a card
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def check_card(card: dict) -> None:
    """Raise ValueError naming every key of :data:`SCHEMA` that is missing or of
    the wrong type, and an unknown engine."""
    problems = [f"{key} is missing" if key not in card else
                f"{key} should be {kind.__name__}, got {type(card[key]).__name__}"
                for key, kind in SCHEMA.items()
                if key not in card or not _has_type(card[key], kind)]
    if card.get("engine") not in TRAINED_WITH:
        problems.append(f"engine should be one of {TRAINED_WITH}, got {card.get('engine')!r}")
    if problems:
        raise ValueError("not a valid model card: " + "; ".join(problems))


def write_card(card_path: str | os.PathLike, model_file: str | os.PathLike, *, model_name: str,
               engine: str, probs, y_test, **fields) -> dict:
    """Write the card of ``model_file`` (which may be a temporary file renamed to
    ``model_name`` later) to ``card_path`` atomically, and return it.

    Inputs: the test probabilities ``probs`` (N, 10) and labels ``y_test``, and
    the keyword ``fields`` of :data:`SCHEMA` that only the trainer knows (params,
    recipe, history, ...). Raises ValueError if the card would be incomplete.
    """
    from mnist_cnn._io import sha256_file, write_json
    from mnist_cnn.data import data_hashes
    from mnist_cnn.metrics import evaluate_probs

    model_file = Path(model_file)
    res = evaluate_probs(probs, y_test)
    card = {"model": model_name, "engine": engine, "sha256": sha256_file(model_file),
            "file_size_bytes": model_file.stat().st_size, **fields,
            "test_accuracy": round(res["test_accuracy"], 6),
            "test_loss": round(res["test_loss"], 6), "test_errors": res["test_errors"],
            "per_class_accuracy": res["per_class_accuracy"],
            "confusion_matrix": res["confusion_matrix"],
            "data_sha256": data_hashes(),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    check_card(card)
    write_json(card_path, card)
    return card
