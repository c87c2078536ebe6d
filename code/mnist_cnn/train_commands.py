"""The two training commands, ``python -m mnist_cnn train-numpy`` and
``python -m mnist_cnn train-keras``.

Each trains its recipe (:mod:`mnist_cnn.scratch.train` for the NumPy network,
:mod:`mnist_cnn.keras_model` for Keras) on the training images minus the fixed
validation set, keeps the epoch with the best validation accuracy, evaluates once
on the 10,000 test images and writes the model and its card together. What the two
share is written once here: reading and checking the options, loading the images
(``--limit N``: the first N), the command recorded on the card (every setting
spelt out, so it reproduces the run even if a default changes later), and the
atomic write of model + card.

The engine (:mod:`mnist_cnn.scratch`) ends at ``fit``; this module sits above it,
beside :mod:`mnist_cnn.cards`, and nothing in the engine imports it.
"""

from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Run:
    """The settings of one training run, read from the command line."""

    command: str                # "train-numpy" or "train-keras"
    epochs: int
    batch_size: int
    seed: int
    limit: int | None
    out: Path
    cache_dir: str | None

    @property
    def command_line(self) -> str:
        """The command that repeats this run, every setting spelt out."""
        parts = ["python", "-m", "mnist_cnn", self.command, "--epochs", str(self.epochs),
                 "--batch-size", str(self.batch_size), "--seed", str(self.seed)]
        if self.limit is not None:
            parts += ["--limit", str(self.limit)]
        return shlex.join(parts + ["--out", str(self.out)])


def read_run(args: argparse.Namespace, command: str, recipe, default_out: Path,
             suffix: str) -> Run:
    """The run's settings: the options given, else the recipe module's defaults
    (``EPOCHS``, ``BATCH_SIZE``, ``SEED``); ValueError with a message a user can act
    on when one is out of range."""
    epochs = recipe.EPOCHS if args.epochs is None else args.epochs
    batch_size = recipe.BATCH_SIZE if args.batch_size is None else args.batch_size
    seed = recipe.SEED if args.seed is None else args.seed
    limit = getattr(args, "limit", None)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"--epochs and --batch-size must be at least 1, "
                         f"got {epochs} and {batch_size}")
    if limit is not None and limit < 10:
        raise ValueError(f"--limit must be at least 10 (a tenth is held out for "
                         f"validation), got {limit}")
    out = Path(args.out) if args.out else default_out
    if out.suffix != suffix:
        raise ValueError(f"--out must end in {suffix}, got {out}")
    return Run(command, epochs, batch_size, seed, limit, out,
               getattr(args, "cache_dir", None))


def load_images(run: Run):
    """``(x_train, y_train), (x_test, y_test)`` as uint8 MNIST, the training images
    cut to the first ``--limit``."""
    from mnist_cnn.data import load_mnist

    (x_train, y_train), test = load_mnist(run.cache_dir, progress=True)
    if run.limit is not None:
        x_train, y_train = x_train[:run.limit], y_train[:run.limit]
    return (x_train, y_train), test


def save_with_card(run: Run, save, **card) -> dict:
    """Write the model (``save(path)``) and its card as temporary files, then put
    both in place together: a failure leaves the previous pair untouched."""
    from mnist_cnn import paths
    from mnist_cnn._io import atomic_pair
    from mnist_cnn.cards import write_card

    with atomic_pair(run.out, paths.card_path(run.out)) as (tmp, tmp_card):
        save(tmp)
        return write_card(tmp_card, tmp, model_name=run.out.name, epochs=run.epochs,
                          batch_size=run.batch_size, seed=run.seed,
                          command=run.command_line, **card)


def cli_train_numpy(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn train-numpy``: the NumPy recipe, trained with the
    speed layer."""
    from mnist_cnn import paths
    from mnist_cnn._io import library_versions
    from mnist_cnn.data import prepare_images, split_validation
    from mnist_cnn.scratch import train as recipe
    from mnist_cnn.scratch.fast import FastEngine
    from mnist_cnn.scratch.optim import Adam, exponential_decay

    run = read_run(args, "train-numpy", recipe, paths.default_numpy_model(), ".npz")
    (x_train, y_train), (x_test, y_test) = load_images(run)
    (x_train, y_train), (x_val, y_val) = split_validation(prepare_images(x_train), y_train)

    model = recipe.build_model(run.seed)
    print(model.summary())
    engine = FastEngine(model)
    print(f"Training with the speed layer: {engine.describe()}")
    t0 = time.perf_counter()
    history = recipe.fit(model, x_train, y_train, epochs=run.epochs,
                         batch_size=run.batch_size, optimizer=Adam(recipe.LR),
                         schedule=exponential_decay(recipe.LR, recipe.LR_DECAY),
                         seed=run.seed, validation_data=(x_val, y_val),
                         shift=recipe.SHIFT, engine=engine, keep_best=True)
    train_seconds = time.perf_counter() - t0
    test_probs = model.predict_proba(prepare_images(x_test))     # the test set, once

    card = save_with_card(
        run, model.save, engine="numpy", probs=test_probs, y_test=y_test,
        params=model.count_params(), train_images=len(y_train),
        validation_images=len(y_val),
        recipe={"optimizer": "Adam", "LR": recipe.LR, "LR_DECAY": recipe.LR_DECAY,
                "DROPOUT": recipe.DROPOUT, "SHIFT": recipe.SHIFT,
                "selection": "epoch with the best validation accuracy"},
        history={k: [float(v) for v in vals] for k, vals in history.items()
                 if k != "best_epoch"},
        seconds_per_epoch=float(np.mean(history["seconds"])),
        train_minutes=train_seconds / 60, training_path=engine.describe(),
        architecture=model.summary(), versions=library_versions(),
        best_epoch=history["best_epoch"])
    print(f"NumPy CNN: test accuracy {card['test_accuracy']:.2%} "
          f"(loss {card['test_loss']:.4f}), epoch {card['best_epoch']} of {run.epochs} "
          f"chosen on {len(y_val):,} validation images, trained on {len(y_train):,} "
          f"images in {train_seconds / 60:.1f} min ({card['seconds_per_epoch']:.1f} "
          f"s/epoch); saved {run.out} and {paths.card_path(run.out).name}")
    return 0


def cli_train_keras(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn train-keras``: the production Keras recipe. The file
    shipped has no optimizer state."""
    from mnist_cnn import _io, paths
    from mnist_cnn import keras_model as recipe
    from mnist_cnn.backend import import_keras
    from mnist_cnn.data import prepare_images, split_validation
    from mnist_cnn.model_files import predict_outputs

    run = read_run(args, "train-keras", recipe, paths.default_keras_model(), ".keras")
    (x_train, y_train), (x_test, y_test) = load_images(run)

    keras = import_keras()
    keras.utils.set_random_seed(run.seed)   # the initial weights too, not just training
    model = recipe.build_model()
    t0 = time.perf_counter()
    history = recipe.train(model, x_train, y_train, epochs=run.epochs,
                           batch_size=run.batch_size, seed=run.seed)
    train_seconds = time.perf_counter() - t0
    probs = predict_outputs(model, prepare_images(x_test))  # Softmax outputs; test set once

    # No optimizer state in the shipped file: copy the trained weights into a fresh,
    # never-compiled twin and save that (the .keras format has no include_optimizer).
    shipped = recipe.build_model()
    shipped.set_weights(model.get_weights())
    hist = {k: [round(float(v), 6) for v in vals] for k, vals in history.history.items()}
    epochs_run = len(hist.get("loss", []))
    n_val = len(split_validation(x_train, y_train)[1][1])
    card = save_with_card(
        run, shipped.save, engine="keras", probs=probs, y_test=y_test,
        params=int(model.count_params()), train_images=int(len(x_train)) - n_val,
        validation_images=n_val, recipe=recipe.recipe_settings(),
        history=hist, seconds_per_epoch=train_seconds / max(epochs_run, 1),
        train_minutes=train_seconds / 60,
        training_path=f"keras {keras.__version__} (TensorFlow backend)",
        architecture=recipe.summary_text(model),
        versions=_io.library_versions("tensorflow", "keras"),
        epochs_run=epochs_run, layers=recipe.architecture(model),
        input="float32 (N, 28, 28, 1), pixels in [0, 1], white digit on black",
        output="(N, 10) probabilities (Softmax)")
    print(f"Saved {run.out} ({card['file_size_bytes'] / 1024:.0f} KiB, "
          f"{card['params']:,} parameters): test accuracy "
          f"{card['test_accuracy'] * 100:.2f} % in {train_seconds:.0f} s of training; "
          f"card {paths.card_path(run.out)}")
    return 0
