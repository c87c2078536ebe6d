"""The course's graded assignments: what each part asks, how it is checked, and the
mistakes the grader recognises.

Every part is a function (or method) of the course library, so the reference
solution is the library's tested code and the notebooks cannot drift from it.
Inputs are float64 (gradient checks need it); hidden checks draw shapes and values
from the teacher's seed, so no student has seen them.
"""

from __future__ import annotations

import numpy as np

import mnist_cnn.scratch as SCRATCH
from mnist_cnn.notebook import numerical_gradient
from mnist_cnn.scratch import functional as F
from mnist_cnn.scratch import layers as L
from mnist_cnn.scratch import optim
from mnist_cnn.scratch import train as T
from mnist_cnn.scratch.network import Sequential

from .core import (
    Assignment,
    Check,
    Feedback,
    Mistake,
    Part,
    count_lines,
    expect_gradient,
    expect_same,
)

# ----------------------------------------------------------------------- check kinds


def same(title, points, hidden, cases, hint=""):
    """Outputs equal to the reference's on every input ``cases(rng)`` gives:
    a list of (label, inputs)."""
    def run(part, student, rng):
        for label, inputs in cases(rng):
            expect_same(part, student, inputs, label)
    return Check(title, points, hidden, run, hint, cases)


def gradient(title, points, hidden, cases, hint=""):
    """Gradients that pass the numerical check: ``cases(rng)`` gives a list of
    (label, inputs, {output name: numerical gradient})."""
    def run(part, student, rng):
        for label, inputs, numerical in cases(rng):
            expect_gradient(part, student, inputs, numerical, label)
    return Check(title, points, hidden, run, hint, cases)


def vectorised(title, points, inputs, max_lines):
    """At most ``max_lines`` lines of the student's code run on ``inputs``
    (machine-independent), and the output is right."""
    def run(part, student, rng):
        n = count_lines(student, **inputs)
        if n > max_lines:
            raise Feedback(f"{n} lines of your code ran for one call on {_shapes(inputs)}: "
                           f"loops over output positions (a vectorised version runs fewer "
                           f"than {max_lines}: build every window at once and do one matrix "
                           "multiply)")
        expect_same(part, student, inputs, _shapes(inputs))
    return Check(title, points, False, run)


def _shapes(inputs: dict) -> str:
    shown = []
    for k, v in inputs.items():
        if isinstance(v, np.ndarray):
            shown.append(f"{k} of shape {v.shape}")
        elif not isinstance(v, dict | tuple | list):
            shown.append(f"{k}={v!r}")
    return ", ".join(shown)


def _first_of_pair(fn, **kw):
    """out, from a forward function that must return the pair (out, cache)."""
    result = fn(**kw)
    if not (isinstance(result, tuple) and len(result) == 2):
        raise TypeError(f"return the pair (out, cache), as the docstring says; got "
                        f"{type(result).__name__}")
    return result[0]


def _normal(rng, *shape):
    return rng.standard_normal(shape)


def _numerical(loss, **arrays) -> dict:
    """{gradient name: the numerical gradient of ``loss()`` with respect to that array}."""
    return {name: numerical_gradient(loss, a) for name, a in arrays.items()}


def _dot_loss(forward, dout, *args):
    """The scalar sum(forward(*args)[0] * dout), as a function of no arguments (the
    numerical gradient perturbs the arrays in ``args`` in place)."""
    return lambda: float(np.sum(forward(*args)[0] * dout))


# ----------------------------------------------------------------------- convolution


def _conv_inputs(rng, n, h, w, c, k, f, stride=1, padding="valid"):
    return {"x": _normal(rng, n, h, w, c), "w": _normal(rng, k, k, c, f),
            "b": _normal(rng, f), "stride": stride, "padding": padding}


def _conv_cases(settings):
    def cases(rng):
        out = []
        for s in settings:
            n, h, c, k, f = (int(rng.integers(lo, hi + 1)) for lo, hi in
                             [(1, 3), (6, 9), (1, 3), (2, 4), (1, 3)])
            inputs = _conv_inputs(rng, n, h, h + int(rng.integers(0, 3)), c, min(k, h), f, **s)
            out.append((_shapes(inputs), inputs))
        return out
    return cases


def _example_conv(rng):
    inputs = _conv_inputs(np.random.default_rng(0), 2, 6, 6, 2, 3, 2)
    return [("the example (" + _shapes(inputs) + ")", inputs)]


_CONV_MISTAKES = [
    Mistake("flipped kernel",
            "deep-learning 'convolution' is cross-correlation: w[a, b] multiplies the "
            "window's pixel (top + a, left + b); do not flip w",
            [("np.sum(window * w[:, :, :, f])", "np.sum(window * w[::-1, ::-1, :, f])")]),
    Mistake("stride ignored",
            "the window of output (r, c) starts at row r * stride, column c * stride",
            [("top, left = r * stride, c * stride", "top, left = r, c")]),
    Mistake("bias missing", "add b[f] to every position of output channel f",
            [(" + (0 if b is None else b[f])", "")]),
    Mistake("padding ignored",
            "slide the window over the padded input xp = _pad(x, pads), not over x",
            [("xp = _pad(x, pads)", "xp = x")]),
]

CONV_NAIVE = Part(
    F.conv2d_naive,
    "Write the convolution as the loops it is: for each image, each output position "
    "and each filter, lay the kernel over the window and sum the products.",
    outputs=("out",),
    forbid=(SCRATCH,),
    runner=_first_of_pair,
    given=(F._conv_setup, F._pad, F.conv_output_size, F.same_padding),
    checks=[
        same("the example: shape and values", 2, False, _example_conv),
        same("random sizes, stride 1, no padding", 2, True, _conv_cases([{}])),
        same("stride 2", 1, True, _conv_cases([{"stride": 2}]),
             "this check moves the window by 2: is the stride used?"),
        same("padding 'same' and 1", 1, True,
             _conv_cases([{"padding": "same"}, {"padding": 1}]),
             "this check pads the input: is the padded input used?"),
    ],
    mistakes=_CONV_MISTAKES,
)

CONV_VECTORISED = Part(
    F.conv2d,
    "The same numbers with array operations: gather every window into one row of a "
    "matrix (im2col) and multiply it by the kernels reshaped to a matrix.",
    outputs=("out",),
    forbid=(SCRATCH,),
    runner=_first_of_pair,
    given=(F._conv_setup, F._pad),
    solution_helpers=(F._im2col,),
    checks=[
        same("the example: shape and values", 1, False, _example_conv),
        vectorised("vectorised: no loop over output positions", 3,
                   _conv_inputs(np.random.default_rng(1), 4, 12, 12, 3, 3, 4), 200),
        same("random sizes, stride 1, no padding", 1, True, _conv_cases([{}])),
        same("stride 2 and padding", 1, True,
             _conv_cases([{"stride": 2}, {"padding": "same"}, {"padding": 1, "stride": 2}]),
             "this check uses stride 2 and padding"),
    ],
    mistakes=[
        Mistake("flipped kernel", _CONV_MISTAKES[0].fix,
                [("w.reshape(kh * kw * c_in, c_out)",
                  "w[::-1, ::-1].reshape(kh * kw * c_in, c_out)")]),
        Mistake("bias missing", "add b (shape (C_out,)) to every row of cols @ W",
                [("out += b", "pass")]),
        Mistake("rows and columns swapped",
                "cols has one row per (image, output row, output column), in that order: "
                "reshape to (N, H_out, W_out, C_out)",
                [("out = out.reshape(x.shape[0], out_h, out_w, c_out)",
                  "out = out.reshape(x.shape[0], out_w, out_h, c_out).transpose(0, 2, 1, 3)")]),
        Mistake("padding ignored", _CONV_MISTAKES[3].fix,
                [("xp = _pad(x, pads)", "xp = x")]),
    ],
)


def _conv_backward_cases(settings, example=False):
    def cases(rng):
        out = []
        runs = settings if not example else [{}]
        for s in runs:
            if example:
                r = np.random.default_rng(0)
                x, w, b = _normal(r, 2, 5, 5, 2), _normal(r, 3, 3, 2, 2), _normal(r, 2)
            else:
                n, h, c, k, f = (int(rng.integers(lo, hi + 1)) for lo, hi in
                                 [(1, 2), (4, 7), (1, 2), (2, 3), (1, 2)])
                x, w, b = _normal(rng, n, h, h, c), _normal(rng, k, k, c, f), _normal(rng, f)
                r = rng
            stride, padding = s.get("stride", 1), s.get("padding", "valid")
            out_, cache = F.conv2d_naive(x, w, b, stride, padding)
            dout = _normal(r, *out_.shape)
            label = (f"x of shape {x.shape}, w of shape {w.shape}, stride={stride}, "
                     f"padding={padding!r}")
            inputs = {"dout": dout, "cache": cache}
            if example:
                loss = _dot_loss(F.conv2d_naive, dout, x, w, b, stride, padding)
                numerical = _numerical(loss, dx=x, dw=w, db=b)
                out.append(("the example, " + label, inputs, numerical))
            else:
                out.append((label, inputs))
        return out
    return cases


CONV_BACKWARD = Part(
    F.conv2d_backward_naive,
    "Each output position sent its window through one dot product per filter; send "
    "its gradient back the same way: to the window (dx), to the kernel (dw) and to "
    "the bias (db). `cache` is what `conv2d_naive` returned: a dict with the input "
    "`x`, the kernels `w`, the `stride` and the `pads` ((top, bottom), (left, right)).",
    outputs=("dx", "dw", "db"),
    forbid=(SCRATCH,),
    doc="""Backward pass of conv2d_naive, as loops: each output position sends its
    gradient back to the window and the kernel that produced it.

    Inputs: dout = dL/dout (N, H_out, W_out, C_out); cache, the dict conv2d_naive
    returned (x, w, stride, pads); need_dx False: return None for dx.
    Returns (dx (N, H, W, C_in), dw (KH, KW, C_in, C_out), db (C_out,)).
    """,
    given=(F._pad,),
    checks=[
        gradient("the example: numerical gradient check of dx, dw and db", 2, False,
                 _conv_backward_cases([{}], example=True)),
        same("random sizes, stride 1, no padding", 2, True, _conv_backward_cases([{}])),
        same("stride 2 and padding", 2, True,
             _conv_backward_cases([{"stride": 2}, {"padding": "same"}, {"padding": 1}]),
             "this check uses stride 2 and padding"),
    ],
    mistakes=[
        Mistake("db averaged",
                "each output position added b[f] once: db sums dout over the batch and "
                "every position, it does not average",
                [("db = dout.sum(axis=(0, 1, 2))", "db = dout.mean(axis=(0, 1, 2))")]),
        Mistake("dw overwritten",
                "every window contributes to dw: add (+=), do not assign",
                [("dw[:, :, :, f] += g * window", "dw[:, :, :, f] = g * window")]),
        Mistake("flipped kernel in dx",
                "the window's pixel (top + a, left + b) met w[a, b]: send g * w back "
                "unflipped",
                [("+= g * w[:, :, :, f]", "+= g * w[::-1, ::-1, :, f]")]),
        Mistake("padding not cropped",
                "dx is the gradient of x, not of the padded input: cut the padding off",
                [("dx = dxp[:, pads[0][0] : pads[0][0] + h, pads[1][0] : pads[1][0] + wd, :]",
                  "dx = dxp")]),
        Mistake("stride ignored",
                "the window of output (r, c) starts at row r * stride, column c * stride",
                [("top, left = r * stride, c * stride", "top, left = r, c")]),
    ],
)

CONVOLUTION_FORWARD = Assignment(
    "convolution_forward", "Convolution, forward: the loops, then one matrix multiply",
    "A convolution layer slides each kernel over the image and takes a dot product at "
    "every position. You write it twice: as the loops (to read) and vectorised (to run).",
    [CONV_NAIVE, CONV_VECTORISED], chapter="convolution")

CONVOLUTION_BACKWARD = Assignment(
    "convolution_backward", "Convolution, backward: where each gradient goes",
    "The backward pass of the loops you wrote in the forward assignment: the same "
    "loops, each product sending its gradient to both of its factors.",
    [CONV_BACKWARD], chapter="backprop")


# ----------------------------------------------------------------------- pooling


def _pool_cases(settings, ties=False, backward=False, example=False):
    def cases(rng):
        out = []
        for s in settings:
            r = np.random.default_rng(0) if example else rng
            n, h, c = (2, 6, 2) if example else (
                int(rng.integers(1, 3)), int(rng.integers(4, 9)), int(rng.integers(1, 4)))
            x = (r.integers(0, 3, (n, h, h + 1, c)).astype(np.float64) if ties
                 else _normal(r, n, h, h + 1, c))
            p, stride = s.get("pool_size", 2), s.get("stride")
            label = f"x of shape {x.shape}, pool_size={p}, stride={stride}" + (
                " (many tied maxima)" if ties else "")
            if example:
                label = "the example, " + label
            if not backward:
                out.append((label, {"x": x, "pool_size": p, "stride": stride}))
                continue
            y, cache = F.max_pool2d_naive(x, p, stride)
            inputs = {"dout": _normal(r, *y.shape), "cache": cache}
            if example:
                dout = inputs["dout"]
                num = numerical_gradient(_dot_loss(F.max_pool2d_naive, dout, x, p, stride), x)
                out.append((label, inputs, {"dx": num}))
            else:
                out.append((label, inputs))
        return out
    return cases


POOL_FORWARD = Part(
    F.max_pool2d_naive,
    "Max pooling keeps the largest value of each P x P window, channel by channel.",
    outputs=("out",),
    forbid=(SCRATCH,),
    runner=_first_of_pair,
    given=(F._pool_setup,),
    checks=[
        same("the example: shape and values", 1, False, _pool_cases([{}], example=True)),
        same("random sizes, 2x2 windows", 1, True, _pool_cases([{}])),
        same("3x3 windows, stride 1 and 2 (overlapping)", 1, True,
             _pool_cases([{"pool_size": 3, "stride": 1}, {"pool_size": 3, "stride": 2}]),
             "this check uses a stride different from the window size"),
    ],
    mistakes=[
        Mistake("mean instead of max", "pooling here keeps the window's maximum",
                [("window.max()", "window.mean()")]),
        Mistake("stride ignored", "window (r, q) starts at row r * s, column q * s",
                [("x[i, r * s : r * s + p, q * s : q * s + p, ch]",
                  "x[i, r : r + p, q : q + p, ch]")]),
        Mistake("maximum over channels",
                "each channel is pooled on its own: take the window of channel ch only",
                [("q * s : q * s + p, ch]", "q * s : q * s + p, :]")]),
    ],
)

POOL_BACKWARD = Part(
    F.max_pool2d_backward_naive,
    "The gradient of a window's maximum goes to the one element that was the "
    "maximum; nothing goes to the others. With ties, the first maximum in row-major "
    "order takes it (what `np.argmax` picks, and TensorFlow). Where windows overlap, "
    "an element can receive from several. `cache` is what `max_pool2d_naive` "
    "returned: a dict with `x`, `pool` (P) and `stride` (S).",
    outputs=("dx",),
    forbid=(SCRATCH,),
    checks=[
        gradient("the example: numerical gradient check", 1, False,
                 _pool_cases([{}], backward=True, example=True)),
        same("random sizes, 2x2 windows", 1, True, _pool_cases([{}], backward=True)),
        same("tied maxima", 1, True, _pool_cases([{}], ties=True, backward=True),
             "this check's windows have several equal maxima"),
        same("overlapping windows (3x3, stride 1 and 2)", 1, True,
             _pool_cases([{"pool_size": 3, "stride": 1}, {"pool_size": 3, "stride": 2}],
                         backward=True),
             "this check's windows overlap"),
    ],
    mistakes=[
        Mistake("gradient to every tied maximum",
                "with ties, only the first maximum (np.argmax) receives the gradient",
                [("a, b = np.unravel_index(np.argmax(window), window.shape)\n"
                  "                    dx[i, r * s + a, q * s + b, ch] += dout[i, r, q, ch]",
                  "dx[i, r * s : r * s + p, q * s : q * s + p, ch] += "
                  "dout[i, r, q, ch] * (window == window.max())")]),
        Mistake("gradient to the whole window",
                "only the maximum affected the output: the other elements get nothing",
                [("a, b = np.unravel_index(np.argmax(window), window.shape)\n"
                  "                    dx[i, r * s + a, q * s + b, ch] += dout[i, r, q, ch]",
                  "dx[i, r * s : r * s + p, q * s : q * s + p, ch] += dout[i, r, q, ch]")]),
        Mistake("overlapping windows overwrite",
                "an element in two windows gets both gradients: add (+=), do not assign",
                [("dx[i, r * s + a, q * s + b, ch] += dout",
                  "dx[i, r * s + a, q * s + b, ch] = dout")]),
        Mistake("last tied maximum",
                "with ties, the first maximum in row-major order (np.argmax) receives it",
                [("np.argmax(window)", "window.size - 1 - np.argmax(window.ravel()[::-1])")]),
    ],
)

POOLING = Assignment(
    "pooling", "Max pooling, forward and backward",
    "Pooling shrinks each feature map by keeping the largest value of every window; "
    "its backward pass routes each gradient to that one winner.",
    [POOL_FORWARD, POOL_BACKWARD], chapter="pooling")


# ----------------------------------------------------------------------- dense & softmax


def _dense_cases(square=False, example=False):
    def cases(rng):
        r = np.random.default_rng(0) if example else rng
        n, d_in, d_out = (3, 4, 5) if example else (
            int(rng.integers(2, 6)), int(rng.integers(2, 7)), int(rng.integers(2, 7)))
        if square:
            d_out = d_in
        x, w, b = _normal(r, n, d_in), _normal(r, d_in, d_out), _normal(r, d_out)
        y, cache = F.dense(x, w, b)
        dout = _normal(r, *y.shape)
        label = f"x of shape {x.shape}, w of shape {w.shape}"
        if not example:
            return [(label, {"dout": dout, "cache": cache})]

        loss = _dot_loss(F.dense, dout, x, w, b)
        num = _numerical(loss, dx=x, dw=w, db=b)
        return [("the example, " + label, {"dout": dout, "cache": cache}, num)]
    return cases


DENSE_BACKWARD = Part(
    F.dense_backward,
    "A dense layer computes `out = x @ w + b`. Given dL/dout, return the gradients "
    "of its input, its weights and its bias. `cache` is what `dense` returned: the "
    "tuple `(x, w)`. Work out each one's shape first: it is the shape of what it is "
    "the gradient of.",
    outputs=("dx", "dw", "db"),
    forbid=(SCRATCH,),
    doc="""Backward pass of the dense layer out = x @ w + b.

    Inputs: dout = dL/dout (N, D_out); cache = (x (N, D_in), w (D_in, D_out));
    need_dx False: return None for dx.
    Returns (dx (N, D_in), dw (D_in, D_out), db (D_out,)).
    """,
    checks=[
        gradient("the example: numerical gradient check", 1, False,
                 _dense_cases(example=True)),
        same("random sizes", 1, True, _dense_cases()),
        same("a square weight matrix (D_in = D_out)", 1, True, _dense_cases(square=True),
             "with a square w, shapes cannot tell w from w.T"),
    ],
    mistakes=[
        Mistake("db averaged", "every example added b once: db sums dout over the batch",
                [("dout.sum(axis=0)", "dout.mean(axis=0)")]),
        Mistake("w not transposed", "dx = dout @ w.T: dout is (N, D_out), w is (D_in, D_out)",
                [("dx = dout @ w.T", "dx = dout @ w")]),
        Mistake("dw transposed", "dw = x.T @ dout has w's shape (D_in, D_out)",
                [("x.T @ dout", "dout.T @ x")]),
    ],
)


_FAR = (", rows centred from -1000 to 1000, each with a logit 800 above and one 800 "
        "below its centre")


def _far_apart(rng, z):
    """Logits no shortcut survives: rows far apart (one maximum for the batch
    underflows) and, in each row, the first logit 800 below the centre and another
    800 above it (shifting by the first, the minimum or the mean overflows)."""
    z = z.copy()
    n, k = z.shape
    z[:, 0] -= 800
    z[np.arange(n), rng.integers(1, k, n)] += 800
    return z + np.linspace(-1000, 1000, n)[:, None]


def _logit_cases(kind, example=False):
    def cases(rng):
        r = np.random.default_rng(0) if example else rng
        n, k = (4, 10) if example else (int(rng.integers(2, 7)), int(rng.integers(3, 11)))
        z = _normal(r, n, k) * 3
        if kind in ("large", "ce-large"):
            z = _far_apart(r, z)
        label = (("the example, " if example else "") +
                 f"logits of shape {z.shape}" +
                 (_FAR if kind in ("large", "ce-large") else ""))
        if kind in ("plain", "large"):
            return [(label, {"z": z})]
        y = r.integers(0, k, n)
        inputs = {"logits": z, "y": y}
        if example:
            num = numerical_gradient(lambda: F.cross_entropy(z, y, from_logits=True), z)
            return [(label, inputs, {"dlogits": num})]
        return [(label, inputs)]
    return cases


SOFTMAX = Part(
    F.softmax,
    "Softmax turns each row of logits into probabilities. Make it stable: it must give "
    "finite probabilities for any finite logits, however large or far apart.",
    outputs=("probabilities",),
    forbid=(SCRATCH,),
    doc="""Softmax over the last axis, finite for any finite logits.

    Inputs: z, shape (..., K).  Returns: probabilities, same shape, rows sum to 1.
    """,
    checks=[
        same("the example", 1, False, _logit_cases("plain", example=True)),
        same("random logits", 1, True, _logit_cases("plain")),
        same("large logits", 1, True, _logit_cases("large"),
             "this check's logits are far apart: exp overflows unless each row is shifted "
             "by its maximum"),
    ],
    mistakes=[
        Mistake("no shift by the maximum",
                "np.exp(1000) is inf: subtract each row's maximum before exp "
                "(exp(z - m) / sum exp(z - m) is the same softmax)",
                [("np.exp(z - z.max(axis=-1, keepdims=True))", "np.exp(z)")]),
        Mistake("one maximum for the whole batch",
                "shift each row by its own maximum: a row far below the batch's maximum "
                "underflows to 0 / 0",
                [("z.max(axis=-1, keepdims=True)", "z.max()")]),
        Mistake("normalised over the batch",
                "each row (one example) sums to 1: sum over the last axis",
                [("e.sum(axis=-1, keepdims=True)", "e.sum(axis=0, keepdims=True)")]),
    ],
)

SOFTMAX_CE_BACKWARD = Part(
    F.softmax_cross_entropy_backward,
    "The mean cross-entropy of softmax(logits) with the labels y, differentiated "
    "with respect to the logits. You may call your `softmax` from Part 2 (write that "
    "first) or compute it inline.",
    outputs=("dlogits",),
    forbid=(SCRATCH,),
    given=(F._check_labels,),
    earlier=(F.softmax,),
    doc="""Gradient of the mean cross-entropy of softmax(logits) and the labels y,
    with respect to the logits.

    Inputs: logits (N, K), labels y (N,) integers in [0, K).
    Returns: dlogits, shape (N, K).
    """,
    checks=[
        gradient("the example: numerical gradient check", 2, False,
                 _logit_cases("ce", example=True)),
        same("random logits and labels", 1, True, _logit_cases("ce")),
        same("large logits", 1, True, _logit_cases("ce-large"),
             "this check's logits are far apart: exp overflows unless each row is shifted "
             "by its maximum"),
    ],
    mistakes=[
        Mistake("missing 1/N", "the loss is the mean over the batch: divide by N",
                [("d /= len(y)", "pass")]),
        Mistake("sign flipped", "the gradient is softmax - one-hot (it points uphill)",
                [("d /= len(y)", "d /= -len(y)")]),
        Mistake("one-hot not subtracted",
                "subtract 1 at each example's true class: d[i, y[i]] -= 1",
                [("d[np.arange(len(y)), y] -= 1", "pass")]),
        Mistake("no shift by the maximum", SOFTMAX.mistakes[0].fix,
                [("d = softmax(logits)",
                  "d = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)")]),
    ],
)

DENSE_SOFTMAX = Assignment(
    "dense_softmax", "Dense layer and softmax cross-entropy, backward",
    "The network's head: a dense layer, softmax and the cross-entropy loss, and the "
    "gradients that start backpropagation.",
    [DENSE_BACKWARD, SOFTMAX, SOFTMAX_CE_BACKWARD], chapter="dense_softmax")


# ----------------------------------------------------------------------- optimisers


def _optimiser_runner(cls, params, grads, hyper):
    """The parameters after one step per gradient list in ``grads`` (in one flat
    array)."""
    opt = cls(**hyper)
    return np.concatenate([np.ravel(p) for p in optim.run_steps(opt, params, grads)])


def _steps_cases(hyper, shapes=((3, 4), (4,)), steps=5, example=False, tiny=False):
    def cases(rng):
        r = np.random.default_rng(0) if example else rng
        params = [_normal(r, *s) for s in shapes]
        scale = 1e-6 if tiny else 1.0
        grads = [[_normal(r, *s) * scale for s in shapes] for _ in range(steps)]
        label = (("the example: " if example else "") +
                 f"{steps} steps with {hyper} on parameters of shapes "
                 f"{', '.join(str(s) for s in shapes)}")
        return [(label, {"params": params, "grads": grads, "hyper": hyper})]
    return cases


SGD_PART = Part(
    (optim.SGD, "step"),
    "Write `step`: one update of every parameter, in place (`p += ...`, `v[...] = ...`), "
    "with the velocities kept in `self.state['velocity']` between steps (a list of "
    "arrays like the parameters, None before the first step). The formulas are in the "
    "class's docstring; `__init__` is given and sets `self.lr`, `self.momentum`, "
    "`self.weight_decay`, `self.nesterov` and `self.state = {'step': 0, 'velocity': "
    "None}`.",
    outputs=("params",),
    forbid=(optim,),
    runner=lambda cls, params, grads, hyper: _optimiser_runner(cls, params, grads, hyper),
    checks=[
        same("the example: momentum 0.9", 2, False,
             _steps_cases({"lr": 0.1, "momentum": 0.9}, example=True)),
        same("plain SGD and momentum, other rates", 1, True,
             lambda rng: _steps_cases({"lr": 0.05, "momentum": 0.0})(rng)
             + _steps_cases({"lr": 0.01, "momentum": 0.5}, steps=8)(rng)),
        same("weight decay", 1, True,
             _steps_cases({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01})),
        same("Nesterov", 1, True, _steps_cases({"lr": 0.1, "momentum": 0.9, "nesterov": True})),
    ],
    mistakes=[
        Mistake("momentum sign error",
                "v <- momentum * v - lr * g: the old velocity is kept with its sign",
                [("v[...] = self.momentum * v - self.lr * g",
                  "v[...] = -self.momentum * v - self.lr * g")]),
        Mistake("velocity not kept",
                "your steps are plain SGD steps: the velocity must carry over from one "
                "step to the next (v <- momentum * v - lr * g, written into the stored "
                "array with v[...] = ...; 'v = ...' makes a new array each step)",
                [("v[...] = self.momentum * v - self.lr * g",
                  "v = self.momentum * v - self.lr * g")]),
        Mistake("weight decay ignored", "add weight_decay * p to the gradient first",
                [("g = g + self.weight_decay * p", "pass")]),
        Mistake("Nesterov ignored",
                "with nesterov=True the step is p += momentum * v - lr * g",
                [("if self.nesterov:", "if False:")]),
    ],
)

ADAM_PART = Part(
    (optim.Adam, "step"),
    "Write `step` of Adam: update the moment estimates `m` and `v` (lists of arrays "
    "like the parameters, kept in `self.state['m']` and `self.state['v']`, None before "
    "the first step), count the step in `self.state['step']`, correct the bias and "
    "move every parameter in place. The formulas are in the class's docstring (the "
    "'paper' form: eps added to sqrt(v_hat)); `__init__` is given and sets `self.lr`, "
    "`self.beta1`, `self.beta2`, `self.eps` and `self.weight_decay`.",
    outputs=("params",),
    forbid=(optim,),
    runner=lambda cls, params, grads, hyper: _optimiser_runner(cls, params, grads, hyper),
    checks=[
        same("the example: the defaults", 2, False, _steps_cases({"lr": 1e-3}, example=True)),
        same("other rates and betas", 1, True,
             _steps_cases({"lr": 0.01, "beta1": 0.8, "beta2": 0.99}, steps=10)),
        same("the first steps, small gradients", 1, True,
             _steps_cases({"lr": 1e-3}, steps=2, tiny=True),
             "with gradients near 1e-6, bias correction and eps matter"),
        same("coupled weight decay (L2)", 1, True,
             _steps_cases({"lr": 1e-3, "weight_decay": 0.1})),
    ],
    mistakes=[
        Mistake("no bias correction",
                "divide m by (1 - beta1^t) and v by (1 - beta2^t): at the first steps m "
                "and v are still near their starting zeros",
                [("lr_t = self.lr * math.sqrt(1 - b2**t) / (1 - b1**t)", "lr_t = self.lr"),
                 ("eps_t = self.eps * (math.sqrt(1 - b2**t) if self.eps_form == \"paper\" "
                  "else 1.0)", "eps_t = self.eps")]),
        Mistake("t starts at 0",
                "count the step before using it: the first step has t = 1 (with t = 0 the "
                "correction divides by zero)",
                [("st[\"step\"] += 1\n        t, b1, b2 = st[\"step\"], self.beta1, self.beta2",
                  "t, b1, b2 = st[\"step\"], self.beta1, self.beta2\n        st[\"step\"] += 1")]),
        Mistake("square root missing", "divide by sqrt(v_hat) + eps, not by v_hat",
                [("np.sqrt(v)", "v")]),
        Mistake("second moment of g, not g squared",
                "v averages g ** 2: v <- beta2 * v + (1 - beta2) * g ** 2",
                [("(1 - b2) * g**2", "(1 - b2) * g")]),
    ],
)

OPTIMISERS = Assignment(
    "optimisers", "SGD with momentum and Adam, one step at a time",
    "An optimiser turns gradients into steps. Both of these keep state between steps: "
    "a velocity for momentum, two moment estimates for Adam.",
    [SGD_PART, ADAM_PART], chapter="optimisers")


# ----------------------------------------------------------------------- batch norm


def _bn_cases(kind, example=False):
    def cases(rng):
        r = np.random.default_rng(0) if example else rng
        if kind == "4d":
            shape = (int(rng.integers(2, 4)), int(rng.integers(2, 5)), int(rng.integers(2, 5)),
                     int(rng.integers(1, 4)))
        else:
            shape = (4, 3) if example else (int(rng.integers(3, 9)), int(rng.integers(2, 6)))
        c = shape[-1]
        x = _normal(r, *shape) * 2 + 1
        gamma, beta = _normal(r, c), _normal(r, c)
        mean, var = F.batch_moments(x)
        y, cache = F.batchnorm(x, gamma, beta, mean, var)
        dout = _normal(r, *y.shape)
        inputs = {"dout": dout, "cache": cache}
        if kind == "running":
            inputs["batch_stats"] = False
        label = (("the example, " if example else "") + f"x of shape {shape}" +
                 (", running statistics (batch_stats=False)" if kind == "running" else ""))
        if not example:
            return [(label, inputs)]

        def loss():
            m, v = F.batch_moments(x)
            return float(np.sum(F.batchnorm(x, gamma, beta, m, v)[0] * dout))
        num = _numerical(loss, dx=x, dgamma=gamma, dbeta=beta)
        return [(label, inputs, num)]
    return cases


BATCHNORM_BACKWARD = Part(
    F.batchnorm_backward,
    "Batch normalisation in training uses the batch's own mean and variance, so every "
    "x of a channel affects every output of that channel. Derive the backward pass "
    "(a computation graph helps) and write it vectorised. `cache` is what `batchnorm` "
    "returned: `(x_hat, gamma, inv_std)`; the channels are the last axis and the "
    "statistics are taken over all the others.",
    outputs=("dx", "dgamma", "dbeta"),
    forbid=(SCRATCH,),
    doc="""Backward pass of batchnorm: returns (dx, dgamma, dbeta).

    Forward, per channel (the last axis), over the m values of the channel:
        x_hat = (x - mean) * inv_std,  inv_std = 1 / sqrt(var + eps),
        out = gamma * x_hat + beta.
    With batch_stats True (training) mean and var are the batch's own and depend
    on every x of the channel; with batch_stats False they are constants.

    Inputs: dout (N, ..., C); cache = (x_hat, gamma, inv_std) from batchnorm.
    Returns dx (same shape as dout), dgamma (C,), dbeta (C,).
    """,
    checks=[
        gradient("the example: numerical gradient check", 2, False,
                 _bn_cases("2d", example=True)),
        same("random (N, D) inputs", 1, True, _bn_cases("2d")),
        same("feature maps (N, H, W, C)", 1, True, _bn_cases("4d"),
             "here the statistics run over N * H * W values per channel"),
        same("running statistics", 1, True, _bn_cases("running"),
             "with batch_stats=False, mean and var are constants"),
    ],
    mistakes=[
        Mistake("mean and variance treated as constants",
                "in training the mean and variance depend on x: their two extra terms "
                "belong in dx",
                [("if not batch_stats:", "if True:")]),
        Mistake("missing 1/m", "the mean and variance average over m values: dx has 1/m",
                [("dx = inv_std / m * (", "dx = inv_std * (")]),
        Mistake("dgamma averaged", "dgamma sums dout * x_hat over every axis but the last",
                [("(dout * x_hat).sum(axis=axes)", "(dout * x_hat).mean(axis=axes)")]),
        Mistake("m = N for feature maps",
                "with (N, H, W, C) inputs each channel's statistics use N * H * W values",
                [("m = dout.size // dout.shape[-1]", "m = dout.shape[0]")]),
    ],
)

BATCHNORM = Assignment(
    "batchnorm", "Batch normalisation, backward",
    "The backward pass of batch normalisation, where the batch statistics make every "
    "example's gradient depend on every other example of the batch.",
    [BATCHNORM_BACKWARD], chapter="generalisation")


# ----------------------------------------------------------------------- residual block


def _block(cls, config, weights, input_shape):
    """A float64 block of class ``cls`` built from a Residual's config and weights."""
    block = cls([L.layer_from_config(c) for c in config["layers"]],
                shortcut=None if config["shortcut"] is None
                else L.layer_from_config(config["shortcut"]), name="block")
    block.build(input_shape, np.random.default_rng(0))
    for layer in block._sublayers():
        layer.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    if weights is not None:
        block.set_weights(weights)
    return block


def _residual_runner(cls, config, weights, x, dout):
    """dL/dx and the inner weight gradients (in one flat array) of a block of class
    ``cls``, after a forward pass on x."""
    block = _block(cls, config, weights, x.shape[1:])
    block.forward(x, training=True)
    dx = block.backward(dout)
    return dx, np.concatenate([np.ravel(block.grads[k]) for k in sorted(block.grads)])


def _residual_cases(projection, example=False):
    def cases(rng):
        r = np.random.default_rng(0) if example else rng
        c = 2
        n, h = (2, 5) if example else (int(rng.integers(1, 3)), int(rng.integers(4, 7)))
        f = 3 if projection else c
        layers = [L.Conv2D(f, 3, padding="same", name="conv_a"), L.ReLU(name="relu"),
                  L.Conv2D(f, 3, padding="same", name="conv_b")]
        shortcut = L.Conv2D(f, 1, name="project") if projection else None
        config = L.Residual(layers, shortcut=shortcut, name="block").get_config()
        weights = [_normal(r, *np.shape(w)) * 0.3 for w in
                   _block(L.Residual, config, None, (h, h, c)).get_weights()]
        block = _block(L.Residual, config, weights, (h, h, c))
        x = _normal(r, n, h, h, c)
        dout = _normal(r, n, h, h, f)
        inputs = {"config": config, "weights": weights, "x": x, "dout": dout}
        label = (("the example: " if example else "") +
                 f"x of shape {x.shape}, " +
                 ("a 1x1 convolution as shortcut" if projection else "identity shortcut"))
        if not example:
            return [(label, inputs)]

        def loss():
            return float(np.sum(block.forward(x) * dout))
        num = _numerical(loss, dx=x)
        return [(label, inputs, num)]
    return cases


RESIDUAL_BACKWARD = Part(
    (L.Residual, "backward"),
    "A residual block computes y = f(x) + shortcut(x). Write its `backward`: dL/dy "
    "goes into both branches, through f's layers in reverse order and through the "
    "shortcut (when there is one), and the two gradients of x add up. f's layers are "
    "the list `self.layers`, the shortcut is `self.shortcut` (None for the identity); "
    "each layer has its own `backward(dout)`, which returns the gradient of its input "
    "and stores its weight gradients. Return dL/dx (None when `self.need_dx` is False).",
    outputs=("dx", "grads"),
    runner=_residual_runner,
    class_doc="""A residual block (He et al., 2016): y = f(x) + shortcut(x).

    f is ``self.layers`` applied in order, e.g. Conv2D 3x3 "same" -> ReLU -> Conv2D
    3x3 "same"; the shortcut is the identity (``self.shortcut`` is None) or a layer
    (a 1x1 Conv2D) for when f changes the channels or size.
    """,
    doc="""Backward pass: dL/dx from dout = dL/dy (and every inner layer's weight
    gradients, which each layer's backward stores).""",
    checks=[
        gradient("the example: numerical gradient check of dx", 2, False,
                 _residual_cases(False, example=True)),
        same("identity shortcut: dx and every weight gradient", 1, True,
             _residual_cases(False)),
        same("projection shortcut", 2, True, _residual_cases(True),
             "this block's shortcut is a 1x1 convolution with its own weights"),
    ],
    mistakes=[
        Mistake("skip gradient dropped",
                "y = f(x) + x: dL/dx has the shortcut's term too (dL/dy itself for the "
                "identity)",
                [("return d_f + d_skip if", "return d_f if")]),
        Mistake("branch gradient dropped", "dL/dx has f's term too: add the two",
                [("return d_f + d_skip if", "return d_skip if")]),
        Mistake("shortcut's backward skipped",
                "a projection shortcut is a layer: dL/dx gets what its backward returns, "
                "s.backward(dL/dy), not dL/dy itself",
                [("d_skip = dout if s is None else s.backward(dout)", "d_skip = dout")]),
        Mistake("layers in forward order",
                "backpropagation visits the layers last to first: reversed(self.layers)",
                [("reversed(self.layers)", "self.layers")]),
    ],
)

RESIDUAL = Assignment(
    "residual", "A residual block, backward",
    "The skip connection of ResNets, y = f(x) + x, and why gradients flow through it.",
    [RESIDUAL_BACKWARD], chapter="since_lenet")


# ----------------------------------------------------------------------- training loop


def _epoch_runner(fn, model, x, y, batch_size, seed, lr):
    """(loss, accuracy, the weights in one flat array) after one epoch of ``fn``
    with SGD(lr, momentum 0.9) and ``np.random.default_rng(seed)``."""
    loss, acc = fn(model, optim.SGD(lr=lr, momentum=0.9), x, y, batch_size,
                   np.random.default_rng(seed))
    return float(loss), float(acc), np.concatenate([np.ravel(w) for w in model.get_weights()])


def _epoch_cases(dropout=False, example=False):
    def cases(rng):
        r = np.random.default_rng(0) if example else rng
        n, batch = (20, 8) if example else (int(rng.integers(15, 40)), int(rng.integers(4, 9)))
        n += n % batch == 0                      # the last batch is always a smaller one
        layers = [L.Conv2D(2, 3, name="conv"), L.ReLU(name="relu"), L.Flatten(name="flat"),
                  *([L.Dropout(0.3, name="drop")] if dropout else []),
                  L.Dense(10, name="dense")]
        model = Sequential(layers, input_shape=(6, 6, 1), seed=int(r.integers(1000)))
        model.astype(np.float64)
        x, y = r.random((n, 6, 6, 1)), r.integers(0, 10, n)
        label = (("the example: " if example else "") +
                 f"{n} images of 6x6, batches of {batch}" + (", with dropout" if dropout else ""))
        return [(label, {"model": model, "x": x, "y": y, "batch_size": batch,
                         "seed": int(r.integers(1000)), "lr": 0.1})]
    return cases


TRAIN_EPOCH = Part(
    T.train_epoch,
    "The loop that trains every network of the course: shuffle, cut into batches, "
    "and for each batch a forward and backward pass (`step`, by default "
    "`model.loss_and_backward`) and one optimiser step. The checks compare the "
    "weights after your epoch, and the loss and accuracy it returns, with the "
    "library's: draw the order with `rng.permutation(len(x))` once, at the start. "
    "The checks leave `shift`, `step` and `progress` at their defaults, so you may "
    "leave them out of your loop (`fit` uses them).",
    outputs=("loss", "accuracy", "weights"),
    forbid=(T.fit,),
    runner=_epoch_runner,
    checks=[
        same("the example: weights, loss and accuracy after one epoch", 2, False,
             _epoch_cases(example=True)),
        same("other sizes (the last batch smaller)", 1, True, _epoch_cases()),
        same("a network with dropout", 1, True, _epoch_cases(dropout=True),
             "this network has a Dropout layer: it is active only when training=True"),
    ],
    mistakes=[
        Mistake("no shuffling",
                "visit the examples in the order rng.permutation(len(x)): a fixed order "
                "lets the network learn the order",
                [("order = rng.permutation(len(x))", "order = np.arange(len(x))")]),
        Mistake("last partial batch dropped",
                "the last batch may be smaller than batch_size: train on it too",
                [("range(0, len(x), batch_size)",
                  "range(0, len(x) - batch_size + 1, batch_size)")]),
        Mistake("batch losses averaged unweighted",
                "the epoch's loss is the mean per example: weight each batch's mean loss "
                "by its size",
                [("loss_sum += loss * len(idx)", "loss_sum += loss"),
                 ("return loss_sum / seen, correct / seen",
                  "return loss_sum / -(-len(x) // batch_size), correct / seen")]),
        Mistake("dropout off while training",
                "pass training=True so that dropout (and batch norm's batch statistics) "
                "are on during training",
                [("step(xb, yb, training=True)", "step(xb, yb, training=False)")]),
        Mistake("step before backward",
                "compute the batch's gradients first, then take the optimiser step",
                [("        loss, logits = step(xb, yb, training=True)\n"
                  "        optimizer.step(params, model.gradients())",
                  "        optimizer.step(params, model.gradients())\n"
                  "        loss, logits = step(xb, yb, training=True)")]),
    ],
)

TRAINING_LOOP = Assignment(
    "training_loop", "The training loop: one epoch of mini-batch gradient descent",
    "Everything so far computes gradients; this loop turns them into learning.",
    [TRAIN_EPOCH], chapter="training")


ASSIGNMENTS = {a.name: a for a in [CONVOLUTION_FORWARD, CONVOLUTION_BACKWARD, POOLING,
                                   DENSE_SOFTMAX, TRAINING_LOOP, OPTIMISERS, BATCHNORM,
                                   RESIDUAL]}
