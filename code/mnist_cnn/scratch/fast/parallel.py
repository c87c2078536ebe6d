"""The shards of a training step in worker processes.

:class:`mnist_cnn.scratch.fast.FastEngine` splits a batch into
shards and combines their gradients. On threads, the shards share one Python
interpreter: NumPy releases the global interpreter lock (GIL) inside its loops
and matrix multiplies, but the Python part of every call (argument parsing,
allocation, dispatch) holds it, and a step makes several hundred calls, so two
shards on threads wait for each other. :func:`run_shards` sends shards to worker
processes instead (the appendix "The speed layer", book/fast.md, times a step
with the shards on threads and in processes, side by side).

A worker holds its own copy of the network, rebuilt from
:meth:`Sequential.get_config`, whose weights are views of shared memory. For
each step the parent copies its current weights and the worker's images into
shared memory and sends one short message; the worker runs forward and backward
and writes its gradients and logits back into shared memory. The gradients are
combined by the parent exactly as for threads, and the dropout seeds are drawn
by the parent, so the numbers are the same as on threads, bit for bit.

Workers are started once (a fresh interpreter running only this module, safe
next to TensorFlow's and OpenBLAS' threads, which forking is not) and kept for
the next steps and calls; Ctrl-C goes to the parent only, and a worker exits
when the parent closes its socket or exits. If a worker
cannot be started or dies, the step is completed on threads with a warning and
the same numbers; a new worker is started next time.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import traceback
import warnings
from multiprocessing import resource_tracker, shared_memory
from multiprocessing.connection import Connection

import numpy as np

from mnist_cnn.scratch.fast.path import param_keys

__all__ = ["run_shards", "shutdown", "WorkerLost"]

_ALIGN = 64                 # bytes: every array in shared memory starts on a cache line
_REPLY_TIMEOUT = 600.0      # seconds a step may take in a worker before it counts as lost


class WorkerLost(RuntimeError):
    """A worker process could not be started, died, or stopped answering."""


# ---------------------------------------------------------------- shared memory layout
def _offsets(specs):
    """Byte offsets of arrays with the given (shape, dtype) laid out one after
    another, each aligned; returns (offsets, total bytes)."""
    offsets, pos = [], 0
    for shape, dtype in specs:
        pos = -(-pos // _ALIGN) * _ALIGN
        offsets.append(pos)
        pos += int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    return offsets, max(pos, 1)


class _Segment(shared_memory.SharedMemory):
    """A block of shared memory that stays mapped while arrays view it.

    An array made on ``SharedMemory.buf`` holds no buffer export (NumPy keeps a
    reference to the mapping, not a lock on it), so ``SharedMemory.close()`` would
    unmap memory the array still points into and a later read would crash. The
    arrays made here view a ctypes array that does hold an export: while any of
    them is alive, the mapping stays, and it is freed with the last of them.
    """

    def arrays(self, specs, offsets, base=0):
        """Arrays of the given (shape, dtype) at byte ``base + offset`` each."""
        if self.buf is None:
            raise ValueError(f"shared memory {self.name} is closed")
        held = (ctypes.c_byte * len(self.buf)).from_buffer(self.buf)
        return [np.ndarray(shape, dtype, buffer=held, offset=base + off)
                for (shape, dtype), off in zip(specs, offsets, strict=True)]

    def close(self):
        """Close the block: at once if no array views it; otherwise the arrays keep
        the mapping (through their export) and it is freed with the last of them,
        while the block's file descriptor is closed now."""
        try:
            super().close()
        except BufferError:
            # SharedMemory.close stopped at the mapping, before its descriptor: hand
            # the mapping to the arrays and close the descriptor (an open one keeps an
            # unlinked block's memory allocated until the process ends).
            self._mmap = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _io_specs(rows, input_shape, x_dtype, output_shape):
    """Images, labels and logits of up to ``rows`` examples (logits as float64:
    any float dtype converts to it and back exactly)."""
    return [((rows, *input_shape), x_dtype), ((rows,), np.int64),
            ((rows, *output_shape), np.float64)]


# ---------------------------------------------------------------- the worker process
def _worker_main(fd, blas_limit):
    """Loop of a worker process talking over the socket ``fd``: ("attach", ...)
    builds the network on shared memory, ("step", ...) runs shards, ("close",)
    or a closed socket (the parent is gone) ends it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent creates and removes the shared memory blocks; a worker that
    # registered them too would have Python's resource tracker remove or warn
    # about them when it exits.
    resource_tracker.register = lambda name, rtype: None
    conn = Connection(fd)
    from threadpoolctl import threadpool_limits

    from mnist_cnn.scratch.fast.tuning import keep_freed_memory

    keep_freed_memory()
    state = None
    with threadpool_limits(limits=blas_limit, user_api="blas"):
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "close":
                break
            try:
                if msg[0] == "attach":
                    if state is not None:
                        state.close()
                    state = _WorkerState(*msg[1:])
                    conn.send(("ok",))
                elif msg[0] == "step":
                    conn.send(("ok", state.step(*msg[1:])))
                else:
                    raise ValueError(f"unknown message {msg[0]!r}")
            except Exception:   # noqa: BLE001 - reported to the parent, which raises it
                conn.send(("error", traceback.format_exc()))
    if state is not None:
        state.close()


class _WorkerState:
    """A worker's copy of the network, its weights in shared memory."""

    def __init__(self, config_json, fuse, specs, names, rows, x_dtype, slots):
        from mnist_cnn.scratch.network import Sequential

        self.net = Sequential.from_config(json.loads(config_json))
        self.fuse = fuse
        self.shms = [_Segment(name=n) for n in names]
        params_shm, grads_shm, io_shm = self.shms
        keys = param_keys(self.net.layers)
        self.specs = [(tuple(shape), np.dtype(dtype)) for shape, dtype in specs]
        offsets, nbytes = _offsets(self.specs)
        for (j, k), view in zip(keys, params_shm.arrays(self.specs, offsets), strict=True):
            self.net.layers[j].params[k] = view
        self.keys = keys
        self.grads = [grads_shm.arrays(self.specs, offsets, base=slot * nbytes)
                      for slot in range(slots)]
        io = _io_specs(rows, self.net.input_shape, x_dtype, self.net.output_shape)
        self.x, self.y, self.logits = io_shm.arrays(io, _offsets(io)[0])

    def step(self, jobs, training):
        """Run each (slot, first row, last row, dropout seeds) job; returns
        [(loss, logits dtype name)] in job order."""
        from mnist_cnn.scratch.fast.path import FusedPath

        out = []
        for slot, r0, r1, seeds in jobs:
            path = FusedPath(self.net, seeds, fuse=self.fuse)
            loss, logits = path.loss_and_backward(self.x[r0:r1], self.y[r0:r1], training)
            self.logits[r0:r1] = logits
            for (j, k), view in zip(self.keys, self.grads[slot], strict=True):
                np.copyto(view, path.source[j].grads[k])
            out.append((float(loss), logits.dtype.str))
        return out

    def close(self):
        self.net = self.x = self.y = self.logits = self.grads = None
        for shm in self.shms:
            shm.close()


# ---------------------------------------------------------------- the parent's side
class _Worker:
    """One worker process, the shared memory it works in, and what it holds."""

    # The worker is a fresh interpreter that imports only this module (unlike
    # multiprocessing's "spawn", it never re-runs the user's script or notebook).
    _CODE = ("import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
             "from mnist_cnn.scratch.fast.parallel import _worker_main; "
             "_worker_main(int(sys.argv[2]), int(sys.argv[3]))")

    def __init__(self, blas_limit):
        ours, theirs = socket.socketpair()
        path = [os.path.abspath(p) for p in sys.path if isinstance(p, str)]
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", self._CODE, json.dumps(path), str(theirs.fileno()),
                 str(blas_limit)],
                pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                start_new_session=True)      # Ctrl-C in a terminal goes to the parent only
        except (OSError, ValueError) as exc:
            ours.close()
            raise WorkerLost(f"could not start a worker process: {exc}") from exc
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.key = None
        self.shms: list[_Segment] = []

    def _request(self, msg):
        try:
            self.conn.send(msg)
        except (OSError, ValueError) as exc:
            raise WorkerLost(f"worker process is gone ({exc})") from exc

    def _reply(self):
        try:
            if not self.conn.poll(_REPLY_TIMEOUT):
                raise WorkerLost(f"worker process did not answer in {_REPLY_TIMEOUT:.0f} s")
            reply = self.conn.recv()
        except (EOFError, OSError) as exc:
            code = self.proc.poll()
            raise WorkerLost(f"worker process exited unexpectedly (exit code {code})") from exc
        if reply[0] == "error":
            raise RuntimeError(f"a training worker process failed:\n{reply[1]}")
        return reply[1] if len(reply) > 1 else None

    def prepare(self, net, fuse, rows, x_dtype, slots):
        """Make sure the worker holds ``net``'s architecture with room for
        ``rows`` examples and ``slots`` gradient sets; returns the parent's
        views: (params, [grads per slot], x, y, logits)."""
        config = json.dumps(net.get_config())
        params = [net.layers[j].params[k] for j, k in param_keys(net.layers)]
        specs = [(p.shape, p.dtype) for p in params]
        key = (config, fuse, tuple((s, d.str) for s, d in specs), np.dtype(x_dtype).str)
        if self.key is None or self.key[:4] != key or self.key[4] < rows or self.key[5] < slots:
            self._release()
            offsets, nbytes = _offsets(specs)
            io = _io_specs(rows, net.input_shape, x_dtype, net.output_shape)
            io_offsets, io_bytes = _offsets(io)
            self.shms = [_Segment(create=True, size=size)
                         for size in (nbytes, nbytes * slots, io_bytes)]
            self._request(("attach", config, fuse, [(s, d.str) for s, d in specs],
                           [s.name for s in self.shms], rows, np.dtype(x_dtype).str, slots))
            self._reply()
            self.key = (*key, rows, slots)
            self.views = (self.shms[0].arrays(specs, offsets),
                          [self.shms[1].arrays(specs, offsets, base=s * nbytes)
                           for s in range(slots)],
                          *self.shms[2].arrays(io, io_offsets))
        return self.views

    def _release(self):
        self.views = None
        for shm in self.shms:
            shm.close()            # or, while arrays still view it, when the last one goes
            try:
                shm.unlink()       # the name, in any case
            except FileNotFoundError:
                pass
        self.shms, self.key = [], None

    def close(self, wait=1.0):
        try:
            self.conn.send(("close",))
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.conn.close()
        self._release()


_WORKERS: dict[int, list[_Worker]] = {}


def _workers(count, blas_limit) -> list[_Worker]:
    pool = _WORKERS.get(blas_limit, [])
    while len(pool) < count:
        pool.append(_Worker(blas_limit))
    _WORKERS[blas_limit] = pool
    return pool[:count]


def shutdown() -> None:
    """Stop every worker process and free its shared memory (also done at exit)."""
    for pool in _WORKERS.values():
        for worker in pool:
            worker.close()
    _WORKERS.clear()


atexit.register(shutdown)


def _discard(worker) -> None:
    for pool in _WORKERS.values():
        if worker in pool:
            pool.remove(worker)
    worker.close(wait=0.1)


def run_shards(net, fuse, x, y, parts, seeds, training, workers, local):
    """Run shard i of ``parts`` (slices of x, y) with dropout seeds ``seeds[i]``:
    shards i with i % workers == 0 in this process (``local(i)`` returns
    ((loss, logits), grads)), the others in worker process i % workers.

    Returns [((loss, logits), grads)] in shard order, grads in the order of
    :func:`~mnist_cnn.scratch.fast.path.param_keys` (arrays from workers are views
    of shared memory that the next call overwrites), or None if no worker could take
    its shards before any work started; the caller then runs them all on threads.
    """
    from mnist_cnn.scratch.fast.tuning import cpus

    blas_limit = max(1, cpus() // workers)
    mine = {p: [i for i in range(len(parts)) if i % workers == p] for p in range(1, workers)}
    busy: list[tuple[_Worker, list]] = []       # (worker, its jobs) until it has answered
    try:
        try:
            for p, worker in enumerate(_workers(workers - 1, blas_limit), start=1):
                jobs = _stage(worker, net, fuse, x, y, [parts[i] for i in mine[p]],
                              [seeds[i] for i in mine[p]])
                busy.append((worker, jobs))
                worker._request(("step", jobs, training))
        except WorkerLost as exc:
            warnings.warn(f"{exc}; running the shards on threads instead", RuntimeWarning,
                          stacklevel=3)
            _discard_dead()
            for worker, _ in busy:
                _discard(worker)
            return None
        results: list = [None] * len(parts)
        for i in range(0, len(parts), workers):
            results[i] = local(i)
        _gather(busy, mine, results, local)
        return results
    except BaseException:
        # Interrupted (Ctrl-C) or failed while workers may still be busy: their
        # next answer would belong to this step, so they are stopped, not reused.
        for worker, _ in busy:
            _discard(worker)
        raise


def _stage(worker, net, fuse, x, y, parts, seeds) -> list:
    """Put in ``worker``'s shared memory what its shards need: ``net``'s current
    weights, and the images and labels of the shards ``parts`` (slices of x, y)
    one after another. Returns the worker's jobs: (slot, first row, last row,
    dropout seeds) per shard."""
    rows = sum(part.stop - part.start for part in parts)
    shared, _, xs, ys, _ = worker.prepare(net, fuse, rows, x.dtype, len(parts))
    params = [net.layers[j].params[k] for j, k in param_keys(net.layers)]
    for dst, src in zip(shared, params, strict=True):
        np.copyto(dst, src)
    jobs, r0 = [], 0
    for slot, (part, shard_seeds) in enumerate(zip(parts, seeds, strict=True)):
        r1 = r0 + part.stop - part.start
        xs[r0:r1], ys[r0:r1] = x[part], y[part]
        jobs.append((slot, r0, r1, shard_seeds))
        r0 = r1
    return jobs


def _gather(busy, mine, results, local) -> None:
    """Wait for each busy worker's answer and put its shards' ((loss, logits),
    grads) into ``results``; a worker found lost is discarded, with a warning, and
    its shards are run here (``local``). Each worker leaves ``busy`` once it has
    answered or is lost."""
    for p, (worker, jobs) in enumerate(list(busy), start=1):
        try:
            replies = worker._reply()
        except WorkerLost as exc:
            warnings.warn(f"{exc}; running its shards on threads instead", RuntimeWarning,
                          stacklevel=4)
            busy.remove((worker, jobs))
            _discard(worker)
            for i in mine[p]:
                results[i] = local(i)
            continue
        _, grads, _, _, logits = worker.views
        for (slot, r0, r1, _), i, (loss, dtype) in zip(jobs, mine[p], replies, strict=True):
            results[i] = ((loss, logits[r0:r1].astype(np.dtype(dtype))), grads[slot])
        busy.remove((worker, jobs))


def _discard_dead() -> None:
    for pool in _WORKERS.values():
        for worker in list(pool):
            if worker.proc.poll() is not None:
                _discard(worker)
