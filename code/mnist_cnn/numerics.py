"""When are two computations "equal"? One rule for the whole course.

Two programs that compute the same value in floating point rarely give the same
bits: a convolution sums hundreds of products, and NumPy's BLAS, TensorFlow's
oneDNN, Apple's Accelerate and a GPU's cuDNN each sum them in their own order
and with their own fused multiply-adds. The differences sit in the last bits of
the *dtype* and grow with the *size* of the values, so the tolerance follows
from both and from nothing else (never from one machine's run):

- the error is relative, measured against the largest magnitude in the two
  arrays (:func:`max_rel_error`), so it does not depend on the units;
- it is allowed to be :data:`ULPS` units of rounding of the lower precision of
  the two (:func:`tolerance`), a unit being the dtype's machine epsilon (the gap
  between 1 and the next number: 2^-23 = 1.19e-7 for float32, 2^-52 for float64):
  1.2e-4 for float32, 2.2e-13 for float64.

Why 1000 units: sums in a different order differ by a few units of rounding per
addition in the worst case and far less in practice; the course's comparisons
stay far below that on every CPU kernel ``make test-numerics`` tries, so 1000
leaves at least 10x headroom. It does not reliably catch TensorFloat-32, which
GPUs since Ampere use by default for float32 convolutions and matrix products:
TF32 rounds each input to 10 mantissa bits (a relative error up to 2^-11, about
5e-4), which in the course's comparisons gives errors of 1 to 10 times this
tolerance and sometimes less. So TF32 is turned off rather than tested for
(:func:`mnist_cnn.backend.import_tensorflow`).

A gradient check is a different comparison: the numerical gradient carries a
truncation error of O(h^2) and a round-off error of O(eps / h) in float64, so
it is held to :data:`GRADIENT_RTOL` in the norm-wise :func:`rel_error`.

A known difference is a third kind: where two quantities differ by an effect worked
out on paper (Adam's first step is eta * |g| / (|g| + eps), not quite eta * sign(g)),
:func:`assert_within` holds the difference to that bound.

Every check can be recorded: with ``MNIST_CNN_NUMERICS_LOG=<file>`` set, each
call appends one JSON line (name, kind, error, tolerance); ``make test-numerics``
reads them to print the worst error per comparison under other CPU kernels.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import numpy as np

__all__ = ["ULPS", "GRADIENT_RTOL", "tolerance", "max_rel_error", "rel_error",
           "assert_close", "assert_within", "assert_gradient_close", "round_to_tf32",
           "arithmetic"]

#: Units of rounding (machine epsilons) two computations of one value may differ by.
ULPS = 1000

#: Bound on rel_error(analytic, numerical) for a float64 centred-difference check
#: with h = 1e-6: the method's own error is about 1e-10; a wrong formula gives ~1.
GRADIENT_RTOL = 1e-7


def _dtype_of(x) -> np.dtype:
    # A dtype (np.float32, "float32") is itself; Python numbers and lists are float64;
    # a TensorFlow tensor converts to its dtype.
    if isinstance(x, (type, np.dtype, str)):
        dtype = np.dtype(x)
    else:
        dtype = np.asarray(x).dtype
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def tolerance(*arrays) -> float:
    """The relative tolerance for comparing ``arrays`` (or dtypes): ULPS machine
    epsilons of the least precise floating dtype among them (integers count as float64)."""
    eps = max(float(np.finfo(_dtype_of(a)).eps) for a in arrays)
    return ULPS * eps


def max_rel_error(actual, expected) -> float:
    """max |actual - expected| / the largest |value| in either array (0 if both are 0).

    Relative to the largest magnitude, not element by element: an element that
    is 1e-9 in one library and 0 in the other is round-off, not a 100 % error.
    """
    a = np.asarray(actual, np.float64)
    b = np.asarray(expected, np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {a.shape} against {b.shape}")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    if not np.isfinite(scale):
        return float("inf") if not np.array_equal(a, b, equal_nan=True) else 0.0
    return float(np.max(np.abs(a - b)) / scale) if scale > 0 else 0.0


def rel_error(a, b) -> float:
    """||a - b|| / max(||a|| + ||b||, 1e-12) over the whole array (the norm-wise
    error of a gradient check).

    Norm-wise rather than elementwise: an element that is ~1e-30 analytically
    and exactly 0 numerically is not a 100 % error, while a wrong formula still
    shows up as an error of order 1.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def _caller_name(depth: int) -> str:
    """file:line (function) of the code that called the check: stable across runs and
    parameters, so the same comparison can be followed from machine to machine."""
    frame = sys._getframe(depth + 1)
    code = frame.f_code
    return f"{os.path.basename(code.co_filename)}:{frame.f_lineno} ({code.co_name})"


def _record(what: str, kind: str, error: float, tol: float) -> None:
    log = os.environ.get("MNIST_CNN_NUMERICS_LOG")
    if not log:
        return
    line = json.dumps({"what": what, "kind": kind, "error": error, "tolerance": tol})
    with open(log, "a", encoding="utf-8") as f:   # one short line: appends do not interleave
        f.write(line + "\n")


def assert_close(actual, expected, what: str | None = None, *, rtol: float | None = None
                 ) -> float:
    """Assert that two arrays are equal in the course's sense and return the error.

    Inputs:
    - actual, expected: arrays (or numbers) of the same shape;
    - what: a name for the comparison in messages and in ``make test-numerics``
      (default: the calling test or function);
    - rtol: a different relative tolerance; pass one only with a comment that says
      why the default (:func:`tolerance`) does not apply.

    Returns: :func:`max_rel_error` (print or glue it). Raises AssertionError with
    the error, the tolerance and where the worst element is.
    """
    what = what or _caller_name(1)
    tol = tolerance(actual, expected) if rtol is None else float(rtol)
    err = max_rel_error(actual, expected)
    _record(what, "equal", err, tol)
    if not err <= tol:
        a = np.asarray(actual, np.float64)
        b = np.asarray(expected, np.float64)
        at = np.unravel_index(int(np.nanargmax(np.abs(a - b))), a.shape) if a.ndim else ()
        raise AssertionError(
            f"{what}: relative error {err:.3g} > tolerance {tol:.3g} "
            f"(worst at index {tuple(int(i) for i in at)}: {a[at]!r} against {b[at]!r})")
    return err


def assert_within(actual, expected, bound: float, what: str | None = None) -> float:
    """Assert that ``actual`` differs from ``expected`` by at most ``bound`` (in
    :func:`max_rel_error`) where the difference is the effect itself, worked out on
    paper (Adam's first step is eta |g| / (|g| + eps), not quite eta), not rounding;
    return the error. The bound has to cover the rounding on top of the effect.

    Unlike :func:`assert_close` the error may come close to the bound: it is the
    modelled effect, so ``make test-numerics`` checks that the bound holds under
    every arithmetic, not that it leaves headroom.
    """
    what = what or _caller_name(1)
    err = max_rel_error(actual, expected)
    _record(what, "bound", err, float(bound))
    if not err <= bound:
        raise AssertionError(f"{what}: relative error {err:.3g} exceeds the bound {bound:.3g}")
    return err


def assert_gradient_close(analytic, numerical, what: str | None = None) -> float:
    """Assert that an analytic gradient matches a numerical one (norm-wise
    :func:`rel_error` <= :data:`GRADIENT_RTOL`) and return the error."""
    what = what or _caller_name(1)
    err = rel_error(analytic, numerical)
    _record(what, "gradient", err, GRADIENT_RTOL)
    if not err <= GRADIENT_RTOL:
        raise AssertionError(f"{what}: gradient check failed: relative error {err:.3g} > "
                             f"{GRADIENT_RTOL:g} (a wrong formula gives an error of order 1)")
    return err


def round_to_tf32(a) -> np.ndarray:
    """``a`` as float32 rounded to TensorFloat-32's precision (10 of float32's 23
    mantissa bits, to nearest), as an NVIDIA GPU rounds the inputs of a TF32 matrix
    product or convolution: on a CPU this shows what TF32 would do to a result."""
    bits = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x1000) & 0xFFFFE000).astype(np.uint32).view(np.float32)


@functools.cache
def arithmetic() -> str:
    """A name for how this machine rounds NumPy's float32 arithmetic, e.g.
    "numpy 2.4.6, openblas 0.3.31 SkylakeX, 1b966fe858e0e41e": NumPy's version, its
    BLAS and the CPU kernels that BLAS chose, then the first 16 hex digits of the
    SHA-256 of the bits of fixed float32 computations of the kinds the course's
    training makes (matrix products at the shapes of the course network's forward
    and backward passes, batched products, einsum, sums along each axis; exp, log and
    tanh, which NumPy computes with SIMD code chosen for the CPU).

    Computed from NumPy alone, never from the course's own functions, so a change to
    those cannot change it; once per process (the kernels are chosen when BLAS loads,
    and the products run on one thread whatever the process's limits). Two machines
    with the same name round those operations the same way; a training run that gives
    the same bits under two names is possible, but one that gives other bits under the
    same name points at the code.
    """
    import hashlib

    from threadpoolctl import threadpool_info, threadpool_limits

    blas = [f"{i.get('internal_api', '?')} {i.get('version') or '?'} "
            f"{i.get('architecture') or '?'}" for i in threadpool_info()
            if i.get("user_api") == "blas"]
    rng = np.random.default_rng(0)

    def normal(*shape):
        return rng.standard_normal(shape, dtype=np.float32)

    cols, kernel = normal(50 * 26 * 26, 9), normal(9, 32)            # conv1 as im2col
    cols2, kernel2 = normal(50 * 11 * 11, 288), normal(288, 64)      # conv2
    dz2, flat, dense = normal(50 * 11 * 11, 64), normal(50, 1600), normal(1600, 128)
    ones, grad = np.ones((1, 50), np.float32), normal(50, 128)
    batched = normal(4, 30, 9), normal(4, 9, 16)
    # one BLAS thread: a product split over threads may round otherwise, and the name
    # is of the kernels, not of how many cores ran them
    with threadpool_limits(limits=1, user_api="blas"):
        parts = [cols @ kernel, cols2 @ kernel2, cols2.T @ dz2, dz2 @ kernel2.T,
                 flat @ dense, flat.T @ grad, ones @ flat, np.matmul(*batched),
                 np.einsum("ij,jk->ik", cols2[:500], kernel2),
                 cols2.sum(axis=0), cols2.sum(axis=1), cols2.sum(),
                 np.exp(cols2[:500]), np.log(np.abs(cols2[:500]) + 1), np.tanh(cols2[:500])]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(np.ascontiguousarray(part, dtype=np.float32).tobytes())
    return (f"numpy {np.__version__}, {', '.join(blas) or 'no BLAS found'}, "
            f"{digest.hexdigest()[:16]}")
