"""Conv2D -> ReLU -> MaxPooling2D as one operation: the numbers of the three
ops in :mod:`mnist_cnn.scratch.functional`, with far less memory traffic.

Written out, the block makes many passes over its largest tensor, the
convolution output: write it, add the bias, write the ReLU output, read four
strided views to pool it; backward, find every window's maximum again, write a
full-size gradient, mask it by the ReLU, read it twice more for dW and db. On
MNIST's first layer that tensor is 128 x 26 x 26 x 32 floats (11 MB) per batch,
and these passes, not the matrix multiplies, take most of the block's time (the
appendix "The speed layer", book/fast.md, profiles the plain chain's layers).
Deep-learning frameworks fuse such chains for the same reason (XLA, oneDNN's
post-ops). Three exact identities do it here:

1. **Compute the convolution where pooling reads it, grouped by offset.**  Pool
   window ``(r, q)`` reads the convolution at ``(S*r + a, S*q + b)`` for the
   P x P offsets ``(a, b)``. For a fixed offset those positions form a regular
   grid, i.e. a strided convolution of the input. So the block runs P*P strided
   convolutions, one matrix multiply for all of them, and gets P*P *contiguous*
   slabs; pooling is then an elementwise maximum of contiguous arrays. Positions
   no window reads (the last row and column when 11 x 11 is pooled to 5 x 5) are
   never computed.
2. **Bias and ReLU commute with max.**  Both are non-decreasing, so
   ``max_i relu(z_i + b) = relu(max_i z_i + b)`` (exactly, also in floating
   point, because rounding is monotone too). They are applied to the pooled
   output, P*P times smaller.
3. **Backward on the small tensor.**  The forward pass records, per window
   and channel, which offset held the first maximum (row-major, as
   :func:`mnist_cnn.scratch.functional.max_pool2d_backward`; one byte each).
   The ReLU mask is applied to the pooled gradient, which then goes to that
   offset's slab; dW and dx are matrix multiplies over all offsets. The
   convolution output itself is never stored. Overlapping windows (stride <
   pool) simply compute a shared position twice; by linearity the gradients add
   up as they should.

The one difference from the unfused chain: the unfused pool compares
``z + b`` and this one compares ``z``, so if rounding makes two different
``z`` equal after adding ``b``, the tie can be routed to the other element.
Both are valid (sub)gradients, and such ties need two values within one unit in
the last place of each other.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from mnist_cnn.scratch import functional as F

__all__ = ["conv2d_relu_maxpool", "conv2d_relu_maxpool_backward", "ConvReluPool"]

# Below this many input channels the patch matrix is built transposed (one
# contiguous row per kernel tap), which copies long runs of pixels instead of
# runs of C_in values; the first layer of an MNIST network has C_in = 1.
_FEW_CHANNELS = 4
_CHUNK_BYTES = 1 << 20


def _grid(start: int, count: int, step: int) -> slice:
    """The ``count`` indices start, start + step, ... as a slice (a view when indexing)."""
    return slice(start, start + (count - 1) * step + 1, step)


def _grid_cols(xp, kh, kw, s, pool, ps, ph, pw):
    """The receptive fields read by the pool windows, grouped by window offset.

    Returns ``cols`` of shape (P*P, N*PH*PW, KH*KW*C_in): ``cols[g]`` holds, for
    window offset g = a*P + b, one row per (image, window row, window column);
    the columns are ordered (kh, kw, c_in) like ``w.reshape(-1, C_out)``. With
    few input channels it is a transposed view of a (K, P*P, M) array; NumPy's
    matmul takes either layout without copying.
    """
    n, _, _, c = xp.shape
    step = ps * s                       # input step between neighbouring windows
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))       # (N, H', W', C, KH, KW)
    few = c < _FEW_CHANNELS
    shape = (kh, kw, c, pool, pool, n, ph, pw) if few else (pool, pool, n, ph, pw, kh, kw, c)
    buf = np.empty(shape, xp.dtype)
    for a in range(pool):
        for b in range(pool):
            v = win[:, _grid(a * s, ph, step), _grid(b * s, pw, step)]  # (N, PH, PW, C, KH, KW)
            if few:
                np.copyto(buf[:, :, :, a, b], v.transpose(4, 5, 3, 0, 1, 2))
            else:
                np.copyto(buf[a, b], v.transpose(0, 1, 2, 4, 5, 3))
    k, groups = kh * kw * c, pool * pool
    if few:
        return buf.reshape(k, groups, n * ph * pw).transpose(1, 2, 0)
    return buf.reshape(groups, n * ph * pw, k)


def _row_chunk(ph, pw, groups, c_out, itemsize) -> int:
    """Rows (whole images) per chunk so that one chunk's P*P convolution
    outputs stay in a core's cache (about 1 MB)."""
    per_image = ph * pw * groups * c_out * itemsize
    return ph * pw * max(1, _CHUNK_BYTES // per_image)


def conv2d_relu_maxpool(x, w, b, stride=1, padding="valid", pool_size=2, pool_stride=None):
    """``max_pool2d(relu(conv2d(x, w, b, stride, padding)), pool_size, pool_stride)``.

    Inputs: as :func:`mnist_cnn.scratch.functional.conv2d` plus the pooling
    window P and its stride S (default P, "valid" pooling as Keras).

    Returns (out, cache): out has shape (N, PH, PW, C_out) with
    PH = floor((H_conv - P) / S) + 1, the same numbers as the three ops.

    With few input channels a convolution output costs more to write and read
    back than to compute (9 multiply-adds per value on MNIST's first layer), so
    it is computed and pooled in cache-sized chunks of images, and the backward
    pass works through the same chunks.
    """
    stride, padding, pads, out_h, out_w = F._conv_setup(x, w, b, stride, padding)
    n = x.shape[0]
    kh, kw, c_in, c_out = w.shape
    pool, ps, ph, pw = F._pool_setup(np.empty((0, out_h, out_w, 0)), pool_size, pool_stride)
    groups, m = pool * pool, n * ph * pw

    cols = _grid_cols(F._pad(x, pads), kh, kw, stride, pool, ps, ph, pw)
    w2 = w.reshape(-1, c_out)
    dtype = np.result_type(x, w)
    zmax = np.empty((m, c_out), dtype)
    arg = np.zeros((m, c_out), np.uint8)    # which offset holds each window's first maximum
    # With few input channels, chunks of whole images small enough for the cache;
    # otherwise all offsets in one matrix multiply.
    rows = _row_chunk(ph, pw, groups, c_out, zmax.itemsize) if c_in < _FEW_CHANNELS else m
    z = None if c_in < _FEW_CHANNELS else \
        (cols.reshape(groups * m, -1) @ w2).reshape(groups, m, c_out)   # conv, no bias
    tmp = np.empty((min(rows, m), c_out), dtype) if z is None else None
    better = np.empty((min(rows, m), c_out), bool)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        zc, ac, bc = zmax[r0:r1], arg[r0:r1], better[: r1 - r0]
        if z is None:
            np.matmul(cols[0, r0:r1], w2, out=zc)
        else:
            zc[...] = z[0, r0:r1]
        for g in range(1, groups):
            zg = np.matmul(cols[g, r0:r1], w2, out=tmp[: r1 - r0]) if z is None \
                else z[g, r0:r1]
            np.greater(zg, zc, out=bc)              # strictly: ties stay with the first
            # arg = g where offset g is better: offsets come in increasing order,
            # so that is max(arg, g * better) (two fast passes over bytes).
            bu = bc.view(np.uint8)
            np.multiply(bu, np.uint8(g), out=bu)
            np.maximum(ac, bu, out=ac)
            np.maximum(zc, zg, out=zc)
    out = zmax + b if b is not None else zmax.copy()
    np.maximum(out, 0, out=out)
    cache = {"x_shape": x.shape, "cols": cols, "arg": arg, "out": out, "w": w, "rows": rows,
             "stride": stride, "pads": pads, "pool": pool, "pool_stride": ps,
             "pooled_shape": (ph, pw)}
    return out.reshape(n, ph, pw, c_out), cache


def conv2d_relu_maxpool_backward(dout, cache, need_dx: bool = True):
    """Backward pass of :func:`conv2d_relu_maxpool`.

    Inputs: dout (N, PH, PW, C_out); the cache; need_dx as in ``conv2d_backward``.
    Returns (dx (N, H, W, C_in) or None, dw (KH, KW, C_in, C_out), db (C_out,)).

    Three stages: the ReLU's mask on the pooled gradient (whose sum is db); that
    gradient routed to each window's first maximum, one slab per offset, and dw
    from the slabs; and, if dx is needed, the slabs put back on the
    convolution's grid and through the kernel onto the input.
    """
    g = _relu_backward(dout, cache["out"])
    db = np.ones(len(g), g.dtype) @ g                # sum over the batch and positions
    dz, dw = _route_to_offsets(g, cache, keep_whole=need_dx)
    dw = dw.reshape(cache["w"].shape)
    if not need_dx:
        return None, dw, db
    return _input_gradient(_on_conv_grid(dz, cache), cache), dw, db


def _relu_backward(dout, out):
    """The pooled gradient ``dout`` through the ReLU, whose mask is read from the
    block's output ``out`` (M, C_out): (M, C_out), written row-major whatever
    dout's layout."""
    dout = np.asarray(dout)
    g = np.multiply(dout, (out > 0).reshape(dout.shape), out=np.empty(dout.shape, dout.dtype))
    return g.reshape(out.shape)


def _route_to_offsets(g, cache, keep_whole: bool):
    """(dz, dw): the pooled gradient ``g`` routed to each window's first maximum,
    one slab per offset, dz (P*P, M, C_out), and dw (KH*KW*C_in, C_out).

    dz is kept whole if ``keep_whole`` (dx needs it) or one chunk holds every row,
    and dw is then one matrix multiply over all offsets; otherwise dz holds one
    chunk at a time (the forward pass's chunks) and dw adds up chunk by chunk.
    """
    cols, arg, rows = cache["cols"], cache["arg"], cache["rows"]
    kh, kw, c_in, c_out = cache["w"].shape
    groups, m, _ = cols.shape
    whole = keep_whole or rows >= m
    dz = np.empty((groups, m if whole else rows, c_out), g.dtype)
    hit = np.empty((min(rows, m), c_out), bool)
    dw = np.zeros((kh * kw * c_in, c_out), g.dtype)
    for r0 in range(0, m, rows):
        r1 = min(m, r0 + rows)
        d, h = (dz[:, r0:r1] if whole else dz[:, : r1 - r0]), hit[: r1 - r0]
        for k in range(groups):
            np.equal(arg[r0:r1], k, out=h)
            np.multiply(g[r0:r1], h, out=d[k])
            if not whole:
                dw += cols[k, r0:r1].T @ d[k]
    if whole:                                        # one matrix multiply over all offsets
        dw = cols.reshape(groups * m, -1).T @ dz.reshape(-1, c_out)
    return dz, dw


def _on_conv_grid(dz, cache):
    """The routed gradient ``dz`` (one slab per offset) put back on the grid of
    convolution positions the pool windows read (overlapping windows add up):
    (GH, GW, N, C_out), laid out for :func:`_input_gradient`."""
    n = cache["x_shape"][0]
    pool, ps = cache["pool"], cache["pool_stride"]
    ph, pw = cache["pooled_shape"]
    c_out = dz.shape[-1]
    gh, gw = ps * (ph - 1) + pool, ps * (pw - 1) + pool       # the grid pooling reads
    # windows that tile the grid write every position of it
    grid = (np.empty if ps == pool else np.zeros)((gh, gw, n, c_out), dz.dtype)
    for a in range(pool):
        for b in range(pool):
            view = grid[_grid(a, ph, ps), _grid(b, pw, ps)]
            slab = dz[a * pool + b].reshape(n, ph, pw, c_out).transpose(1, 2, 0, 3)
            if ps >= pool:
                view[...] = slab
            else:
                view += slab
    return grid


def _input_gradient(grid, cache):
    """dx (N, H, W, C_in) from the gradient on the convolution's ``grid``.

    Each receptive field got dz @ W^T: one slab per kernel tap (i, j), each added
    onto the (padded) input with one shifted (and, for strided convolutions,
    strided) addition. The grid and the input are both laid out (row, column,
    image, channel), so that a shifted slab is contiguous over images and
    channels: NumPy adds 100 runs of N*C_in values per tap instead of N*10 runs
    of 10*C_in (fewer, longer runs: less overhead per value added). dx is
    returned as an (N, H, W, C_in) view of that layout; the values do not depend
    on it.
    """
    w = cache["w"]
    kh, kw, c_in, c_out = w.shape
    gh, gw, n, _ = grid.shape
    h, wd = cache["x_shape"][1:3]
    s, pads = cache["stride"], cache["pads"]
    taps = np.matmul(grid.reshape(-1, c_out),
                     w.reshape(kh * kw, c_in, c_out).transpose(0, 2, 1))
    taps = taps.reshape(kh, kw, gh, gw, n, c_in)
    dxp = np.zeros((h + sum(pads[0]), wd + sum(pads[1]), n, c_in), grid.dtype)
    for i in range(kh):
        for j in range(kw):
            view = dxp[_grid(i, gh, s), _grid(j, gw, s)]
            np.add(view, taps[i, j], out=view)
    return dxp[pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + wd].transpose(2, 0, 1, 3)


class ConvReluPool:
    """One step of a network's execution path standing for three layers:
    ``Conv2D``, ``ReLU``, ``MaxPooling2D`` (see :class:`mnist_cnn.scratch.Sequential`).

    It reads the convolution's weights and settings from the layer objects and
    writes the convolution's gradients into ``conv.grads``, so optimisers, save
    and load see the same layers as without fusion.
    """

    def __init__(self, conv, relu, pool):
        self.conv, self.relu, self.pool = conv, relu, pool
        self.name = f"{conv.name}+{relu.name}+{pool.name}"
        self._cache = None

    def forward(self, x, training=False):
        c, p = self.conv, self.pool
        out, self._cache = conv2d_relu_maxpool(x, c.params["W"], c.params.get("b"), c.strides,
                                               c.padding, p.pool_size, p.strides)
        return out

    def backward(self, dout):
        dx, dw, db = conv2d_relu_maxpool_backward(dout, self._cache, need_dx=self.conv.need_dx)
        self.conv.grads = {"W": dw}
        if self.conv.use_bias:
            self.conv.grads["b"] = db
        return dx

    def __repr__(self) -> str:
        return f"ConvReluPool({self.name})"
