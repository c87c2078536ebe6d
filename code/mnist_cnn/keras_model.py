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

    >>> from mnist_cnn.keras_model import build_model
    >>> model = build_model()
    >>> model.count_params()  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from mnist_cnn.backend import import_keras, import_tensorflow
from mnist_cnn.data import VALIDATION_SIZE, prepare_images, split_validation
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES

# --- the recipe (the CLI defaults reproduce the committed model) -------------------
CONV_FILTERS = (32, 32, 64, 64)  # two conv blocks of two 3x3 convolutions each
KERNEL_SIZE = 3
DENSE_UNITS = 128
DROPOUT = 0.3
BLOCK_DROPOUT = 0.2  # after each pooling layer
EPOCHS = 15
BATCH_SIZE = 128
LR = 2e-3  # peak Adam step size; cosine-decayed to LR_FINAL_FRACTION of it
LR_FINAL_FRACTION = 0.02
EARLY_STOP_PATIENCE = 5
LABEL_SMOOTHING = 0.1  # targets 0.91/0.01 instead of 1/0: discourages over-confident fits
# Augmentation suited to handwriting: small rotations, shifts and zoom. Mirror
# flips are out (a mirrored 2 is not a 2).
ROTATION = 0.03  # fraction of a full turn: +-10.8 degrees
TRANSLATION = 0.1  # fraction of the image size: +-2.8 pixels
ZOOM = 0.1
SEED = 0

# --- the NumPy network's twin -------------------------------------------------------
def build_twin(dropout: float, lr: float, seed: int = 0, dtype: str = "float32"):
    """The course network of :func:`mnist_cnn.scratch.train.build_model`, layer for
    layer in Keras (the same layer types, shapes and parameter counts), compiled
    with Adam on logits as the NumPy trainer uses it. Pass the NumPy recipe's
    ``DROPOUT`` and ``LR`` (:mod:`mnist_cnn.scratch.train`); ``dtype="float64"``
    builds it in double precision, to compare gradients through max pooling."""
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential([
        keras.Input(INPUT_SHAPE, dtype=dtype),
        layers.Conv2D(32, 3, dtype=dtype), layers.ReLU(dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype),
        layers.Conv2D(64, 3, dtype=dtype), layers.ReLU(dtype=dtype),
        layers.MaxPooling2D(2, dtype=dtype),
        layers.Flatten(dtype=dtype), layers.Dense(128, dtype=dtype), layers.ReLU(dtype=dtype),
        layers.Dropout(dropout, dtype=dtype), layers.Dense(NUM_CLASSES, dtype=dtype),
    ], name="numpy_twin")
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


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
    keras = import_keras()
    layers = keras.layers

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
    keras = import_keras()
    layers = keras.layers

    return keras.Sequential([
        layers.RandomRotation(rotation, fill_mode="constant", seed=seed),
        layers.RandomTranslation(translation, translation, fill_mode="constant", seed=seed + 1),
        layers.RandomZoom(zoom, zoom, fill_mode="constant", seed=seed + 2),
    ], name="augmentation")


def cosine_lr(epoch, num_epochs, lr=LR, final_fraction=LR_FINAL_FRACTION):
    """Learning rate for ``epoch`` (0-based): cosine from ``lr`` down to
    ``lr*final_fraction`` in the last epoch (:func:`mnist_cnn.scratch.optim.cosine_decay`
    over ``num_epochs - 1`` steps)."""
    from mnist_cnn.scratch.optim import cosine_decay

    if num_epochs <= 1:
        return float(lr)
    return float(cosine_decay(lr, num_epochs - 1, final_fraction)(epoch))


def _make_dataset(x, y, batch_size, seed, augment):
    tf = import_tensorflow()

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
        keras = import_keras()

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
          validation_size=VALIDATION_SIZE, augment=True, lr=LR,
          patience=EARLY_STOP_PATIENCE, label_smoothing=LABEL_SMOOTHING, verbose=1,
          callbacks=()):
    """Fit ``model`` on MNIST-style data with augmentation, validation and callbacks.

    Inputs:
    - model: an uncompiled (or compiled) Keras model ending in Softmax.
    - x_train: uint8 (N, 28, 28[, 1]) images 0..255 or float32 in [0, 1].
    - y_train: int (N,) labels 0..9.
    - validation_size: the last this-many training images are held out as the
      fixed validation set (:func:`mnist_cnn.data.split_validation`; at most 10 %
      of N for small subsets; 0 disables validation).
    - seed: seeds Keras/TF/NumPy (``keras.utils.set_random_seed``), the shuffle
      and the augmentation.
    - callbacks: more Keras callbacks, run after the course's own.

    Returns:
    - the ``keras.callbacks.History``; the model keeps the weights of its best
      validation epoch (early stopping with best-weight restore).
    """
    keras = import_keras()
    keras.utils.set_random_seed(seed)
    x = prepare_images(x_train)
    y = np.asarray(y_train).astype(np.int32)
    (x_tr, y_tr), (x_val, y_val) = split_validation(x, y, validation_size)
    n_val = len(y_val)
    train_ds = _make_dataset(x_tr, y_tr, batch_size, seed, augment)
    val_ds = _make_dataset(x_val, y_val, 1000, seed, False) if n_val else None

    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
                  metrics=["accuracy"])
    course = [keras.callbacks.LearningRateScheduler(lambda e: cosine_lr(e, epochs, lr))]
    if n_val:
        # Stop when validation accuracy stalls; keep the best validation epoch's weights
        # even if later epochs get worse.
        course.append(keras.callbacks.EarlyStopping(
            monitor="val_accuracy", patience=patience, verbose=verbose))
        course.append(RestoreBest("val_accuracy", verbose=verbose))
    # shuffle=False: the dataset is already shuffled (seeded) in _make_dataset.
    return model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                     callbacks=[*course, *callbacks], shuffle=False, verbose=verbose)


# --- what the train-keras command records (mnist_cnn.train_commands) ------------------
def recipe_settings() -> dict:
    """The recipe's settings, as the model card records them."""
    return {"CONV_FILTERS": list(CONV_FILTERS), "KERNEL_SIZE": KERNEL_SIZE,
            "DENSE_UNITS": DENSE_UNITS, "DROPOUT": DROPOUT, "BLOCK_DROPOUT": BLOCK_DROPOUT,
            "optimizer": "Adam", "LR": LR, "lr_schedule": "cosine",
            "LR_FINAL_FRACTION": LR_FINAL_FRACTION, "ROTATION": ROTATION,
            "TRANSLATION": TRANSLATION, "ZOOM": ZOOM,
            "EARLY_STOP_PATIENCE": EARLY_STOP_PATIENCE, "LABEL_SMOOTHING": LABEL_SMOOTHING,
            "selection": "epoch with the best validation accuracy (later on ties)"}


def summary_text(model) -> str:
    """Keras' ``model.summary()`` as one string."""
    lines = []
    model.summary(print_fn=lambda s, **kw: lines.append(s), line_length=90)
    return "\n".join(lines)


def architecture(model):
    """List of {name, class, output_shape, params} per layer (JSON-able)."""
    return [{"name": layer.name, "class": type(layer).__name__,
             "output_shape": list(layer.output.shape[1:]) if hasattr(layer, "output") else None,
             "params": int(layer.count_params())} for layer in model.layers]
