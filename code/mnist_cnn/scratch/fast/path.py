"""A network's layers as the speed layer runs them.

:class:`FusedPath` holds a network's layers as steps to run, with every
Conv2D -> ReLU -> MaxPooling2D run replaced by one fused step (:mod:`.fused`).
It shares the network's weights (the same ``params`` dicts) and runs them with
:class:`~mnist_cnn.scratch.Sequential`'s own ``forward``, ``backward`` and
``loss_and_backward``: the plain chain, over fused steps. It is not a network
itself (it builds nothing, holds no weights of its own, and saves nothing).
"""

from __future__ import annotations

import copy

import numpy as np

from mnist_cnn.scratch.fast.fused import ConvReluPool
from mnist_cnn.scratch.layers import Conv2D, Dropout, MaxPooling2D, ReLU, walk
from mnist_cnn.scratch.network import Sequential

__all__ = ["FusedPath", "fuse_steps", "dropout_seeds", "param_keys"]


def fuse_steps(layers) -> list:
    """The layers, with each Conv2D -> ReLU -> MaxPooling2D run as one fused step."""
    steps, i = [], 0
    while i < len(layers):
        trio = layers[i : i + 3]
        if len(trio) == 3 and isinstance(trio[0], Conv2D) and isinstance(trio[1], ReLU) \
                and isinstance(trio[2], MaxPooling2D):
            steps.append(ConvReluPool(*trio))
            i += 3
        else:
            steps.append(layers[i])
            i += 1
    return steps


def param_keys(layers) -> list[tuple[int, str]]:
    """(layer index, parameter name) of every trainable parameter, in a fixed order."""
    return [(j, k) for j, layer in enumerate(layers) for k in layer.params]


def dropout_seeds(net: Sequential) -> list[int]:
    """A fresh seed for each Dropout layer of ``net`` (those inside blocks too, in
    the order of :func:`walk`), drawn from its generator."""
    return [int(layer._rng.integers(2**63)) for layer in walk(net.layers)
            if isinstance(layer, Dropout)]


class FusedPath:
    """``net``'s layers as steps to run, sharing its weights.

    - ``seeds=None``: the steps are ``net``'s own layer objects, so gradients
      land in ``net.layers[j].grads`` and dropout draws from ``net``'s
      generators, exactly as in ``net.loss_and_backward``.
    - ``seeds`` a list (one per Dropout layer): the steps are copies of the
      layers (same weights, own caches and grads) whose dropout streams are
      seeded by ``seeds``; ``self.source`` lists the copies, layer by layer.
      A shard of a batch runs on such a replica.
    - ``fuse=False``: the layers one by one (the plain steps, for comparison).

    The passes are the plain engine's, the very functions: they read only the
    steps (``layers``) and ``input_shape``.
    """

    forward = Sequential.forward
    backward = Sequential.backward
    loss_and_backward = Sequential.loss_and_backward
    _check_input = Sequential._check_input

    def __init__(self, net: Sequential, seeds=None, fuse: bool = True):
        if seeds is None:
            layers = net.layers
        else:
            seeds = iter(seeds)
            layers = [copy.copy(layer) for layer in net.layers]   # blocks copy theirs
            for twin in walk(layers):
                if isinstance(twin, Dropout):
                    twin._rng = np.random.default_rng(next(seeds))
        self.source = layers
        self.layers = fuse_steps(layers) if fuse else list(layers)
        self.input_shape, self.output_shape = net.input_shape, net.output_shape

    def __repr__(self) -> str:
        return f"FusedPath({', '.join(getattr(s, 'name', '?') for s in self.layers)})"
