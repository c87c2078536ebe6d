"""The fast engine: one training step of a plain network, computed faster.

``FastEngine(net).loss_and_backward(x, y)`` returns what
``net.loss_and_backward(x, y)`` returns and fills the same ``grads``, with:

- fused Conv2D -> ReLU -> MaxPooling2D blocks (:mod:`.fused`);
- the batch split into ``shards`` parts computed at the same time, the parts
  beyond the first in worker processes (:mod:`.parallel`) or threads, and their
  gradients combined as a weighted mean, which is the gradient of the whole
  batch's mean loss;
- BLAS threads shared out between the shards and freed memory kept for reuse
  (:mod:`.tuning`) while the engine is entered as a context manager.

The numbers depend on ``shards`` only, never on ``workers``, ``processes`` or
the machine. Without dropout they equal the plain chain's up to float rounding;
with dropout, each shard draws its own masks (seeded from the network's
generators), so a sharded run is reproducible but not mask-for-mask the plain one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import numpy as np

from mnist_cnn.scratch.fast.path import FusedPath, dropout_seeds, param_keys
from mnist_cnn.scratch.fast.tuning import blas_threads, default_workers, keep_freed_memory
from mnist_cnn.scratch.layers import BatchNormalization, walk
from mnist_cnn.scratch.network import Sequential

__all__ = ["FastEngine", "SHARDS"]

SHARDS = 2           # each batch split in two halves, run on two cores

_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def _executor(workers: int) -> ThreadPoolExecutor:
    if workers not in _EXECUTORS:
        _EXECUTORS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="mnist_cnn")
    return _EXECUTORS[workers]


class FastEngine:
    """Runs ``net``'s training steps with the speed layer (see the module docstring).

    Inputs:
    - net: a :class:`~mnist_cnn.scratch.Sequential` (its weights are used in place)
    - shards: parts each batch is split into (1: no splitting)
    - workers: how many shards run at once (default: one per shard, at most one per CPU)
    - processes: run the shards beyond the first in worker processes (default)
      instead of threads
    - fuse: fuse Conv2D -> ReLU -> MaxPooling2D blocks (default)

    Use it as a context manager around a training loop to apply the BLAS and
    allocator tuning (``fit`` does, given ``engine=FastEngine(net)``).
    """

    def __init__(self, net: Sequential, shards: int = SHARDS, workers: int | None = None,
                 processes: bool = True, fuse: bool = True):
        self.net = net
        self.shards = max(1, int(shards))
        if self.shards > 1 and any(isinstance(layer, BatchNormalization)
                                   for layer in walk(net.layers)):   # blocks' too
            raise ValueError("BatchNormalization normalises with the statistics of the whole "
                             "batch, which shards would split: use FastEngine(net, shards=1) "
                             "or the plain engine")
        self.workers = default_workers(self.shards) if workers is None else max(1, int(workers))
        self.processes = bool(processes)
        self.fuse = bool(fuse)
        self._whole = FusedPath(net, fuse=self.fuse)     # net's own layers
        self._stack = None

    def describe(self) -> str:
        """One line saying what the engine does (for logs and model cards)."""
        where = "worker processes" if self.processes and self.workers > 1 else "threads"
        parts = ["fused Conv2D-ReLU-MaxPool" if self.fuse else "layer by layer"]
        if self.shards > 1:
            parts.append(f"{self.shards} shards per batch on {self.workers} {where}")
        parts.append("tuned BLAS threads and allocator")
        return "fast (mnist_cnn.scratch.fast): " + ", ".join(parts)

    def __enter__(self):
        keep_freed_memory()
        self._stack = ExitStack()
        self._stack.enter_context(blas_threads(self.workers))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        self._stack = None

    def forward(self, x, training: bool = False):
        """The network's output, through the fused steps."""
        return self._whole.forward(x, training=training)

    def loss_and_backward(self, x, y, training: bool = True):
        """As :meth:`Sequential.loss_and_backward`: returns (loss, logits) and fills
        every layer's ``grads`` of ``net``."""
        x, y = self.net._check_input(x), np.asarray(y)
        if len(y) != len(x):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        shards = max(1, min(self.shards, len(x)))
        if shards == 1:
            return self._whole.loss_and_backward(x, y, training)
        bounds = np.linspace(0, len(x), shards + 1).round().astype(int)
        parts = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        seeds = [dropout_seeds(self.net) for _ in parts]
        keys = param_keys(self.net.layers)

        def run(i):
            path = FusedPath(self.net, seeds[i], fuse=self.fuse)
            out = path.loss_and_backward(x[parts[i]], y[parts[i]], training)
            return out, [path.source[j].grads[k] for j, k in keys]

        workers = min(self.workers, shards)
        results = None
        if self.processes and workers > 1:
            from mnist_cnn.scratch.fast.parallel import run_shards

            results = run_shards(self.net, self.fuse, x, y, parts, seeds, training, workers, run)
        if results is None:
            if workers == 1:
                results = [run(i) for i in range(shards)]
            else:
                results = list(_executor(workers).map(run, range(shards)))
        # Python floats: a NumPy float64 scalar would make float32 gradients float64.
        weights = [float(p.stop - p.start) / len(x) for p in parts]
        for layer in self.net.layers:
            if layer.params:
                layer.grads = {}
        for q, (j, k) in enumerate(keys):
            total = np.multiply(results[0][1][q], weights[0])
            for w, r in zip(weights[1:], results[1:], strict=True):
                total += w * r[1][q]
            self.net.layers[j].grads[k] = total
        loss = float(sum(w * r[0][0] for w, r in zip(weights, results, strict=True)))
        return loss, np.concatenate([r[0][1] for r in results])

    def __repr__(self) -> str:
        return f"FastEngine({self.net!r}, shards={self.shards}, workers={self.workers}, " \
               f"processes={self.processes}, fuse={self.fuse})"
