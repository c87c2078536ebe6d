"""The bridge: run a trained Keras model's weights in the from-scratch NumPy network.

``from_keras(model_or_path)`` walks the Keras layers in order and builds the
equivalent :class:`mnist_cnn.scratch.Sequential`, copying the weights. Both
libraries store conv kernels as (KH, KW, C_in, C_out) and dense matrices as
(D_in, D_out), so weights copy over without transposes.

What changes on the way:

- **BatchNormalization is folded** into the Conv2D/Dense right before it. At
  inference BN is a fixed per-channel affine map
  ``y = gamma * (z - mu) / sqrt(var + eps) + beta``; with ``z = x*W + b`` that is
  again a conv/dense with ``W' = W * s`` and ``b' = (b - mu) * s + beta``,
  ``s = gamma / sqrt(var + eps)`` (per output channel). One layer fewer, same numbers.
- **Fused activations** (``Conv2D(..., activation="relu")``) become separate scratch
  ``ReLU`` / ``Softmax`` layers, as the scratch API has no fused activations.
- **Inference no-ops are dropped**: Dropout, the random augmentation layers
  (identity outside training), the InputLayer, and a Reshape that only adds the
  channel axis to (28, 28) inputs.
- Anything else raises ``ValueError`` naming the layer and its class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Layers that are the identity at inference time.
_INFERENCE_NOOPS = {
    "InputLayer", "Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout",
    "AlphaDropout", "RandomRotation", "RandomTranslation", "RandomZoom", "RandomFlip",
    "RandomContrast", "RandomBrightness", "RandomCrop",
}
# A Keras activation -> the scratch layer computing it ("linear" is no layer).
_ACTIVATION_LAYERS = {"relu": "ReLU", "softmax": "Softmax", "linear": None}


def _unsupported(layer, why=""):
    return ValueError(
        f"The bridge cannot convert layer '{layer.name}' ({type(layer).__name__})"
        + (f": {why}" if why else "")
        + ". Supported: Conv2D, Dense, BatchNormalization (after Conv2D/Dense), ReLU, "
          "Activation('relu'/'softmax'), Softmax, MaxPooling2D, Flatten, Dropout, "
          "augmentation layers.")


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", None) or str(act)
    if name not in _ACTIVATION_LAYERS:
        raise _unsupported(layer, f"activation '{name}' is not relu/softmax/linear")
    return name


def _flat_layers(model):
    """The model's layers in order, nested Sequential models expanded."""
    for layer in model.layers:
        if hasattr(layer, "layers") and type(layer).__name__ in ("Sequential", "Functional"):
            yield from _flat_layers(layer)
        else:
            yield layer


def _config(cls: str, name: str, **settings) -> dict:
    """A scratch layer's description, as its ``get_config`` writes it."""
    return {"class": cls, "name": name, **settings}


def _numpy(variable):
    # Folding in float64, rounded once to float32 at the end.

    return np.asarray(variable.numpy(), np.float64)


class _Pending:
    """A Conv2D/Dense whose weights may still absorb a following BatchNormalization."""

    def __init__(self, config, W, b, activation):
        self.config, self.activation = config, activation
        self.W = np.asarray(W, np.float64)
        self.b = np.zeros(self.W.shape[-1]) if b is None else np.asarray(b, np.float64)

    def fold_batchnorm(self, layer):
        if self.activation != "linear":
            raise _unsupported(layer, "BatchNormalization after a fused activation cannot be "
                                      "folded into the previous layer")
        axis = layer.axis if isinstance(layer.axis, int) else list(layer.axis)[-1]
        if axis not in (-1, len(layer.input.shape) - 1):
            raise _unsupported(layer, f"BatchNormalization over axis {layer.axis} (need the "
                                      "last, channel axis)")
        mu, var = _numpy(layer.moving_mean), _numpy(layer.moving_variance)
        gamma = _numpy(layer.gamma) if layer.scale else np.ones_like(mu)
        beta = _numpy(layer.beta) if layer.center else np.zeros_like(mu)
        s = gamma / np.sqrt(var + layer.epsilon)
        self.W = self.W * s  # broadcasts over the last (output-channel) axis
        self.b = (self.b - mu) * s + beta

    def layers(self) -> list:
        """The layer (with a bias, whatever the Keras layer had: a folded BN adds
        one) and its fused activation, as (description, weights or None)."""
        out = [(self.config, [self.W.astype(np.float32), self.b.astype(np.float32)])]
        kind = _ACTIVATION_LAYERS[self.activation]
        if kind is not None:
            out.append((_config(kind, f"{self.config['name']}_{self.activation}"), None))
        return out


# One converter per Keras layer class: (keras layer, its config, the input shape) ->
# a _Pending Conv2D/Dense (a BatchNormalization after it may still fold into it) or
# the scratch layers to append, each as (description, weights or None).

def _conv2d(layer, cfg, in_shape):
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, "channels_first data format")
    if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or cfg.get("groups", 1) != 1:
        raise _unsupported(layer, "dilated or grouped convolution")
    if cfg["padding"] not in ("valid", "same"):
        raise _unsupported(layer, f"padding '{cfg['padding']}'")
    ks, st = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
    if ks[0] != ks[1] or st[0] != st[1]:
        raise _unsupported(layer, "non-square kernel or stride")
    w = layer.get_weights()
    return _Pending(_config("Conv2D", layer.name, filters=cfg["filters"], kernel_size=ks[0],
                            strides=st[0], padding=cfg["padding"], use_bias=True),
                    w[0], w[1] if cfg["use_bias"] else None, _activation_name(layer))


def _dense(layer, cfg, in_shape):
    w = layer.get_weights()
    return _Pending(_config("Dense", layer.name, units=cfg["units"], use_bias=True),
                    w[0], w[1] if cfg["use_bias"] else None, _activation_name(layer))


def _max_pooling2d(layer, cfg, in_shape):
    pool, strides = tuple(cfg["pool_size"]), cfg["strides"]
    strides = tuple(strides) if strides is not None else pool
    if cfg["padding"] != "valid" or pool[0] != pool[1] or strides[0] != strides[1]:
        raise _unsupported(layer, "only square, 'valid' max pooling is supported")
    return [(_config("MaxPooling2D", layer.name, pool_size=pool[0], strides=strides[0]), None)]


def _relu(layer, cfg, in_shape):
    if (cfg.get("max_value") is not None or cfg.get("negative_slope", 0) != 0
            or cfg.get("threshold", 0) != 0):
        raise _unsupported(layer, "ReLU with max_value/negative_slope/threshold")
    return [(_config("ReLU", layer.name), None)]


def _softmax(layer, cfg, in_shape):
    if cfg.get("axis", -1) not in (-1, 1):
        raise _unsupported(layer, f"softmax over axis {cfg.get('axis')}")
    return [(_config("Softmax", layer.name), None)]


def _activation(layer, cfg, in_shape):
    kind = _ACTIVATION_LAYERS[_activation_name(layer)]
    return [] if kind is None else [(_config(kind, layer.name), None)]  # linear: nothing


def _reshape(layer, cfg, in_shape):
    # Only the (28, 28) -> (28, 28, 1) channel axis is a no-op here.
    if tuple(cfg["target_shape"]) != in_shape:
        raise _unsupported(layer, f"Reshape to {cfg['target_shape']}")
    return []


_CONVERTERS = {
    "Conv2D": _conv2d, "Dense": _dense, "MaxPooling2D": _max_pooling2d, "ReLU": _relu,
    "Softmax": _softmax, "Activation": _activation, "Reshape": _reshape,
    "Flatten": lambda layer, cfg, in_shape: [(_config("Flatten", layer.name), None)],
}


def from_keras(model_or_path, seed=0):
    """Build a scratch ``Sequential`` that computes what a Keras model computes.

    Inputs:
    - model_or_path: a ``keras.Model`` (Sequential, or a functional chain of layers) or
      a path to a ``.keras`` file (loaded with :func:`mnist_cnn.model_files.load_model`,
      i.e. Keras' safe mode).
    - seed: passed to the scratch ``Sequential`` (its initial weights are overwritten).

    Returns:
    - ``mnist_cnn.scratch.Sequential`` with input (28, 28, 1) (a (28, 28) Keras input
      becomes (28, 28, 1); ``predict``/``predict_proba`` accept both), float32 weights.

    Raises:
    - ValueError naming the layer and its class for a layer the bridge cannot convert.
    """
    from mnist_cnn.scratch import network

    model = _keras_model(model_or_path)
    in_shape = _image_input_shape(model)
    built = _convert_layers(model, in_shape)
    config = network.describe([description for description, _ in built], in_shape, seed)
    weights = [w for _, layer_weights in built for w in layer_weights or ()]
    return network.Sequential.from_config(config, weights)


def _keras_model(model_or_path):
    """A Keras model given as itself or as a path to a ``.keras`` file."""
    if isinstance(model_or_path, (str, Path)):
        from mnist_cnn.model_files import load_model

        return load_model(model_or_path)
    return model_or_path


def _image_input_shape(model) -> tuple:
    """The shape of one input image, (H, W, C) (a (H, W) input gets C = 1), or
    ValueError for a model whose inputs are not images."""
    in_shape = tuple(model.input_shape[1:])
    if len(in_shape) == 2:
        in_shape = in_shape + (1,)
    if len(in_shape) != 3:
        raise ValueError(f"The bridge needs image inputs (H, W) or (H, W, C); the model takes "
                         f"{model.input_shape}.")
    return in_shape


def _convert_layers(model, in_shape) -> list:
    """The scratch layers computing what the Keras layers compute, in order, as
    (description, weights or None): inference no-ops skipped, each BatchNormalization
    folded into the Conv2D or Dense just before it, the others converted by
    ``_CONVERTERS``. ValueError names a layer that cannot be converted."""
    built, pending = [], None          # (description, weights or None); a _Pending
    for layer in _flat_layers(model):
        cls = type(layer).__name__
        if cls in _INFERENCE_NOOPS:
            continue
        if cls == "BatchNormalization":
            if pending is None:
                raise _unsupported(layer, "BatchNormalization must directly follow a Conv2D "
                                          "or Dense layer to be folded")
            pending.fold_batchnorm(layer)
            continue
        if cls not in _CONVERTERS:
            raise _unsupported(layer)
        if pending is not None:
            built.extend(pending.layers())
        out = _CONVERTERS[cls](layer, layer.get_config(), in_shape)
        if isinstance(out, _Pending):
            pending = out
        else:
            pending = None
            built.extend(out)
    if pending is not None:
        built.extend(pending.layers())
    return built


def _keras_twin_layer(layer, keras):
    """A Keras layer computing what the scratch ``layer`` computes (not a block)."""
    from mnist_cnn.scratch import layers as S

    kind, name = type(layer), layer.name
    if kind is S.Conv2D:
        return keras.layers.Conv2D(layer.filters, layer.kernel_size, layer.strides,
                                   padding=layer.padding, use_bias=layer.use_bias, name=name)
    if kind is S.Dense:
        return keras.layers.Dense(layer.units, use_bias=layer.use_bias, name=name)
    if kind in (S.MaxPooling2D, S.AveragePooling2D):
        pool = keras.layers.MaxPooling2D if kind is S.MaxPooling2D \
            else keras.layers.AveragePooling2D
        return pool(layer.pool_size, layer.strides, name=name)
    if kind is S.BatchNormalization:
        return keras.layers.BatchNormalization(momentum=layer.momentum,
                                               epsilon=layer.epsilon, name=name)
    if kind is S.LayerNormalization:
        return keras.layers.LayerNormalization(epsilon=layer.epsilon, name=name)
    if kind is S.Dropout:
        return keras.layers.Dropout(layer.rate, name=name)
    simple = {S.ReLU: lambda: keras.layers.ReLU(name=name),
              S.Tanh: lambda: keras.layers.Activation("tanh", name=name),
              S.Softmax: lambda: keras.layers.Softmax(name=name),
              S.Flatten: lambda: keras.layers.Flatten(name=name),
              S.GlobalAveragePooling2D: lambda: keras.layers.GlobalAveragePooling2D(name=name)}
    if kind not in simple:
        raise ValueError(f"to_keras has no Keras twin for layer {name!r} ({kind.__name__})")
    return simple[kind]()


def _keras_graph(layers, h, keras):
    """Apply Keras twins of the scratch ``layers`` to the tensor ``h``, with their
    names and weights; a Residual becomes its two branches joined by ``Add``."""
    from mnist_cnn.scratch.layers import Residual

    for layer in layers:
        if isinstance(layer, Residual):
            f = _keras_graph(layer.layers, h, keras)
            s = h if layer.shortcut is None else _keras_graph([layer.shortcut], h, keras)
            h = keras.layers.Add(name=layer.name)([f, s])
            continue
        twin = _keras_twin_layer(layer, keras)
        h = twin(h)
        twin.set_weights(layer.get_weights())
    return h


def to_keras(net):
    """The Keras model that computes what the scratch network ``net`` computes, with
    the same layer names and a copy of its weights (the bridge's other direction).
    Each scratch layer becomes the Keras layer of the same name (tanh an
    ``Activation``), a :class:`~mnist_cnn.scratch.layers.Residual` block its
    branches and an ``Add``: how the chapters check a network built in the engine
    against TensorFlow, outputs and gradients alike."""
    from mnist_cnn.backend import import_keras

    keras = import_keras()
    inputs = keras.Input(net.input_shape)
    return keras.Model(inputs, _keras_graph(net.layers, inputs, keras))


def keras_run_steps(optimizer, params, grads) -> list[np.ndarray]:
    """What the Keras ``optimizer`` makes of ``params`` after one
    ``apply_gradients`` per entry of ``grads`` (a list of gradient lists): the
    Keras side of :func:`mnist_cnn.scratch.optim.run_steps`."""
    from mnist_cnn.backend import import_keras, import_tensorflow

    keras, tf = import_keras(), import_tensorflow()
    variables = [keras.Variable(p) for p in params]
    for g in grads:
        optimizer.apply_gradients([(tf.convert_to_tensor(gi), v)
                                   for gi, v in zip(g, variables, strict=True)])
    return [v.numpy() for v in variables]
