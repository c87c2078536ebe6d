"""Small from-scratch (:mod:`mnist_cnn.scratch`) networks for the tests: one builder,
its variants chosen by argument, every layer named."""

from __future__ import annotations

from typing import NamedTuple

from mnist_cnn.scratch import (
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    MaxPooling2D,
    ReLU,
    Sequential,
    Softmax,
)
from mnist_cnn.scratch.layers import Layer
from mnist_cnn.shapes import NUM_CLASSES


class ConvBlock(NamedTuple):
    """Block i (from 1) of :func:`small_cnn`: Conv2D(filters, kernel_size, strides,
    padding) named ``c<i>``, then ``norm`` if given (a layer, used once: give each
    network its own), ReLU ``r<i>``, and, if ``pool``, a 2x2 max pool ``p<i>``."""

    filters: int
    kernel_size: int = 3
    strides: int = 1
    padding: str = "valid"
    pool: bool = True
    norm: Layer | None = None


# conv-relu-pool twice, the second convolution 'same': the speed layer fuses both.
TWO_BLOCKS = (ConvBlock(4), ConvBlock(6, padding="same"))


def small_cnn(seed: int = 0, input_shape=(14, 14, 1), blocks=TWO_BLOCKS, hidden: int | None = 8,
              dropout: float = 0.0, classes: int = NUM_CLASSES, softmax: bool = False
              ) -> Sequential:
    """A small scratch CNN, seeded by ``seed``.

    Layers, in order: each of ``blocks`` (see :class:`ConvBlock`); Flatten ``f``; if
    ``hidden``, Dense(hidden) ``d`` and ReLU ``r<len(blocks) + 1>``; if ``dropout`` > 0,
    Dropout(dropout) ``drop``; Dense(classes) ``out`` (logits); if ``softmax``,
    Softmax ``sm``.

    The default, 14x14x1 in: c1 r1 p1 c2 r2 p2 f d r3 out (with ``dropout``: drop at 9).
    """
    layers = []
    for i, b in enumerate(blocks, 1):
        layers.append(Conv2D(b.filters, b.kernel_size, strides=b.strides, padding=b.padding,
                             name=f"c{i}"))
        if b.norm is not None:
            layers.append(b.norm)
        layers.append(ReLU(name=f"r{i}"))
        if b.pool:
            layers.append(MaxPooling2D(2, name=f"p{i}"))
    layers.append(Flatten(name="f"))
    if hidden:
        layers += [Dense(hidden, name="d"), ReLU(name=f"r{len(blocks) + 1}")]
    if dropout:
        layers.append(Dropout(dropout, name="drop"))
    layers.append(Dense(classes, name="out"))
    if softmax:
        layers.append(Softmax(name="sm"))
    return Sequential(layers, input_shape=input_shape, seed=seed)
