"""Training the NumPy CNN: the recipe, mini-batches, the fit loop, evaluation.

The committed model (``models/numpy_cnn.npz``) is produced by
``python -m mnist_cnn train-numpy`` with no options (the command lives in
:mod:`mnist_cnn.train_commands`, outside the engine): the recipe below.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
from tqdm import tqdm

from mnist_cnn.data import prepare_images
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ReLU
from mnist_cnn.scratch.network import Sequential
from mnist_cnn.scratch.optim import Adam
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES

__all__ = ["EPOCHS", "BATCH_SIZE", "LR", "LR_DECAY", "DROPOUT", "SHIFT", "SEED",
           "build_model", "prepare_images", "random_shift", "train_epoch", "fit",
           "loss_and_accuracy"]

# The recipe of the committed model (see book/backprop.md for why).
EPOCHS = 15
BATCH_SIZE = 128
LR = 2e-3            # Adam step size in the first epoch ...
LR_DECAY = 0.8       # ... multiplied by this after every epoch
DROPOUT = 0.3
SHIFT = 2            # training images are shifted by up to this many pixels (augmentation)
SEED = 0


def build_model(seed: int = SEED, dropout: float = DROPOUT) -> Sequential:
    """The course architecture, the twin of the Keras model:

    Conv(32, 3x3) - ReLU - MaxPool(2) - Conv(64, 3x3) - ReLU - MaxPool(2) -
    Flatten - Dense(128) - ReLU - Dropout - Dense(10)   (outputs logits)
    """
    return Sequential([
        Conv2D(32, 3, name="conv2d"), ReLU(name="relu"), MaxPooling2D(2, name="max_pooling2d"),
        Conv2D(64, 3, name="conv2d_1"), ReLU(name="relu_1"),
        MaxPooling2D(2, name="max_pooling2d_1"),
        Flatten(name="flatten"), Dense(128, name="dense"), ReLU(name="relu_2"),
        Dropout(dropout, name="dropout"), Dense(NUM_CLASSES, name="dense_1"),
    ], input_shape=INPUT_SHAPE, seed=seed)


def random_shift(x, rng, max_shift: int = SHIFT) -> np.ndarray:
    """Shift each image by a random (dy, dx) in [-max_shift, max_shift], filling with 0.

    Inputs: x (N, H, W, C); rng a ``np.random.Generator``.
    Returns a new array of the same shape. A digit moved by two pixels is still
    the same digit; showing the network such copies teaches it not to care
    about the exact position (data augmentation).
    """
    if max_shift <= 0:
        return x
    m = int(max_shift)
    n, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (m, m), (m, m), (0, 0)))
    # Every (h, w) crop of the padded image, as a view: (N, 2m+1, 2m+1, C, H, W).
    crops = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(1, 2))
    oy, ox = rng.integers(0, 2 * m + 1, size=(2, n))
    return np.ascontiguousarray(crops[np.arange(n), oy, ox].transpose(0, 2, 3, 1))


def loss_and_accuracy(model: Sequential, x, y, batch_size: int = 1000) -> dict:
    """Mean cross-entropy loss and accuracy of ``model`` on (x, y).

    Inputs: x float32 (N, 28, 28, 1) (or (N, 28, 28)), y int labels (N,).
    Returns {"loss": float, "accuracy": float, "predictions": (N,) int}.
    """
    probs = model.predict_proba(x, batch_size=batch_size)
    pred = probs.argmax(axis=1)
    return {"loss": F.cross_entropy(probs, y), "accuracy": float((pred == np.asarray(y)).mean()),
            "predictions": pred}


_HISTORY_KEYS = {"loss", "accuracy", "lr", "seconds", "val_loss", "val_accuracy"}


def train_epoch(model: Sequential, optimizer, x, y, batch_size: int, rng, shift: int = 0,
                step=None, progress=None) -> tuple[float, float]:
    """One epoch of mini-batch gradient descent: the loop inside :func:`fit`.

    Visit the examples in the order ``rng.permutation(len(x))`` (one call, at the
    start), in batches of ``batch_size`` (the last one may be smaller); for each
    batch compute the loss and the gradients with
    ``step(xb, yb, training=True)`` (default ``model.loss_and_backward``), then
    take one optimiser step: ``optimizer.step(model.parameters(), model.gradients())``.

    Inputs: x (N, ...), y (N,) integer labels; ``shift`` > 0 moves each batch's
    images by up to that many pixels (:func:`random_shift`, drawing from ``rng``);
    ``progress(loss, accuracy)``, if given, is called after each batch with the
    running figures.

    Returns (loss, accuracy) over the epoch: the mean loss per example (each
    batch's mean loss weighted by its size) and the fraction of examples whose
    logits' argmax was the label, both measured on the batches as they were
    trained on (before each batch's step).
    """
    step = model.loss_and_backward if step is None else step
    params = model.parameters()
    order = rng.permutation(len(x))
    loss_sum, correct, seen = 0.0, 0, 0
    for start in range(0, len(x), batch_size):
        idx = order[start : start + batch_size]
        xb, yb = x[idx], y[idx]
        if shift:
            xb = random_shift(xb, rng, shift)
        loss, logits = step(xb, yb, training=True)
        optimizer.step(params, model.gradients())
        loss_sum += loss * len(idx)
        correct += int((logits.argmax(axis=1) == yb).sum())
        seen += len(idx)
        if progress is not None:
            progress(loss_sum / seen, correct / seen)
    return loss_sum / seen, correct / seen


def fit(model: Sequential, x, y, epochs: int = EPOCHS, batch_size: int = BATCH_SIZE,
        optimizer=None, schedule=None, seed: int = SEED, validation_data=None,
        shift: int = 0, progress: bool = True, desc: str = "train", engine=None,
        keep_best: bool = False, on_epoch_end=None) -> dict:
    """Train ``model`` in place with mini-batch gradient descent.

    Inputs:
    - x: float32 (N, 28, 28, 1) in [0, 1]; y: int labels (N,)
    - epochs, batch_size: passes over the data, examples per step
    - optimizer: an object with ``.step(params, grads)`` and ``.lr`` (default Adam(LR))
    - schedule: epoch -> learning rate, applied at the start of each epoch (optional)
    - seed: seeds the shuffling (``np.random.default_rng(seed)``); with the
      network's own seed this makes a run bit-for-bit repeatable
    - validation_data: optional (x_val, y_val), evaluated after each epoch
    - shift: augment each batch with random shifts of up to ``shift`` pixels (0: off)
    - engine: what computes each step's loss and fills ``model``'s gradients, an
      object with ``loss_and_backward(x, y)``: the model itself by default (the
      plain chain), or the speed layer, ``FastEngine(model)``
      (:mod:`mnist_cnn.scratch.fast`: the same training, faster; equal to the plain
      chain up to float rounding, except that with dropout its shards draw their
      own masks). An engine that is a context manager is entered around each
      epoch. An engine built for another network is refused (ValueError).
    - keep_best: with validation_data, end with the weights of the epoch with the
      best validation accuracy (the later one on ties)
    - on_epoch_end: optional ``f(epoch, model) -> dict``, called after each epoch
      (epoch counts from 0); each item of the dict it returns is appended to the
      history under its key (e.g. accuracy on the clean training images)

    Returns the history: {"loss", "accuracy", "lr", "seconds"[, "val_loss",
    "val_accuracy", "best_epoch"]}, one entry per epoch (training loss/accuracy
    are running means over the epoch's batches, with dropout active; best_epoch
    counts from 1).
    """
    x, y = _training_arrays(x, y, epochs, batch_size)
    optimizer = Adam(LR) if optimizer is None else optimizer
    engine = _checked_engine(model, engine)
    rng = np.random.default_rng(seed)
    history: dict[str, list] = {"loss": [], "accuracy": [], "lr": [], "seconds": []}
    if validation_data is not None:
        history["val_loss"], history["val_accuracy"] = [], []
    steps = -(-len(x) // batch_size)
    best = _BestEpoch(model.parameters(), keep_weights=keep_best)
    for epoch in range(epochs):
        if schedule is not None:
            optimizer.lr = float(schedule(epoch))
        t0 = time.perf_counter()
        bar, report = _progress_bar(steps, f"{desc} epoch {epoch + 1}/{epochs}", progress)
        with engine if hasattr(engine, "__enter__") else nullcontext():
            loss, acc = train_epoch(model, optimizer, x, y, batch_size, rng, shift=shift,
                                    step=engine.loss_and_backward, progress=report)
        bar.close()
        _record(history, {"loss": loss, "accuracy": acc, "lr": optimizer.lr,
                          "seconds": time.perf_counter() - t0})
        if validation_data is not None:
            _validate(model, validation_data, epoch, history, best, progress)
        if on_epoch_end is not None:
            _record_extras(history, on_epoch_end(epoch, model))
    best.restore()
    return history


# ------------------------------------------------------------------ fit's steps
def _training_arrays(x, y, epochs: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` as an array and ``y`` as integer labels, or ValueError if they cannot be
    trained on (empty, of different lengths, no epochs or an empty batch)."""
    x = np.asarray(x)
    y = np.asarray(y).astype(np.intp)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)}, {len(y)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
    return x, y


def _checked_engine(model: Sequential, engine):
    """What computes ``model``'s steps: ``engine``, or the model itself if None.
    An engine built for another network is refused (ValueError): its gradients
    would not be the ones the optimiser applies to ``model``."""
    engine = model if engine is None else engine
    if engine is not model and getattr(engine, "net", None) is not model:
        raise ValueError("the engine computes the gradients of another network: "
                         "build it from the model fit trains, e.g. FastEngine(model)")
    return engine


def _progress_bar(steps: int, label: str, enabled: bool):
    """A progress bar over one epoch's ``steps`` batches, and the callback that
    :func:`train_epoch` calls after each batch: it moves the bar on and shows the
    running loss and accuracy (every 20 batches and after the last)."""
    bar = tqdm(total=steps, desc=label, unit="batch", disable=not enabled, leave=True,
               mininterval=0.5)

    def report(loss, acc):
        bar.update()
        if bar.n % 20 == 1 or bar.n == steps:
            bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}")
    return bar, report


def _record(history: dict, figures: dict) -> None:
    """Append each figure to the history's list under its name (a new list for a new name)."""
    for key, value in figures.items():
        history.setdefault(key, []).append(value)


class _BestEpoch:
    """The best validation accuracy so far (a later epoch wins a tie) and, if the
    weights are to be kept, a copy of that epoch's ``params``."""

    def __init__(self, params: list[np.ndarray], keep_weights: bool):
        self.params, self.keep_weights = params, keep_weights
        self.accuracy, self.weights = -1.0, None

    def update(self, accuracy: float) -> bool:
        """Whether the epoch just validated, with ``accuracy``, is the best so far."""
        if accuracy >= self.accuracy:     # the weights are copied only when they will be kept
            self.accuracy = accuracy
            self.weights = [p.copy() for p in self.params] if self.keep_weights else None
            return True
        return False

    def restore(self) -> None:
        """Put the best epoch's weights back into ``params`` (if they were kept)."""
        if self.weights is not None:
            for p, saved in zip(self.params, self.weights, strict=True):
                p[...] = saved


def _validate(model: Sequential, validation_data, epoch: int, history: dict,
              best: _BestEpoch, progress: bool) -> None:
    """After an epoch: record the validation loss and accuracy, note the epoch
    (counted from 1) as ``best_epoch`` if it is the best so far, and print both
    figures if ``progress``."""
    ev = loss_and_accuracy(model, *validation_data)
    _record(history, {"val_loss": ev["loss"], "val_accuracy": ev["accuracy"]})
    if best.update(ev["accuracy"]):
        history["best_epoch"] = epoch + 1
    if progress:
        tqdm.write(f"  epoch {epoch + 1}: val_loss {ev['loss']:.4f} "
                   f"val_acc {ev['accuracy']:.4f}")


def _record_extras(history: dict, extra: dict | None) -> None:
    """Append what ``on_epoch_end`` returned to the history; ValueError if it
    names a figure fit records itself."""
    extra = extra or {}
    taken = set(extra) & (_HISTORY_KEYS | {"best_epoch"})
    if taken:
        raise ValueError(f"on_epoch_end returned {sorted(taken)}, which fit records "
                         "itself; use other names")
    _record(history, extra)
