"""Layer classes with Keras' names, wrapping the forward/backward pairs of
:mod:`mnist_cnn.scratch.functional`.

Every layer has the same small interface::

    layer.build(input_shape, rng) -> output_shape   # shapes without the batch axis
    out = layer.forward(x, training=False)          # keeps its cache
    dx  = layer.backward(dout)                      # fills layer.grads
    layer.params, layer.grads                       # trainable arrays ("W", "b") and their grads
    layer.state                                     # arrays that are not trained (BN statistics)
    layer.get_weights() / layer.set_weights([W, b]) # Keras order and layout
    layer.get_config()                              # JSON-able; rebuilds the layer

Activations are separate layers (``ReLU``, ``Softmax``), as in a Keras model
written without fused ``activation=`` arguments, so the two mirror each other
layer by layer.
"""

from __future__ import annotations

import copy
from collections.abc import MutableMapping

import numpy as np

from mnist_cnn.scratch import functional as F

__all__ = ["he_normal", "glorot_uniform", "Layer", "Conv2D", "MaxPooling2D", "ReLU", "Flatten",
           "Dropout", "Dense", "BatchNormalization", "LayerNormalization", "Softmax",
           "Residual", "Tanh", "AveragePooling2D", "GlobalAveragePooling2D",
           "layer_from_config", "LAYER_CLASSES", "walk"]

DTYPE = np.float32


def he_normal(rng, shape, fan_in, dtype=DTYPE):
    """He et al. (2015): std sqrt(2 / fan_in) keeps the second moment E[x^2] of the
    activations constant through ReLU layers (ReLU halves E[x^2] of a symmetric input;
    its variance it cuts by more)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def glorot_uniform(rng, shape, fan_in, fan_out, dtype=DTYPE):
    """Glorot & Bengio (2010), Keras' default: U(-l, l), l = sqrt(6 / (fan_in + fan_out)),
    balancing the variance of the forward signal and the backward gradient."""
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape).astype(dtype)


class Layer:
    """Base class: a parameterless layer that passes its input through."""

    _counter: dict[str, int] = {}

    def __init__(self, name: str | None = None):
        cls = type(self).__name__
        if name is None:
            # Keras-style default names: conv2d, conv2d_1, ...
            base = "".join("_" + ch.lower() if ch.isupper() else ch for ch in cls).lstrip("_")
            base = base.replace("2_d", "2d")     # conv2d, max_pooling2d, as Keras
            k = Layer._counter.get(base, 0)
            Layer._counter[base] = k + 1
            name = base if k == 0 else f"{base}_{k}"
        self.name = name
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}
        self.input_shape: tuple[int, ...] | None = None
        self.output_shape: tuple[int, ...] | None = None
        self.need_dx = True          # the network turns this off for its first layer
        self.init = "glorot"         # the network sets "he" for layers followed by ReLU
        self._cache = None

    # -- shapes & parameters
    def build(self, input_shape, rng=None):
        self.input_shape = tuple(int(d) for d in input_shape)
        self.output_shape = self._output_shape(self.input_shape)
        return self.output_shape

    def _output_shape(self, input_shape):
        return input_shape

    def weight_names(self) -> list[str]:
        """The names of :meth:`get_weights`' arrays, in Keras' order."""
        return [k for k in ("W", "b") if k in self.params]

    def count_params(self) -> int:
        """Trainable and non-trainable numbers, as Keras counts them."""
        return int(sum(p.size for p in (*self.params.values(), *self.state.values())))

    def get_weights(self) -> list[np.ndarray]:
        arrays = {**self.params, **self.state}
        return [arrays[k] for k in self.weight_names()]

    def set_weights(self, weights) -> None:
        keys = self.weight_names()
        if len(weights) != len(keys):
            raise ValueError(f"layer {self.name!r} expects {len(keys)} weight arrays "
                             f"({', '.join(keys) or 'none'}), got {len(weights)}")
        for k, w in zip(keys, weights, strict=True):
            home = self.params if k in self.params else self.state
            w = np.asarray(w)
            if w.shape != home[k].shape:
                raise ValueError(f"layer {self.name!r}: {k} must have shape "
                                 f"{home[k].shape}, got {w.shape}")
            home[k] = np.ascontiguousarray(w, dtype=home[k].dtype)

    def get_config(self) -> dict:
        return {"class": type(self).__name__, "name": self.name}

    # -- computation
    def forward(self, x, training: bool = False):
        return x

    def backward(self, dout):
        return dout

    def __repr__(self) -> str:
        cfg = {k: v for k, v in self.get_config().items() if k not in ("class",)}
        args = ", ".join(f"{k}={v!r}" for k, v in cfg.items())
        return f"{type(self).__name__}({args})"


class Conv2D(Layer):
    """2-D convolution, NHWC, kernel (KH, KW, C_in, filters) as in Keras.

    Output size per axis: see :func:`mnist_cnn.scratch.functional.conv_output_size`.
    """

    def __init__(self, filters: int, kernel_size=3, strides=1, padding: str = "valid",
                 use_bias: bool = True, name: str | None = None):
        super().__init__(name)
        if isinstance(kernel_size, (tuple, list)):
            if len(kernel_size) != 2:
                raise ValueError(f"kernel_size must be an int or a pair, got {kernel_size!r}")
            kernel_size = tuple(int(k) for k in kernel_size)
        else:
            kernel_size = (int(kernel_size), int(kernel_size))
        if int(filters) < 1 or min(kernel_size) < 1:
            raise ValueError(f"filters and kernel_size must be positive, got {filters}, "
                             f"{kernel_size}")
        self.filters = int(filters)
        self.kernel_size = kernel_size
        self.strides = F._check_stride(strides, "strides")
        self.padding = F._check_padding(padding)
        self.use_bias = bool(use_bias)

    def _output_shape(self, s):
        if len(s) != 3:
            raise ValueError(f"Conv2D {self.name!r} expects inputs (H, W, C), got {s}")
        kh, kw = self.kernel_size
        return (F.conv_output_size(s[0], kh, self.strides, self.padding),
                F.conv_output_size(s[1], kw, self.strides, self.padding), self.filters)

    def build(self, input_shape, rng=None):
        out = super().build(input_shape, rng)
        rng = np.random.default_rng(0) if rng is None else rng
        kh, kw = self.kernel_size
        c_in = self.input_shape[2]
        shape = (kh, kw, c_in, self.filters)
        fan_in, fan_out = kh * kw * c_in, kh * kw * self.filters
        w = (he_normal(rng, shape, fan_in, DTYPE) if self.init == "he"
             else glorot_uniform(rng, shape, fan_in, fan_out, DTYPE))
        self.params = {"W": w}
        if self.use_bias:
            self.params["b"] = np.zeros(self.filters, DTYPE)
        return out

    def forward(self, x, training=False):
        out, self._cache = F.conv2d(x, self.params["W"], self.params.get("b"),
                                    self.strides, self.padding)
        return out

    def backward(self, dout):
        dx, dw, db = F.conv2d_backward(dout, self._cache, need_dx=self.need_dx)
        self.grads = {"W": dw}
        if self.use_bias:
            self.grads["b"] = db
        return dx

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": list(self.kernel_size), "strides": self.strides,
                "padding": self.padding, "use_bias": self.use_bias}


class _Functional(Layer):
    """A layer that is one forward/backward pair of the functional module F, with no
    weights: forward is ``forward_fn(x, *arguments())``, which returns (out, cache),
    and backward is ``backward_fn(dout, cache)``, which returns dL/dx. A subclass
    names its pair, e.g. ReLU: ``forward_fn = staticmethod(F.relu)`` (staticmethod:
    a function stored on a class would otherwise receive the layer as its x)."""

    forward_fn = backward_fn = None

    def arguments(self) -> tuple:
        """The layer's settings that forward_fn takes after x (none by default)."""
        return ()

    def forward(self, x, training=False):
        out, self._cache = self.forward_fn(x, *self.arguments())
        return out

    def backward(self, dout):
        return self.backward_fn(dout, self._cache)


class _Pooling2D(_Functional):
    """P x P windows, stride S (default P), "valid" padding: what the poolings share."""

    def __init__(self, pool_size=2, strides=None, name: str | None = None):
        super().__init__(name)
        self.pool_size = F._check_stride(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else F._check_stride(strides, "strides")

    def _output_shape(self, s):
        if len(s) != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r} expects inputs (H, W, C), "
                             f"got {s}")
        p, st = self.pool_size, self.strides
        return (F.conv_output_size(s[0], p, st), F.conv_output_size(s[1], p, st), s[2])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}

    def arguments(self):
        return self.pool_size, self.strides


class MaxPooling2D(_Pooling2D):
    """Max pooling over P x P windows, stride S (default P), "valid" padding."""

    forward_fn, backward_fn = staticmethod(F.max_pool2d), staticmethod(F.max_pool2d_backward)


class AveragePooling2D(_Pooling2D):
    """Average pooling over P x P windows, stride S (default P), "valid" padding."""

    forward_fn, backward_fn = staticmethod(F.avg_pool2d), staticmethod(F.avg_pool2d_backward)


class GlobalAveragePooling2D(_Functional):
    """The mean of each channel over all positions: (H, W, C) -> (C,), no weights."""

    forward_fn = staticmethod(F.global_avg_pool)
    backward_fn = staticmethod(F.global_avg_pool_backward)

    def _output_shape(self, s):
        if len(s) != 3:
            raise ValueError(f"GlobalAveragePooling2D {self.name!r} expects inputs "
                             f"(H, W, C), got {s}")
        return (s[2],)


class ReLU(_Functional):
    """max(x, 0), elementwise."""

    forward_fn, backward_fn = staticmethod(F.relu), staticmethod(F.relu_backward)


class Tanh(_Functional):
    """tanh(x), elementwise."""

    forward_fn, backward_fn = staticmethod(F.tanh), staticmethod(F.tanh_backward)


class Flatten(_Functional):
    """(N, H, W, C) -> (N, H*W*C) in row-major order, as Keras' Flatten."""

    forward_fn, backward_fn = staticmethod(F.flatten), staticmethod(F.flatten_backward)

    def _output_shape(self, s):
        return (int(np.prod(s)),)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability ``rate`` and
    scale the survivors by 1 / (1 - rate), so nothing changes at test time
    (``training=False`` is the identity)."""

    def __init__(self, rate: float, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)
        self._rng = np.random.default_rng(0)

    def build(self, input_shape, rng=None):
        if rng is not None:
            # An independent stream derived from the network's seed.
            self._rng = np.random.default_rng(rng.integers(2**63))
        return super().build(input_shape, rng)

    def forward(self, x, training=False):
        if not training or self.rate == 0.0:
            self._cache = None
            return x
        out, self._cache = F.dropout(x, self.rate, self._rng)
        return out

    def backward(self, dout):
        return dout if self._cache is None else F.dropout_backward(dout, self._cache)

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


class Dense(Layer):
    """Fully connected layer, W of shape (D_in, units) as in Keras."""

    def __init__(self, units: int, use_bias: bool = True, name: str | None = None):
        super().__init__(name)
        if int(units) < 1:
            raise ValueError(f"Dense units must be positive, got {units}")
        self.units = int(units)
        self.use_bias = bool(use_bias)

    def _output_shape(self, s):
        if len(s) != 1:
            raise ValueError(f"Dense {self.name!r} expects flat inputs (D,), got {s}; "
                             f"add a Flatten layer first")
        return (self.units,)

    def build(self, input_shape, rng=None):
        out = super().build(input_shape, rng)
        rng = np.random.default_rng(0) if rng is None else rng
        d_in = self.input_shape[0]
        shape = (d_in, self.units)
        w = (he_normal(rng, shape, d_in, DTYPE) if self.init == "he"
             else glorot_uniform(rng, shape, d_in, self.units, DTYPE))
        self.params = {"W": w}
        if self.use_bias:
            self.params["b"] = np.zeros(self.units, DTYPE)
        return out

    def forward(self, x, training=False):
        out, self._cache = F.dense(x, self.params["W"], self.params.get("b"))
        return out

    def backward(self, dout):
        dx, dw, db = F.dense_backward(dout, self._cache, need_dx=self.need_dx)
        self.grads = {"W": dw, "b": db} if self.use_bias else {"W": dw}
        return dx

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias}


class BatchNormalization(Layer):
    """Batch normalisation of the last axis, with Keras' defaults and weight order.

    In training it normalises with the batch's statistics and moves the running
    averages towards them, ``moving = momentum * moving + (1 - momentum) * batch``;
    at inference it uses the running averages. gamma and beta are trained;
    moving_mean and moving_variance live in ``state``.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= float(momentum) < 1.0 or float(epsilon) <= 0:
            raise ValueError(f"need 0 <= momentum < 1 and epsilon > 0, got {momentum}, {epsilon}")
        self.momentum, self.epsilon = float(momentum), float(epsilon)

    def build(self, input_shape, rng=None):
        out = super().build(input_shape, rng)
        c = self.input_shape[-1]
        self.params = {"gamma": np.ones(c, DTYPE), "beta": np.zeros(c, DTYPE)}
        self.state = {"moving_mean": np.zeros(c, DTYPE), "moving_variance": np.ones(c, DTYPE)}
        return out

    def weight_names(self):
        return ["gamma", "beta", "moving_mean", "moving_variance"]

    def forward(self, x, training=False):
        if training:
            mean, var = F.batch_moments(x)
            for key, batch in (("moving_mean", mean), ("moving_variance", var)):
                moving = self.state[key]
                self.state[key] = (self.momentum * moving
                                   + (1 - self.momentum) * batch).astype(moving.dtype)
        else:
            mean, var = self.state["moving_mean"], self.state["moving_variance"]
        self._batch_stats = bool(training)
        out, self._cache = F.batchnorm(x, self.params["gamma"], self.params["beta"], mean, var,
                                       self.epsilon)
        return out

    def backward(self, dout):
        dx, dgamma, dbeta = F.batchnorm_backward(dout, self._cache, self._batch_stats)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        return dx

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


class LayerNormalization(Layer):
    """Layer normalisation of the last axis, with Keras' defaults (axis=-1,
    epsilon 1e-3, center and scale on) and weight order [gamma, beta].

    Each example (each position of an (H, W, C) input) is normalised with its own
    mean and variance over the last axis
    (:func:`mnist_cnn.scratch.functional.layernorm_forward`), so unlike
    :class:`BatchNormalization` it keeps no running averages (``state`` stays
    empty) and computes the same in training and at inference, for a batch of one
    as for a batch of thousands.
    """

    def __init__(self, epsilon: float = 1e-3, name: str | None = None):
        super().__init__(name)
        if float(epsilon) <= 0:
            raise ValueError(f"need epsilon > 0, got {epsilon}")
        self.epsilon = float(epsilon)

    def build(self, input_shape, rng=None):
        out = super().build(input_shape, rng)
        d = self.input_shape[-1]
        self.params = {"gamma": np.ones(d, DTYPE), "beta": np.zeros(d, DTYPE)}
        return out

    def weight_names(self):
        return ["gamma", "beta"]

    def forward(self, x, training=False):
        # training changes nothing: there are no batch statistics to use or update
        out, self._cache = F.layernorm_forward(x, self.params["gamma"],
                                               self.params["beta"], self.epsilon)
        return out

    def backward(self, dout):
        dx, dgamma, dbeta = F.layernorm_backward(dout, self._cache)
        self.grads = {"gamma": dgamma, "beta": dbeta}
        return dx

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


class Softmax(Layer):
    """Softmax over the last axis (turns logits into probabilities)."""

    def forward(self, x, training=False):
        self._cache = F.softmax(x)
        return self._cache

    def backward(self, dout):
        # Jacobian-vector product of softmax: p * (dout - sum(dout * p)).
        p = self._cache
        return p * (dout - (dout * p).sum(axis=-1, keepdims=True))


def _joined(attr: str) -> property:
    """A block's ``attr`` (params, grads or state): its inner layers' dicts as one
    mapping (:class:`_Joined`); assigning a dict updates the arrays it names."""
    return property(lambda self: _Joined(self._sublayers(), attr),
                    lambda self, new: _Joined(self._sublayers(), attr).update(new))


class Residual(Layer):
    """A residual block (He et al., 2016): y = f(x) + shortcut(x).

    f is ``layers`` applied in order, e.g. Conv2D 3x3 "same" -> ReLU -> Conv2D
    3x3 "same". The shortcut is the identity, or ``shortcut``, a layer (a 1x1
    Conv2D with f's filters and stride) for when f changes the channels or size.

    Backward, by the sum rule (the derivative of a sum is the sum of derivatives):
        dL/dx = (df/dx)^T dL/dy + (ds/dx)^T dL/dy
              = f.backward(dL/dy) + s.backward(dL/dy)
    dL/dy goes unchanged into both branches and their input gradients add up;
    with the identity shortcut the second term is dL/dy itself.

    The inner layers keep their own weights; ``params``, ``grads`` and ``state``
    show them as one mapping, "<inner layer name>/<key>" -> the same arrays (not
    copies), read and written through, so networks, optimisers, save/load and
    the speed layer treat the block as one layer.

    Inputs: layers, a list of layers (or their configs); shortcut None, a layer
    or its config; name.
    """

    def __init__(self, layers, shortcut=None, name: str | None = None):
        self.layers = [_as_layer(layer) for layer in layers]
        self.shortcut = None if shortcut is None else _as_layer(shortcut)
        names = [layer.name for layer in self._sublayers()]
        if not self.layers or len(set(names)) != len(names):
            raise ValueError(f"Residual needs layers with unique names, got {names}")
        super().__init__(name)

    def _sublayers(self) -> list[Layer]:
        return self.layers + ([] if self.shortcut is None else [self.shortcut])

    def build(self, input_shape, rng=None):
        """Build f's layers in turn (He init before a ReLU, as Sequential does)
        and the shortcut; both must give the same shape."""
        rng = np.random.default_rng(0) if rng is None else rng
        self.input_shape = shape = tuple(int(d) for d in input_shape)
        for layer, nxt in zip(self.layers, [*self.layers[1:], None], strict=True):
            # f's last layer (and the shortcut) feed what follows the block.
            layer.init = self.init if nxt is None else (
                "he" if isinstance(nxt, ReLU) else "glorot")
            shape = layer.build(shape, rng)
        skip = self.input_shape
        if self.shortcut is not None:
            self.shortcut.init = self.init
            skip = self.shortcut.build(self.input_shape, rng)
        if skip != shape:
            raise ValueError(f"Residual {self.name!r}: f gives {shape}, the shortcut "
                             f"{skip}; project: shortcut=Conv2D({shape[-1]}, 1, ...)")
        self.output_shape = shape
        return shape

    def forward(self, x, training=False):
        out = x
        for layer in self.layers:
            out = layer.forward(out, training=training)
        s = self.shortcut
        return out + (x if s is None else s.forward(x, training=training))

    def backward(self, dout):
        d_f = dout
        for layer in reversed(self.layers):
            d_f = layer.backward(d_f)
        s = self.shortcut
        d_skip = dout if s is None else s.backward(dout)
        return d_f + d_skip if self.need_dx else None     # the sum rule

    # -- the inner layers' arrays, seen as the block's own (read and written through)
    params, grads, state = _joined("params"), _joined("grads"), _joined("state")

    @property
    def need_dx(self) -> bool:
        return self._need_dx

    @need_dx.setter
    def need_dx(self, value: bool) -> None:
        # Only the layers that read the block's input can skip dL/dx.
        self._need_dx = bool(value)
        for layer in (self.layers[0], self.shortcut):
            if layer is not None:
                layer.need_dx = self._need_dx

    def weight_names(self) -> list[str]:
        return [f"{layer.name}/{k}" for layer in self._sublayers()
                for k in layer.weight_names()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        if len(weights) != len(self.weight_names()):
            raise ValueError(f"layer {self.name!r} expects "
                             f"{len(self.weight_names())} arrays, got {len(weights)}")
        for layer in self._sublayers():
            k = len(layer.weight_names())
            layer.set_weights(weights[:k])
            weights = weights[k:]

    def get_config(self):
        s = self.shortcut
        return {**super().get_config(),
                "layers": [layer.get_config() for layer in self.layers],
                "shortcut": None if s is None else s.get_config()}

    def __repr__(self) -> str:
        return (f"Residual({self.layers!r}, shortcut={self.shortcut!r}, "
                f"name={self.name!r})")

    def __copy__(self):
        """A twin with the same weights and its own inner layers (own caches and
        grads), as ``copy.copy`` gives for other layers: the speed layer runs
        such twins side by side."""
        twin = object.__new__(Residual)
        twin.__dict__.update(self.__dict__)
        twin.layers = [copy.copy(layer) for layer in self.layers]
        twin.shortcut = copy.copy(self.shortcut)
        return twin


class _Joined(MutableMapping):
    """Some layers' dicts (their params, grads or state) as one mapping,
    "<layer name>/<key>" -> array, that reads and writes through to the layers."""

    def __init__(self, layers, attr: str):
        self._layers, self._attr = {layer.name: layer for layer in layers}, attr

    def _dict_of(self, key: str):
        name, _, k = key.partition("/")
        if name not in self._layers:
            raise KeyError(key)
        return getattr(self._layers[name], self._attr), k

    def __getitem__(self, key):
        home, k = self._dict_of(key)
        return home[k]

    def __setitem__(self, key, value):
        home, k = self._dict_of(key)
        home[k] = value

    def __delitem__(self, key):
        home, k = self._dict_of(key)
        del home[k]

    def __iter__(self):
        for name, layer in self._layers.items():
            yield from (f"{name}/{k}" for k in getattr(layer, self._attr))

    def __len__(self):
        return sum(len(getattr(layer, self._attr)) for layer in self._layers.values())


def walk(layers):
    """Every layer of ``layers`` in order, each block followed by the layers inside
    it (a Residual's f, then its shortcut), depth first."""
    for layer in layers:
        yield layer
        if isinstance(layer, Residual):
            yield from walk(layer._sublayers())


def _as_layer(layer) -> Layer:
    """A layer, or one rebuilt from its config (how a saved Residual comes back)."""
    return layer_from_config(layer) if isinstance(layer, dict) else layer


LAYER_CLASSES = {cls.__name__: cls for cls in
                 (Conv2D, MaxPooling2D, ReLU, Flatten, Dropout, Dense, BatchNormalization,
                  LayerNormalization, Softmax, Residual, Tanh, AveragePooling2D,
                  GlobalAveragePooling2D)}


def layer_from_config(config: dict) -> Layer:
    """Rebuild a layer from :meth:`Layer.get_config` output."""
    if not isinstance(config, dict) or config.get("class") not in LAYER_CLASSES:
        raise ValueError(f"unknown layer config {config!r}; known classes: "
                         f"{', '.join(LAYER_CLASSES)}")
    kwargs = {k: v for k, v in config.items() if k != "class"}
    try:
        return LAYER_CLASSES[config["class"]](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad layer config {config!r}: {exc}") from None
