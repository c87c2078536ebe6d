"""The production model: a small BatchNorm CNN trained with Keras.

keras-io style: the recipe is the module constants below, ``build_model`` returns
the architecture, ``train`` fits it, and the two CLI handlers
(``python -m mnist_cnn train-keras`` / ``evaluate``) wrap them.

The shipped ``models/cnn_model.keras`` holds only layers the bridge
(:mod:`mnist_cnn.bridge`) can map onto the from-scratch NumPy network:
Conv2D, BatchNormalization (folded into the preceding layer), ReLU, MaxPooling2D,
Flatten, Dense, Dropout, Softmax. Data augmentation runs in the ``tf.data``
input pipeline during training only, so it never ends up in the saved file.

Example::

    >>> from mnist_cnn.keras_model import build_model, load_model
    >>> model = build_model()
    >>> model.count_params()  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

# --- the recipe (the CLI defaults reproduce the committed model) -------------------
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10
CONV_FILTERS = (32, 32, 64, 64)  # two conv blocks of two 3x3 convolutions each
KERNEL_SIZE = 3
DENSE_UNITS = 128
DROPOUT = 0.3
BLOCK_DROPOUT = 0.2  # after each pooling layer
EPOCHS = 15
BATCH_SIZE = 128
LEARNING_RATE = 2e-3  # peak Adam step size; cosine-decayed to LR_FINAL_FRACTION of it
LR_FINAL_FRACTION = 0.02
VALIDATION_SIZE = 5000  # held out from the 60,000 training images
EARLY_STOP_PATIENCE = 5
LABEL_SMOOTHING = 0.1  # targets 0.91/0.01 instead of 1/0: discourages over-confident fits
# Augmentation suited to handwriting: small rotations, shifts and zoom. Mirror
# flips are out (a mirrored 2 is not a 2).
ROTATION = 0.03  # fraction of a full turn: +-10.8 degrees
TRANSLATION = 0.1  # fraction of the image size: +-2.8 pixels
ZOOM = 0.1
SEED = 0

KERAS_HINT = (
    "Train one with `python -m mnist_cnn train-keras`, or use the committed "
    "models/cnn_model.keras from the repository."
)


def _keras():
    # TensorFlow's start-up messages are noise for readers; keep them quiet by default.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


# --- model --------------------------------------------------------------------------
def build_model(conv_filters=CONV_FILTERS, dense_units=DENSE_UNITS, dropout=DROPOUT,
                block_dropout=BLOCK_DROPOUT, kernel_size=KERNEL_SIZE, input_shape=INPUT_SHAPE,
                num_classes=NUM_CLASSES,
                batch_norm=True, name="mnist_cnn"):
    """The production architecture as a ``keras.Sequential``.

    Each conv block is ``[Conv2D -> BatchNormalization -> ReLU] x 2 -> MaxPooling2D
    -> Dropout``;
    the head is ``Flatten -> Dense -> BatchNormalization -> ReLU -> Dropout ->
    Dense(10) -> Softmax``. Layers followed by BatchNormalization have no bias (BN's
    beta plays that role); the bridge folds BN back into them for inference.

    Inputs:
    - conv_filters: filters of each 3x3 valid convolution; a MaxPooling2D(2) follows
      every second one. With (32, 32, 64, 64): 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4.
    - dense_units: width of the hidden Dense layer (0 or None: no hidden layer).
    - dropout: rate before the output layer (0: no Dropout layer).
    - block_dropout: rate after each pooling layer (0: none).
    - input_shape: (28, 28, 1); pixels float32 in [0, 1].
    - batch_norm: False gives plain Conv2D(use_bias=True) -> ReLU blocks.

    Returns:
    - an uncompiled ``keras.Sequential``; output (N, 10) class probabilities.
    """
    keras = _keras()
    from keras import layers

    model_layers = [keras.Input(shape=tuple(input_shape))]
    for i, filters in enumerate(conv_filters):
        model_layers.append(layers.Conv2D(filters, kernel_size, use_bias=not batch_norm,
                                          name=f"conv{i + 1}"))
        if batch_norm:
            model_layers.append(layers.BatchNormalization(name=f"bn_conv{i + 1}"))
        model_layers.append(layers.ReLU(name=f"relu_conv{i + 1}"))
        if i % 2 == 1 or len(conv_filters) == 1:
            model_layers.append(layers.MaxPooling2D(2, name=f"pool{i // 2 + 1}"))
            if block_dropout:
                model_layers.append(layers.Dropout(block_dropout,
                                                   name=f"dropout_block{i // 2 + 1}"))
    model_layers.append(layers.Flatten(name="flatten"))
    if dense_units:
        model_layers.append(layers.Dense(dense_units, use_bias=not batch_norm, name="dense1"))
        if batch_norm:
            model_layers.append(layers.BatchNormalization(name="bn_dense1"))
        model_layers.append(layers.ReLU(name="relu_dense1"))
    if dropout:
        model_layers.append(layers.Dropout(dropout, name="dropout"))
    model_layers.append(layers.Dense(num_classes, name="logits"))
    model_layers.append(layers.Softmax(name="softmax"))
    return keras.Sequential(model_layers, name=name)


def augmentation(seed=SEED, rotation=ROTATION, translation=TRANSLATION, zoom=ZOOM):
    """Training-only augmentation as a ``keras.Sequential`` of random layers.

    Used inside the ``tf.data`` pipeline (never inside the shipped model).
    Inputs/returns: float32 (N, 28, 28, 1) in [0, 1]; empty areas filled with 0 (black).
    """
    keras = _keras()
    from keras import layers

    return keras.Sequential([
        layers.RandomRotation(rotation, fill_mode="constant", seed=seed),
        layers.RandomTranslation(translation, translation, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(zoom, zoom, fill_mode="constant", seed=seed + 2),
    ], name="augmentation")


def to_model_input(x):
    """uint8 (N, 28, 28) or (N, 28, 28, 1) images in 0..255 -> float32 (N, 28, 28, 1) in [0, 1]."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    return x.astype(np.float32) / 255.0


def cosine_lr(epoch, num_epochs, lr=LEARNING_RATE, final_fraction=LR_FINAL_FRACTION):
    """Learning rate for ``epoch`` (0-based): cosine from ``lr`` down to ``lr*final_fraction``."""
    if num_epochs <= 1:
        return float(lr)
    t = epoch / (num_epochs - 1)
    return float(lr * (final_fraction + (1 - final_fraction) * 0.5 * (1 + np.cos(np.pi * t))))


def _make_dataset(x, y, batch_size, seed, augment):
    import tensorflow as tf

    # One-hot targets: Keras' label smoothing works on categorical (not sparse) labels.
    ds = tf.data.Dataset.from_tensor_slices((x, np.eye(NUM_CLASSES, dtype=np.float32)[y]))
    if augment:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment:
        aug = augmentation(seed)
        # Sequential map: the augmentation layers draw from a stateful seeded
        # generator, and parallel calls would consume its draws in a different
        # order each run, so the same seed would not give the same weights.
        ds = ds.map(lambda a, b: (aug(a, training=True), b))
    return ds.prefetch(tf.data.AUTOTUNE)


class RestoreBest:
    """Factory for a callback that keeps the weights of the best validation epoch.

    Unlike ``EarlyStopping(restore_best_weights=True)`` it prefers the *later* epoch
    on a tie: with a decaying learning rate the later weights are the better-settled
    ones, and validation accuracy moves in steps of one image.
    """

    def __new__(cls, monitor="val_accuracy", verbose=1):
        keras = _keras()

        class _RestoreBest(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.best, self.best_epoch, self.best_weights = -np.inf, None, None

            def on_epoch_end(self, epoch, logs=None):
                value = (logs or {}).get(monitor)
                if value is not None and value >= self.best:
                    self.best, self.best_epoch = value, epoch
                    self.best_weights = self.model.get_weights()

            def on_train_end(self, logs=None):
                if self.best_weights is not None:
                    self.model.set_weights(self.best_weights)
                    if verbose:
                        print(f"Restored the weights of epoch {self.best_epoch + 1} "
                              f"({monitor} {self.best:.4f}).")

        return _RestoreBest()


def train(model, x_train, y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, seed=SEED,
          validation_size=VALIDATION_SIZE, augment=True, lr=LEARNING_RATE,
          patience=EARLY_STOP_PATIENCE, label_smoothing=LABEL_SMOOTHING, verbose=1):
    """Fit ``model`` on MNIST-style data with augmentation, validation and callbacks.

    Inputs:
    - model: an uncompiled (or compiled) Keras model ending in Softmax.
    - x_train: uint8 (N, 28, 28[, 1]) images 0..255 or float32 in [0, 1].
    - y_train: int (N,) labels 0..9.
    - validation_size: the last this-many images of a seeded shuffle are held out
      (clipped to 10 % of N for small subsets; 0 disables validation).
    - seed: seeds Keras/TF/NumPy (``keras.utils.set_random_seed``), the split,
      the shuffle and the augmentation.

    Returns:
    - the ``keras.callbacks.History``; the model keeps the weights of its best
      validation epoch (early stopping with best-weight restore).
    """
    keras = _keras()
    keras.utils.set_random_seed(seed)
    x = to_model_input(x_train) if np.asarray(x_train).dtype == np.uint8 else \
        np.asarray(x_train, np.float32).reshape(-1, 28, 28, 1)
    y = np.asarray(y_train).astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = min(int(validation_size), len(x) // 10)
    val_idx, tr_idx = order[:n_val], order[n_val:]
    train_ds = _make_dataset(x[tr_idx], y[tr_idx], batch_size, seed, augment)
    val_ds = _make_dataset(x[val_idx], y[val_idx], 1000, seed, False) if n_val else None

    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy"])
    callbacks = [keras.callbacks.LearningRateScheduler(lambda e: cosine_lr(e, epochs, lr))]
    if n_val:
        # Stop when validation accuracy stalls; keep the best validation epoch's weights
        # even if later epochs get worse.
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", patience=patience, verbose=verbose))
        callbacks.append(RestoreBest("val_accuracy", verbose=verbose))
    # shuffle=False: the dataset is already shuffled (seeded) in _make_dataset.
    return model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                     shuffle=False, verbose=verbose)


# --- loading ------------------------------------------------------------------------
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
    from mnist_cnn import paths

    path = Path(path) if path is not None else paths.default_keras_model()
    if not path.is_file():
        raise FileNotFoundError(f"No Keras model at {path}. {KERAS_HINT}")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        # Keras' own message for this case ("File not found") is misleading.
        raise ValueError(f"{path} is not a valid .keras file (those are zip archives); it is "
                         f"corrupt or truncated. {KERAS_HINT}")
    keras = _keras()
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


# --- evaluation ---------------------------------------------------------------------
def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def outputs_are_probabilities(out, atol=1e-3):
    """True if every row of ``out`` (N, 10) is a probability vector (>= 0, sums to 1)."""
    out = np.asarray(out, np.float64)
    return bool(out.min() >= -1e-6 and out.max() <= 1 + 1e-6
                and np.allclose(out.sum(axis=1), 1.0, atol=atol))


def check_mnist_model(model):
    """Check a Keras model looks like an MNIST classifier; return its input rank (3 or 4).

    Accepts inputs (None, 28, 28) or (None, 28, 28, 1) and outputs (None, 10).
    Raises ValueError explaining what is wrong otherwise.
    """
    in_shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    out_shape = tuple(model.output_shape) if not isinstance(model.output_shape, list) else None
    if in_shape is None or out_shape is None:
        raise ValueError("The model has several inputs or outputs; an MNIST classifier takes "
                         "one image batch and returns one (N, 10) array.")
    if in_shape[1:] not in ((28, 28), (28, 28, 1)):
        raise ValueError(f"The model's input shape is {in_shape}; an MNIST classifier takes "
                         "(None, 28, 28) or (None, 28, 28, 1) images (float, pixels in [0, 1]).")
    if out_shape[1:] != (10,):
        raise ValueError(f"The model's output shape is {out_shape}; an MNIST classifier "
                         "returns (None, 10) scores, one per digit.")
    return len(in_shape)


def confusion_matrix(y_true, y_pred, num_classes=NUM_CLASSES):
    """(10, 10) int counts: row = true digit, column = predicted digit."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def evaluate_probs(probs, y):
    """Test figures for probabilities (N, 10) against labels (N,).

    Returns a dict: accuracy, mean cross-entropy, error count, per-class accuracy,
    confusion matrix (rows = true digit).
    """
    probs = np.asarray(probs, np.float64)
    y = np.asarray(y, int)
    pred = probs.argmax(axis=1)
    cm = confusion_matrix(y, pred)
    per_class = (np.diag(cm) / np.maximum(cm.sum(axis=1), 1)).tolist()
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None))))
    return {
        "test_accuracy": float(np.mean(pred == y)),
        "test_loss": loss,
        "errors": int(np.sum(pred != y)),
        "per_class_accuracy": {str(d): round(a, 6) for d, a in enumerate(per_class)},
        "confusion_matrix": cm.tolist(),
    }


def predict_proba(model, x, batch_size=1000):
    """(N, 10) probabilities of a Keras MNIST classifier for uint8/float images.

    Feeds float32 in [0, 1] shaped as the model expects; if the model returns logits
    (rows that are not probability vectors), a softmax is applied.
    """
    rank = check_mnist_model(model)
    xs = to_model_input(x) if np.asarray(x).dtype == np.uint8 else np.asarray(x, np.float32)
    xs = xs.reshape((-1, 28, 28) if rank == 3 else (-1, 28, 28, 1))
    out = np.asarray(model.predict(xs, batch_size=batch_size, verbose=0), np.float64)
    return out if outputs_are_probabilities(out) else _softmax(out)


def _format_report(res, path):
    lines = [f"Model: {path}",
             f"Test accuracy: {res['test_accuracy'] * 100:.2f} %  "
             f"({res['errors']} errors of {res['n_test']})   loss {res['test_loss']:.4f}   "
             f"outputs: {res['outputs']}",
             "Per-class accuracy:",
             "  " + "  ".join(f"{d}: {a * 100:.2f}%" for d, a in res["per_class_accuracy"].items()),
             "Confusion matrix (rows = true digit, columns = predicted):",
             "       " + "".join(f"{d:>6d}" for d in range(10))]
    for d, row in enumerate(res["confusion_matrix"]):
        lines.append(f"  {d:>3d}  " + "".join(f"{v:>6d}" for v in row))
    return "\n".join(lines)


def evaluate_file(path=None, cache_dir=None):
    """Evaluate any MNIST classifier file (Keras .keras/.h5 or scratch .npz) on the test set.

    Returns the dict of :func:`evaluate_probs` plus ``model``, ``n_test``, ``outputs``.
    """
    from mnist_cnn import paths
    from mnist_cnn.data import load_mnist

    path = Path(path) if path is not None else paths.default_keras_model()
    (_, _), (x_test, y_test) = load_mnist(cache_dir, progress=False)
    if path.suffix == ".npz":
        if not path.is_file():
            raise FileNotFoundError(f"No NumPy model at {path}. Train one with "
                                    "`python -m mnist_cnn train-numpy`.")
        from mnist_cnn.scratch.network import Sequential

        net = Sequential.load(path)
        probs = np.concatenate([net.predict_proba(to_model_input(x_test[i:i + 1000]))
                                for i in range(0, len(x_test), 1000)])
        kind = "probabilities (scratch network)"
    else:
        model = load_model(path)
        xs = to_model_input(x_test)
        rank = check_mnist_model(model)
        raw = np.asarray(model.predict(xs.reshape((-1, 28, 28) if rank == 3 else xs.shape),
                                       batch_size=1000, verbose=0), np.float64)
        if outputs_are_probabilities(raw):
            probs, kind = raw, "probabilities"
        else:
            probs, kind = _softmax(raw), "logits (softmax applied)"
    res = evaluate_probs(probs, y_test)
    res.update(model=str(path), n_test=int(len(y_test)), outputs=kind)
    return res


def cli_evaluate(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn evaluate [--model PATH] [--json]``."""
    res = evaluate_file(args.model, getattr(args, "cache_dir", None))
    if args.json:
        print(json.dumps(res))
    else:
        print(_format_report(res, res["model"]))
    return 0


# --- the train-keras command ----------------------------------------------------------
def _summary_text(model):
    lines = []
    model.summary(print_fn=lambda s, **kw: lines.append(s), line_length=90)
    return "\n".join(lines)


def architecture(model):
    """List of {name, class, output_shape, params} per layer (JSON-able)."""
    return [{"name": layer.name, "class": type(layer).__name__,
             "output_shape": list(layer.output.shape[1:]) if hasattr(layer, "output") else None,
             "params": int(layer.count_params())} for layer in model.layers]


def cli_train_keras(args: argparse.Namespace) -> int:
    """``python -m mnist_cnn train-keras``: train, test, save atomically, write the card."""
    from mnist_cnn import _io, paths
    from mnist_cnn.data import data_hashes, load_mnist

    epochs = args.epochs if args.epochs is not None else EPOCHS
    batch_size = args.batch_size if args.batch_size is not None else BATCH_SIZE
    seed = args.seed if args.seed is not None else SEED
    if epochs < 1 or batch_size < 1 or (args.limit is not None and args.limit < 10):
        raise ValueError("--epochs and --batch-size must be >= 1 and --limit >= 10.")
    out = Path(args.out) if args.out else paths.default_keras_model()
    if out.suffix != ".keras":
        raise ValueError(f"--out must end in .keras (got {out}).")
    cache_dir = getattr(args, "cache_dir", None)

    (x_train, y_train), (x_test, y_test) = load_mnist(cache_dir)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    _keras().utils.set_random_seed(seed)  # the initial weights too, not just training
    model = build_model()
    t0 = time.perf_counter()
    history = train(model, x_train, y_train, epochs=epochs, batch_size=batch_size, seed=seed)
    train_seconds = time.perf_counter() - t0

    probs = predict_proba(model, x_test)
    res = evaluate_probs(probs, y_test)

    # No optimizer state in the shipped file: copy the trained weights into a fresh,
    # never-compiled twin and save that (the .keras format has no include_optimizer).
    shipped = build_model()
    shipped.set_weights(model.get_weights())
    if sys.argv[1:2] == ["train-keras"]:  # run from the command line: record it verbatim
        command = "python -m mnist_cnn " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    else:
        command = (f"python -m mnist_cnn train-keras --epochs {epochs} --seed {seed} "
                   f"--batch-size {batch_size}"
                   + (f" --limit {args.limit}" if args.limit is not None else ""))
    # model and card are written as temp files, then put in place together
    with _io.atomic_pair(out, paths.card_path(out)) as (tmp, tmp_card):
        shipped.save(tmp)
        size = tmp.stat().st_size
        hist = {k: [round(float(v), 6) for v in vals] for k, vals in history.history.items()}
        card = {
            "model": out.name,
            "framework": "keras",
            "test_accuracy": round(res["test_accuracy"], 6),
            "test_loss": round(res["test_loss"], 6),
            "test_errors": res["errors"],
            "per_class_accuracy": res["per_class_accuracy"],
            "confusion_matrix": res["confusion_matrix"],
            "parameters": int(model.count_params()),
            "file_size_bytes": int(size),
            "sha256": _io.sha256_file(tmp),
            "training_seconds": round(train_seconds, 1),
            "epochs_run": len(history.history.get("loss", [])),
            "epochs": epochs,
            "batch_size": batch_size,
            "seed": seed,
            "train_images": int(len(x_train)),
            "validation_images": int(min(VALIDATION_SIZE, len(x_train) // 10)),
            "recipe": {"conv_filters": list(CONV_FILTERS), "kernel_size": KERNEL_SIZE,
                       "dense_units": DENSE_UNITS, "dropout": DROPOUT,
                       "block_dropout": BLOCK_DROPOUT,
                       "learning_rate": LEARNING_RATE, "lr_schedule": "cosine",
                       "lr_final_fraction": LR_FINAL_FRACTION, "optimizer": "Adam",
                       "augmentation": {"rotation": ROTATION, "translation": TRANSLATION,
                                        "zoom": ZOOM},
                       "early_stopping_patience": EARLY_STOP_PATIENCE,
                       "label_smoothing": LABEL_SMOOTHING,
                       "restore": "best val_accuracy (later epoch on ties)"},
            "history": hist,
            "input": "float32 (N, 28, 28, 1), pixels in [0, 1], white digit on black",
            "output": "(N, 10) probabilities (Softmax)",
            "data_hashes": data_hashes(),
            "versions": _io.library_versions("tensorflow", "keras"),
            "architecture": architecture(model),
            "summary": _summary_text(model),
            "command": command,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        _io.write_json(tmp_card, card)
    print(f"Saved {out} ({size / 1024:.0f} KiB, {model.count_params():,} parameters): "
          f"test accuracy {res['test_accuracy'] * 100:.2f} % in {train_seconds:.0f} s "
          f"of training; card {paths.card_path(out)}")
    return 0
