"""The speed layer: the plain engine (:mod:`mnist_cnn.scratch`) run faster.

Built on the plain engine and never imported by it:

- :mod:`.fused`: Conv2D -> ReLU -> MaxPooling2D as one operation (same numbers);
- :mod:`.path`: a network's layers with those blocks fused, run by the plain chain;
- :mod:`.parallel`: the shards of a training step in worker processes;
- :mod:`.tuning`: BLAS threads and the C allocator;
- :mod:`.engine`: :class:`FastEngine`, which puts them together;
  ``fit(..., engine=FastEngine(model))`` uses it.
"""

from mnist_cnn.scratch.fast.engine import SHARDS, FastEngine
from mnist_cnn.scratch.fast.fused import (
    ConvReluPool,
    conv2d_relu_maxpool,
    conv2d_relu_maxpool_backward,
)
from mnist_cnn.scratch.fast.path import FusedPath
from mnist_cnn.scratch.fast.tuning import blas_threads, keep_freed_memory

__all__ = ["FastEngine", "SHARDS", "FusedPath", "ConvReluPool", "conv2d_relu_maxpool",
           "conv2d_relu_maxpool_backward", "blas_threads", "keep_freed_memory", "shutdown"]


def shutdown() -> None:
    """Stop the worker processes and free their shared memory (also done at exit)."""
    from mnist_cnn.scratch.fast.parallel import shutdown as _shutdown

    _shutdown()
