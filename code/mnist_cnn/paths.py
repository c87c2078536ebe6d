"""Where the project's artifacts live.

Inside a checkout (``pip install -e .``) the models folder is the repository's
``models/``; ``$MNIST_CNN_MODELS`` overrides it. The book's folders are the
checkout's too. The app also honours
``$MNIST_CNN_MODEL`` (one file) - see :func:`default_keras_model`.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# code/mnist_cnn/ -> code/ -> repository root
REPO_ROOT = PACKAGE_DIR.parents[1]


def models_dir() -> Path:
    env = os.environ.get("MNIST_CNN_MODELS")
    if env:
        return Path(env).expanduser()
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "models"
    return Path.cwd() / "models"


def default_keras_model() -> Path:
    """``$MNIST_CNN_MODEL`` if set, else ``models/cnn_model.keras``."""
    env = os.environ.get("MNIST_CNN_MODEL")
    return Path(env).expanduser() if env else models_dir() / "cnn_model.keras"


def default_numpy_model() -> Path:
    return models_dir() / "numpy_cnn.npz"


def web_export_dir() -> Path:
    """Where the book serves the in-page network from: ``book/_static/digit_widget/``
    of the checkout, or of the working folder outside one (which may be a checkout's
    ``book/`` itself, where a chapter runs on Colab)."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / "book" / "_static" / "digit_widget"
    cwd = Path.cwd()
    book = cwd if cwd.name == "book" and (cwd / "_static").is_dir() else cwd / "book"
    return book / "_static" / "digit_widget"


def card_path(model_path: str | os.PathLike) -> Path:
    """The model card sits beside the model: ``cnn_model.keras`` -> ``cnn_model.json``."""
    return Path(model_path).with_suffix(".json")
