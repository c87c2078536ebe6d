"""The operations of a convolutional network in NumPy, as forward/backward pairs.

Layout conventions (the same as Keras, so Keras weights load without transposes):

- activations are NHWC: ``(N, H, W, C)``;
- convolution kernels are ``(KH, KW, C_in, C_out)``, biases ``(C_out,)``;
- dense weights are ``(D_in, D_out)``, biases ``(D_out,)``.

Every op is a pair in the CS231n style::

    out, cache = op(x, ...)          # forward: keep what the backward pass needs
    dx, ...    = op_backward(dout, cache)

``conv2d_naive`` / ``max_pool2d_naive`` (and their ``*_backward_naive``
passes) are the literal loops, written to be read; ``conv2d`` / ``max_pool2d``
(and ``conv2d_backward`` / ``max_pool2d_backward``) compute the same numbers
with a handful of array operations. Each pair has its own cache: pass the cache
of ``conv2d`` to ``conv2d_backward`` and that of ``conv2d_naive`` to
``conv2d_backward_naive``. The dtype of the inputs is kept (float32 in models, float64 in
gradient checks).

Output size of a convolution or pooling window of size ``k`` and stride ``s``
over ``n`` input positions with ``p`` zeros added on each side
(see :func:`conv_output_size`)::

    n_out = floor((n + 2p - k) / s) + 1      ("valid" is p = 0)
    same:   n_out = ceil(n / s)              (zero padding added as TensorFlow does)
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

__all__ = [
    "conv_output_size",
    "same_padding",
    "conv2d_naive",
    "conv2d",
    "conv2d_backward_naive",
    "conv2d_backward",
    "conv2d_transpose",
    "dilate_kernel",
    "max_pool2d_naive",
    "max_pool2d_backward_naive",
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "global_avg_pool",
    "global_avg_pool_backward",
    "relu",
    "relu_backward",
    "tanh",
    "tanh_backward",
    "dropout",
    "dropout_backward",
    "batch_moments",
    "batchnorm",
    "batchnorm_backward",
    "layernorm_forward",
    "layernorm_backward",
    "flatten",
    "flatten_backward",
    "dense",
    "dense_backward",
    "softmax",
    "log_softmax",
    "cross_entropy",
    "softmax_cross_entropy_backward",
    "one_hot",
]

_PADDINGS = ("valid", "same")


# --------------------------------------------------------------------------- sizes


def _check_padding(padding):
    """"valid", "same", or a number p >= 0 of zero rows/columns on every side."""
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool) and padding >= 0:
        return int(padding)
    if not isinstance(padding, str) or padding.lower() not in _PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; expected 'valid', 'same' or an int >= 0")
    return padding.lower()


def _check_stride(stride, what: str = "stride") -> int:
    if isinstance(stride, (tuple, list)):
        if len(stride) != 2 or stride[0] != stride[1]:
            raise ValueError(f"{what} must be one int (same in both directions), got {stride!r}")
        stride = stride[0]
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"{what} must be a positive int, got {stride!r}")
    return int(stride)


def same_padding(n: int, k: int, stride: int) -> tuple[int, int]:
    """Zero padding (before, after) that TensorFlow's ``padding="same"`` adds.

    TensorFlow pads so that ``n_out = ceil(n / stride)`` and, when the total is
    odd, puts the extra zero *after* (bottom/right):

        pad_total  = max((ceil(n / s) - 1) * s + k - n, 0)
        pad_before = pad_total // 2
        pad_after  = pad_total - pad_before
    """
    n_out = -(-n // stride)
    total = max((n_out - 1) * stride + k - n, 0)
    return total // 2, total - total // 2


def conv_output_size(n: int, k: int, stride: int = 1, padding="valid") -> int:
    """Number of output positions along one axis.

    Inputs:
    - n: input size along the axis (height or width)
    - k: window (kernel) size along the axis
    - stride: step between windows
    - padding: "valid" (p = 0), an int p (p zeros on each side), or "same"
      (TensorFlow's zero padding, which keeps ceil(n / stride) positions)

    Returns floor((n + 2p - k) / stride) + 1, or ceil(n / stride) for "same".

    Raises ValueError if the window does not fit (k > n + 2p).
    """
    padding = _check_padding(padding)
    stride = _check_stride(stride)
    if padding == "same":
        return -(-int(n) // stride)
    p = 0 if padding == "valid" else padding
    if k > n + 2 * p:
        raise ValueError(f"window of size {k} is larger than the input size {n} "
                         f"(padding={padding!r})")
    return (int(n) + 2 * p - int(k)) // stride + 1


def _conv_setup(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride, padding):
    """Validate conv arguments; return (stride, padding, pads, out_h, out_w)."""
    x = np.asarray(x)
    w = np.asarray(w)
    if x.ndim != 4:
        raise ValueError(f"conv2d expects x of shape (N, H, W, C_in), got shape {x.shape}")
    if w.ndim != 4:
        raise ValueError(f"conv2d expects w of shape (KH, KW, C_in, C_out), got shape {w.shape}")
    if w.shape[2] != x.shape[3]:
        raise ValueError(
            f"channel mismatch: x has shape {x.shape} ({x.shape[3]} channels) but w has shape "
            f"{w.shape} ({w.shape[2]} input channels)"
        )
    if b is not None and np.shape(b) != (w.shape[3],):
        raise ValueError(f"b must have shape ({w.shape[3]},) for w of shape {w.shape}, "
                         f"got {np.shape(b)}")
    padding = _check_padding(padding)
    stride = _check_stride(stride)
    _, h, wd, _ = x.shape
    kh, kw = w.shape[:2]
    if padding == "same":
        pads = (same_padding(h, kh, stride), same_padding(wd, kw, stride))
    else:
        p = 0 if padding == "valid" else padding
        pads = ((p, p), (p, p))
    hp, wp = h + sum(pads[0]), wd + sum(pads[1])
    if kh > hp or kw > wp:
        raise ValueError(
            f"kernel of shape {w.shape} ({kh}x{kw}) is larger than the padded input "
            f"({hp}x{wp}) of x with shape {x.shape} (padding={padding!r})"
        )
    out_h = (hp - kh) // stride + 1
    out_w = (wp - kw) // stride + 1
    return stride, padding, pads, out_h, out_w


def _pad(x: np.ndarray, pads) -> np.ndarray:
    """x (N, H, W, C) with zero rows and columns added: pads = ((top, bottom),
    (left, right)), as :func:`_conv_setup` returns them."""
    if pads == ((0, 0), (0, 0)):
        return x
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


# --------------------------------------------------------------------------- convolution


def conv2d_naive(x, w, b, stride=1, padding="valid"):
    """Convolution (really cross-correlation, as in every DL library) with loops.

    At each output position the kernel is laid over a window of the input and
    the products are summed: a sliding dot product.

    Inputs:
    - x: input, shape (N, H, W, C_in)
    - w: kernels, shape (KH, KW, C_in, C_out)
    - b: biases, shape (C_out,)
    - stride: step of the window (same in both directions)
    - padding: "valid", "same" (TensorFlow semantics, see :func:`same_padding`) or
      an int p: p zero rows and columns on every side

    Returns a tuple of:
    - out: shape (N, H_out, W_out, C_out) with
      H_out = floor((H + pad_h - KH) / stride) + 1 (see :func:`conv_output_size`)
    - cache: for :func:`conv2d_backward_naive`
    """
    stride, padding, pads, out_h, out_w = _conv_setup(x, w, b, stride, padding)
    kh, kw, _, c_out = w.shape
    xp = _pad(x, pads)
    n = x.shape[0]
    out = np.zeros((n, out_h, out_w, c_out), dtype=np.result_type(x, w))
    for i in range(n):                      # each image
        for r in range(out_h):              # each output row
            for c in range(out_w):          # each output column
                top, left = r * stride, c * stride
                window = xp[i, top:top + kh, left:left + kw, :]       # (KH, KW, C_in)
                for f in range(c_out):      # each filter: one dot product
                    out[i, r, c, f] = np.sum(window * w[:, :, :, f]) + (0 if b is None else b[f])
    cache = {"x": x, "w": w, "stride": stride, "pads": pads}
    return out, cache


def _im2col(xp: np.ndarray, kh: int, kw: int, stride: int, out_h: int, out_w: int) -> np.ndarray:
    """Every receptive field of the padded input as one row.

    Returns cols of shape (N * H_out * W_out, KH * KW * C_in); the columns are
    ordered (kh, kw, c_in), matching ``w.reshape(KH * KW * C_in, C_out)``.
    """
    n, _, _, c = xp.shape
    # A view (no copy) of shape (N, H', W', C, KH, KW); stride by slicing the view.
    win = sliding_window_view(xp, (kh, kw), axis=(1, 2))
    win = win[:, : (out_h - 1) * stride + 1 : stride, : (out_w - 1) * stride + 1 : stride]
    # The one copy: channels last so the copy reads the input contiguously.
    cols = np.empty((n, out_h, out_w, kh, kw, c), dtype=xp.dtype)
    np.copyto(cols, win.transpose(0, 1, 2, 4, 5, 3))
    return cols.reshape(n * out_h * out_w, kh * kw * c)


def conv2d(x, w, b, stride=1, padding="valid"):
    """Vectorised convolution: im2col + one matrix multiply.

    ``sliding_window_view`` exposes every KH x KW x C_in receptive field without
    copying; they are copied once into a matrix ``cols`` with one row per output
    position, and the whole layer becomes ``cols @ w.reshape(-1, C_out)`` - one
    call into the BLAS matrix multiply, which is where the speed comes from.

    Inputs / returns: as :func:`conv2d_naive` (same numbers, same output shape
    (N, H_out, W_out, C_out)); the cache holds ``cols`` for the backward pass.
    """
    stride, padding, pads, out_h, out_w = _conv_setup(x, w, b, stride, padding)
    kh, kw, c_in, c_out = w.shape
    xp = _pad(x, pads)
    cols = _im2col(xp, kh, kw, stride, out_h, out_w)
    out = cols @ w.reshape(kh * kw * c_in, c_out)
    if b is not None:
        out += b
    out = out.reshape(x.shape[0], out_h, out_w, c_out)
    cache = {"x_shape": x.shape, "cols": cols, "w": w, "stride": stride, "pads": pads}
    return out, cache


def conv2d_backward(dout, cache, need_dx: bool = True):
    """Backward pass of :func:`conv2d` (im2col): two matrix multiplies and col2im.

    Inputs: dout = dL/dout (N, H_out, W_out, C_out); the cache of :func:`conv2d`;
    need_dx False skips dL/dx (returned as None): the first layer does not need it.

    Returns (dx (N, H, W, C_in), dw (KH, KW, C_in, C_out), db (C_out,)).
    """
    w, stride, pads = cache["w"], cache["stride"], cache["pads"]
    kh, kw, c_in, c_out = w.shape
    n, h, wd, _ = cache["x_shape"]
    _, out_h, out_w, _ = dout.shape
    d2 = dout.reshape(-1, c_out)
    # Each weight met every receptive field: dW = cols^T @ dout.
    dw = (cache["cols"].T @ d2).reshape(w.shape)
    db = d2.sum(axis=0)
    if not need_dx:
        return None, dw, db
    # Each receptive field got dout @ W^T; fold the fields back onto the input (col2im).
    dcols = (d2 @ w.reshape(-1, c_out).T).reshape(n, out_h, out_w, kh, kw, c_in)
    hp, wp = h + sum(pads[0]), wd + sum(pads[1])
    dxp = np.zeros((n, hp, wp, c_in), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, i : i + (out_h - 1) * stride + 1 : stride,
                j : j + (out_w - 1) * stride + 1 : stride, :] += dcols[:, :, :, i, j, :]
    dx = dxp[:, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + wd, :]
    return dx, dw, db


def conv2d_backward_naive(dout, cache, need_dx: bool = True):
    """Backward pass of :func:`conv2d_naive`, as loops: each output position sends
    its gradient back to the window and the kernel that produced it.

    Inputs / returns: as :func:`conv2d_backward`, with the cache of :func:`conv2d_naive`.
    """
    x, w, stride, pads = cache["x"], cache["w"], cache["stride"], cache["pads"]
    kh, kw, _, c_out = w.shape
    xp = _pad(x, pads)
    dxp = np.zeros_like(xp, dtype=np.result_type(dout, xp))
    dw = np.zeros_like(w, dtype=np.result_type(dout, w))
    db = dout.sum(axis=(0, 1, 2))
    n, out_h, out_w, _ = dout.shape
    for i in range(n):
        for r in range(out_h):
            for c in range(out_w):
                top, left = r * stride, c * stride
                window = xp[i, top:top + kh, left:left + kw, :]
                for f in range(c_out):
                    g = dout[i, r, c, f]
                    dw[:, :, :, f] += g * window
                    dxp[i, top:top + kh, left:left + kw, :] += g * w[:, :, :, f]
    h, wd = x.shape[1:3]
    dx = dxp[:, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + wd, :]
    return (dx if need_dx else None), dw, db


def _transpose_size(n: int, k: int, stride: int, padding) -> int:
    """Keras' Conv2DTranspose output size: an input size m that conv2d maps to n."""
    if padding == "same":
        return n * stride
    if padding == "valid":
        return n * stride + max(k - stride, 0)
    return (n - 1) * stride + k - 2 * padding


def conv2d_transpose(x, w, stride=1, padding="valid", output_size=None):
    """Transposed convolution: the backward pass of :func:`conv2d` w.r.t. its input.

    conv2d is linear in its input, z = A x, so its backward pass is
    dL/dx = A^T dL/dz; conv2d_transpose(y) = A^T y is that map used as a layer:
    each input value spreads, weighted by the kernel, over a KH x KW patch of
    the output (a stride s upsamples by s). It runs :func:`conv2d_backward`
    with y as dL/dz; A^T does not depend on x, so the cache comes from conv2d
    on zeros (two of the three matrix products are wasted: clarity first).

    Inputs:
    - x: (N, H, W, C_in); w: (KH, KW, C_out, C_in), the kernel of the conv2d
      (C_out -> C_in channels) being reversed, TensorFlow's filter layout
    - stride, padding: those of that conv2d
    - output_size: (H_out, W_out). Default as Keras' Conv2DTranspose: H * s
      ("same"), H * s + max(KH - s, 0) ("valid"), (H - 1) * s + KH - 2p (int p)

    Returns out (N, H_out, W_out, C_out), the shape of conv2d's input.
    """
    stride, padding = _check_stride(stride), _check_padding(padding)
    if output_size is None:
        output_size = [_transpose_size(n, k, stride, padding)
                       for n, k in zip(np.shape(x)[1:3], np.shape(w)[:2], strict=True)]
    zeros = np.zeros((len(x), *output_size, np.shape(w)[2]), np.result_type(x, w))
    z, cache = conv2d(zeros, w, None, stride, padding)
    if z.shape != np.shape(x):
        raise ValueError(f"conv2d with w {np.shape(w)} maps {zeros.shape} to "
                         f"{z.shape}, not to x's shape {np.shape(x)}")
    out, _, _ = conv2d_backward(np.asarray(x), cache)
    return out


def dilate_kernel(w, rate: int):
    """A kernel with ``rate - 1`` zeros between its taps (an atrous kernel).

    A dilated convolution of rate d is conv2d with this kernel:
    ``conv2d(x, dilate_kernel(w, d), b, stride, padding)``. A K x K kernel
    then covers d (K - 1) + 1 positions per axis with K x K weights. Its
    gradient: dW = dW_dilated[::d, ::d] (the zeros are not weights).

    Inputs: w (KH, KW, C_in, C_out), rate d >= 1.
    Returns shape (d (KH - 1) + 1, d (KW - 1) + 1, C_in, C_out).
    """
    w = np.asarray(w)
    d = _check_stride(rate, "rate")
    kh, kw = w.shape[:2]
    out = np.zeros((d * (kh - 1) + 1, d * (kw - 1) + 1, *w.shape[2:]), w.dtype)
    out[::d, ::d] = w
    return out


# --------------------------------------------------------------------------- pooling


def _pool_setup(x, pool_size, stride, what: str = "max_pool2d"):
    """Validate pooling arguments; return (P, S, out_h, out_w): the window size,
    the stride (P when stride is None) and the output size."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{what} expects x of shape (N, H, W, C), got shape {x.shape}")
    p = _check_stride(pool_size, "pool_size")
    s = p if stride is None else _check_stride(stride)
    if p > x.shape[1] or p > x.shape[2]:
        raise ValueError(f"pool window {p}x{p} is larger than the input of shape {x.shape}")
    out_h = (x.shape[1] - p) // s + 1
    out_w = (x.shape[2] - p) // s + 1
    return p, s, out_h, out_w


def max_pool2d_naive(x, pool_size=2, stride=None):
    """Max pooling with loops ("valid" padding, as Keras' default).

    Inputs:
    - x: shape (N, H, W, C)
    - pool_size: window size P (P x P)
    - stride: step S (default P: non-overlapping windows)

    Returns a tuple of:
    - out: shape (N, H_out, W_out, C), H_out = floor((H - P) / S) + 1
    - cache: for :func:`max_pool2d_backward_naive`
    """
    p, s, out_h, out_w = _pool_setup(x, pool_size, stride)
    n, _, _, c = x.shape
    out = np.empty((n, out_h, out_w, c), dtype=x.dtype)
    for i in range(n):
        for r in range(out_h):
            for q in range(out_w):
                for ch in range(c):
                    window = x[i, r * s : r * s + p, q * s : q * s + p, ch]
                    out[i, r, q, ch] = window.max()
    cache = {"x": x, "pool": p, "stride": s}
    return out, cache


def max_pool2d_backward_naive(dout, cache):
    """Backward pass of :func:`max_pool2d_naive`, as loops.

    Inputs: dout (N, H_out, W_out, C); the cache of :func:`max_pool2d_naive`.

    Returns dx (N, H, W, C): each window's gradient goes entirely to the element
    that was its maximum; overlapping windows add up. Ties: the *first* maximum
    in row-major order (top-left first), the element ``np.argmax`` picks and
    the one TensorFlow's max-pool gradient picks (a test checks both on inputs
    full of ties).
    """
    x, p, s = cache["x"], cache["pool"], cache["stride"]
    dx = np.zeros_like(x, dtype=np.result_type(dout, x))
    n, out_h, out_w, c = dout.shape
    for i in range(n):
        for r in range(out_h):
            for q in range(out_w):
                for ch in range(c):
                    window = x[i, r * s : r * s + p, q * s : q * s + p, ch]
                    a, b = np.unravel_index(np.argmax(window), window.shape)
                    dx[i, r * s + a, q * s + b, ch] += dout[i, r, q, ch]
    return dx


def _pool_views(x, p, s, out_h, out_w):
    """The P*P strided views x[:, a + S*r, b + S*q, :] (r < H_out, q < W_out),
    one per window offset (a, b), in row-major order. Views, not copies."""
    for a in range(p):
        for b in range(p):
            yield (slice(None), slice(a, a + (out_h - 1) * s + 1, s),
                   slice(b, b + (out_w - 1) * s + 1, s), slice(None))


def max_pool2d(x, pool_size=2, stride=None):
    """Vectorised max pooling; the same numbers as :func:`max_pool2d_naive`.

    Instead of looping over windows, loop over the P*P *offsets inside* a
    window: offset (a, b) of every window at once is the strided view
    ``x[:, a::S, b::S, :]`` (no copy), and the output is the elementwise maximum
    of these P*P views. The cache keeps ``x`` and ``out`` (references, no
    copies); the backward pass finds the winners again by comparing.

    Inputs / returns: as :func:`max_pool2d_naive`; the cache is for
    :func:`max_pool2d_backward`.
    """
    p, s, out_h, out_w = _pool_setup(x, pool_size, stride)
    views = _pool_views(x, p, s, out_h, out_w)
    out = x[next(views)].copy()
    for view in views:
        np.maximum(out, x[view], out=out)
    cache = {"x": x, "out": out, "pool": p, "stride": s}
    return out, cache


def max_pool2d_backward(dout, cache):
    """Backward pass of :func:`max_pool2d`, one window offset at a time.

    Inputs: dout (N, H_out, W_out, C); the cache of :func:`max_pool2d`.

    Returns dx (N, H, W, C), the same as :func:`max_pool2d_backward_naive`: at
    each offset, the windows whose maximum sits there (and was not found at an
    earlier offset: the tie rule, first maximum in row-major order) send their
    whole gradient to it.
    """
    x, out, p, s = cache["x"], cache["out"], cache["pool"], cache["stride"]
    _, out_h, out_w, _ = out.shape
    dx = np.zeros(x.shape, dtype=dout.dtype)
    taken = np.zeros(out.shape, dtype=bool)     # windows whose gradient is routed already
    for view in _pool_views(x, p, s, out_h, out_w):
        hit = (x[view] == out) & ~taken
        taken |= hit
        dx[view] += dout * hit
    return dx


def avg_pool2d(x, pool_size=2, stride=None):
    """Average pooling ("valid" padding): each output is the mean of its P x P window,
    LeNet-5's subsampling (LeCun et al. 1998, without its trained scale and bias).

    The same loop over window offsets as :func:`max_pool2d`, adding the P*P strided
    views instead of taking their maximum.

    Inputs: x (N, H, W, C); pool_size P; stride S (default P).
    Returns (out (N, H_out, W_out, C), cache) for :func:`avg_pool2d_backward`.
    """
    p, s, out_h, out_w = _pool_setup(x, pool_size, stride, "avg_pool2d")
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]), x.dtype)
    for view in _pool_views(x, p, s, out_h, out_w):
        out += x[view]
    out /= p * p
    return out, {"shape": x.shape, "pool": p, "stride": s}


def avg_pool2d_backward(dout, cache):
    """Each input of a window contributed 1 / P^2 of its output, so each gets 1 / P^2
    of the window's gradient; overlapping windows add up. Returns dx (N, H, W, C)."""
    p, s = cache["pool"], cache["stride"]
    _, out_h, out_w, _ = dout.shape
    dx = np.zeros(cache["shape"], dtype=dout.dtype)
    share = dout / (p * p)
    for view in _pool_views(dx, p, s, out_h, out_w):
        dx[view] += share
    return dx


def global_avg_pool(x):
    """Global average pooling (Lin et al. 2014, "Network in Network"): the mean of each
    channel over all positions, (N, H, W, C) -> (N, C). Returns (out, cache)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool expects x of shape (N, H, W, C), got {x.shape}")
    return x.mean(axis=(1, 2)), x.shape


def global_avg_pool_backward(dout, cache):
    """Every one of the H * W positions gets 1 / (H W) of its channel's gradient."""
    n, h, w, c = cache
    return np.broadcast_to((dout / (h * w))[:, None, None, :], cache).copy()


# --------------------------------------------------------------------------- elementwise


def relu(x):
    """ReLU, max(x, 0).  Inputs: x any shape.  Returns (out same shape, cache)."""
    out = np.maximum(x, 0)
    return out, out  # out > 0 exactly where x > 0, so out is all the backward needs


def relu_backward(dout, cache):
    """dx = dout where the input was positive, 0 elsewhere (gradient 0 at x = 0)."""
    return dout * (cache > 0)


def tanh(x):
    """The hyperbolic tangent, LeNet-5's squashing function (1998; ReLU came later).
    Returns (out, cache): like ReLU, the output is all the backward pass needs."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """d tanh(x) / dx = 1 - tanh(x)^2: near 1 at 0, near 0 where tanh saturates."""
    return dout * (1 - cache * cache)


def dropout(x, rate: float, rng):
    """Inverted dropout (training only): zero each value with probability ``rate``
    and scale the survivors by 1 / (1 - rate).

    Each output is x / (1 - rate) with probability 1 - rate and 0 otherwise, so its
    expected value is x: at test time the layer is simply left out, with nothing
    to rescale.

    Inputs: x any shape; rate in [0, 1); rng a ``np.random.Generator``.
    Returns (out, cache): the cache is the scaled mask, 0 or 1 / (1 - rate).
    """
    keep = rng.random(x.shape, dtype=np.float32) >= rate
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - rate))
    return x * mask, mask


def dropout_backward(dout, cache):
    """out = x * mask elementwise, so dx = dout * mask: a dropped unit passes no
    gradient, a kept one passes it scaled by 1 / (1 - rate), as in the forward pass."""
    return dout * cache


def batch_moments(x):
    """Mean and (biased) variance of each channel over the batch and all positions:
    x (N, ..., C) -> (mean (C,), var (C,))."""
    axes = tuple(range(x.ndim - 1))
    return x.mean(axis=axes), x.var(axis=axes)


def batchnorm(x, gamma, beta, mean, var, eps: float = 1e-3):
    """Batch normalisation of each channel (the last axis):

        y = gamma * (x - mean) / sqrt(var + eps) + beta

    In training, mean and var are the batch's own (:func:`batch_moments`); at test
    time they are running averages, and the layer is a fixed affine map per channel.

    Inputs: x (N, ..., C); gamma, beta, mean, var (C,).
    Returns (out, cache) with cache = (x_hat, gamma, 1 / sqrt(var + eps)).
    """
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)


def batchnorm_backward(dout, cache, batch_stats: bool = True):
    """Backward pass of :func:`batchnorm`: returns (dx, dgamma, dbeta).

    With the batch's own statistics (training), mean and var depend on every x of
    the channel, which adds two terms to the plain scaling; over the m values of a
    channel:  dx = inv_std / m * (m * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)),
    where dx_hat = dout * gamma. With running statistics (``batch_stats=False``)
    they are constants and dx = dx_hat * inv_std.
    """
    x_hat, gamma, inv_std = cache
    axes = tuple(range(dout.ndim - 1))
    dgamma, dbeta = (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
    dx_hat = dout * gamma
    if not batch_stats:
        return dx_hat * inv_std, dgamma, dbeta
    m = dout.size // dout.shape[-1]
    dx = inv_std / m * (m * dx_hat - dx_hat.sum(axis=axes)
                        - x_hat * (dx_hat * x_hat).sum(axis=axes))
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, eps: float = 1e-3):
    """Layer normalisation (Ba et al., 2016) of each example over its features
    (the last axis), as Keras' ``LayerNormalization()`` (axis=-1, epsilon 1e-3):

        mean, var = mean and (biased) variance of x[..., :] over the last axis
        y = gamma * (x - mean) / sqrt(var + eps) + beta

    How it differs from :func:`batchnorm`: batch norm takes one mean and variance
    per channel over the whole batch (and every position), so an example's output
    depends on the other examples, and inference needs running averages. Layer
    norm takes one mean and variance per example (per position, for (N, H, W, C)
    inputs) over its D features: nothing is shared across the batch, there are no
    running averages, and training and inference compute the same thing.

    Inputs: x (N, ..., D); gamma, beta (D,).
    Returns (out (N, ..., D), cache) with cache = (x_hat, gamma, inv_std), where
    inv_std = 1 / sqrt(var + eps) has shape (N, ..., 1).
    """
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return gamma * x_hat + beta, (x_hat, gamma, inv_std)


def layernorm_backward(dout, cache):
    """Backward pass of :func:`layernorm_forward`: returns (dx, dgamma, dbeta).

    gamma and beta act per feature as in batch norm, and every row of the output
    uses them, so their gradients sum over all rows (every axis but the last):
    dgamma = sum(dout * x_hat), dbeta = sum(dout).

    For dx, take one row of D features (one example, or one position of one).
    With dx_hat = dout * gamma and x_hat = (x - mean) * inv_std, where mean and
    var are that row's own statistics:

        d mean / d x_j = 1 / D,   d var / d x_j = 2 (x_j - mean) / D
        dx_j = inv_std * dx_hat_j                    (x_j directly)
             - inv_std / D * sum_k dx_hat_k          (through the mean)
             - inv_std / D * x_hat_j * sum_k dx_hat_k x_hat_k   (through the var)

    so  dx = inv_std / D * (D * dx_hat - sum(dx_hat) - x_hat * sum(dx_hat * x_hat)),
    the formula of :func:`batchnorm_backward` in training mode with the sums taken
    over the last axis (a row) instead of over the batch (a channel).
    """
    x_hat, gamma, inv_std = cache
    axes = tuple(range(dout.ndim - 1))
    dgamma, dbeta = (dout * x_hat).sum(axis=axes), dout.sum(axis=axes)
    dx_hat = dout * gamma
    d = dout.shape[-1]
    dx = inv_std / d * (d * dx_hat - dx_hat.sum(axis=-1, keepdims=True)
                        - x_hat * (dx_hat * x_hat).sum(axis=-1, keepdims=True))
    return dx, dgamma, dbeta


def flatten(x):
    """(N, d1, d2, ...) -> (N, d1*d2*...), row-major (the order Keras' Flatten uses on NHWC).
    Returns (out, cache)."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"flatten expects a batch (N, ...), got shape {x.shape}")
    return x.reshape(x.shape[0], -1), x.shape


def flatten_backward(dout, cache):
    """Reshape the gradient back to the input shape ``cache``."""
    return dout.reshape(cache)


# --------------------------------------------------------------------------- dense


def dense(x, w, b):
    """Fully connected layer: out = x @ w + b.

    Inputs:
    - x: shape (N, D_in)
    - w: shape (D_in, D_out) (Keras layout)
    - b: shape (D_out,)

    Returns a tuple of:
    - out: shape (N, D_out)
    - cache: (x, w)
    """
    x, w = np.asarray(x), np.asarray(w)
    if x.ndim != 2:
        raise ValueError(f"dense expects x of shape (N, D_in), got shape {x.shape} "
                         f"(flatten first)")
    if w.ndim != 2 or w.shape[0] != x.shape[1]:
        raise ValueError(f"dense: x has shape {x.shape} but w has shape {w.shape}; "
                         f"expected w of shape ({x.shape[1]}, D_out)")
    if b is not None and np.shape(b) != (w.shape[1],):
        raise ValueError(f"dense: b must have shape ({w.shape[1]},), got {np.shape(b)}")
    out = x @ w
    if b is not None:
        out += b
    return out, (x, w)


def dense_backward(dout, cache, need_dx: bool = True):
    """Inputs: dout (N, D_out), cache from :func:`dense`.

    Returns (dx (N, D_in), dw (D_in, D_out), db (D_out,)):
    dx = dout @ w.T,  dw = x.T @ dout,  db = sum of dout over the batch.
    """
    x, w = cache
    dx = dout @ w.T if need_dx else None
    return dx, x.T @ dout, dout.sum(axis=0)


# --------------------------------------------------------------------------- softmax & loss


def softmax(z):
    """Softmax over the last axis, stable for any finite logits.

    Subtracting the row maximum first changes nothing mathematically
    (exp(z - m) / sum exp(z - m) = exp(z) / sum exp(z)) but keeps every exponent
    <= 0, so exp never overflows (np.exp(1e4) is inf; np.exp(0) is 1).

    Inputs: z, shape (..., K).  Returns: probabilities, same shape, rows sum to 1.
    """
    z = np.asarray(z)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z):
    """log(softmax(z)) computed without forming softmax: z - m - log(sum exp(z - m)).
    Finite even where softmax underflows to 0.  Shape (..., K) -> same."""
    z = np.asarray(z)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _check_labels(scores, y):
    """Validate scores (N, K) and integer labels y (N,) in [0, K); return y as
    integers for indexing."""
    y = np.asarray(y)
    if scores.ndim != 2 or y.shape != (scores.shape[0],):
        raise ValueError(f"expected scores (N, K) and labels (N,), got shapes "
                         f"{scores.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= scores.shape[1]):
        raise ValueError(f"labels must lie in [0, {scores.shape[1]}), got {y.min()}..{y.max()}")
    return y.astype(np.intp, copy=False)


def one_hot(y, num_classes: int, dtype=np.float32):
    """Labels (N,) -> one-hot matrix (N, num_classes)."""
    out = np.zeros((len(y), num_classes), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out


def cross_entropy(probs_or_logits, y, from_logits: bool = False) -> float:
    """Mean cross-entropy  L = -(1/N) sum_i log p_i[y_i].

    Inputs:
    - probs_or_logits: shape (N, K); probabilities, or logits if ``from_logits``
      (then computed through :func:`log_softmax`, which is stable)
    - y: integer labels, shape (N,)

    Returns the mean loss as a Python float.  Probabilities are clipped at 1e-12
    (not at 0) so a confident mistake gives a large finite loss, not inf.
    """
    s = np.asarray(probs_or_logits)
    y = _check_labels(s, y)
    rows = np.arange(len(y))
    if from_logits:
        logp = log_softmax(s)[rows, y]
    else:
        logp = np.log(np.clip(s[rows, y], 1e-12, None))
    return float(-logp.mean())


def softmax_cross_entropy_backward(logits, y):
    """Gradient of ``cross_entropy(logits, y, from_logits=True)`` w.r.t. the logits.

    Inputs: logits (N, K), labels y (N,).
    Returns: dlogits = (softmax(logits) - onehot(y)) / N, shape (N, K).
    """
    logits = np.asarray(logits)
    y = _check_labels(logits, y)
    d = softmax(logits)
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    return d
