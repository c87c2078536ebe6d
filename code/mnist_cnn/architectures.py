"""Other networks for MNIST, built from the scratch engine's layers, and their arithmetic.

The course network (:func:`mnist_cnn.scratch.train.build_model`) is one point in a
space of designs. The builders here are the ones the chapters "Why convolution"
and "Architectures since LeNet" compare with it, each on a 28 x 28 x 1 input with
10 logits out:

- :func:`mlp`: no convolution at all, every pixel wired to every hidden unit;
- :func:`lenet5`: LeCun et al. (1998), with tanh and average pooling, or the
  modern variant with ReLU and max pooling;
- :func:`vgg`: two VGG blocks (Simonyan & Zisserman 2015), stacks of 3 x 3
  convolutions, each block ending in a 2 x 2 max pool;
- :func:`gap`: the course network's convolutions with global average pooling
  (Lin et al. 2014) in place of its dense head;
- :func:`resnet`: a small residual network (He et al. 2016).

:func:`multiply_adds` and :func:`receptive_fields` compute what a network costs and
what its units see, from the built layers' shapes.
"""

from __future__ import annotations

import numpy as np

from mnist_cnn.scratch.layers import (
    AveragePooling2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAveragePooling2D,
    MaxPooling2D,
    ReLU,
    Residual,
    Tanh,
)
from mnist_cnn.scratch.network import Sequential
from mnist_cnn.scratch.train import DROPOUT, build_model
from mnist_cnn.shapes import INPUT_SHAPE, NUM_CLASSES

__all__ = ["mlp", "lenet5", "vgg", "gap", "resnet", "ARCHITECTURES", "build",
           "multiply_adds", "receptive_fields", "with_input_shape"]


def mlp(seed: int = 0, hidden=(256, 128), dropout: float = DROPOUT) -> Sequential:
    """A multilayer perceptron: Flatten - (Dense - ReLU) per entry of ``hidden`` -
    Dropout - Dense(10). The default has about the course network's parameters
    (235,146 against 225,034) and the same dropout before the last layer."""
    layers = [Flatten()]
    for units in hidden:
        layers += [Dense(units), ReLU()]
    layers += [Dropout(dropout), Dense(NUM_CLASSES)]
    return Sequential(layers, input_shape=INPUT_SHAPE, seed=seed)


def lenet5(seed: int = 0, modern: bool = False) -> Sequential:
    """LeNet-5 (LeCun et al. 1998) on a 28 x 28 input: C1 6 maps 5 x 5 ("same"
    padding stands in for the paper's 32 x 32 input), S2 2 x 2 subsampling,
    C3 16 maps 5 x 5, S4, then 120, 84 and 10 units. ``modern=False``: tanh and
    average pooling; ``modern=True``: ReLU and max pooling.

    The layout of the paper, not its every detail. Where it differs: the paper
    takes a 32 x 32 input (normalised to about -0.1 .. 1.175) and uses the scaled
    tanh 1.7159 tanh(2a/3); its S2/S4 multiply each average by a trained scale,
    add a trained bias and squash the result; its C3 wires each map to a chosen
    subset of the S2 maps (1,516 parameters; here every map, 2,416); its output
    units are radial basis functions (here a dense layer and softmax); and it was
    trained differently. 61,706 parameters in both forms here; the paper's has
    60,000 trainable ones (its RBF units' weights are fixed bitmaps)."""
    act, pool = (ReLU, MaxPooling2D) if modern else (Tanh, AveragePooling2D)
    return Sequential([
        Conv2D(6, 5, padding="same"), act(), pool(2),
        Conv2D(16, 5), act(), pool(2),
        Flatten(), Dense(120), act(), Dense(84), act(), Dense(NUM_CLASSES),
    ], input_shape=INPUT_SHAPE, seed=seed)


def vgg(seed: int = 0, widths=(16, 32), dropout: float = DROPOUT) -> Sequential:
    """VGG-style: per entry of ``widths`` a block of two 3 x 3 "same" convolutions
    (each with a ReLU) and a 2 x 2 max pool; then the course network's head,
    Dense(128) - ReLU - Dropout - Dense(10)."""
    layers = []
    for filters in widths:
        layers += [Conv2D(filters, 3, padding="same"), ReLU(),
                   Conv2D(filters, 3, padding="same"), ReLU(), MaxPooling2D(2)]
    layers += [Flatten(), Dense(128), ReLU(), Dropout(dropout), Dense(NUM_CLASSES)]
    return Sequential(layers, input_shape=INPUT_SHAPE, seed=seed)


def gap(seed: int = 0) -> Sequential:
    """The course network's two convolution-ReLU-pool stages, then global average
    pooling of their 64 maps and Dense(10): the dense head of 206,218 weights
    becomes 650."""
    return Sequential([
        Conv2D(32, 3), ReLU(), MaxPooling2D(2),
        Conv2D(64, 3), ReLU(), MaxPooling2D(2),
        GlobalAveragePooling2D(), Dense(NUM_CLASSES),
    ], input_shape=INPUT_SHAPE, seed=seed)


def _block(filters: int, project: bool) -> Residual:
    """Conv 3x3 - ReLU - Conv 3x3 ("same") plus the input; a 1 x 1 convolution on
    the shortcut where the number of channels changes."""
    return Residual([Conv2D(filters, 3, padding="same"), ReLU(),
                     Conv2D(filters, 3, padding="same")],
                    shortcut=Conv2D(filters, 1) if project else None)


def resnet(seed: int = 0, widths=(16, 32)) -> Sequential:
    """A small ResNet: a 3 x 3 stem convolution, then per entry of ``widths`` a
    residual block (:func:`_block`), a ReLU and a 2 x 2 max pool; global average
    pooling and Dense(10). No batch normalisation, so the network stays what the
    engine's layers show; with two blocks the activations stay tame."""
    layers = [Conv2D(widths[0], 3, padding="same"), ReLU()]
    previous = widths[0]
    for filters in widths:
        layers += [_block(filters, project=filters != previous), ReLU(), MaxPooling2D(2)]
        previous = filters
    layers += [GlobalAveragePooling2D(), Dense(NUM_CLASSES)]
    return Sequential(layers, input_shape=INPUT_SHAPE, seed=seed)


# name -> builder(seed) of every network the architecture chapters compare
ARCHITECTURES = {
    "MLP": mlp,
    "course CNN": build_model,
    "LeNet-5 (1998)": lenet5,
    "LeNet-5, ReLU + max pool": lambda seed=0: lenet5(seed, modern=True),
    "VGG blocks": vgg,
    "course CNN, GAP head": gap,
    "small ResNet": resnet,
}


def build(name: str, seed: int = 0) -> Sequential:
    """The network ``name`` (a key of :data:`ARCHITECTURES`) initialised from ``seed``."""
    if name not in ARCHITECTURES:
        raise ValueError(f"no architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](seed=seed)


def with_input_shape(net: Sequential, input_shape) -> Sequential:
    """The layers of ``net`` with its weights (copies), rebuilt for inputs of shape
    ``input_shape``, e.g. (36, 36, 1). A network whose weights do not depend on the
    image size (convolutions, pooling, a global-average-pooling head) accepts any
    size its windows fit; one with a Flatten - Dense head does not: its first dense
    layer would need another number of weights, and ``set_weights`` says so
    (ValueError)."""
    config = {**net.get_config(), "input_shape": list(input_shape)}
    return Sequential.from_config(config, [w.copy() for w in net.get_weights()])


def _layer_multiply_adds(layer) -> int:
    if isinstance(layer, Residual):
        return sum(_layer_multiply_adds(inner) for inner in layer._sublayers())
    if isinstance(layer, Conv2D):
        h, w, c_out = layer.output_shape
        kh, kw = layer.kernel_size
        return h * w * kh * kw * layer.input_shape[2] * c_out
    if isinstance(layer, Dense):
        return layer.input_shape[0] * layer.units
    return 0


def multiply_adds(net: Sequential) -> dict[str, int]:
    """Multiply-adds of one forward pass of one image, per layer name (a residual
    block counts its inner layers and shortcut): a convolution makes
    H_out W_out KH KW C_in C_out, a dense layer D_in D_out. Additions of biases,
    activations, pooling and the residual sum are left out (a few per output
    value, against KH KW C_in per convolution output)."""
    return {layer.name: _layer_multiply_adds(layer) for layer in net.layers}


def _window(layer, size: int):
    """(k, s, padding on the top/left) of a convolution or pooling layer over an
    input ``size`` pixels wide; None for a layer that keeps positions."""
    from mnist_cnn.scratch.functional import same_padding

    if isinstance(layer, Conv2D):
        k, s = max(layer.kernel_size), layer.strides
        pad = layer.padding
        left = 0 if pad == "valid" else same_padding(size, k, s)[0] if pad == "same" else pad
        return k, s, left
    if isinstance(layer, (MaxPooling2D, AveragePooling2D)):
        return layer.pool_size, layer.strides, 0
    return None


def _fields(layers, field=1, jump=1, start=0):
    """(layer, field, jump, start) after each of ``layers``: a unit sees ``field``
    input positions per axis, neighbouring units are ``jump`` apart, and unit 0's
    field begins at input position ``start`` (negative where padding adds zeros).
    A window of size k, stride s and p zeros in front, over inputs that see r
    positions spaced j apart from ``start``: r + (k - 1) j, j s, start - p j."""
    for layer in layers:
        if isinstance(layer, Residual):          # the longer branch, f
            *_, (_, field, jump, start) = _fields(layer.layers, field, jump, start)
        elif isinstance(layer, (Flatten, Dense, GlobalAveragePooling2D)):
            field, start = None, 0               # every unit sees the whole input
        elif field is not None and (window := _window(layer, layer.input_shape[0])):
            k, s, left = window
            field, jump, start = field + (k - 1) * jump, jump * s, start - left * jump
        yield layer, field, jump, start


def receptive_fields(net: Sequential) -> list[tuple[str, int, int]]:
    """(layer name, field, jump) after each layer: a unit sees a field x field square
    of input pixels, and neighbouring units are jump pixels apart.

    A window of size k and stride s over inputs that see r pixels each, spaced j
    apart, sees r + (k - 1) j pixels, and its outputs are j s apart. A residual
    block sees what its longer branch sees. After Flatten, Dense or global
    pooling a unit sees the whole image; fields are capped at the image size
    (padding adds zeros, not pixels). Square windows (a non-square kernel counts
    with its larger side)."""
    whole = max(net.input_shape[:2])
    return [(layer.name, whole if field is None else min(field, whole), jump)
            for layer, field, jump, _ in _fields(net.layers)]


def receptive_box(net: Sequential, layer_name: str, row: int, col: int):
    """The input pixels that unit (row, col) of layer ``layer_name`` sees, as
    (top, left, bottom, right), bottom and right exclusive, clipped to the image:
    ``x[top:bottom, left:right]`` is its receptive field."""
    h, w = net.input_shape[:2]
    for layer, field, jump, start in _fields(net.layers):
        if layer.name == layer_name:
            if field is None:
                return 0, 0, h, w
            top, left = start + row * jump, start + col * jump
            return max(top, 0), max(left, 0), min(top + field, h), min(left + field, w)
    raise ValueError(f"no layer named {layer_name!r} at the top level of the network")


def deep_stack(depth: int = 10, channels: int = 8, skips: bool = False,
               seed: int = 0) -> Sequential:
    """``depth`` 3 x 3 "same" convolutions, each followed by a ReLU (He
    initialisation), on a 28 x 28 x 1 input; with ``skips``, layers 2 to ``depth``
    are each wrapped as ``Residual([conv, relu])``, y = x + relu(conv(x)). The same
    seed gives both stacks the same weights: only the skips differ."""
    layers = [Conv2D(channels, 3, padding="same", name="c0"), ReLU(name="r0")]
    for i in range(1, depth):
        conv = Conv2D(channels, 3, padding="same", name=f"c{i}")
        relu = ReLU(name=f"r{i}")
        layers += [Residual([conv, relu], name=f"res{i}")] if skips else [conv, relu]
    return Sequential(layers, input_shape=INPUT_SHAPE, seed=seed)


def first_layer_gradient_norm(net: Sequential, x, seed: int = 0) -> float:
    """||dL/dW|| of the first layer's kernel when a random unit-norm dL/d(output)
    (drawn from ``seed``) is sent back from the network's output: how much of a
    gradient the chain of layers carries to its first layer, whatever the loss."""

    out = net.forward(x)
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    net.backward((dout / np.linalg.norm(dout)).astype(out.dtype))
    return float(np.linalg.norm(net.layers[0].grads["W"]))
