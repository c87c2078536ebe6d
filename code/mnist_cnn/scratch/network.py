"""A stack of layers: forward, backward, predict, summary, save and load.

A saved network is one ``.npz`` file holding every weight array plus the
architecture as a JSON string, so :meth:`Sequential.load` rebuilds the network
without the code that made it, and without pickle (``allow_pickle=False``:
loading a file never runs code from it).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from mnist_cnn._io import atomic_path
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch.layers import DTYPE, Layer, ReLU, Softmax, layer_from_config
from mnist_cnn.shapes import INPUT_SHAPE

__all__ = ["Sequential", "describe", "FORMAT"]

FORMAT = "mnist_cnn.scratch.Sequential"
FORMAT_VERSION = 1


def describe(layers: list[dict], input_shape, seed: int = 0) -> dict:
    """The description of a network (what :meth:`Sequential.get_config` returns and
    :meth:`Sequential.from_config` reads) with the layers ``layers``, each a layer's
    ``get_config()``, taking inputs of ``input_shape``."""
    return {"format": FORMAT, "version": FORMAT_VERSION, "input_shape": list(input_shape),
            "seed": seed, "layers": list(layers)}


class Sequential:
    """Layers applied in order; built immediately for ``input_shape``.

    Inputs:
    - layers: list of layer objects (:mod:`mnist_cnn.scratch.layers`)
    - input_shape: shape of one example without the batch axis, (28, 28, 1) for MNIST
    - seed: seeds the weight initialisation and the dropout masks

    Layers followed by a ReLU get He initialisation, the others Glorot (Keras'
    default); weights are float32. This is the plain engine: every pass goes
    layer by layer. The speed layer (:mod:`mnist_cnn.scratch.fast`) runs the
    same network faster, on top of it.
    """

    def __init__(self, layers: list[Layer], input_shape=INPUT_SHAPE, seed: int = 0):
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        self.layers = list(layers)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.seed = seed
        rng = np.random.default_rng(seed)
        shape = self.input_shape
        for i, layer in enumerate(self.layers):
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            layer.init = "he" if isinstance(nxt, ReLU) else "glorot"
            layer.need_dx = i > 0   # nobody needs dL/d(image): skip that work
            shape = layer.build(shape, rng)
        self.output_shape = shape

    # ------------------------------------------------------------------ passes
    def _check_input(self, x):
        x = np.asarray(x)
        want = f"(N, {', '.join(map(str, self.input_shape))})"
        if x.shape == self.input_shape:
            raise ValueError(f"expected a batch of shape {want}, got one example of shape "
                             f"{x.shape}; use x[None]")
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"expected inputs of shape {want}, got {x.shape}")
        return x

    def forward(self, x, training: bool = False):
        """Inputs: x (N, *input_shape). Returns the last layer's output (N, *output_shape)."""
        x = self._check_input(x)
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def backward(self, dout):
        """Backpropagate dL/d(output) through every layer (fills each layer's grads).
        Returns dL/dx of the first layer's input, or None (it is not computed)."""
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def loss_and_backward(self, x, y, training: bool = True):
        """The chain: forward through every layer, the loss, backward in reverse.

        Inputs: x (N, *input_shape), y integer labels (N,).
        Returns (loss: float, logits (N, K)); every layer's ``grads`` are filled.

        Softmax followed by cross-entropy has the simple gradient
        (p - onehot(y)) / N, which is also the stable way to compute it, so a
        final Softmax layer is skipped and that gradient starts the backward pass.
        """
        x, y = self._check_input(x), np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        layers = self.layers[:-1] if isinstance(self.layers[-1], Softmax) else self.layers
        out = x
        for layer in layers:                        # forward, each layer keeps its cache
            out = layer.forward(out, training=training)
        loss = F.cross_entropy(out, y, from_logits=True)
        dout = F.softmax_cross_entropy_backward(out, y).astype(out.dtype, copy=False)
        for layer in reversed(layers):              # backward, in reverse order
            dout = layer.backward(dout)
        return loss, out

    def activations(self, x):
        """[(layer_name, output)] for every layer, in order (inference mode)."""
        x = self._check_input(x)
        result = []
        for layer in self.layers:
            x = layer.forward(x, training=False)
            result.append((layer.name, x))
        return result

    def predict_proba(self, x, batch_size: int = 1000):
        """Class probabilities (N, K) for x of shape (N, *input_shape) (for MNIST,
        float32 in [0, 1] from :func:`mnist_cnn.data.prepare_images`); applies
        softmax unless the last layer is a Softmax."""
        x = self._check_input(x)
        outs = []
        for i in range(0, len(x), batch_size):
            out = self.forward(x[i : i + batch_size], training=False)
            outs.append(out if isinstance(self.layers[-1], Softmax) else F.softmax(out))
        if not outs:
            return np.zeros((0,) + tuple(self.output_shape), DTYPE)
        return np.concatenate(outs)

    def predict(self, x, batch_size: int = 1000):
        """Predicted labels (N,) int."""
        return self.predict_proba(x, batch_size).argmax(axis=1)

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> list[np.ndarray]:
        return [p for layer in self.layers for p in layer.params.values()]

    def gradients(self) -> list[np.ndarray]:
        return [layer.grads[k] for layer in self.layers for k in layer.params]

    def named_parameters(self) -> list[tuple[str, np.ndarray]]:
        return [(f"{layer.name}/{k}", p) for layer in self.layers for k, p in layer.params.items()]

    def count_params(self) -> int:
        return sum(layer.count_params() for layer in self.layers)

    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        need = sum(len(layer.weight_names()) for layer in self.layers)
        if len(weights) != need:
            raise ValueError(f"expected {need} weight arrays, got {len(weights)}")
        i = 0
        for layer in self.layers:
            k = len(layer.weight_names())
            layer.set_weights(weights[i : i + k])
            i += k

    def astype(self, dtype):
        """Cast every parameter (e.g. to float64 for gradient checks). Returns self."""
        for layer in self.layers:
            layer.params = {k: v.astype(dtype) for k, v in layer.params.items()}
            layer.state = {k: v.astype(dtype) for k, v in layer.state.items()}
        return self

    # ------------------------------------------------------------------ description
    def summary(self) -> str:
        """A Keras-like table: layer (type), output shape, parameter count; and the total."""
        rows = [("Layer (type)", "Output Shape", "Param #")]
        for layer in self.layers:
            rows.append((f"{layer.name} ({type(layer).__name__})",
                         str((None, *layer.output_shape)), f"{layer.count_params():,}"))
        w0 = max(len(r[0]) for r in rows) + 2
        w1 = max(len(r[1]) for r in rows) + 2
        w2 = max(len(r[2]) for r in rows)
        line = "─" * (w0 + w1 + w2)
        out = [line, f"{rows[0][0]:<{w0}}{rows[0][1]:<{w1}}{rows[0][2]:>{w2}}", line]
        out += [f"{a:<{w0}}{b:<{w1}}{c:>{w2}}" for a, b, c in rows[1:]]
        out += [line, f"Total params: {self.count_params():,}", line]
        return "\n".join(out)

    def get_config(self) -> dict:
        return describe([layer.get_config() for layer in self.layers], self.input_shape,
                        self.seed)

    @classmethod
    def from_config(cls, config: dict, weights=None) -> Sequential:
        """The network :meth:`get_config` describes (``input_shape``, ``seed`` and
        ``layers`` may be changed first), with fresh weights, or ``weights`` (a list
        as :meth:`get_weights` returns). The one way a network is rebuilt from a
        description: files, worker processes and reshaped copies all use it.
        Raises ValueError if ``config`` is not such a description."""
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            found = config.get("format") if isinstance(config, dict) else type(config).__name__
            raise ValueError(f"not a mnist_cnn network description (format {found!r})")
        if config.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported model format version {config.get('version')}")
        net = cls([layer_from_config(c) for c in config["layers"]],
                  input_shape=tuple(config["input_shape"]), seed=config.get("seed", 0))
        if weights is not None:
            net.set_weights(weights)
        return net

    def __repr__(self) -> str:
        return f"Sequential({len(self.layers)} layers, {self.count_params():,} params)"

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the weights and the architecture to ``path`` (.npz), atomically."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"model file must end in .npz, got {path}")
        arrays = {"__architecture__": np.array(json.dumps(self.get_config()))}
        for i, layer in enumerate(self.layers):
            for k, p in zip(layer.weight_names(), layer.get_weights(), strict=True):
                arrays[f"{i}/{k}"] = p
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Sequential:
        """Rebuild a network saved by :meth:`save`.

        Raises FileNotFoundError if ``path`` does not exist and ValueError if it
        is not such a file (corrupt, another format, or inconsistent weights).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no model file at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
            # np.load raises ValueError for non-npy/npz bytes (and for pickled
            # object arrays, which we refuse to load).
            raise ValueError(f"{path} is not a valid mnist_cnn NumPy model (.npz): "
                             f"{type(exc).__name__}: {exc}") from None
        if "__architecture__" not in arrays:
            raise ValueError(f"{path} is not a mnist_cnn NumPy model (no architecture record; "
                             f"arrays: {sorted(arrays)[:5]})")
        try:
            config = json.loads(str(arrays.pop("__architecture__")))
        except ValueError as exc:
            raise ValueError(f"{path}: corrupt architecture record: {exc}") from None
        try:
            net = cls.from_config(config)
        except ValueError as exc:
            raise ValueError(f"{path} is not a mnist_cnn NumPy model: {exc}") from None
        expected = {f"{i}/{k}" for i, layer in enumerate(net.layers) for k in layer.weight_names()}
        if expected != set(arrays):
            raise ValueError(f"{path}: weight arrays {sorted(arrays)} do not match the "
                             f"architecture (expected {sorted(expected)})")
        for i, layer in enumerate(net.layers):
            layer.set_weights([arrays[f"{i}/{k}"] for k in layer.weight_names()])
        return net
